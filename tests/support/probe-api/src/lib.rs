//! The types of the probe plugin's typed functions, shared by the plugin and the tests
//! (as an interface crate is shared by a plugin and its host).

use abi_stable::{
    std_types::{RString, RVec},
    StableAbi,
};
use hotswap_plugin_api::Pod;

/// Options of a quote, lent to the plugin by reference (with an owned field: the plugin
/// only reads it).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct QuoteOpts {
    /// Percent off.
    pub discount_pct: u32,
    /// Currency code, e.g. "EUR".
    pub currency: RString,
}

/// A quote: plain data.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    /// Total price in cents.
    pub cents: u64,
    /// Quantity quoted.
    pub qty: u32,
    /// Which probe version quoted (1 or 2).
    pub version: u32,
}

// SAFETY: `#[repr(C)]`, `StableAbi`, only `Pod` fields.
unsafe impl Pod for Quote {}

/// The plugin's own error type.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PricingError {
    /// No such article.
    UnknownSku = 0,
    /// A quantity of zero.
    ZeroQuantity = 1,
}

// SAFETY: a fieldless `#[repr(u8)]` enum holds no pointer.
unsafe impl Pod for PricingError {}

/// Another options type (for the signature-mismatch tests).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq)]
pub struct OtherOpts {
    /// Anything.
    pub flags: u64,
}

/// Another error type (for the signature-mismatch tests).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtherError {
    /// Anything.
    pub code: u32,
}

// SAFETY: `#[repr(C)]`, `StableAbi`, only `Pod` fields.
unsafe impl Pod for OtherError {}

/// A result with owned fields, made a typed result by `typed_result!`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct Receipt {
    /// A plugin-made string.
    pub text: RString,
    /// Plugin-made strings.
    pub lines: RVec<RString>,
    /// Plain data.
    pub cents: u64,
}

hotswap_plugin_api::typed_result!(Receipt { text, lines, cents });

/// The argument of the awaiter plugin's async functions: owned fields, moved into the
/// plugin (`typed_result!` makes it a `HostCopy`, which async arguments must be).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct Job {
    /// Echoed back.
    pub id: u64,
    /// When not empty, the future waits until the DataBag holds `true` under this key.
    pub gate: RString,
    /// Echoed back, prefixed with the plugin's version.
    pub text: RString,
}

hotswap_plugin_api::typed_result!(Job { id, gate, text });

/// What the awaiter's `handle` answers.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct Answer {
    /// The job's id.
    pub id: u64,
    /// Which awaiter version answered (1 or 2).
    pub version: u32,
    /// `v<version>:<text>`, made by the plugin.
    pub text: RString,
}

hotswap_plugin_api::typed_result!(Answer { id, version, text });
