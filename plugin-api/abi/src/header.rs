//! The one symbol every plugin exports, and the version numbers the host checks first.
//!
//! The leading fields of [`PluginHeader`] (`magic`, `abi_major`, `abi_minor`) are frozen
//! forever, so any host, old or new, can read them (even from the file on disk, without
//! loading it) and refuse a plugin of another ABI with a clear message before touching
//! anything else.

use crate::vtable::PluginVTable;
use abi_stable::{library::AbiHeader, std_types::RStr, type_layout::TypeLayout};

/// Name of the exported static holding a [`PluginHeader`] (without the trailing NUL).
pub const HEADER_SYMBOL: &str = "HOTSWAP_PLUGIN_HEADER";

/// First 16 bytes of a [`PluginHeader`].
pub const MAGIC: [u8; 16] = *b"hotswap-plugin\0\0";

/// Major ABI version: a host loads only plugins with the same major. 2: typed functions
/// of two to four arguments take one parameter per argument (1 passed them as one
/// packed value). 3: `HostVTable` gained `retired` and the environment entries
/// (`env_set`, `env_remove`, `env_clear`, `env_get`), which the layout check would
/// refuse a plugin of 2 for anyway, in a longer report.
pub const ABI_MAJOR: u32 = 4;

/// Minor ABI version: a host loads plugins whose minor is at most its own.
pub const ABI_MINOR: u32 = 0;

/// Version of this crate (`hotswap-abi`) the plugin was compiled against.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The static a plugin exports under [`HEADER_SYMBOL`]; written by
/// `hotswap_plugin_api::export_plugin!`, never by hand.
#[repr(C)]
pub struct PluginHeader {
    /// Always [`MAGIC`].
    pub magic: [u8; 16],
    /// [`ABI_MAJOR`] of the plugin-api the plugin was built with.
    pub abi_major: u32,
    /// [`ABI_MINOR`] of the plugin-api the plugin was built with.
    pub abi_minor: u32,
    /// abi_stable's own version header, checked with `AbiHeader::is_compatible`.
    pub abi_stable: AbiHeader,
    /// [`API_VERSION`] of the plugin.
    pub api_version: RStr<'static>,
    /// Layout of [`PluginVTable`] as the plugin sees it; the host checks it against its
    /// own with abi_stable's layout checker before using `vtable`.
    pub layout: &'static TypeLayout,
    /// The plugin's entry points.
    pub vtable: &'static PluginVTable,
    /// Proof that `layout` is `PluginVTable`'s and `vtable` a table `export_plugin!`
    /// built: safe code cannot make a header (see [`Sealed`](crate::vtable::Sealed)).
    pub sealed: crate::vtable::Sealed,
}
