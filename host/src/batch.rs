//! [`PinnedCalls`]: many typed calls on one pinned generation (the batch API).

use crate::error::CallError;
use crate::func::{unbox, Func};
use crate::generation::Generation;
use crate::shared::Shared;
use hotswap_plugin_api::typed::{Args, Ret};
use hotswap_reclaim::Pinned;
use std::marker::PhantomData;

/// A generation pinned for the length of a closure, from
/// [`PluginManager::pinned`](crate::PluginManager::pinned): every
/// [`call`](Self::call) made through it runs on that one generation, so a loop of calls
/// pays for the pin once instead of once per call.
///
/// The handle exists only inside the closure (it cannot be returned or stored: the
/// closure receives it for a lifetime of its own) and only on the thread that pinned
/// (it is neither `Send` nor `Sync`), so the generation it names stays alive, and this
/// thread's calls, callbacks from plugin code included, stay on it, for as long as it
/// can be used. Nested pins and ordinary [`Func::call`]s made inside the closure on the
/// same manager run on the same generation. A reload made meanwhile (by another thread,
/// or by this one) is published as usual; calls through this handle keep the
/// generation they pinned, and the new one serves calls that start after the closure.
///
/// ```compile_fail
/// # fn f(manager: &hotswap_host::PluginManager) {
/// // The handle cannot leave the closure.
/// let escaped = manager.pinned(|p| p);
/// # }
/// ```
///
/// ```compile_fail
/// # fn f(manager: &hotswap_host::PluginManager) {
/// // Nor reach another thread, whose calls its pin does not cover.
/// manager.pinned(|p| std::thread::scope(|s| {
///     s.spawn(|| p.generation().id());
/// }));
/// # }
/// ```
pub struct PinnedCalls<'g> {
    shared: &'g Shared,
    generation: &'g Generation,
    /// Not `Send`/`Sync`: the pin is this thread's hazard slot.
    _this_thread: PhantomData<*const ()>,
}

impl<'g> PinnedCalls<'g> {
    pub(crate) fn new(shared: &'g Shared, generation: &'g Generation) -> PinnedCalls<'g> {
        PinnedCalls {
            shared,
            generation,
            _this_thread: PhantomData,
        }
    }

    /// Calls `func` on the pinned generation.
    ///
    /// Fails like [`Func::call`]: when the pinned generation lacks the plugin or function
    /// or has another signature for it (a handle made inside the closure, after the pin,
    /// for a function the pinned generation does not have, included), or when the
    /// function panics. A handle of another manager is called on that manager's own
    /// current generation, as [`Func::call`] would.
    #[inline(always)]
    pub fn call<'w, A: Args, R: Ret>(
        &self,
        func: &Func<A, R>,
        arg: A::Lent<'w>,
    ) -> Result<R, CallError> {
        if !std::ptr::eq(func.shared(), self.shared) {
            return func.call(arg);
        }
        // `Outer`: the handle may have been made after the pin, so its slot is looked up
        // with a bounds check (the pinned generation's table may be shorter).
        func.call_in(self.generation, Pinned::Outer, arg)
            .map_err(unbox)
    }

    /// The pinned generation (its id, versions, extension).
    pub fn generation(&self) -> &'g Generation {
        self.generation
    }
}
