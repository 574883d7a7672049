//! [`Func`]: the typed fast path.

use crate::error::CallError;
use crate::generation::Generation;
use crate::manager::Shared;
use hotswap_plugin_api::vtable::{Failure, InstancePtr, TypedCall, TypedRet};
use hotswap_plugin_api::Pod;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::Arc;

/// What an unresolved slot of a `Func<A, R>` calls: reports failure without touching
/// `err`; the caller then finds the reason in the generation's `typed_errors`.
pub(crate) unsafe extern "C" fn unresolved<A, R>(
    _: InstancePtr,
    _: A,
    _: *mut Failure,
) -> TypedRet<R> {
    TypedRet {
        ok: false,
        value: MaybeUninit::uninit(),
    }
}

/// A handle on a typed plugin function `fn(A) -> R`, from
/// [`PluginManager::func`](crate::PluginManager::func).
///
/// Valid across reloads: each call runs on the generation current when it starts. A
/// call costs a thread-local slot write, two loads and an indirect call; it takes no
/// lock, looks up no string, and writes no cache line another core reads.
pub struct Func<A, R> {
    shared: Arc<Shared>,
    symbol: usize,
    plugin: Arc<str>,
    function: Arc<str>,
    _signature: PhantomData<fn(A) -> R>,
}

impl<A, R> Clone for Func<A, R> {
    fn clone(&self) -> Self {
        Func {
            shared: self.shared.clone(),
            symbol: self.symbol,
            plugin: self.plugin.clone(),
            function: self.function.clone(),
            _signature: PhantomData,
        }
    }
}

impl<A: Pod, R: Pod> Func<A, R> {
    pub(crate) fn new(
        shared: Arc<Shared>,
        symbol: usize,
        plugin: &str,
        function: &str,
    ) -> Func<A, R> {
        Func {
            shared,
            symbol,
            plugin: plugin.into(),
            function: function.into(),
            _signature: PhantomData,
        }
    }

    /// Calls the function on the current generation.
    ///
    /// Fails when the current generation lacks the plugin or function or has another
    /// signature for it, or when the function panics (caught in the plugin).
    #[inline]
    pub fn call(&self, arg: A) -> Result<R, CallError> {
        self.shared.domain.with(|g| self.call_in(g, arg))
    }

    /// Like [`call`](Self::call), also returning the id of the generation that served it.
    #[inline]
    pub fn call_with_generation(&self, arg: A) -> Result<(R, u64), CallError> {
        self.shared
            .domain
            .with(|g| self.call_in(g, arg).map(|r| (r, g.id())))
    }

    #[inline(always)]
    fn call_in(&self, g: &Generation, arg: A) -> Result<R, CallError> {
        // A nested call may run on an outer generation pinned before this handle was
        // registered, whose table is shorter: hence `get`, not an unchecked index.
        let Some(slot) = g.typed.get(self.symbol) else {
            return Err(self.unresolved(g));
        };
        // SAFETY: `call` is either the TypedCall of a function whose argument and result
        // layouts abi_stable found equal to A's and R's when the generation was built,
        // or `unresolved::<A, R>` (slots are built for this handle's own A and R); a
        // data pointer and a fn pointer have the same size.
        let f: TypedCall<A, R> =
            unsafe { std::mem::transmute::<*const std::ffi::c_void, TypedCall<A, R>>(slot.call) };
        let mut err = MaybeUninit::<Failure>::uninit();
        // SAFETY: the instance belongs to a version the pinned generation owns (or is
        // ignored by the stub); `err` is valid for writes.
        let ret = unsafe { f(slot.instance, arg, err.as_mut_ptr()) };
        if ret.ok {
            // SAFETY: `ok` means the function returned the value.
            return Ok(unsafe { ret.value.assume_init() });
        }
        self.failed(g, slot.plugin, err)
    }

    #[cold]
    #[inline(never)]
    fn failed(
        &self,
        g: &Generation,
        plugin: usize,
        err: MaybeUninit<Failure>,
    ) -> Result<R, CallError> {
        if g.typed_error(self.symbol).is_some() {
            // The stub ran: it wrote nothing to `err`.
            return Err(self.unresolved(g));
        }
        // SAFETY: a real typed function returned `!ok`, so it wrote the failure.
        Err(self.panicked(g, plugin, unsafe { err.assume_init() }))
    }

    #[cold]
    #[inline(never)]
    fn panicked(&self, g: &Generation, plugin: usize, failure: Failure) -> CallError {
        // The failure's message is plugin-made: copied out here, dropped while pinned.
        g.versions()[plugin].call_error(&self.function, failure)
    }

    #[cold]
    #[inline(never)]
    fn unresolved(&self, g: &Generation) -> CallError {
        match g.typed_error(self.symbol) {
            Some(e) => e.clone(),
            None => CallError::UnknownPlugin(self.plugin.to_string()),
        }
    }

    /// The plugin this handle calls into.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The function this handle calls.
    pub fn function(&self) -> &str {
        &self.function
    }
}
