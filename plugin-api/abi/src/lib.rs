//! The frozen boundary between a hotswap host and its plugins: everything that crosses
//! it, as `#[repr(C)]` types deriving `StableAbi`, and nothing else.
//!
//! - [`header`]: the one symbol a plugin exports ([`header::PluginHeader`]) and the
//!   version numbers a host checks before anything else.
//! - [`vtable`]: the plugin's entry points ([`vtable::PluginVTable`]), the host's
//!   services a plugin may call ([`vtable::HostVTable`]), failures, and the [`Sealed`]
//!   token without which safe code cannot build a table.
//! - [`value`]: [`Value`], the stable value that by-name calls, the DataBag and live
//!   things carry.
//!
//! Plugin authors never name this crate: `hotswap-plugin-api` (its `export_plugin!`
//! macro) builds these tables, and re-exports [`Value`]. Hosts read them through
//! `hotswap-host`. A change to any type here is an ABI change: the host checks every
//! layout reachable from [`vtable::PluginVTable`] at load and refuses a plugin whose
//! layouts differ, in one line naming the difference.
//!
//! [`Sealed`]: vtable::Sealed
//! [`Value`]: value::Value
#![warn(missing_docs)]

pub mod header;
pub mod value;
pub mod vtable;

pub use abi_stable;
pub use async_ffi;
