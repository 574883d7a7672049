//! The types of the probe plugin's typed functions, shared by the plugin and the tests
//! (as an interface crate is shared by a plugin and its host).

use abi_stable::{
    std_types::{RString, RVec},
    StableAbi,
};
use hotswap_plugin_api::Pod;

/// Options of a quote, lent to the plugin by reference (with an owned field: the plugin
/// only reads it; `lendable!` checks it cannot store anything in it).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct QuoteOpts {
    /// Percent off.
    pub discount_pct: u32,
    /// Currency code, e.g. "EUR".
    pub currency: RString,
}

hotswap_plugin_api::lendable!(QuoteOpts {
    discount_pct,
    currency
});

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

hotswap_plugin_api::lendable!(OtherOpts { flags });

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

/// A trait interface the probe plugin implements (`export_plugin!(.., interfaces { Shop })`);
/// the host calls it through `manager.interface::<dyn Shop>("probe")`.
#[hotswap_plugin_api::interface]
pub trait Shop {
    /// As the probe's typed `quote`.
    fn quote(&self, sku: &str, qty: u32, opts: &QuoteOpts) -> Result<Quote, PricingError>;
    /// The probe's version number (1 or 2).
    fn version(&self) -> u32;
    /// `x + 1` (v1) or `x + 2` (v2): plain data both ways, for the benchmark.
    fn add(&self, x: u64) -> u64;
    /// A description of `sku` naming the version.
    fn describe(&self, sku: &str) -> String;
    /// The bytes reversed.
    #[expect(
        clippy::needless_lifetimes,
        reason = "a named lifetime, which `#[interface]` must accept"
    )]
    fn reversed<'a>(&self, bytes: &'a [u8]) -> Vec<u8>;
    /// Panics with the message given.
    fn explode(&self, message: &str);
    /// A default body: the probe does not override it.
    fn motto(&self) -> String {
        String::from("default motto")
    }
}

/// The same interface as another release of this crate declares it: `add` takes a `u32`.
/// A host built against it is refused at `interface()` with the method named.
pub mod older {
    #[hotswap_plugin_api::interface]
    pub trait Shop {
        /// Takes a `u32` where the probe's takes a `u64`.
        fn add(&self, x: u32) -> u64;
    }
}

/// An interface the probe does not implement.
#[hotswap_plugin_api::interface]
pub trait Inventory {
    /// How many of `sku` are in stock.
    fn stock(&self, sku: &str) -> u64;
}

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
