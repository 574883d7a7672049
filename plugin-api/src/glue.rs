//! The `extern "C"` functions `export_plugin!` puts in a plugin's vtable. Generic over
//! the plugin type, so they are compiled into the plugin; the author never sees them.
//!
//! Every function here catches unwinding (DESIGN invariant 4): a panic becomes a
//! [`Failure`] of kind `Panic` carrying the panic message.

use crate::asyncfn::AsyncMethod;
use crate::panic::{install_panic_hook, panic_text};
use crate::typed::{Arg, Args, Ret};
use crate::value::Value;
use crate::vtable::{
    AsyncRet, ExportFfi, FailKind, Failure, HostHandle, ImportSpec, ImportsFfi, InstancePtr,
    TypedRet, VaultHandle,
};
use crate::{Error, Plugin, Vault};
use abi_stable::std_types::{RResult, RSlice, RStr, RVec};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`, turning an `Err` or a panic into a [`Failure`].
#[inline(always)]
pub fn guard<T>(f: impl FnOnce() -> Result<T, Error>) -> RResult<T, Failure> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => RResult::ROk(v),
        Ok(Err(e)) => RResult::RErr(error_failure(e)),
        Err(payload) => RResult::RErr(panic_failure(payload)),
    }
}

/// The author's error as a [`Failure`]: out of line, so the answer's path through every
/// entry point (a call by name most of all) carries no formatting and keeps its registers.
#[cold]
#[inline(never)]
fn error_failure(e: Error) -> Failure {
    Failure {
        kind: FailKind::Error,
        message: e.to_string().into(),
    }
}

/// A caught panic as a [`Failure`] (out of line, as [`error_failure`]).
#[cold]
#[inline(never)]
fn panic_failure(payload: Box<dyn std::any::Any + Send>) -> Failure {
    Failure {
        kind: FailKind::Panic,
        message: panic_text(payload).into(),
    }
}

/// Shared access to an instance: what the entry points that take `&self` use, and may
/// run on many threads at once.
///
/// # Safety
/// `p` must be a live instance made by [`new::<T>`], and no exclusive access (see
/// [`instance_mut`]) may overlap the returned borrow.
unsafe fn instance<'a, T>(p: InstancePtr) -> &'a T {
    // SAFETY: upheld by the caller, see above.
    unsafe { &*p.0.cast::<T>() }
}

/// Exclusive access to an instance: only for `on_load`, `on_init` and `on_free`, which
/// the host runs with no other call on the instance.
///
/// # Safety
/// `p` must be a live instance made by [`new::<T>`], and nothing else may access it
/// while the returned borrow lives.
unsafe fn instance_mut<'a, T>(p: InstancePtr) -> &'a mut T {
    // SAFETY: upheld by the caller, see above.
    unsafe { &mut *p.0.cast::<T>() }
}

/// Creates the instance.
///
/// # Safety
/// `host.ctx` must stay valid, for every `host.vtable` function, for as long as this
/// library is mapped (see `PluginVTable`).
pub unsafe extern "C" fn new<T: Plugin + Default>(
    host: HostHandle,
) -> RResult<InstancePtr, Failure> {
    // First, before anything allocates: the host's allocator becomes this library's
    // Rust heap.
    crate::host_heap::attach(host.vtable);
    // Linked statically, the plugin shares the process's panic hook with the host (and
    // is never unloaded): leave the host's hook alone.
    if !cfg!(feature = "static") {
        install_panic_hook();
    }
    guard(|| {
        crate::host::set(host);
        Ok(InstancePtr(Box::into_raw(Box::<T>::default()).cast()))
    })
}

/// Destroys the instance.
///
/// # Safety
/// `p` must be a live instance made by [`new::<T>`], with exclusive access, and is not
/// used again (see `PluginVTable`).
pub unsafe extern "C" fn drop<T: Plugin>(p: InstancePtr) -> RResult<(), Failure> {
    // SAFETY: `p` came from `Box::into_raw` in `new::<T>` and is dropped once (vtable contract).
    guard(|| {
        std::mem::drop(unsafe { Box::from_raw(p.0.cast::<T>()) });
        Ok(())
    })
}

/// `Plugin::reloadable`.
///
/// # Safety
/// `p` must be a live instance made by [`new::<T>`]; shared access (see `PluginVTable`).
pub unsafe extern "C" fn reloadable<T: Plugin>(p: InstancePtr) -> RResult<bool, Failure> {
    // SAFETY: live instance, shared access (vtable contract).
    guard(|| Ok(unsafe { instance::<T>(p) }.reloadable()))
}

/// `Plugin::import`.
///
/// # Safety
/// `p` must be a live instance made by [`new::<T>`]; shared access (see `PluginVTable`).
pub unsafe extern "C" fn import<T: Plugin>(p: InstancePtr) -> RResult<RVec<ImportSpec>, Failure> {
    guard(|| {
        // SAFETY: live instance, shared access (vtable contract).
        let imports = unsafe { instance::<T>(p) }.import();
        Ok(imports
            .into_iter()
            .map(|i| ImportSpec {
                plugin: i.plugin.into(),
                version_req: i.version_req.into(),
                layout: i.layout,
            })
            .collect())
    })
}

/// `Plugin::export`.
///
/// # Safety
/// `p` must be a live instance made by [`new::<T>`]; shared access (see `PluginVTable`).
pub unsafe extern "C" fn export<T: Plugin>(p: InstancePtr) -> RResult<ExportFfi, Failure> {
    guard(|| {
        // SAFETY: live instance, shared access (vtable contract).
        Ok(match unsafe { instance::<T>(p) }.export() {
            Some(e) => ExportFfi {
                ptr: e.ptr,
                layout: Some(e.layout),
                drop: Some(e.drop),
            },
            None => ExportFfi {
                ptr: std::ptr::null_mut(),
                layout: None,
                drop: None,
            },
        })
    })
}

/// `Plugin::on_load`.
///
/// # Safety
/// `p` must be a live instance made by [`new::<T>`], with exclusive access; `imports`
/// entries must point at live exports of the layouts they declare (see `PluginVTable`).
pub unsafe extern "C" fn on_load<T: Plugin>(
    p: InstancePtr,
    data: &Value,
    imports: &ImportsFfi<'_>,
) -> RResult<(), Failure> {
    let imports = crate::deps::Imports::from_ffi(imports);
    // SAFETY: live instance, exclusive access (vtable contract).
    guard(|| unsafe { instance_mut::<T>(p) }.on_load(data, &imports))
}

/// `Plugin::on_init`.
///
/// # Safety
/// `p` must be a live instance made by [`new::<T>`], with exclusive access; `vault`
/// holds the host handle given to `new` (see `PluginVTable`).
pub unsafe extern "C" fn on_init<T: Plugin>(
    p: InstancePtr,
    vault: &VaultHandle,
) -> RResult<(), Failure> {
    let vault = Vault::from_handle(*vault);
    // SAFETY: live instance, exclusive access (vtable contract).
    guard(|| unsafe { instance_mut::<T>(p) }.on_init(&vault))
}

/// `Plugin::on_free`.
///
/// # Safety
/// `p` must be a live instance made by [`new::<T>`], with exclusive access (see
/// `PluginVTable`).
pub unsafe extern "C" fn on_free<T: Plugin>(p: InstancePtr) -> RResult<(), Failure> {
    guard(|| {
        // SAFETY: live instance, exclusive access (vtable contract).
        unsafe { instance_mut::<T>(p) }.on_free();
        Ok(())
    })
}

/// `Plugin::invoke_func`.
///
/// # Safety
/// `p` must be a live instance made by [`new::<T>`]; shared access (see `PluginVTable`).
pub unsafe extern "C" fn invoke_func<T: Plugin>(
    p: InstancePtr,
    name: RStr<'_>,
    args: RSlice<'_, Value>,
) -> RResult<Value, Failure> {
    // SAFETY: live instance, shared access (vtable contract); `invoke_func` takes `&self`.
    guard(|| unsafe { instance::<T>(p) }.invoke_func(name.as_str(), args.as_slice()))
}

/// One typed method, named by a marker type `export_plugin!` generates.
pub trait TypedMethod {
    /// The plugin type the method belongs to.
    type Plugin: Plugin;
    /// The argument list (a lone `Pod`, or a tuple of [`Arg`](crate::typed::Arg)s).
    type Args: Args;
    /// The result.
    type Ret: Ret;
    /// Calls the method. The arguments borrow for `'w`, the call only: a method that
    /// wants to keep one (`&'static str`) does not compile.
    fn call<'w>(plugin: &Self::Plugin, args: <Self::Args as Args>::Lent<'w>) -> Self::Ret;
}

/// The [`TypedCall`](crate::vtable::TypedCall) of method `M` of one argument (or none:
/// `()`), whose argument is the wire form of `M::Args` and result the wire form of
/// `M::Ret`; methods of two to four take one parameter per argument (`typed_call2`…).
///
/// # Safety
/// `p` must be a live instance of `M::Plugin` made by [`new`]; shared access; `err`
/// valid for writes; `args` valid for the call (see
/// [`TypedCall`](crate::vtable::TypedCall)).
pub unsafe extern "C" fn typed_call<'w, M: TypedMethod>(
    p: InstancePtr,
    args: <M::Args as Args>::Wire<'w>,
    err: *mut Failure,
) -> TypedRet<<M::Ret as Ret>::Wire> {
    // SAFETY: live instance, shared access (TypedCall contract).
    let plugin = unsafe { instance::<M::Plugin>(p) };
    let run = move || M::call(plugin, <M::Args as Args>::receive(args)).into_wire();
    // SAFETY: `err` is valid for writes (TypedCall contract).
    unsafe { typed_ret(catch_unwind(AssertUnwindSafe(run)), err) }
}

/// The entry point of typed method `M` with the calling convention of its argument list
/// (`Args::invoke`): implemented by each kind of list, so `export_plugin!` and
/// `#[interface]` lay out `<M::Args as TypedEntry<M>>::CALL` in their tables.
pub trait TypedEntry<M> {
    /// The entry point, its type erased.
    const CALL: *const std::ffi::c_void;
}

impl<M: TypedMethod<Args = T>, T: crate::Pod> TypedEntry<M> for T {
    const CALL: *const std::ffi::c_void = typed_call::<M> as *const std::ffi::c_void;
}

impl<M: TypedMethod<Args = (A,)>, A: Arg> TypedEntry<M> for (A,) {
    const CALL: *const std::ffi::c_void = typed_call::<M> as *const std::ffi::c_void;
}

/// The entry points of methods of two to four arguments, one parameter each.
macro_rules! typed_calls {
    ($name:ident, $pack:ident; $($t:ident $f:ident),*) => {
        /// The [`TypedEntry`] of method `M` whose arguments are each a parameter (see
        /// [`typed_call`]).
        ///
        /// # Safety
        /// As [`typed_call`]'s.
        pub unsafe extern "C" fn $name<'w, M, $($t: Arg),*>(
            p: InstancePtr,
            $($f: $t::Wire<'w>,)*
            err: *mut Failure,
        ) -> TypedRet<<M::Ret as Ret>::Wire>
        where
            M: TypedMethod<Args = ($($t,)*)>,
        {
            // SAFETY: live instance, shared access (TypedCall contract).
            let plugin = unsafe { instance::<M::Plugin>(p) };
            let args = crate::vtable::$pack { $($f),* };
            let run = move || M::call(plugin, <M::Args as Args>::receive(args)).into_wire();
            // SAFETY: `err` is valid for writes (TypedCall contract).
            unsafe { typed_ret(catch_unwind(AssertUnwindSafe(run)), err) }
        }

        impl<M: TypedMethod<Args = ($($t,)*)>, $($t: Arg),*> TypedEntry<M> for ($($t,)*) {
            const CALL: *const std::ffi::c_void = $name::<M, $($t),*> as *const std::ffi::c_void;
        }
    };
}
typed_calls!(typed_call2, Args2; A a0, B a1);
typed_calls!(typed_call3, Args3; A a0, B a1, C a2);
typed_calls!(typed_call4, Args4; A a0, B a1, C a2, D a3);

/// What a typed entry point returns for its body's outcome: the value, or `!ok` with
/// the panic written to `err` as a [`Failure`].
///
/// # Safety
/// `err` must be valid for writes (the host's pointer, TypedCall contract).
#[inline(always)]
unsafe fn typed_ret<T>(outcome: std::thread::Result<T>, err: *mut Failure) -> TypedRet<T> {
    match outcome {
        Ok(v) => TypedRet {
            ok: true,
            value: std::mem::MaybeUninit::new(v),
        },
        Err(payload) => {
            let failure = Failure {
                kind: FailKind::Panic,
                message: panic_text(payload).into(),
            };
            // SAFETY: the host passes a pointer valid for writes (TypedCall contract).
            unsafe { err.write(failure) };
            TypedRet {
                ok: false,
                value: std::mem::MaybeUninit::uninit(),
            }
        }
    }
}

/// The [`TypedCall`](crate::vtable::TypedCall) of async method `M`: takes `M::Arg` by
/// value (moved into the plugin) and returns the plugin-made future
/// ([`AsyncRet`]) of the wire form of `M::Ret`.
///
/// # Safety
/// As [`typed_call`]'s; and the instance must stay live, with shared access only, until
/// the returned future has been dropped (the future may borrow it): the host holds the
/// version until then.
pub unsafe extern "C" fn async_call<M: AsyncMethod>(
    p: InstancePtr,
    arg: M::Arg,
    err: *mut Failure,
) -> TypedRet<AsyncRet<<M::Ret as Ret>::Wire>>
where
    <M::Ret as Ret>::Wire: Send,
{
    // SAFETY: live instance, shared access, and live until the future is dropped
    // (contract above), so the future may borrow it for as long as it exists.
    let plugin: &'static M::Plugin = unsafe { instance::<M::Plugin>(p) };
    let run = move || crate::asyncfn::start::<M>(plugin, arg);
    // SAFETY: `err` is valid for writes (TypedCall contract).
    unsafe { typed_ret(catch_unwind(AssertUnwindSafe(run)), err) }
}

/// One live method, named by a marker type `export_plugin!` generates.
pub trait LiveMethod {
    /// The plugin type the method belongs to.
    type Plugin: Plugin;
    /// Calls the method.
    fn call(plugin: &Self::Plugin, args: &[Value]) -> Result<Value, Error>;
}

/// The `LiveFn::call` of method `M`.
///
/// # Safety
/// `p` must be a live instance of `M::Plugin` made by [`new`]; shared access (see
/// `PluginVTable`).
pub unsafe extern "C" fn live_call<M: LiveMethod>(
    p: InstancePtr,
    args: RSlice<'_, Value>,
) -> RResult<Value, Failure> {
    // SAFETY: live instance, shared access (vtable contract).
    guard(|| M::call(unsafe { instance::<M::Plugin>(p) }, args.as_slice()))
}

/// The live functions `#[live_functions]` registered on a plugin type; used by
/// `export_plugin!(…, live_impl)`.
pub trait HasLive {
    /// One entry per live function.
    const LIVE: &'static [crate::vtable::LiveFn];
}
