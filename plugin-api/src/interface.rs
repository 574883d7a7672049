//! Trait interfaces: a trait declared once in an interface crate, implemented by a
//! plugin, called by the host through a handle.
//!
//! ```no_run
//! // The interface crate (both the plugin and the host depend on it).
//! use hotswap_plugin_api::interface;
//!
//! #[interface]
//! pub trait Pricing {
//!     /// The price of `qty` of `sku`, in cents.
//!     fn quote(&self, sku: &str, qty: u32) -> Option<u64>;
//!     fn currency(&self) -> String;
//! }
//!
//! // The plugin.
//! use hotswap_plugin_api::{export_plugin, Plugin};
//!
//! #[derive(Default)]
//! struct Shop;
//! impl Plugin for Shop {}
//! impl Pricing for Shop {
//!     fn quote(&self, sku: &str, qty: u32) -> Option<u64> {
//!         (sku == "apple").then_some(50 * u64::from(qty))
//!     }
//!     fn currency(&self) -> String {
//!         "EUR".into()
//!     }
//! }
//! export_plugin!(Shop, interfaces { Pricing });
//!
//! // The host (`hotswap_host`):
//! // let pricing = manager.interface::<dyn Pricing>("shop")?;
//! // assert_eq!(pricing.quote("apple", 3)?, Some(150));
//! # fn main() {}
//! ```
//!
//! [`#[interface]`](macro@crate::interface) leaves the trait as written and adds, beside it,
//! a handle type (`PricingHandle`) with one method per trait method, which returns the
//! method's result in a `Result` whose error is the host's call error. Each method is a
//! typed function of the plugin named `Trait.method` (`Pricing.quote`): the same
//! argument and result types as [typed functions](crate::typed) (borrowed `&str`,
//! `&[T]`, `&T` lent for the call, owned results copied into host-owned values), the same
//! layout check when the handle is made (a mismatch names the method and what differs,
//! in one line), and each call pins the current generation, as one typed call does.
//!
//! Methods take `&self` and up to four arguments; no generic parameters other than
//! lifetimes, no `&mut self`, no `async fn`. Default method bodies work: the plugin's
//! implementation (default or not) is what the host calls. A method the boundary cannot
//! carry is refused where the trait is declared:
//!
//! ```compile_fail
//! #[hotswap_plugin_api::interface]
//! pub trait Counter {
//!     fn bump(&mut self) -> u64; // error: takes `&self` (calls run on many threads at once)
//! }
//! # fn main() {}
//! ```
//!
//! and a plugin that lists an interface it does not implement does not compile:
//!
//! ```compile_fail
//! use hotswap_plugin_api::{export_plugin, interface, Plugin};
//! #[interface]
//! pub trait Pricing {
//!     fn currency(&self) -> String;
//! }
//! #[derive(Default)]
//! struct Shop;
//! impl Plugin for Shop {}
//! export_plugin!(Shop, interfaces { Pricing }); // error: `Shop: Pricing` is not satisfied
//! # fn main() {}
//! ```

use crate::typed::{Args, Ret};
use crate::vtable::TypedFn;
use std::mem::MaybeUninit;

/// A trait made an interface by [`#[interface]`](macro@crate::interface), implemented for its
/// trait object type (`dyn Pricing`). Nothing to implement by hand.
pub trait Interface {
    /// The trait's name, which prefixes its methods' names among the plugin's typed
    /// functions (`Pricing.quote`).
    const NAME: &'static str;
    /// The methods' names, as the plugin exports them (`Pricing.quote`).
    const METHODS: &'static [&'static str];
    /// The handle on an implementation of the interface, made of one typed handle per
    /// method of the family `C` (the host's typed handles).
    type Handle<C: Calls>;
    /// Makes the handle: one typed handle per method, through `binder`.
    ///
    /// # Errors
    /// The first method `binder` cannot make a handle for (missing, or another signature).
    fn bind<B: Binder>(binder: &B) -> Result<Self::Handle<B::Calls>, <B::Calls as Calls>::Error>;
}

/// The plugin side of an interface: the typed table entries of [`Interface`] `Self` as
/// implemented by plugin type `T`. Implemented by [`#[interface]`](macro@crate::interface)
/// for every `T` that implements the trait; `export_plugin!(.., interfaces { .. })`
/// reads it.
pub trait Implemented<T>: Interface {
    /// One entry per method, named `Trait.method`.
    const TYPED: &'static [TypedFn];
}

/// A family of typed handles that an interface's handle is made of: implemented by the
/// host (`hotswap_host::HostCalls`), so that an interface crate needs only this crate.
pub trait Calls {
    /// The typed handle on one function of arguments `A` and result `R`.
    type Func<A: Args, R: Ret>: Clone;
    /// Why a call failed (a panic, the plugin gone, ...).
    type Error;
    /// Calls `f` with `args`.
    ///
    /// # Errors
    /// When the call itself failed; the function's own result is the `Ok` value.
    fn call<'w, A: Args, R: Ret>(f: &Self::Func<A, R>, args: A::Lent<'w>)
        -> Result<R, Self::Error>;
}

/// What makes the typed handles of one plugin for [`Interface::bind`].
pub trait Binder {
    /// The family of handles it makes.
    type Calls: Calls;
    /// A typed handle on the plugin's function `function` (`Pricing.quote`).
    ///
    /// # Errors
    /// The function is missing or has another signature.
    fn bind<A: Args, R: Ret>(
        &self,
        function: &'static str,
    ) -> Result<<Self::Calls as Calls>::Func<A, R>, <Self::Calls as Calls>::Error>;
}

/// A plugin's whole table of typed functions: its own `typed { .. }` entries and those of
/// the interfaces it implements, laid end to end at compile time by `export_plugin!`.
/// The entries are private so that no one can take one apart (its [`Sealed`] token
/// would forge another table).
///
/// [`Sealed`]: crate::vtable::Sealed
#[doc(hidden)]
pub struct TypedTable<const N: usize>([TypedFn; N]);

impl<const N: usize> TypedTable<N> {
    /// The entries of `parts`, in order; compilation fails when they are not `N`.
    pub const fn concat(parts: &[&[TypedFn]]) -> TypedTable<N> {
        let mut out = [const { MaybeUninit::<TypedFn>::uninit() }; N];
        let mut n = 0;
        let mut k = 0;
        while k < parts.len() {
            let mut j = 0;
            while j < parts[k].len() {
                assert!(n < N, "more typed functions than the table holds");
                // SAFETY: `TypedFn` has no destructor and no interior mutability, so a
                // bitwise copy is a second, equally consistent entry; the copy stays in
                // this private array, so its token cannot be taken out.
                out[n] = MaybeUninit::new(unsafe { std::ptr::read(&parts[k][j]) });
                n += 1;
                j += 1;
            }
            k += 1;
        }
        assert!(n == N, "fewer typed functions than the table holds");
        // SAFETY: the loop wrote all `N` elements (asserted), and `[MaybeUninit<T>; N]`
        // has the layout of `[T; N]`.
        TypedTable(unsafe { std::ptr::read(&out as *const _ as *const [TypedFn; N]) })
    }

    /// The entries.
    pub const fn as_slice(&'static self) -> &'static [TypedFn] {
        &self.0
    }
}
