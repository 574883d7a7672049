//! The types a typed function (`export_plugin!(.., typed { .. })`) may take and return,
//! and how each crosses the boundary. The host's `Func<A, R>` uses the same traits, so
//! both sides agree on the wire form, which the host layout-checks when it makes a
//! handle.
//!
//! Arguments ([`Arg`], a list of up to four is an [`Args`]):
//!
//! - a [`Pod`] by value: the built-in ones (integers, floats, `bool`, `()`,
//!   `Tuple2`/`Tuple3` and arrays of them) in any position; a `Pod` type of yours as the
//!   only argument (in a longer list, pass it as `&T`);
//! - `&str`, `&[T]` and `&T` (`T: StableAbi +` [`Lendable`]), lent without copying: the
//!   plugin's method gets them with a lifetime of the call only, so it cannot keep them,
//!   and `Lendable` means it cannot store a value of its own in them either (no
//!   `&RMutex<RVec<RString>>`: the host would later drop the plugin's string with code
//!   of an unloaded library). A struct of yours becomes `Lendable` with
//!   [`lendable!`](crate::lendable).
//!
//! Results ([`Ret`]): any `Pod`, `String`, `Vec<T>`, `Option<T>`, `Result<T, E>` (with
//! `T`, `E` results themselves). The plugin turns the value into its wire form
//! ([`HostString`], `RVec`, `ROption`, `RResult`); host code turns it into a host-owned
//! value and drops the plugin-made one before the call returns, while the call still
//! pins the plugin's version. A `String` is handed over without a copy: the plugin's
//! Rust heap is the host's allocator, so its buffer already is a host block.
//!
//! A borrowed argument cannot escape the call: the method is called with the call's
//! lifetime, so one that asks for more does not compile:
//!
//! ```compile_fail
//! use hotswap_plugin_api::{export_plugin, Plugin};
//! #[derive(Default)]
//! struct Keeper;
//! impl Plugin for Keeper {}
//! impl Keeper {
//!     fn keep(&self, s: &'static str) -> u64 { s.len() as u64 }
//! }
//! export_plugin!(Keeper, typed { keep: fn(&str) -> u64 }); // error: borrowed data escapes
//! # fn main() {}
//! ```
//!
//! A `#[derive(StableAbi)]` struct that is plain data is a `Pod` (`unsafe impl Pod`); one
//! with owned fields (`RString`, `RVec`, `ROption`, `RResult`, `Pod`s, such structs)
//! becomes a result with [`typed_result!`](crate::typed_result), no `unsafe` needed:
//! the host copies it field by field; and an argument by `&T` with
//! [`lendable!`](crate::lendable) (a `Pod` already is one).

use crate::vtable::{Args2, Args3, Args4, Failure, InstancePtr, TypedCall, TypedRet};
use crate::{Lendable, Pod};
use abi_stable::std_types::{ROption, RResult, RSlice, RStr, RString, RVec};
use abi_stable::type_layout::TypeLayout;
use abi_stable::StableAbi;
use std::ffi::c_void;
use std::mem::MaybeUninit;

/// One argument of a typed function: how it crosses the boundary.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an argument of a typed function",
    label = "not a typed-function argument",
    note = "arguments are `&str`, `&[T]`, `&T` (T: StableAbi + Lendable), or built-in plain \
            data by value (integers, floats, bool, (), Tuple2/Tuple3, arrays); pass a `Pod` \
            type of yours by `&T` or as the only argument; `String` and `Vec` as \
            `&str`/`&[T]`"
)]
///
/// # Safety
/// `Wire<'w>` must be a faithful `StableAbi` description of what `lend` makes, and
/// `lend`/`receive` must be inverse views of the same data (a borrowed argument is
/// lent as a pointer and length, never copied, and never outlives `'w`).
pub unsafe trait Arg {
    /// The argument with every lifetime `'static`: identifies the type on the host.
    type Key: 'static;
    /// The wire form, borrowing for `'w`.
    type Wire<'w>: StableAbi;
    /// The argument as the caller passes it and the plugin's method gets it, borrowing
    /// for `'w`.
    type Lent<'w>;
    /// The caller's side: the argument into its wire form.
    fn lend<'w>(v: Self::Lent<'w>) -> Self::Wire<'w>;
    /// The plugin's side: the wire form back into what the method takes.
    fn receive<'w>(w: Self::Wire<'w>) -> Self::Lent<'w>;
}

/// `Arg` for a `Pod` that crosses by value, as itself: `by_value!(u8)`, or with
/// generics in brackets, `by_value!([A: Pod, B: Pod] Tuple2<A, B>)`.
macro_rules! by_value {
    ([$($g:tt)*] $t:ty $(where $($w:tt)*)?) => {
        // SAFETY: a `Pod` crosses by value, as itself.
        unsafe impl<$($g)*> Arg for $t $(where $($w)*)? {
            type Key = Self;
            type Wire<'w> = Self;
            type Lent<'w> = Self;
            #[inline(always)]
            fn lend<'w>(v: Self::Lent<'w>) -> Self::Wire<'w> {
                v
            }
            #[inline(always)]
            fn receive<'w>(w: Self::Wire<'w>) -> Self::Lent<'w> {
                w
            }
        }
    };
    ($t:ty) => {
        by_value!([] $t);
    };
}

macro_rules! by_value_each {
    ($($t:ty),*) => {$( by_value!($t); )*};
}
crate::with_builtin_pods!(by_value_each);
by_value!([A: Pod, B: Pod] abi_stable::std_types::Tuple2<A, B>);
by_value!([A: Pod, B: Pod, C: Pod] abi_stable::std_types::Tuple3<A, B, C>);
by_value!([T: Pod, const N: usize] [T; N] where [T; N]: Pod);

// SAFETY: `RStr` is the pointer and length of the very `&str`.
unsafe impl Arg for &str {
    type Key = &'static str;
    type Wire<'w> = RStr<'w>;
    type Lent<'w> = &'w str;
    #[inline(always)]
    fn lend<'w>(v: Self::Lent<'w>) -> Self::Wire<'w> {
        RStr::from_str(v)
    }
    #[inline(always)]
    fn receive<'w>(w: Self::Wire<'w>) -> Self::Lent<'w> {
        w.as_str()
    }
}

// SAFETY: `RSlice` is the pointer and length of the very `&[T]`; `T: Lendable`, so the
// borrower cannot store a value of its own in the lent elements.
unsafe impl<T: StableAbi + Lendable + Sync + 'static> Arg for &[T] {
    type Key = &'static [T];
    type Wire<'w> = RSlice<'w, T>;
    type Lent<'w> = &'w [T];
    #[inline(always)]
    fn lend<'w>(v: Self::Lent<'w>) -> Self::Wire<'w> {
        RSlice::from_slice(v)
    }
    #[inline(always)]
    fn receive<'w>(w: Self::Wire<'w>) -> Self::Lent<'w> {
        w.as_slice()
    }
}

// SAFETY: the reference itself crosses; `T: Lendable`, so the borrower cannot store a
// value of its own in the lent one.
unsafe impl<T: StableAbi + Lendable + Sync + 'static> Arg for &T {
    type Key = &'static T;
    type Wire<'w> = &'w T;
    type Lent<'w> = &'w T;
    #[inline(always)]
    fn lend<'w>(v: Self::Lent<'w>) -> Self::Wire<'w> {
        v
    }
    #[inline(always)]
    fn receive<'w>(w: Self::Wire<'w>) -> Self::Lent<'w> {
        w
    }
}

#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an argument list of a typed function",
    label = "some argument here cannot cross the boundary",
    note = "each argument must be `&str`, `&[T]`, `&T` (T: StableAbi + Lendable), or \
            built-in plain data by value (a `Pod` of yours by value only as the only argument); owned \
            `String`/`Vec` arguments go as `&str`/`&[T]`; at most four arguments"
)]
/// The argument list of a typed function: a lone `Pod` (as today's `fn(u64) -> u64`),
/// or a tuple of one to four [`Arg`]s (`(&str, u32, &QuoteOpts)`). One argument crosses
/// as itself, two to four as an `Args2`…`Args4` of their wire forms.
///
/// # Safety
/// As [`Arg`]'s, for the whole list; `ARITY` is the number of arguments and
/// `arg_layouts` their wire layouts in order.
pub unsafe trait Args {
    /// The list with every lifetime `'static`: identifies it on the host.
    type Key: 'static;
    /// The wire form of the whole list.
    type Wire<'w>: StableAbi;
    /// The list as the caller passes it (a tuple, or the lone `Pod`).
    type Lent<'w>;
    /// How many arguments.
    const ARITY: usize;
    /// The wire layout of each argument, in order (for error messages).
    fn arg_layouts() -> Vec<&'static TypeLayout>;
    /// The caller's side: the list into its wire form.
    fn lend<'w>(v: Self::Lent<'w>) -> Self::Wire<'w>;
    /// The plugin's side: the wire form back into what the method takes.
    fn receive<'w>(w: Self::Wire<'w>) -> Self::Lent<'w>;
    /// The host's side: calls `call`, the typed entry point of a function of this list
    /// whose result crosses as `R`, with the list's wire form. One argument is the
    /// entry's one parameter ([`TypedCall`]); two to four are a parameter each (in
    /// registers where the C calling convention has room), never one packed value,
    /// which would be copied through the stack on every call.
    ///
    /// # Safety
    /// `call` must be the entry point `export_plugin!` made for a function of exactly
    /// this list's wire forms and result `R` (`glue::TypedEntry::CALL`), or
    /// [`stub`](Self::stub)`::<R>()`; `instance` and `err` as [`TypedCall`] requires.
    unsafe fn invoke<'w, R>(
        call: *const c_void,
        instance: InstancePtr,
        wire: Self::Wire<'w>,
        err: *mut Failure,
    ) -> TypedRet<R>;
    /// An entry point with the calling convention [`invoke`](Self::invoke) uses for this
    /// list and result `R` that reads none of its arguments and returns `!ok` without
    /// writing `err`: what the host's slot of an unresolved function calls.
    fn stub<R>() -> *const c_void;
}

/// The `!ok` every stub returns.
#[inline(always)]
fn not_resolved<R>() -> TypedRet<R> {
    TypedRet {
        ok: false,
        value: MaybeUninit::uninit(),
    }
}

/// [`Args::stub`] of a one-argument list.
///
/// # Safety
/// None: it reads none of its arguments (`unsafe` only to have the type of the entry
/// points whose slot it fills).
unsafe extern "C" fn stub1<A, R>(_: InstancePtr, _: A, _: *mut Failure) -> TypedRet<R> {
    not_resolved()
}

/// [`Args::stub`] of a two-argument list.
///
/// # Safety
/// As [`stub1`]'s.
unsafe extern "C" fn stub2<A, B, R>(_: InstancePtr, _: A, _: B, _: *mut Failure) -> TypedRet<R> {
    not_resolved()
}

/// [`Args::stub`] of a three-argument list.
///
/// # Safety
/// As [`stub1`]'s.
unsafe extern "C" fn stub3<A, B, C, R>(
    _: InstancePtr,
    _: A,
    _: B,
    _: C,
    _: *mut Failure,
) -> TypedRet<R> {
    not_resolved()
}

/// [`Args::stub`] of a four-argument list.
///
/// # Safety
/// As [`stub1`]'s.
unsafe extern "C" fn stub4<A, B, C, D, R>(
    _: InstancePtr,
    _: A,
    _: B,
    _: C,
    _: D,
    _: *mut Failure,
) -> TypedRet<R> {
    not_resolved()
}

/// [`Args::invoke`] of a list that crosses as one value: `call` as a [`TypedCall`].
///
/// # Safety
/// As [`Args::invoke`]'s.
#[inline(always)]
unsafe fn invoke1<W, R>(
    call: *const c_void,
    instance: InstancePtr,
    wire: W,
    err: *mut Failure,
) -> TypedRet<R> {
    // SAFETY: the caller's contract: `call` is the entry of exactly these wire forms (a
    // data pointer and a fn pointer have the same size).
    let f = unsafe { std::mem::transmute::<*const c_void, TypedCall<W, R>>(call) };
    // SAFETY: as above; `instance` and `err` as the entry requires.
    unsafe { f(instance, wire, err) }
}

// SAFETY: a `Pod` crosses by value, as itself.
unsafe impl<T: Pod> Args for T {
    type Key = T;
    type Wire<'w> = T;
    type Lent<'w> = T;
    const ARITY: usize = 1;
    fn arg_layouts() -> Vec<&'static TypeLayout> {
        vec![T::LAYOUT]
    }
    #[inline(always)]
    fn lend<'w>(v: Self::Lent<'w>) -> Self::Wire<'w> {
        v
    }
    #[inline(always)]
    fn receive<'w>(w: Self::Wire<'w>) -> Self::Lent<'w> {
        w
    }
    #[inline(always)]
    unsafe fn invoke<'w, R>(
        call: *const c_void,
        instance: InstancePtr,
        wire: T,
        err: *mut Failure,
    ) -> TypedRet<R> {
        // SAFETY: the caller's contract (`Args::invoke`).
        unsafe { invoke1(call, instance, wire, err) }
    }
    fn stub<R>() -> *const c_void {
        stub1::<T, R> as *const c_void
    }
}

// SAFETY: one argument crosses as its own wire form.
unsafe impl<A: Arg> Args for (A,) {
    type Key = (A::Key,);
    type Wire<'w> = A::Wire<'w>;
    type Lent<'w> = (A::Lent<'w>,);
    const ARITY: usize = 1;
    fn arg_layouts() -> Vec<&'static TypeLayout> {
        vec![<A::Wire<'static> as StableAbi>::LAYOUT]
    }
    #[inline(always)]
    fn lend<'w>(v: Self::Lent<'w>) -> Self::Wire<'w> {
        A::lend(v.0)
    }
    #[inline(always)]
    fn receive<'w>(w: Self::Wire<'w>) -> Self::Lent<'w> {
        (A::receive(w),)
    }
    #[inline(always)]
    unsafe fn invoke<'w, R>(
        call: *const c_void,
        instance: InstancePtr,
        wire: A::Wire<'w>,
        err: *mut Failure,
    ) -> TypedRet<R> {
        // SAFETY: the caller's contract (`Args::invoke`).
        unsafe { invoke1(call, instance, wire, err) }
    }
    fn stub<R>() -> *const c_void {
        stub1::<A::Wire<'static>, R> as *const c_void
    }
}

macro_rules! tuple_args {
    ($pack:ident, $n:literal, $stub:ident; $($t:ident $f:ident),*) => {
        // SAFETY: each argument crosses as its own wire form, a parameter of its own
        // (`invoke`); the `#[repr(C)]` pack describes the list for the layout check and
        // carries it between `lend`, `invoke` and `receive`.
        unsafe impl<$($t: Arg),*> Args for ($($t,)*) {
            type Key = ($($t::Key,)*);
            type Wire<'w> = $pack<$($t::Wire<'w>),*>;
            type Lent<'w> = ($($t::Lent<'w>,)*);
            const ARITY: usize = $n;
            fn arg_layouts() -> Vec<&'static TypeLayout> {
                vec![$(<$t::Wire<'static> as StableAbi>::LAYOUT),*]
            }
            #[inline(always)]
            fn lend<'w>(v: Self::Lent<'w>) -> Self::Wire<'w> {
                let ($($f,)*) = v;
                $pack { $($f: $t::lend($f)),* }
            }
            #[inline(always)]
            fn receive<'w>(w: Self::Wire<'w>) -> Self::Lent<'w> {
                ($($t::receive(w.$f),)*)
            }
            #[inline(always)]
            unsafe fn invoke<'w, R>(
                call: *const c_void,
                instance: InstancePtr,
                wire: Self::Wire<'w>,
                err: *mut Failure,
            ) -> TypedRet<R> {
                // SAFETY: the caller's contract: `call` is the entry of exactly these
                // wire forms, one parameter each (`glue::TypedEntry`), or the stub of
                // the same shape; a data pointer and a fn pointer have the same size.
                let f = unsafe {
                    std::mem::transmute::<
                        *const c_void,
                        unsafe extern "C" fn(InstancePtr, $($t::Wire<'w>,)* *mut Failure) -> TypedRet<R>,
                    >(call)
                };
                // SAFETY: as above; `instance` and `err` as the entry requires.
                unsafe { f(instance, $(wire.$f,)* err) }
            }
            fn stub<R>() -> *const c_void {
                $stub::<$($t::Wire<'static>,)* R> as *const c_void
            }
        }
    };
}
tuple_args!(Args2, 2, stub2; A a0, B a1);
tuple_args!(Args3, 3, stub3; A a0, B a1, C a2);
tuple_args!(Args4, 4, stub4; A a0, B a1, C a2, D a3);

/// A typed function's result: how it crosses the boundary and becomes host-owned.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the result of a typed function",
    label = "not a typed-function result",
    note = "results are `Pod` types, `String`, `Vec<T>`, `Option<T>` and `Result<T, E>` of \
            results; a struct of plain data needs `unsafe impl Pod`; one with owned fields \
            may implement `Ret` (see its safety contract); borrowed results (`&str`) cannot \
            outlive the call"
)]
///
/// # Safety
/// `Wire` must describe what `into_wire` makes, and the value `from_wire` returns must
/// hold nothing that points into the plugin (no reference, no `RStr`, no `RArc`, no
/// trait object, nothing whose drop runs plugin code): it lives on after the plugin's
/// library is closed. `from_wire` runs in the host (its callers promise it), so
/// allocations it makes (a `Clone` of an `RString` field, a `String`) are the host's.
pub unsafe trait Ret: Sized + 'static {
    /// The wire form.
    type Wire: StableAbi;
    /// The plugin's side.
    fn into_wire(self) -> Self::Wire;
    /// The host's side: a host-owned copy; the wire form is dropped here, while the
    /// call still pins the version whose code made it.
    ///
    /// # Safety
    /// Only host code may call it, on a wire form `into_wire` made: a `String` or `Vec`
    /// adopts the block the wire form holds, which is the host allocator's. Called in
    /// a plugin whose Rust heap is not the host's (`own-allocator`, or before the host
    /// attached), the plugin's allocator would later free a host block. So safe code
    /// cannot call it:
    ///
    /// ```compile_fail,E0133
    /// use hotswap_plugin_api::typed::Ret;
    /// let s = String::from_wire(String::from("x").into_wire()); // error: unsafe call
    /// ```
    unsafe fn from_wire(w: Self::Wire) -> Self;
    /// For `Result<T, E>`: the wire layouts of `T` and of `E` (for error messages).
    fn result_layouts() -> Option<(&'static TypeLayout, &'static TypeLayout)> {
        None
    }
}

// SAFETY: a `Pod` holds no pointer.
unsafe impl<T: Pod> Ret for T {
    type Wire = T;
    #[inline(always)]
    fn into_wire(self) -> T {
        self
    }
    #[inline(always)]
    unsafe fn from_wire(w: T) -> T {
        w
    }
}

/// The wire form of a `String` result: a buffer of the host's global allocator, which
/// the host's `String` adopts without a copy. The plugin's Rust heap is the host's
/// allocator (the `host_heap` module), so the plugin's `String` is handed over as it
/// is; otherwise (a block of the early arena, or a plugin with `own-allocator`) its
/// bytes are first copied into a host block. Made only by [`Ret::into_wire`] for
/// `String`; its fields are private, so no other code can make one.
#[repr(C)]
#[derive(StableAbi)]
pub struct HostString {
    /// Start of the host block (dangling when `cap` is 0).
    ptr: *mut u8,
    /// Bytes of UTF-8 text.
    len: usize,
    /// Size of the host block, which `Layout::array::<u8>(cap)` allocated.
    cap: usize,
}

// SAFETY: a `HostString` owns its block, as a `String` does (nothing else points at it),
// so it may move to another thread (an async result does).
unsafe impl Send for HostString {}

// SAFETY: the text is handed over as a host block (`HostString`): allocated by the host's
// global allocator with `Layout::array::<u8>(cap)` (the plugin's own `String` buffer
// when its Rust heap is the host's, else a fresh host copy), holding `len` bytes of
// UTF-8; nothing in it points into the plugin.
unsafe impl Ret for String {
    type Wire = HostString;
    #[inline]
    fn into_wire(self) -> HostString {
        let mut s = std::mem::ManuallyDrop::new(self);
        let (ptr, len, cap) = (s.as_mut_ptr(), s.len(), s.capacity());
        if cap == 0 {
            return HostString {
                ptr,
                len: 0,
                cap: 0,
            };
        }
        if crate::host_heap::is_hosts(ptr) {
            crate::host_heap::hand_over(cap);
            return HostString { ptr, len, cap };
        }
        let copy = crate::host_heap::copy_to_host(s.as_bytes());
        // The plugin's own buffer is freed by the plugin's allocator.
        drop(std::mem::ManuallyDrop::into_inner(s));
        HostString {
            ptr: copy,
            len,
            cap: len,
        }
    }
    #[inline]
    unsafe fn from_wire(w: HostString) -> String {
        if w.cap == 0 {
            return String::new();
        }
        // SAFETY: `into_wire` made `w` (its fields are private): a block of the host's
        // global allocator of `cap` bytes, the layout `String` frees with, whose first
        // `len` bytes are UTF-8; it belongs to no one else now; and this runs in the host
        // (the caller's contract), whose `String` frees with that allocator.
        unsafe { String::from_raw_parts(w.ptr, w.len, w.cap) }
    }
}

/// The wire form of a `Vec<T>` result: a buffer of the host's global allocator holding
/// the elements' wire forms, which the host's `Vec` adopts without a copy, as
/// [`HostString`] is (a `Vec` of plain data crosses as it is; the elements of others are
/// turned into host values one by one, in place where the sizes match). Made only by
/// [`Ret::into_wire`] for `Vec`.
#[repr(C)]
#[derive(StableAbi)]
pub struct HostVec<W> {
    /// Start of the host block (dangling when `cap` is 0).
    ptr: *mut W,
    /// Elements.
    len: usize,
    /// Elements the host block holds: it was allocated as `Layout::array::<W>(cap)`;
    /// 0 when nothing was allocated (no element, or zero-sized ones).
    cap: usize,
}

// SAFETY: a `HostVec` owns its block and the elements in it, as a `Vec` does.
unsafe impl<W: Send> Send for HostVec<W> {}

// SAFETY: the elements' wire forms are handed over in a host block (`HostVec`):
// allocated by the host's global allocator as `Layout::array::<T::Wire>(cap)` (the
// plugin's own buffer when its Rust heap is the host's, else a fresh host block the
// elements are moved into), or nothing for `cap == 0`; each element is then turned into
// a host value by `T::from_wire`, which is sound for the element as it is for a `T`.
unsafe impl<T: Ret> Ret for Vec<T> {
    type Wire = HostVec<T::Wire>;
    fn into_wire(self) -> HostVec<T::Wire> {
        let wire: Vec<T::Wire> = self.into_iter().map(T::into_wire).collect();
        let mut wire = std::mem::ManuallyDrop::new(wire);
        let (ptr, len, cap) = (wire.as_mut_ptr(), wire.len(), wire.capacity());
        let size = std::mem::size_of::<T::Wire>();
        if size == 0 || cap == 0 {
            return HostVec { ptr, len, cap: 0 };
        }
        if crate::host_heap::is_hosts(ptr.cast()) {
            crate::host_heap::hand_over(size * cap);
            return HostVec { ptr, len, cap };
        }
        let bytes = size * len;
        let copy = if len == 0 {
            std::ptr::NonNull::dangling().as_ptr()
        } else {
            // SAFETY: the first `len` elements are initialised: their bytes are readable.
            let moved = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), bytes) };
            crate::host_heap::copy_to_host_aligned(moved, std::mem::align_of::<T::Wire>())
                .cast::<T::Wire>()
        };
        // The elements moved (bitwise) into the copy: free the plugin's buffer alone.
        // SAFETY: `wire`'s buffer, emptied (length 0) so no element is dropped twice.
        unsafe { wire.set_len(0) };
        drop(std::mem::ManuallyDrop::into_inner(wire));
        HostVec {
            ptr: copy,
            len,
            cap: if len == 0 { 0 } else { len },
        }
    }
    #[inline]
    unsafe fn from_wire(w: HostVec<T::Wire>) -> Vec<T> {
        let wire: Vec<T::Wire> = if std::mem::size_of::<T::Wire>() == 0 {
            // SAFETY: reading a zero-sized value reads no memory; `into_wire` had `len`
            // of them, which are now the host's.
            (0..w.len)
                .map(|_| unsafe {
                    std::ptr::read(std::ptr::NonNull::<T::Wire>::dangling().as_ptr())
                })
                .collect()
        } else if w.cap == 0 {
            Vec::new()
        } else {
            // SAFETY: `into_wire` made `w` (its fields are private): a block of the host's
            // global allocator allocated as `Layout::array::<T::Wire>(cap)` whose first
            // `len` elements are initialised, owned by no one else now; this runs in
            // the host (the caller's contract).
            unsafe { Vec::from_raw_parts(w.ptr, w.len, w.cap) }
        };
        // SAFETY: each element is a wire form `into_wire` made, in the host (as above).
        wire.into_iter()
            .map(|e| unsafe { T::from_wire(e) })
            .collect()
    }
}

// SAFETY: as for the inner value.
unsafe impl<T: Ret> Ret for Option<T> {
    type Wire = ROption<T::Wire>;
    fn into_wire(self) -> ROption<T::Wire> {
        self.map(T::into_wire).into()
    }
    #[inline]
    unsafe fn from_wire(w: ROption<T::Wire>) -> Option<T> {
        // SAFETY: the inner wire form `into_wire` made, in the host (the caller's contract).
        w.into_option().map(|v| unsafe { T::from_wire(v) })
    }
}

// SAFETY: as for the inner values.
unsafe impl<T: Ret, E: Ret> Ret for Result<T, E> {
    type Wire = RResult<T::Wire, E::Wire>;
    fn into_wire(self) -> Self::Wire {
        match self {
            Ok(v) => RResult::ROk(v.into_wire()),
            Err(e) => RResult::RErr(e.into_wire()),
        }
    }
    #[inline]
    unsafe fn from_wire(w: Self::Wire) -> Self {
        // SAFETY: the inner wire forms `into_wire` made, in the host (the caller's
        // contract).
        match w {
            RResult::ROk(v) => Ok(unsafe { T::from_wire(v) }),
            RResult::RErr(e) => Err(unsafe { E::from_wire(e) }),
        }
    }
    fn result_layouts() -> Option<(&'static TypeLayout, &'static TypeLayout)> {
        Some((T::Wire::LAYOUT, E::Wire::LAYOUT))
    }
}

/// A value host code can copy into one that holds nothing of the plugin that made it:
/// what a field of a [`typed_result!`](crate::typed_result) struct must be.
///
/// # Safety
/// `host_copy`, run by host code, must return a value that points to nothing of the
/// original's (no reference, no `RStr`, no shared `RArc`, no plugin-made allocation).
pub unsafe trait HostCopy: Sized {
    /// The host's copy.
    fn host_copy(&self) -> Self;
}

// SAFETY: a `Pod` holds no pointer.
unsafe impl<T: Pod> HostCopy for T {
    #[inline]
    fn host_copy(&self) -> T {
        *self
    }
}

// SAFETY: a new `RString` made by host code (its vtable and buffer are the host's).
unsafe impl HostCopy for RString {
    fn host_copy(&self) -> RString {
        RString::from(self.as_str())
    }
}

// SAFETY: a new `RVec` made by host code, of host copies.
unsafe impl<T: HostCopy> HostCopy for RVec<T> {
    fn host_copy(&self) -> RVec<T> {
        self.iter().map(T::host_copy).collect()
    }
}

// SAFETY: as for the inner value.
unsafe impl<T: HostCopy> HostCopy for ROption<T> {
    fn host_copy(&self) -> ROption<T> {
        self.as_ref().map(T::host_copy)
    }
}

// SAFETY: as for the inner values.
unsafe impl<T: HostCopy, E: HostCopy> HostCopy for RResult<T, E> {
    fn host_copy(&self) -> RResult<T, E> {
        match self {
            RResult::ROk(v) => RResult::ROk(v.host_copy()),
            RResult::RErr(e) => RResult::RErr(e.host_copy()),
        }
    }
}

/// Makes a `#[derive(StableAbi)]` struct with named fields a typed-function result (and a
/// [`HostCopy`] field of other such structs): the plugin returns it as it is, the host
/// copies it field by field ([`HostCopy`]) and drops the plugin's. Name every field: the
/// list is checked against the struct (a missing one does not compile), and each must be
/// a [`HostCopy`] (`Pod`s, `RString`, `RVec`, `ROption`, `RResult`, such structs).
///
/// ```
/// use hotswap_plugin_api::abi_stable::{self, std_types::{RString, RVec}, StableAbi};
///
/// #[repr(C)]
/// #[derive(StableAbi)]
/// pub struct Receipt { pub text: RString, pub lines: RVec<RString>, pub cents: u64 }
///
/// hotswap_plugin_api::typed_result!(Receipt { text, lines, cents });
/// ```
#[macro_export]
macro_rules! typed_result {
    ($t:ident { $($f:ident),* $(,)? }) => {
        // SAFETY: the pattern in `host_copy` names every field (it has no `..`), and
        // each is copied by its `HostCopy`, whose contract is this one's.
        unsafe impl $crate::typed::HostCopy for $t {
            fn host_copy(&self) -> $t {
                let $t { $($f),* } = self;
                $t { $($f: $crate::typed::HostCopy::host_copy($f)),* }
            }
        }
        // SAFETY: `from_wire` returns the host's `HostCopy` (see above) and drops the
        // plugin's value.
        unsafe impl $crate::typed::Ret for $t {
            type Wire = $t;
            fn into_wire(self) -> $t {
                self
            }
            unsafe fn from_wire(w: $t) -> $t {
                $crate::typed::HostCopy::host_copy(&w)
            }
        }
    };
}
