//! [`Func`]: the typed fast path.

use crate::call_stats::{CallCounters, Kind};
use crate::error::CallError;
use crate::generation::{Generation, TypedSlot};
use crate::shared::Shared;
use hotswap_abi::vtable::{Failure, InstancePtr, TypedRet};
use hotswap_plugin_api::typed::{Args, Ret};
use hotswap_reclaim::Pinned;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::Arc;

/// What an unresolved slot of an `AsyncFunc<A, R>` calls (a `Func`'s calls
/// `Args::stub`, in its list's calling convention): reports failure without touching
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
pub(crate) fn unbox(e: Box<CallError>) -> CallError {
    *e
}

/// A handle on a typed plugin function, from
/// [`PluginManager::func`](crate::PluginManager::func): `A` is the argument list (a lone
/// `Pod`, `Func<u64, u64>`, or a tuple of up to four arguments,
/// `Func<(&str, u32, &QuoteOpts), Result<Quote, PricingError>>`; see
/// [`Args`](hotswap_plugin_api::typed::Args)), `R` the result (see
/// [`Ret`](hotswap_plugin_api::typed::Ret)).
///
/// Borrowed arguments are lent to the plugin for the call only, never copied. An owned
/// result (`String`, `Vec`, ...) is copied into a host-owned value, and the plugin-made
/// one dropped, before the call returns, on the generation the call pinned. The
/// plugin's own error type comes back inside `R` (`Ok(Err(e))` for a `Result<T, E>`);
/// a failure of the call itself (a panic, the plugin or function missing from the
/// generation) is the outer [`CallError`].
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
    /// Whether the manager counts calls: tested on the handle (in a register in a loop
    /// of calls) so that with metrics off the call reads nothing more than without them.
    counted: bool,
    plugin: Arc<str>,
    function: Arc<str>,
    _signature: PhantomData<fn(A) -> R>,
}

impl<A, R> Clone for Func<A, R> {
    fn clone(&self) -> Self {
        Func {
            shared: self.shared.clone(),
            symbol: self.symbol,
            counted: self.counted,
            plugin: self.plugin.clone(),
            function: self.function.clone(),
            _signature: PhantomData,
        }
    }
}

impl<A: Args, R: Ret> Func<A, R> {
    pub(crate) fn new(
        shared: Arc<Shared>,
        symbol: usize,
        plugin: &str,
        function: &str,
    ) -> Func<A, R> {
        Func {
            counted: shared.records.call_sampling.is_some(),
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
    /// signature for it, or when the function panics (caught in the plugin). What the
    /// function itself returns, an `Err` of its own included, is the `Ok` value.
    #[inline(always)]
    pub fn call<'w>(&self, arg: A::Lent<'w>) -> Result<R, CallError> {
        // `move`: a closure holding `arg` by reference would force it into memory.
        self.shared
            .domain
            .with_pinned(move |g, p| self.call_in(g, p, arg))
            .map_err(unbox)
    }

    /// Like [`call`](Self::call), also returning the id of the generation that served it.
    #[inline]
    pub fn call_with_generation<'w>(&self, arg: A::Lent<'w>) -> Result<(R, u64), CallError> {
        self.shared
            .domain
            .with_pinned(move |g, p| self.call_in(g, p, arg).map(|r| (r, g.id())))
            .map_err(unbox)
    }

    /// The call on a pinned generation. The error is boxed so that the result of the
    /// pinned section (and of its cold paths) fits in two registers for small `R`:
    /// a `CallError` by value would send every call's result through the stack.
    #[inline(always)]
    pub(crate) fn call_in<'w>(
        &self,
        g: &Generation,
        pinned: Pinned,
        arg: A::Lent<'w>,
    ) -> Result<R, Box<CallError>> {
        let slot = self.slot(g, pinned)?;
        if self.counted {
            if let Some(stats) = slot.stats() {
                if stats.count(Kind::Typed) {
                    return self.call_timed(g, slot, stats, arg);
                }
            }
        }
        self.call_slot(g, slot, arg)
    }

    /// This handle's slot in the pinned generation `g`.
    #[inline(always)]
    pub(crate) fn slot<'g>(
        &self,
        g: &'g Generation,
        pinned: Pinned,
    ) -> Result<&'g TypedSlot, Box<CallError>> {
        Ok(match pinned {
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
        })
    }

    /// A call counted to be timed, off the inlined fast path.
    #[cold]
    #[inline(never)]
    fn call_timed<'w>(
        &self,
        g: &Generation,
        slot: &TypedSlot,
        stats: &CallCounters,
        arg: A::Lent<'w>,
    ) -> Result<R, Box<CallError>> {
        stats.time(|| self.call_slot(g, slot, arg))
    }

    /// The call through `slot`, a slot of the pinned generation `g` for this handle,
    /// uncounted.
    #[inline(always)]
    pub(crate) fn call_slot<'w>(
        &self,
        g: &Generation,
        slot: &TypedSlot,
        arg: A::Lent<'w>,
    ) -> Result<R, Box<CallError>> {
        let mut err = MaybeUninit::<Failure>::uninit();
        // SAFETY: `call` is either the entry point of a function whose argument and
        // result wire layouts abi_stable found equal to those of A's and R's wire forms
        // when the generation was built, or `A::stub::<R::Wire>()` (slots are built for
        // this handle's own A and R); lifetimes do not change a function's ABI. The
        // instance belongs to a version the pinned generation owns (or is ignored by the
        // stub); `err` is valid for writes; the wire arguments borrow from `arg`, which
        // outlives the call.
        let ret = unsafe {
            A::invoke::<R::Wire>(slot.call, slot.instance, A::lend(arg), err.as_mut_ptr())
        };
        if ret.ok {
            // SAFETY: `ok` means the function returned the value, a wire form its
            // `into_wire` made. `from_wire` (host code, here) copies it into a host-owned
            // value and drops the plugin-made one, while the generation (and so the
            // version whose code made it) is pinned.
            return Ok(unsafe { R::from_wire(ret.value.assume_init()) });
        }
        // Only the error, not a whole `Result`, comes back from the cold function: with
        // a constant discriminant on both ways in, the compiler joins them without
        // testing it again.
        Err(self.failed(g, slot.plugin, err))
    }

    #[cold]
    #[inline(never)]
    fn failed(&self, g: &Generation, plugin: usize, err: MaybeUninit<Failure>) -> Box<CallError> {
        if g.typed_error(self.symbol).is_some() {
            // The stub ran: it wrote nothing to `err`.
            return self.unresolved(g);
        }
        // SAFETY: a real typed function returned `!ok`, so it wrote the failure.
        let failure = unsafe { err.assume_init() };
        // The failure's message is plugin-made: copied out here, dropped while pinned.
        Box::new(g.versions()[plugin].call_error(&self.function, failure))
    }

    #[cold]
    #[inline(never)]
    fn unresolved(&self, g: &Generation) -> Box<CallError> {
        Box::new(match g.typed_error(self.symbol) {
            Some(e) => e.clone(),
            None => CallError::UnknownPlugin(self.plugin.to_string()),
        })
    }

    /// Whether the manager counts this handle's calls.
    #[inline(always)]
    pub(crate) fn counted(&self) -> bool {
        self.counted
    }

    /// The manager this handle belongs to (its symbol indexes that manager's tables).
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
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

/// The host's family of typed handles, which an interface's handle is made of:
/// [`Interface<dyn Trait>`](Interface) is the handle
/// [`PluginManager::interface`](crate::PluginManager::interface) returns.
pub struct HostCalls;

impl hotswap_plugin_api::interface::Calls for HostCalls {
    type Func<A: Args, R: Ret> = Func<A, R>;
    type Error = CallError;
    #[inline(always)]
    fn call<'w, A: Args, R: Ret>(f: &Func<A, R>, args: A::Lent<'w>) -> Result<R, CallError> {
        f.call(args)
    }
}

/// The host's handle on a plugin's implementation of the interface trait `I`
/// (`Interface<dyn Pricing>`, which is the generated `PricingHandle<HostCalls>`), from
/// [`PluginManager::interface`](crate::PluginManager::interface). Each method call is one
/// typed call ([`Func::call`]): it runs on the generation current when it starts.
pub type Interface<I> = <I as hotswap_plugin_api::interface::Interface>::Handle<HostCalls>;
