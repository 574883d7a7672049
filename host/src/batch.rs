//! [`PinnedCalls`]: many typed calls on one pinned generation (the batch API).

use crate::call_stats::{CallCounters, Kind};
use crate::error::CallError;
use crate::func::{unbox, Func};
use crate::generation::Generation;
use crate::shared::Shared;
use hotswap_plugin_api::typed::{Args, Ret};
use hotswap_reclaim::Pinned;
use std::cell::Cell;
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
    /// Calls made and not yet counted, and the counters of the version they went to:
    /// counted when another version is called and at the end, so a loop of calls
    /// updates only this tally, in the caller's frame, not the version's counters.
    tally: Cell<(Option<&'g CallCounters>, u64)>,
    /// Not `Send`/`Sync`: the pin is this thread's hazard slot.
    _this_thread: PhantomData<*const ()>,
}

impl<'g> PinnedCalls<'g> {
    pub(crate) fn new(shared: &'g Shared, generation: &'g Generation) -> PinnedCalls<'g> {
        PinnedCalls {
            shared,
            generation,
            tally: Cell::new((None, 0)),
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
        let slot = func.slot(self.generation, Pinned::Outer).map_err(unbox)?;
        if let Some(stats) = func.counted().then(|| slot.stats()).flatten() {
            // Values in and out, not `&self`: the tally's address never escapes.
            self.tally.set(match self.tally.get() {
                (Some(last), n) if std::ptr::eq(last, stats) => (Some(last), n + 1),
                other => switch(other, stats),
            });
        }
        func.call_slot(self.generation, slot, arg).map_err(unbox)
    }

    /// The pinned generation (its id, versions, extension).
    pub fn generation(&self) -> &'g Generation {
        self.generation
    }
}

impl Drop for PinnedCalls<'_> {
    fn drop(&mut self) {
        // Still inside the pin: the counters are those of a version it holds.
        if let (Some(stats), n) = self.tally.get() {
            stats.add(Kind::Typed, n);
        }
    }
}

/// Counts the tally `(last, n)` and starts one for `stats`: a batch calling another
/// version (or its first call).
#[cold]
#[inline(never)]
fn switch<'g>(
    (last, n): (Option<&'g CallCounters>, u64),
    stats: &'g CallCounters,
) -> (Option<&'g CallCounters>, u64) {
    if let Some(last) = last {
        last.add(Kind::Typed, n);
    }
    (Some(stats), 1)
}
