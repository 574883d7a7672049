#![allow(non_local_definitions)] // sabi_trait's generated impls
//! The host's Extension, as plugins see it: a stable-ABI trait object the host makes
//! afresh for every generation (`Builder::extension_newer`).

use abi_stable::{
    sabi_trait,
    std_types::{RBox, RStr, RString},
};

/// What the host offers plugins through the vault.
///
/// Methods must not panic (an unwinding panic cannot cross this boundary).
#[sabi_trait]
pub trait HostExt: Send + Sync {
    /// Which generation this extension was made for.
    fn generation_tag(&self) -> u64;
    /// Asks the host to run live function `func` with `payload` after `delay_ms`.
    fn schedule(&self, delay_ms: u64, func: RStr<'_>, payload: RStr<'_>);
    /// The host's greeting for `who`.
    fn greet(&self, who: RStr<'_>) -> RString;
}

/// The boxed trait object the host builds and plugins ask for.
pub type HostExtObj = HostExt_TO<'static, RBox<()>>;

// SAFETY: `Lendable`'s contract for a trait object: plugins reach the host's
// `HostExtObj` by shared reference, and no value a plugin made ends up stored in it, as
// `HostExt`'s methods take only plain data (`generation_tag(&self)`,
// `schedule`'s `u64`) or borrowed text (`schedule`'s and `greet`'s `RStr<'_>`, valid
// for the call only), and implementations copy what they keep (the host's `schedule`
// stores `func.to_string()`, a string of its own, never the `RStr`). An implementation
// that kept an `RStr` as it is, or a method taking an owned `RString`, `RBox` or trait
// object to keep, would break this.
unsafe impl hotswap_plugin_api::Lendable for HostExtObj {}
