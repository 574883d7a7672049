//! [`Shared`]: the state of one manager that its handles (`PluginManager`, `Func`) and
//! its versions' callbacks share; the plugin side reaches it as [`Services`].

use crate::ctx::Services;
use crate::error::CallError;
use crate::generation::{Generation, Symbol};
use crate::layouts::CheckedLayouts;
use crate::library::Jobs;
use crate::reaper::ReaperHandle;
use crate::spare::Spares;
use crate::static_plugin::{StaticClaim, StaticPlugin};
use crate::status::Records;
use crate::trust::Trust;
use crate::vault::{ExtensionObj, Vault};
use crate::verified::Verified;
use hotswap_plugin_api::Value;
use hotswap_reclaim::Domain;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// Decides whether a freshly built generation may be published: gets the new and the
/// current generation; an `Err` vetoes the swap and becomes the reload's error.
pub type ReloadCallback = Arc<dyn Fn(&Generation, &Generation) -> Result<(), String> + Send + Sync>;

pub(crate) type ExtensionNewer = Arc<dyn Fn() -> ExtensionObj + Send + Sync>;

/// One manager's state, behind an `Arc` its handles share.
pub(crate) struct Shared {
    pub(crate) extension_newer: Option<ExtensionNewer>,
    pub(crate) vault: Vault,
    pub(crate) dir: Mutex<PathBuf>,
    pub(crate) whitelist: Option<HashSet<String>>,
    pub(crate) reload_callback: Option<ReloadCallback>,
    pub(crate) logger: Option<tracing::Dispatch>,
    /// `Some` in static mode: what `load_plugins` loads; reloads are refused.
    pub(crate) static_plugins: Option<Vec<StaticPlugin>>,
    /// Held once static plugins are loaded: one such manager at a time.
    pub(crate) static_claim: Mutex<Option<StaticClaim>>,
    pub(crate) domain: Domain<Generation>,
    pub(crate) reload_lock: Mutex<()>,
    pub(crate) reaper: ReaperHandle,
    /// The reaper's inbox, as versions and libraries send to it.
    pub(crate) jobs: Jobs,
    pub(crate) records: Arc<Records>,
    /// Plugin files already checked (see `verified`).
    pub(crate) verified: Verified,
    /// Private copies of unloaded versions, kept for a reload of the same file (see
    /// `spare`).
    pub(crate) spares: Arc<Spares>,
    /// Layout checks already passed (see `layouts`).
    pub(crate) layouts: CheckedLayouts,
    /// The next reload's hook thread, started by the last one's (see `hooks`).
    pub(crate) next_hooks: crate::hooks::NextHooks,
    /// Owner, mode and signature checks of what is loaded (see `trust`).
    pub(crate) trust: Trust,
    pub(crate) symbols: Mutex<Vec<Symbol>>,
    pub(crate) private_dir: tempfile::TempDir,
    pub(crate) reloads: AtomicU64,
    pub(crate) hook_timeout: Duration,
    /// Hooks that overran their deadline since start.
    pub(crate) hook_timeouts: AtomicU64,
    /// Plugins a rollback holds at an older build (see `scan::Pin`).
    pub(crate) pins: Mutex<HashMap<String, crate::scan::Pin>>,
    /// A scan that finds no plugin fails the reload (`Builder::require_plugins`).
    pub(crate) require_plugins: bool,
    /// Old versions a reload may find waiting to unload (`Builder::max_unloading`).
    pub(crate) max_unloading: usize,
}

impl Services for Shared {
    fn vault(&self) -> &Vault {
        &self.vault
    }

    fn with_extension(&self, f: &mut dyn FnMut(Option<&ExtensionObj>)) {
        // Nested in a call, `with` reuses the generation that call runs on.
        self.domain.with(|g| f(g.extension.as_deref()))
    }

    fn call_live(&self, name: &str, args: &[Value]) -> Result<Value, CallError> {
        self.domain.with(|g| g.call_live(name, args))
    }
}
