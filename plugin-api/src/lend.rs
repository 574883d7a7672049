//! Values one library may lend another by shared reference: [`Lendable`].
//!
//! abi_stable values carry the code of the library that made them: an `RVec` or an
//! `RString` drops through a vtable compiled into that library, an `RStr<'static>` of a
//! literal points into its read-only data, a trait object calls its methods. A value
//! lent by reference to another library's code (the host's `&T` argument of a typed
//! function, its per-generation extension, a provider's export) lives on after that
//! code's library is unloaded. Were the borrower able to store a value of its own inside
//! the lent one (through a cell, a mutex, an atomic pointer), a later drop or read would
//! jump into an unmapped library. So every API that lends a `&T` across libraries bounds
//! `T` by [`Lendable`]: a type that cannot be made to hold what the borrower made.
//!
//! It is implemented for every [`Pod`] (plain data, `Copy`: no interior mutability),
//! `RString`, `RVec<T>`, `ROption<T>`, `RResult<T, E>` (of `Lendable`s), the integer and
//! `bool` atomics abi_stable supports (`AtomicU8`…`AtomicU64`, `AtomicI8`…`AtomicI64`,
//! `AtomicUsize`, `AtomicIsize`, `AtomicBool`: a borrower can only store a number in
//! them), and abi_stable's `RMutex<T>` and `RRwLock<T>` of a `Pod` `T`. A struct of
//! such fields becomes one with [`lendable!`](crate::lendable), no `unsafe` needed. Not
//! for `RArc`, `RBox`, `RStr`, `AtomicPtr`, cells or locks of non-`Pod` values; a
//! `#[sabi_trait]` trait object only by an `unsafe impl` in its interface crate (see
//! [`Lendable`]'s contract).

use crate::Pod;
use abi_stable::external_types::{RMutex, RRwLock};
use abi_stable::std_types::{ROption, RResult, RString, RVec};
use std::sync::atomic::{
    AtomicBool, AtomicI16, AtomicI32, AtomicI64, AtomicI8, AtomicIsize, AtomicU16, AtomicU32,
    AtomicU64, AtomicU8, AtomicUsize,
};

/// A type whose values may be lent by shared reference to the code of another library:
/// a typed function's `&T` and `&[T]` arguments, the host's extension
/// (`Builder::extension_newer`, [`Vault::with_extension`](crate::Vault::with_extension)),
/// a provider's [`Export`](crate::Export) ([`Imports::get`](crate::Imports::get)).
///
/// Implemented for `Pod`s, `RString`, `RVec`/`ROption`/`RResult` of `Lendable`s, the
/// integer and `bool` atomics, and `RMutex`/`RRwLock` of a `Pod`; a struct of such
/// fields becomes one with [`lendable!`](crate::lendable).
///
/// A lock or cell that could hold a value made by the borrower is refused at compile
/// time (here a typed-function argument, as the host's `Func` and `export_plugin!` ask
/// for it):
///
/// ```compile_fail,E0277
/// use hotswap_plugin_api::abi_stable::external_types::RMutex;
/// use hotswap_plugin_api::abi_stable::std_types::{RString, RVec};
/// fn lent<A: hotswap_plugin_api::typed::Arg>() {}
/// // The plugin could push an RString of its own, dropped by the host after the
/// // plugin's library is gone.
/// lent::<&RMutex<RVec<RString>>>(); // error: not `Lendable`
/// ```
///
/// as is an export that dependents could store their own values in:
///
/// ```compile_fail,E0277
/// use hotswap_plugin_api::abi_stable::external_types::RMutex;
/// use hotswap_plugin_api::abi_stable::std_types::{RString, RVec};
/// use hotswap_plugin_api::Export;
/// let _ = Export::new(RMutex::new(RVec::<RString>::new())); // error: not `Lendable`
/// ```
///
/// while plain data, owned values the borrower can only read, and locks of plain data
/// are lent:
///
/// ```
/// use hotswap_plugin_api::abi_stable::external_types::RMutex;
/// use hotswap_plugin_api::abi_stable::std_types::{RString, RVec};
/// use hotswap_plugin_api::abi_stable::{self, StableAbi};
/// use std::sync::atomic::AtomicU64;
///
/// #[repr(C)]
/// #[derive(StableAbi)]
/// pub struct QuoteOptsLike { pub discount_pct: u32, pub currency: RString }
/// hotswap_plugin_api::lendable!(QuoteOptsLike { discount_pct, currency });
///
/// fn lent<A: hotswap_plugin_api::typed::Arg>() {}
/// lent::<&QuoteOptsLike>();
/// lent::<&RMutex<u64>>();
/// lent::<&AtomicU64>();
/// lent::<&[RVec<RString>]>();
/// ```
///
/// # Safety
/// A value of the type, reached through a shared reference by the code of another
/// library, cannot be made to hold anything that code made: the type has no interior
/// mutability that can store a value with pointers or code of its own (a value whose
/// drop runs code of the library that made it, an `RString` or `RVec` it allocated, an
/// `RStr` or reference into its memory, a trait object or function pointer of its
/// code). Interior mutability of plain data (an atomic integer, a mutex of a `Pod`) is
/// fine: a number holds nothing of its writer. Every field must be `Lendable` too.
///
/// A trait object (`#[sabi_trait]`) cannot be checked: its interface crate may
/// `unsafe impl Lendable` for it, asserting that the trait's methods take only borrowed
/// or plain-data arguments, or that every implementation copies what it keeps (an
/// `RStr` argument kept as a `String` of the implementation's own), so that no value a
/// caller made ends up stored in the object.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be lent to another library's code",
    label = "not `Lendable`",
    note = "a value lent by reference (a typed `&T` or `&[T]` argument, the host's \
            extension, a plugin's export) must not be able to store what the borrower \
            made: `Pod`s, `RString`, `RVec`/`ROption`/`RResult` of `Lendable`s, integer \
            atomics, `RMutex`/`RRwLock` of a `Pod`; a struct of such fields with \
            `hotswap_plugin_api::lendable!`"
)]
pub unsafe trait Lendable {}

// SAFETY: a `Pod` is `Copy`, so it has no interior mutability (no `UnsafeCell`), and it
// holds no pointer (`Pod`'s contract): a borrower can store nothing in it.
unsafe impl<T: Pod> Lendable for T {}

// SAFETY: through `&RString` a borrower can only read the text; its buffer and vtable
// stay the lender's.
unsafe impl Lendable for RString {}

// SAFETY: through `&RVec<T>` a borrower can only reach the elements by `&T`, which are
// `Lendable`.
unsafe impl<T: Lendable> Lendable for RVec<T> {}

// SAFETY: as for the inner value.
unsafe impl<T: Lendable> Lendable for ROption<T> {}

// SAFETY: as for the inner values.
unsafe impl<T: Lendable, E: Lendable> Lendable for RResult<T, E> {}

macro_rules! lendable_atomics {
    ($($t:ty),*) => {$(
        // SAFETY: an integer or `bool` atomic stores only a number (what abi_stable
        // describes as `StableAbi`; `AtomicPtr` is left out, as a pointer could point
        // into the borrower).
        unsafe impl Lendable for $t {}
    )*};
}
lendable_atomics!(
    AtomicBool,
    AtomicU8,
    AtomicU16,
    AtomicU32,
    AtomicU64,
    AtomicUsize,
    AtomicI8,
    AtomicI16,
    AtomicI32,
    AtomicI64,
    AtomicIsize
);

// SAFETY: through `&RMutex<T>` a borrower can store only a `T`, a `Pod`, which holds
// nothing of it; the lock's vtable is the lender's (it made the mutex), and a guard
// borrows the mutex, so it does not outlive the lent reference.
unsafe impl<T: Pod> Lendable for RMutex<T> {}

// SAFETY: as for `RMutex`.
unsafe impl<T: Pod> Lendable for RRwLock<T> {}

/// Compiles only for a [`Lendable`] `T`: what [`lendable!`](crate::lendable) calls for
/// each field.
#[doc(hidden)]
#[inline(always)]
pub fn assert_lendable<T: Lendable + ?Sized>(_: &T) {}

/// Makes a struct with named fields [`Lendable`], without `unsafe`: name every field
/// (the list is checked against the struct, with no `..`, so a missing one does not
/// compile), and each must be `Lendable` itself.
///
/// ```
/// use hotswap_plugin_api::abi_stable::{self, std_types::{RString, RVec}, StableAbi};
///
/// #[repr(C)]
/// #[derive(StableAbi)]
/// pub struct QuoteOpts { pub discount_pct: u32, pub currency: RString, pub tags: RVec<RString> }
///
/// hotswap_plugin_api::lendable!(QuoteOpts { discount_pct, currency, tags });
/// ```
///
/// A field that could store the borrower's values does not compile:
///
/// ```compile_fail,E0277
/// use hotswap_plugin_api::abi_stable::external_types::RMutex;
/// use hotswap_plugin_api::abi_stable::{self, std_types::{RString, RVec}, StableAbi};
///
/// #[repr(C)]
/// #[derive(StableAbi)]
/// pub struct Shared { pub id: u64, pub names: RMutex<RVec<RString>> }
///
/// hotswap_plugin_api::lendable!(Shared { id, names }); // error: `names` is not `Lendable`
/// ```
///
/// nor does a list that leaves a field out:
///
/// ```compile_fail,E0027
/// use hotswap_plugin_api::abi_stable::{self, std_types::RString, StableAbi};
///
/// #[repr(C)]
/// #[derive(StableAbi)]
/// pub struct Opts { pub id: u64, pub name: RString }
///
/// hotswap_plugin_api::lendable!(Opts { id }); // error: pattern does not mention `name`
/// ```
#[macro_export]
macro_rules! lendable {
    ($t:ident { $($f:ident),* $(,)? }) => {
        // SAFETY: the check below names every field (its pattern has no `..`) and
        // requires each to be `Lendable`; a struct of `Lendable` fields can be made to
        // hold nothing a borrower made.
        unsafe impl $crate::Lendable for $t {}
        const _: () = {
            #[allow(dead_code)]
            fn check_every_field_is_lendable(v: &$t) {
                let $t { $($f),* } = v;
                $( $crate::lend::assert_lendable($f); )*
            }
        };
    };
}
