//! [`StaticPlugin`]: a plugin compiled into the host binary instead of loaded from a
//! file (Go hotswap's `WithStaticPlugins`), so that a debugger sees host and plugin code
//! as one program.
//!
//! `hotswap build --static-linking <pluginDir> <hostDir>` generates the list (a
//! `static_plugins()` function in the host crate) and the Cargo.toml dependencies; the
//! host passes it to [`Builder::static_plugins`](crate::Builder::static_plugins). The
//! plugin's source is unchanged: its crate declares `crate-type = ["cdylib", "rlib"]`,
//! and the host enables `hotswap-plugin-api`'s `static` feature, under which
//! `export_plugin!` leaves its header out of the symbol table and reachable as the Rust
//! path `<plugin crate>::HOTSWAP_PLUGIN_HEADER`.

use hotswap_abi::header::PluginHeader;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether a manager with static plugins exists (see [`StaticClaim`]).
static CLAIMED: AtomicBool = AtomicBool::new(false);

/// The one manager with static plugins loaded a process may have at a time, for as
/// long as it (or a handle of it) lives. Why one: plugins linked into the host share one copy
/// of `hotswap-plugin-api`, whose handle to the host (what `vault()`, `spawn` and
/// `retired()` reach) is one static; two managers would each see the other's DataBag.
pub(crate) struct StaticClaim(());

impl StaticClaim {
    /// The claim, or `None` while another manager holds it.
    pub fn take() -> Option<StaticClaim> {
        CLAIMED
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| StaticClaim(()))
    }
}

impl Drop for StaticClaim {
    fn drop(&mut self) {
        CLAIMED.store(false, Ordering::Release);
    }
}

/// One plugin linked into the host binary: its header, as `export_plugin!` made it.
///
/// It goes through the same checks as a loaded file (magic, ABI version, abi_stable
/// version, layout of the entry points), then the same lifecycle, dependency resolution,
/// vault, live functions and typed handles. It is never unloaded and cannot be swapped:
/// a manager with static plugins refuses `reload` with
/// [`Error::Unsupported`](crate::Error::Unsupported).
#[derive(Clone, Copy)]
pub struct StaticPlugin {
    pub(crate) header: &'static PluginHeader,
    pub(crate) live_prefix: &'static str,
    pub(crate) live_functions: &'static [&'static str],
}

impl StaticPlugin {
    /// The plugin whose header is `header`, e.g. `StaticPlugin::new(&world::HOTSWAP_PLUGIN_HEADER)`.
    ///
    /// Safe: a `PluginHeader` (and every table it points to) can only be built with
    /// the `unsafe` `Sealed::new` that `export_plugin!` calls, so any header promises
    /// consistent tables; the host still checks its magic, ABI and layout at load.
    pub const fn new(header: &'static PluginHeader) -> StaticPlugin {
        StaticPlugin {
            header,
            live_prefix: "",
            live_functions: &[],
        }
    }

    /// The live functions `hotswap build --static-linking` found in the plugin's sources
    /// (names starting with `prefix`): loading fails, as for a built file whose manifest
    /// lists them, if the plugin does not register each one in `export_plugin!`.
    pub const fn live_functions(
        mut self,
        prefix: &'static str,
        names: &'static [&'static str],
    ) -> StaticPlugin {
        self.live_prefix = prefix;
        self.live_functions = names;
        self
    }

    /// The plugin's name (its package name), as its header says.
    pub fn name(&self) -> &'static str {
        self.header.vtable.name.as_str()
    }

    /// The plugin's crate version, as its header says.
    pub fn version(&self) -> &'static str {
        self.header.vtable.version.as_str()
    }
}

impl fmt::Debug for StaticPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticPlugin")
            .field("name", &self.name())
            .field("version", &self.version())
            .field("live_functions", &self.live_functions)
            .finish()
    }
}
