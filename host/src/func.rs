//! [`Func`]: the typed fast path.

use crate::error::CallError;
use crate::generation::Generation;
use crate::manager::Shared;
use hotswap_plugin_api::vtable::{Failure, TypedCall};
use hotswap_plugin_api::Pod;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::Arc;

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
        if let Some(slot) = g.typed.get(self.symbol) {
            if !slot.call.is_null() {
                // SAFETY: `call` is the TypedCall of a function whose argument and result
                // layouts abi_stable found equal to A's and R's when the generation was
                // built; pointer and fn pointer have the same size.
                let f: TypedCall<A, R> = unsafe {
                    std::mem::transmute::<*const std::ffi::c_void, TypedCall<A, R>>(slot.call)
                };
                let mut out = MaybeUninit::<R>::uninit();
                let mut err = MaybeUninit::<Failure>::uninit();
                // SAFETY: the instance belongs to a version the pinned generation owns;
                // out and err are valid for writes.
                if unsafe { f(slot.instance, arg, out.as_mut_ptr(), err.as_mut_ptr()) } {
                    // SAFETY: `true` means the plugin wrote the result.
                    return Ok(unsafe { out.assume_init() });
                }
                // SAFETY: `false` means the plugin wrote the failure.
                return Err(self.panicked(g, slot.plugin, unsafe { err.assume_init() }));
            }
        }
        Err(self.unresolved(g))
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
