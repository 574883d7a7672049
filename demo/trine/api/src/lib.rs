#![allow(non_local_definitions)] // sabi_trait's generated impls
//! The interface both sides of a dependency compile against: a stable-ABI trait object.
//! abi_stable checks its layout when the host binds an import to an export.

use abi_stable::{
    sabi_trait,
    std_types::{RBox, RString},
};

/// One stage of the trine pipeline.
///
/// Methods must not panic: an unwinding panic cannot cross this `extern "C"` boundary
/// (abi_stable aborts). Report failures in the return value instead.
#[sabi_trait]
pub trait Stage: Send + Sync {
    /// Transforms a number.
    fn apply(&self, x: i64) -> i64;
    /// Which plugin and version this stage is, and what it calls.
    fn describe(&self) -> RString;
}

/// A boxed `Stage` trait object, the type exported and imported.
pub type StageObj = Stage_TO<'static, RBox<()>>;

// SAFETY: `Lendable`'s contract for a trait object: dependents reach a provider's
// `StageObj` by shared reference, and no value a caller made ends up stored in it, as
// `Stage`'s methods take only plain data (`apply(&self, i64)`, `describe(&self)`) and
// return values the caller owns. A method taking an owned or reference-holding value
// that an implementation could keep (an `RString`, an `RBox`, a trait object, an
// `RStr` kept as it is) would break this: implementations must copy what they keep.
unsafe impl hotswap_plugin_api::Lendable for StageObj {}
