//! hotswap-reclaim: safe memory reclamation for hotswap's current-generation pointer,
//! with asymmetric hazard pointers.
//!
//! A [`Domain<T>`] publishes one `Arc<T>`; readers run code on the current value with
//! [`Domain::with`], the writer replaces it with [`Domain::publish`] and frees the old
//! values with [`reclaim`] once no reader can still use them. The host keeps one domain
//! per plugin manager, for its current generation.
//!
//! Why this and not `ArcSwap` or a lock: a call must not write any cache line another
//! core reads (the host's hot path). A reader here writes only its own thread's slot:
//!
//! ```text
//! reader (every call)                    reclaimer (reaper thread, rare)
//!   p = CURRENT            (Acquire)       old = CURRENT.swap(new)  (AcqRel: publish)
//!   loop { slot = p        (Release)       ... retire old ...
//!          light_fence()                   heavy_fence()
//!          q = CURRENT     (Acquire)       for each slot: s = slot  (Acquire: scan)
//!          if q == p break                 if no slot holds old: free old
//!          p = q }
//!   ... use *p ...
//!   slot = null            (Release)
//! ```
//!
//! # The barrier
//!
//! With `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` (registered once per process by
//! [`init`]), the light fence is only a compiler fence and the heavy fence is the
//! syscall: the kernel runs a full memory barrier on every CPU currently running one of
//! this process's threads (and a thread not running is switched out, which is a full
//! barrier too) before the syscall returns. So for every reader, the heavy fence lands
//! at some point of the reader's program order, and everything the reader did before
//! that point is visible to the reclaimer after the syscall, while everything it does
//! after that point sees everything the reclaimer did before the syscall: as if the
//! reader had run a `SeqCst` fence there. The compiler fence keeps the compiler from
//! moving the validating load above the slot store, where the CPU barrier could not
//! order them.
//!
//! Where the kernel refuses membarrier (old kernels, seccomp, or `HOTSWAP_NO_MEMBARRIER`
//! set), both sides use `fence(SeqCst)` instead: fence mode, which [`mode`] reports.
//! Two `SeqCst` fences are totally ordered, and of a store before one and a load after
//! the other, on different threads, the load after the later fence sees the store
//! before the earlier one (or a later store): the store-buffering guarantee both modes
//! rely on.
//!
//! # Why it is safe
//!
//! Take a reader that ends up using `old`, and the reclaimer's heavy fence F, which
//! comes after the swap that replaced `old` (a value is retired only after its swap,
//! and [`reclaim`] fences after it receives it). The reader stored `old` into its slot
//! (S), fenced (R), then loaded CURRENT and found `old` again (V).
//!
//! - If R comes before F: the scan after F sees S or a later store of that slot. While
//!   the pin lasts no later store exists, so the scan finds `old` and keeps it. If the
//!   scan instead sees the clearing store (the pin is over), that store is `Release` and
//!   the scan's load is `Acquire`: everything the reader did with `old` happens before
//!   the free.
//! - If F comes before R: V, after R, sees the swap, which is before F, or a later
//!   value: never `old`. The reader retries with the new pointer and never uses `old`.
//!
//! Either way `old` is freed only when no reader uses it, or has used it, without the
//! use happening before the free. The other orderings:
//!
//! - the reader's loads of CURRENT are `Acquire` and the publishing swap is `AcqRel`
//!   (its `Release` half is what matters), so a reader that reads a pointer also sees
//!   the value's initialisation;
//! - the slot store is `Release` and the scan's loads `Acquire`, so a reclaimer that
//!   reads a *later* pin's pointer from a slot (and frees the earlier value) also sees
//!   everything the thread did under its earlier pins;
//! - the re-validation (V equals the pointer stored) is what makes the argument above
//!   apply to the pointer used: a reader that used its first load unvalidated could have
//!   read `old` long before F and stored it after.
//!
//! # Slots
//!
//! Every thread has one record of [`SLOTS`] slots, and every domain owns one slot
//! index, the same in every record (taken from a process-wide bitmap, given back when the
//! domain drops). Only that domain ever writes its slot, so a pin needs no bookkeeping
//! beyond the slot itself, and a full slot on entry means an outer pin of the same domain
//! on this thread: the nested pin reuses that value (a call that started on generation N
//! stays on N in every nested call, [`Pinned::Outer`]). Pins of different domains nest
//! freely.
//!
//! That reading of a full slot needs every pin to end in order, on its own thread: a
//! pin is not async-signal-safe (a signal handler interrupting a pin between its slot
//! store and its validation would take the unvalidated pointer as an outer pin, and
//! the cold path takes locks), and a pin must not be left by `longjmp`, `pthread_exit`
//! or cancellation (all `unsafe`), which would leave a stale pointer in the slot. In a
//! child of `fork`, the records of threads that do not exist there stay in use and the
//! reaper's thread is gone: nothing is reclaimed there (a leak, not a fault).
//!
//! The fast path is one test: "is the slot this domain checks empty?". Everything rare
//! makes that slot full so the test sends it the cold way, without a test of its own:
//! a thread that has no record yet, or is being torn down, sees a static record whose
//! slots are all full; in fence mode, and for a domain that found no free index, the
//! domain checks the last slot, which is full in every record. The cold path then
//! registers the thread, pins with a real fence, reuses an outer pin, or falls back to
//! cloning an `Arc` under a mutex (slower, equally safe; a thread-local list of those
//! clones keeps nested pins on the outer value there too).
//!
//! The cold path takes the pin out of line and returns a guard that ends it (clears the
//! slot, or unlists and drops the `Arc`, or nothing for an outer pin). [`Domain::with`]
//! and [`Domain::with_pinned`] run their closure there, out of line too;
//! [`Domain::with_section`] runs its [`Section`] in the caller on both paths, so what
//! the section carries (a call's arguments) never has to be in memory for the cold
//! path, where the compiler would keep it for the fast path as well.
//!
//! # Attention
//!
//! The host sometimes needs every thread to pass through the cold path once at its next
//! pin (to destroy per-thread values of a drained plugin version). Each registered
//! thread publishes the address of its `LOCAL` (the thread-local naming its record) in
//! its record; [`request_attention`], under the registry lock, points every such `LOCAL`
//! at a static all-full record. The thread's next pin reads that record, finds its slot
//! full and goes the cold way, which points `LOCAL` back at the thread's own record,
//! runs the handler set with [`on_attention`], and pins as usual. The fast path is
//! unchanged (one load of `LOCAL`), and a request is never lost: only the cold path, on
//! the thread itself, undoes it, under the registry lock that every request holds while
//! it marks, and before it runs the handler; so a request it undoes happened before the
//! handler ran, which sees what was asked, and a later one stays marked for the next
//! pin. A pin already running keeps the record it read at entry.
//!
//! # The loom models
//!
//! Under `--cfg loom` the crate swaps its atomics, fences, locks, statics (per model
//! execution) and thread-locals for loom's, and `tests/loom.rs` checks the protocol
//! above exhaustively (within a preemption bound): readers pinning and reading while a
//! writer publishes, scans and frees, in every interleaving and every value each load
//! may return under the C11 model. loom cannot run membarrier, so there the domain is
//! always in fence mode: the heavy barrier is modelled as the fence fallback,
//! `fence(SeqCst)` on both sides, which is exactly the fallback's code, and membarrier's
//! guarantee (above) is the same pairing with the reader's fence placed by the kernel.
//! The attention mechanism and record reuse after thread exit are not modelled.
//!
//! Also under `cfg(loom)` only, `Flaw` names an ordering rule, and `Domain::with_flaw` /
//! `reclaim_with_flaw` build the protocol with that one rule broken; each has a model
//! that loom fails: the reader's fence, the reclaimer's fence, the `Release` clear with
//! the `Acquire` scan (each side), and the re-validation. Nothing of that exists in a
//! normal build.
//!
//! What the models cannot show: loom models a `SeqCst` fence as a total order that also
//! synchronises (stronger than C11, where two fences order only the loads and stores
//! around them), and it switches threads only at instrumented operations, never between
//! an operation and the fence after it. So a missing `Release` on the publishing swap
//! or on the slot store is hidden by the next `SeqCst` fence and passes in loom: those
//! two rules rest on the argument above. The `Acquire` on the reader's loads of CURRENT
//! is not needed in fence mode at all (the reader's `SeqCst` fence, after the load of
//! the pointer it uses, acquires it); it is needed in membarrier mode, where that fence
//! is only a compiler fence, which loom cannot model.
#![warn(missing_docs)]

mod barrier;
mod records;
mod sync;

pub use barrier::{init, mode, BarrierError};
pub use records::{on_attention, request_attention, SLOTS};

use records::{full_mark, ThreadRecord, FULL};
use std::sync::Arc;
use sync::{local, AtomicPtr, Mutex, Ordering};

mod rules {
    /// One ordering rule of the protocol (crate docs, "Why it is safe"), named to be
    /// broken on purpose in the loom models. Only under `cfg(loom)`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[cfg_attr(not(loom), allow(dead_code))]
    pub enum Flaw {
        /// The reader does not fence between its slot store and its validating load.
        ReaderFence,
        /// The reclaimer scans the slots without the heavy fence first.
        ScanFence,
        /// The reader clears its slot `Relaxed` instead of `Release`.
        RelaxedClear,
        /// The reclaimer loads the slots `Relaxed` instead of `Acquire`.
        RelaxedScan,
        /// The reader uses its first load of CURRENT without re-validating it.
        NoRevalidate,
    }

    /// Which rules this domain (or scan) keeps: all of them, except under `cfg(loom)`
    /// where one may be broken. A zero-sized constant in a normal build.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Rules {
        #[cfg(loom)]
        pub(crate) broken: Option<Flaw>,
    }

    impl Rules {
        /// Every rule kept: the production protocol.
        pub(crate) const SOUND: Rules = Rules {
            #[cfg(loom)]
            broken: None,
        };

        /// Whether `rule` is kept (always, in a normal build).
        #[inline(always)]
        pub(crate) fn keeps(self, rule: Flaw) -> bool {
            #[cfg(loom)]
            {
                self.broken != Some(rule)
            }
            #[cfg(not(loom))]
            {
                let _ = rule;
                true
            }
        }

        /// `strong` if `rule` is kept, else `Relaxed`.
        #[inline(always)]
        pub(crate) fn order(self, rule: Flaw, strong: super::Ordering) -> super::Ordering {
            if self.keeps(rule) {
                strong
            } else {
                super::Ordering::Relaxed
            }
        }
    }
}

#[cfg(loom)]
pub use rules::Flaw;
use rules::{Flaw as Rule, Rules};

/// Frees every value of `pending` that no reader holds; keeps the others in `pending`.
/// Returns how many it freed.
///
/// # Errors
///
/// [`BarrierError`] when the heavy barrier could not run: then it frees nothing, and
/// `pending` is as it was (call again later).
pub fn reclaim<T>(pending: &mut Vec<Retired<T>>) -> Result<usize, BarrierError> {
    reclaim_inner(pending, Rules::SOUND)
}

/// [`reclaim`] with the reclaimer's rule `flaw` broken (loom models only).
///
/// # Errors
///
/// As [`reclaim`].
#[cfg(loom)]
pub fn reclaim_with_flaw<T>(
    pending: &mut Vec<Retired<T>>,
    flaw: Flaw,
) -> Result<usize, BarrierError> {
    reclaim_inner(pending, Rules { broken: Some(flaw) })
}

fn reclaim_inner<T>(pending: &mut Vec<Retired<T>>, rules: Rules) -> Result<usize, BarrierError> {
    // Every Retired in `pending` was retired before this call, so the heavy fence in
    // `protected` comes after each one's swap, as the crate's argument needs.
    let held = protected(rules)?;
    let before = pending.len();
    let (keep, free): (Vec<_>, Vec<_>) = pending.drain(..).partition(|r| held.contains(&r.addr()));
    *pending = keep;
    for r in free {
        // SAFETY: `protected()` ran after `r` was retired and no slot lists it.
        unsafe { r.free() };
    }
    Ok(before - pending.len())
}

/// Every pointer some thread's slots hold right now.
fn protected(rules: Rules) -> Result<Vec<*const ()>, BarrierError> {
    if rules.keeps(Rule::ScanFence) {
        barrier::heavy_fence()?;
    }
    let order = rules.order(Rule::RelaxedScan, Ordering::Acquire);
    let mut out = Vec::new();
    records::for_each_slot(|h| {
        let p = h.load(order);
        if !p.is_null() && p != full_mark() {
            out.push(p as *const ());
        }
    });
    Ok(out)
}

/// How the value handed to a pinned section was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pinned {
    /// The value was current at some moment after this pin began.
    Fresh,
    /// An outer pin of the same domain on this thread holds the value: it was current
    /// at some moment after *that* pin began, possibly before this one.
    Outer,
}

/// A pinned section ([`Domain::with_section`]): what runs on the pinned value, with
/// what it needs (a call's arguments) as its own fields.
pub trait Section<T> {
    /// What the section returns.
    type Output;
    /// Runs the section on `value`, obtained as `pinned` says. Implementations are
    /// `#[inline(always)]`: that is the point of a section (see `with_section`).
    fn run(self, value: &T, pinned: Pinned) -> Self::Output;
}

/// What a reader checks on every pin; on one cache line of its own, which only
/// [`Domain::publish`] writes.
#[repr(C, align(64))]
struct Hot<T> {
    current: AtomicPtr<T>,
    /// The slot the fast path checks: `own` in membarrier mode, [`FULL`] otherwise
    /// (always full, so every pin goes the cold way, which fences).
    check: usize,
    /// This domain's slot index in every record, or [`FULL`] when none was free.
    own: usize,
    /// Readers need only a compiler fence (membarrier is registered).
    light: bool,
    /// The ordering rules this domain keeps (all of them, outside the loom models).
    rules: Rules,
}

/// A published `Arc<T>` that readers use without touching shared cache lines.
///
/// The domain owns one strong count of the published value through the raw pointer;
/// [`Domain::publish`] hands the previous pointer back to the caller, who must pass it
/// to [`reclaim`] (the reaper does) until that frees it, instead of dropping it.
///
/// At most [`SLOTS`]` - 1` domains can be alive with a slot of their own; pins of any
/// further live domain clone an `Arc` under a mutex instead (correct, slower).
pub struct Domain<T> {
    hot: Hot<T>,
    /// The same value as `current`, for the slow path.
    slow: Mutex<Arc<T>>,
}

/// A retired pointer, waiting until no reader holds it. Dropping it without
/// [`reclaim`] freeing it leaks the value.
#[must_use = "a retired value is released only by `reclaim`, once no reader holds it"]
pub struct Retired<T>(*const T);

// SAFETY: a Retired owns one strong count of an `Arc<T>`; moving it to another thread
// is like moving the Arc, which is Send when T: Send + Sync.
unsafe impl<T: Send + Sync> Send for Retired<T> {}

impl<T> Retired<T> {
    /// The address, to compare with [`protected`].
    fn addr(&self) -> *const () {
        self.0 as *const ()
    }

    /// The retired value's address (loom models only: to tell which values
    /// [`reclaim`] freed).
    #[cfg(loom)]
    pub fn as_ptr(&self) -> *const T {
        self.0
    }

    /// Drops the domain's strong count of the value.
    ///
    /// # Safety
    ///
    /// No reader may still use the value: [`protected`] must have been called after
    /// this `Retired` was returned by [`Domain::publish`], and not listed its address.
    unsafe fn free(self) {
        // SAFETY: the pointer came from `Arc::into_raw` in `publish`/`new` and this
        // Retired is its only owner; the caller checked no reader holds it.
        drop(unsafe { Arc::from_raw(self.0) });
    }
}

impl<T> Domain<T> {
    /// A domain publishing `value`.
    pub fn new(value: Arc<T>) -> Domain<T> {
        Domain::with_rules(value, Rules::SOUND)
    }

    /// A domain whose readers and publisher break the rule `flaw` (loom models only).
    #[cfg(loom)]
    pub fn with_flaw(value: Arc<T>, flaw: Flaw) -> Domain<T> {
        Domain::with_rules(value, Rules { broken: Some(flaw) })
    }

    fn with_rules(value: Arc<T>, rules: Rules) -> Domain<T> {
        init();
        let light = barrier::membarrier_registered();
        let own = records::take_index().unwrap_or(FULL);
        Domain {
            hot: Hot {
                current: AtomicPtr::new(Arc::into_raw(value.clone()) as *mut T),
                check: if light { own } else { FULL },
                own,
                light,
                rules,
            },
            slow: Mutex::new(value),
        }
    }

    /// Publishes `value`; calls that start from now on see it. Returns the previous
    /// value, which readers may still be using.
    pub fn publish(&self, value: Arc<T>) -> Retired<T> {
        let mut slow = self.slow.lock();
        *slow = value.clone();
        let old = self
            .hot
            .current
            .swap(Arc::into_raw(value) as *mut T, Ordering::AcqRel);
        Retired(old)
    }

    /// An `Arc` of the current value (takes a lock: not for the hot path).
    pub fn load_arc(&self) -> Arc<T> {
        self.slow.lock().clone()
    }

    /// Runs `f` on the current value (or on the one an outer pin of this domain on this
    /// thread holds), which stays alive until `f` returns.
    #[inline(always)]
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        self.with_pinned(|t, _| f(t))
    }

    /// Like [`with`](Self::with), also telling `f` how the value was obtained.
    #[inline(always)]
    pub fn with_pinned<R>(&self, f: impl FnOnce(&T, Pinned) -> R) -> R {
        let rec = records::local();
        // SAFETY: `check` is set once, in `new`, to `own` or FULL, both below SLOTS.
        let slot = unsafe { rec.hazards.get_unchecked(self.hot.check) };
        if !slot.load(Ordering::Relaxed).is_null() {
            return self.with_cold(rec, f);
        }
        // The slot checked is empty only when it is this domain's own slot in a thread's
        // own record, with membarrier registered: a compiler fence is enough.
        let (p, _clear) = self.pin_slot(slot, true);
        // SAFETY: `p` was published and is held in our slot, validated against CURRENT
        // after the fence; the reclaimer frees only pointers no slot holds (crate docs).
        f(unsafe { &*p }, Pinned::Fresh)
    }

    /// Runs `section` pinned, like [`with_pinned`](Self::with_pinned) runs a closure, but
    /// compiled into the caller on both of the pin's paths: the cold path only takes
    /// the pin (out of line) and hands back a guard. For a hot caller whose section
    /// carries more than two words (a call's arguments): handed to an out-of-line
    /// function, they would have to be in memory for it, and the compiler keeps them
    /// there on the fast path too, where reading them back stalls (wide loads of
    /// narrower stores). A closure would not do: called from two places, it may be kept
    /// out of line; a [`Section`]'s `run` is `#[inline(always)]`.
    #[inline(always)]
    pub fn with_section<S: Section<T>>(&self, section: S) -> S::Output {
        let rec = records::local();
        // SAFETY: `check` is set once, in `new`, to `own` or FULL, both below SLOTS.
        let slot = unsafe { rec.hazards.get_unchecked(self.hot.check) };
        if !slot.load(Ordering::Relaxed).is_null() {
            let pin = self.pin_cold(rec);
            // SAFETY: `pin` holds its value until it is dropped, after `run` returns.
            return section.run(unsafe { &*pin.value }, pin.pinned);
        }
        // The slot checked is empty only when it is this domain's own slot in a thread's
        // own record, with membarrier registered: a compiler fence is enough.
        let (p, _clear) = self.pin_slot(slot, true);
        // SAFETY: as in `with_pinned`.
        section.run(unsafe { &*p }, Pinned::Fresh)
    }

    /// Pins into `slot` (this domain's, empty): publishes the current value there
    /// ([`Self::acquire`]) and returns it with the guard that empties the slot. Not a
    /// function taking the section as a closure: the closure might not be inlined.
    #[inline(always)]
    fn pin_slot(&self, slot: &'static AtomicPtr<()>, light: bool) -> (*const T, ClearOnDrop) {
        let p = self.acquire(slot, light);
        let clear = ClearOnDrop(
            slot,
            self.hot.rules.order(Rule::RelaxedClear, Ordering::Release),
        );
        (p, clear)
    }

    /// [`with_pinned`](Self::with_pinned) off the fast path.
    #[cold]
    #[inline(never)]
    fn with_cold<R>(&self, rec: &'static ThreadRecord, f: impl FnOnce(&T, Pinned) -> R) -> R {
        let pin = self.pin_cold(rec);
        // SAFETY: `pin` holds its value until it is dropped, after `f` returns.
        f(unsafe { &*pin.value }, pin.pinned)
    }

    /// Publishes the current value in `slot` (this domain's, empty) and returns it,
    /// validated: the caller clears the slot when its pin ends.
    #[inline(always)]
    fn acquire(&self, slot: &'static AtomicPtr<()>, light: bool) -> *const T {
        let rules = self.hot.rules;
        let current = &self.hot.current;
        let mut p = current.load(Ordering::Acquire);
        loop {
            slot.store(p as *mut (), Ordering::Release);
            if rules.keeps(Rule::ReaderFence) {
                sync::reader_fence(light);
            }
            if !rules.keeps(Rule::NoRevalidate) {
                return p;
            }
            let q = current.load(Ordering::Acquire);
            if q == p {
                return p;
            }
            p = q;
        }
    }

    /// Everything but the fast path: an unregistered or exiting thread, fence mode, a
    /// domain without a slot, and nested pins. The pin lasts as long as the guard.
    #[cold]
    #[inline(never)]
    fn pin_cold(&self, rec: &'static ThreadRecord) -> ColdPin<T> {
        let rec = if std::ptr::eq(rec, records::unregistered()) {
            records::register()
        } else if std::ptr::eq(rec, records::attention_record()) {
            records::attend()
        } else {
            rec
        };
        if std::ptr::eq(rec, records::exiting()) || self.hot.own == FULL {
            return self.pin_arc();
        }
        let slot = &rec.hazards[self.hot.own];
        let held = slot.load(Ordering::Relaxed) as *const T;
        if !held.is_null() {
            // Only this domain writes its slot, and only while a pin of it lasts, so a
            // full slot is an outer pin of this domain on this thread, which holds
            // `held` (a value of this domain) until it ends, after this one.
            return ColdPin {
                value: held,
                pinned: Pinned::Outer,
                _ends: PinEnd::Outer,
            };
        }
        let (value, clear) = self.pin_slot(slot, self.hot.light);
        ColdPin {
            value,
            pinned: Pinned::Fresh,
            _ends: PinEnd::Slot { _clear: clear },
        }
    }

    /// Pins by holding an `Arc` clone. The clones this thread holds are listed in
    /// `ARC_PINS` so that a nested pin of the same domain reuses the outer one's value.
    #[cold]
    #[inline(never)]
    fn pin_arc(&self) -> ColdPin<T> {
        let domain = self as *const Domain<T> as usize;
        let outer = ARC_PINS
            .try_with(|pins| {
                pins.borrow()
                    .iter()
                    .rev()
                    .find(|(d, _)| *d == domain)
                    .map(|(_, p)| *p)
            })
            .ok()
            .flatten();
        if let Some(p) = outer {
            // An outer arc pin of this domain on this thread holds the Arc that `p`
            // points into, and it removes the entry before it drops it, after this pin.
            return ColdPin {
                value: p as *const T,
                pinned: Pinned::Outer,
                _ends: PinEnd::Outer,
            };
        }
        let value = self.load_arc();
        let listed = ARC_PINS
            .try_with(|pins| {
                pins.borrow_mut()
                    .push((domain, Arc::as_ptr(&value) as *const ()))
            })
            .is_ok();
        ColdPin {
            value: Arc::as_ptr(&value),
            pinned: Pinned::Fresh,
            // Fields drop in order: unlisted before the clone goes.
            _ends: PinEnd::Arc {
                _unlist: Unlist(listed),
                _value: value,
            },
        }
    }
}

/// A pin taken off the fast path: `value` stays alive until the guard drops (by return
/// or by unwinding), which ends the pin.
struct ColdPin<T> {
    value: *const T,
    pinned: Pinned,
    _ends: PinEnd<T>,
}

/// What ends a [`ColdPin`] when it drops.
enum PinEnd<T> {
    /// Nothing: an outer pin of the same domain on this thread holds the value.
    Outer,
    /// The slot of this thread's record the value is published in is emptied.
    Slot { _clear: ClearOnDrop },
    /// The `Arc` clone that holds the value is unlisted from `ARC_PINS`, then dropped.
    Arc { _unlist: Unlist, _value: Arc<T> },
}

impl<T> Drop for Domain<T> {
    fn drop(&mut self) {
        // Only the owner of the domain drops it; no reader can still be inside `with`
        // on it (they borrow the domain), so every record's slot `own` is empty and the
        // index can go to another domain, and the published count can be released.
        if self.hot.own != FULL {
            records::give_back_index(self.hot.own);
        }
        let p = sync::exclusive_load(&mut self.hot.current);
        // SAFETY: `p` came from `Arc::into_raw` and the domain owns that count.
        drop(unsafe { Arc::from_raw(p) });
    }
}

local! {
    /// This thread's `Arc` pins, innermost last: (domain address, value pointer).
    static ARC_PINS: std::cell::RefCell<Vec<(usize, *const ())>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Removes the innermost `ARC_PINS` entry when its pin ends (if it was listed).
struct Unlist(bool);

impl Drop for Unlist {
    fn drop(&mut self) {
        if self.0 {
            let _ = ARC_PINS.try_with(|pins| pins.borrow_mut().pop());
        }
    }
}

/// Empties a slot when its pin ends, by return or by unwinding (with `Release`, or
/// what the domain's rules say).
struct ClearOnDrop(&'static AtomicPtr<()>, Ordering);

impl Drop for ClearOnDrop {
    #[inline(always)]
    fn drop(&mut self) {
        self.0.store(std::ptr::null_mut(), self.1);
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
