//! [`Func`]: the typed fast path.

use crate::error::CallError;
use crate::generation::Generation;
use crate::shared::Shared;
use hotswap_abi::vtable::{Failure, InstancePtr, TypedCall, TypedRet};
use hotswap_plugin_api::Pod;
use hotswap_reclaim::Pinned;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::Arc;

/// What an unresolved slot of a `Func<A, R>` calls: reports failure without touching
/// `err`; the caller then finds the reason in the generation's `typed_errors`.
///
/// # Safety
/// None beyond `TypedCall`'s: it reads none of its arguments (it is `unsafe` only to
/// have the type of the slot it fills).
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

/// Moves a call's error out of its box, off the inlined fast path.
#[cold]
#[inline(never)]
#[expect(
    clippy::boxed_local,
    reason = "the box is what leaves the pinned section; this takes the error out of it"
)]
fn unbox(e: Box<CallError>) -> CallError {
    *e
}

/// A handle on a typed plugin function `fn(A) -> R`, from
/// [`PluginManager::func`](crate::PluginManager::func).
///
/// Valid across reloads: each call runs on the generation current when it starts (a
/// call made while an outer call of the same manager runs on this thread stays on the
/// outer call's generation). A call reads a thread-local record, stores the generation
/// pointer in this thread's slot and clears it after, loads the current pointer twice,
/// and makes one indirect call through the generation's table: no lock, no string
/// lookup, no write to a cache line another core reads, and the result comes back in
/// registers. `cargo bench -p hotswap-host --bench calls` measures it against a raw
/// `extern "C"` call (README, Performance).
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
    #[inline(always)]
    pub fn call(&self, arg: A) -> Result<R, CallError> {
        // `move`: a closure holding `arg` by reference would force it into memory.
        self.shared
            .domain
            .with_pinned(move |g, p| self.call_in(g, p, arg))
            .map_err(unbox)
    }

    /// Like [`call`](Self::call), also returning the id of the generation that served it.
    #[inline]
    pub fn call_with_generation(&self, arg: A) -> Result<(R, u64), CallError> {
        self.shared
            .domain
            .with_pinned(move |g, p| self.call_in(g, p, arg).map(|r| (r, g.id())))
            .map_err(unbox)
    }

    /// The call on a pinned generation. The error is boxed so that the result of the
    /// pinned section (and of its cold paths) fits in two registers for small `R`:
    /// a `CallError` by value would send every call's result through the stack.
    #[inline(always)]
    fn call_in(&self, g: &Generation, pinned: Pinned, arg: A) -> Result<R, Box<CallError>> {
        let slot = match pinned {
            Pinned::Fresh => {
                debug_assert!(self.symbol < g.typed.len(), "typed table covers the handle");
                // SAFETY: `g` was current after this call began, so after this handle
                // was made. `PluginManager::func` makes a handle only once the current
                // generation's table covers its symbol, and every later generation is
                // built from the symbol list under the same reload lock, so it does too.
                unsafe { g.typed.get_unchecked(self.symbol) }
            }
            // A nested call may run on an outer generation pinned before this handle
            // was made, whose table is shorter.
            Pinned::Outer => match g.typed.get(self.symbol) {
                Some(slot) => slot,
                None => return Err(self.unresolved(g)),
            },
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
    ) -> Result<R, Box<CallError>> {
        if g.typed_error(self.symbol).is_some() {
            // The stub ran: it wrote nothing to `err`.
            return Err(self.unresolved(g));
        }
        // SAFETY: a real typed function returned `!ok`, so it wrote the failure.
        let failure = unsafe { err.assume_init() };
        // The failure's message is plugin-made: copied out here, dropped while pinned.
        Err(Box::new(
            g.versions()[plugin].call_error(&self.function, failure),
        ))
    }

    #[cold]
    #[inline(never)]
    fn unresolved(&self, g: &Generation) -> Box<CallError> {
        Box::new(match g.typed_error(self.symbol) {
            Some(e) => e.clone(),
            None => CallError::UnknownPlugin(self.plugin.to_string()),
        })
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
