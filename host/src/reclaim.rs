//! Safe memory reclamation for the current-generation pointer: asymmetric hazard
//! pointers.
//!
//! Why this and not `ArcSwap` or a lock: a call must not write any cache line another
//! core reads (DESIGN, the hot path). A reader here writes only its own thread's slot:
//!
//! ```text
//! reader (every call)                    reclaimer (reaper thread, rare)
//!   p = CURRENT                            old = CURRENT.swap(new)        (publish)
//!   loop { slot = p; light_fence();        heavy_fence()
//!          q = CURRENT; if q == p break;   if no slot holds old: free old
//!          p = q }
//!   ... use *p ...
//!   slot = null
//! ```
//!
//! With `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` the light fence is only a
//! compiler fence and the heavy fence is the syscall, which runs a full barrier on every
//! CPU running one of our threads. Where the kernel refuses membarrier (old kernels,
//! seccomp), both sides use `fence(SeqCst)` instead, and [`mode`] says so.
//!
//! Why it is safe: take any reader and the reclaimer's heavy fence F. If the reader's
//! slot store comes before F, the reclaimer sees the slot and keeps `old`. If it comes
//! after F, the reader's validating load of CURRENT also comes after F, which comes
//! after the swap, so it sees `new` (or later), never `old`: it retries with the new
//! pointer and never uses `old`. Either way `old` is freed only when no reader uses it.
//!
//! Slots: every thread has one record of [`SLOTS`] slots, and every domain owns one slot
//! index, the same in every record (taken from a process-wide bitmap, given back when the
//! domain drops). Only that domain ever writes its slot, so a pin needs no bookkeeping
//! beyond the slot itself, and a full slot on entry means an outer pin of the same domain
//! on this thread: the nested pin reuses that value (a call that started on generation N
//! stays on N in every nested call). Pins of different domains nest freely.
//!
//! The fast path is one test: "is the slot this domain checks empty?". Everything rare
//! makes that slot full so the test sends it the cold way, without a test of its own:
//! a thread that has no record yet, or is being torn down, sees a static record whose
//! slots are all full; in fence mode, and for a domain that found no free index, the
//! domain checks the last slot, [`FULL`], which is full in every record. The cold path
//! then registers the thread, pins with a real fence, reuses an outer pin, or falls back
//! to cloning an `Arc` under a mutex (slower, equally safe; a thread-local list of those
//! clones keeps nested pins on the outer value there too).
//!
//! Attention: the host sometimes needs every thread to pass through the cold path once
//! at its next pin (to destroy per-thread values of a drained plugin version, see
//! `threads`). Each registered thread publishes the address of its `LOCAL` (the
//! thread-local naming its record) in its record; [`request_attention`], under the
//! registry lock, points every such `LOCAL` at a static all-full record, `ATTENTION`.
//! The thread's next pin reads that record, finds its slot full and goes the cold way,
//! which points `LOCAL` back at the thread's own record, runs the handler set with
//! [`on_attention`], and pins as usual. The fast path is unchanged (one load of
//! `LOCAL`, as before), and a request is never lost: only the cold path, on the thread
//! itself, undoes it. A pin already running keeps the record it read at entry.
//!
//! Orderings: a slot store is `Release` (a plain store on x86), so a reclaimer that reads
//! a later pin's pointer from a slot also sees everything the thread did under its
//! earlier pins; the membarrier (or `SeqCst` fence) pair orders the slot store before the
//! validating load, as argued above.

use parking_lot::Mutex;
use std::cell::Cell;
use std::sync::atomic::{compiler_fence, fence, AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Slots per thread record: one per live domain, the last one ([`FULL`]) always full.
pub const SLOTS: usize = 64;

/// The slot index no domain owns: full in every record, so checking it takes the cold
/// path.
const FULL: usize = SLOTS - 1;

/// What a permanently full slot holds: an address no domain publishes, so it protects
/// nothing and is never taken for an outer pin.
static FULL_MARK: u8 = 0;

const fn full_mark() -> *mut () {
    std::ptr::addr_of!(FULL_MARK) as *mut ()
}

/// One thread's hazard slots. Leaked once made, reused after its thread exits.
///
/// Aligned to a cache line so that no other data (another thread's record, anything else
/// on the heap) shares a line with the slots this thread writes on every call.
#[repr(align(64))]
struct ThreadRecord {
    hazards: [AtomicPtr<()>; SLOTS],
    in_use: AtomicBool,
    /// The owning thread's `LOCAL`, while it has one (set and cleared under the registry
    /// lock): where [`request_attention`] points the thread at `ATTENTION`.
    local: AtomicPtr<AtomicPtr<ThreadRecord>>,
}

impl ThreadRecord {
    /// A record whose every slot is full: what a thread without a record of its own
    /// checks, so that its pins go the cold way.
    const fn all_full() -> ThreadRecord {
        ThreadRecord {
            hazards: [const { AtomicPtr::new(full_mark()) }; SLOTS],
            in_use: AtomicBool::new(true),
            local: AtomicPtr::new(std::ptr::null_mut()),
        }
    }
}

/// The record of a thread before its first pin.
static UNREGISTERED: ThreadRecord = ThreadRecord::all_full();
/// The record of a thread whose thread-locals are being torn down.
static EXITING: ThreadRecord = ThreadRecord::all_full();
/// The record of a thread asked for attention (see the module docs).
static ATTENTION_RECORD: ThreadRecord = ThreadRecord::all_full();

const fn ptr_of(rec: &'static ThreadRecord) -> *mut ThreadRecord {
    rec as *const ThreadRecord as *mut ThreadRecord
}

static REGISTRY: Mutex<Vec<&'static ThreadRecord>> = Mutex::new(Vec::new());

thread_local! {
    // `const` and drop-free, so reading it compiles to one thread-pointer-relative load
    // and it stays readable during thread teardown.
    // Atomic only so that `request_attention` may redirect it from another thread; its
    // owner reads it with a relaxed load, the same instruction as a plain one. It always
    // points at a `'static` record.
    static LOCAL: AtomicPtr<ThreadRecord> = const { AtomicPtr::new(ptr_of(&UNREGISTERED)) };
    // This thread's own record once registered (what `LOCAL` goes back to after an
    // attention request).
    static OWN: Cell<Option<&'static ThreadRecord>> = const { Cell::new(None) };
    static RELEASE: ReleaseOnExit = const { ReleaseOnExit };
}

/// This thread's current record.
#[inline(always)]
fn local() -> &'static ThreadRecord {
    // SAFETY: `LOCAL` only ever holds pointers to `'static` records (the statics, or
    // leaked registered ones).
    LOCAL.with(|l| unsafe { &*l.load(Ordering::Relaxed) })
}

fn set_local(rec: &'static ThreadRecord) {
    LOCAL.with(|l| l.store(ptr_of(rec), Ordering::Relaxed));
}

struct ReleaseOnExit;

impl Drop for ReleaseOnExit {
    fn drop(&mut self) {
        // Under the registry lock, so no attention request writes `LOCAL` after this.
        let registry = REGISTRY.lock();
        let own = OWN.with(|o| o.take());
        set_local(&EXITING);
        if let Some(rec) = own {
            rec.local.store(std::ptr::null_mut(), Ordering::Relaxed);
        }
        drop(registry);
        if let Some(rec) = own {
            // Every pin has ended (each is scoped on this thread's stack), so all of the
            // record's domain slots are empty for whichever thread takes it next.
            rec.in_use.store(false, Ordering::Release);
        }
    }
}

#[cold]
fn register() -> &'static ThreadRecord {
    // Touching RELEASE registers its destructor, which frees the record at thread exit.
    // A thread whose first pin comes from another thread-local's destructor can no
    // longer register one: it pins the slow way, like any exiting thread.
    if RELEASE.try_with(|_| ()).is_err() {
        set_local(&EXITING);
        return &EXITING;
    }
    let mut registry = REGISTRY.lock();
    let rec = match registry.iter().find(|r| {
        r.in_use
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }) {
        Some(r) => *r,
        None => {
            let r: &'static ThreadRecord = Box::leak(Box::new(ThreadRecord {
                hazards: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
                in_use: AtomicBool::new(true),
                local: AtomicPtr::new(std::ptr::null_mut()),
            }));
            r.hazards[FULL].store(full_mark(), Ordering::Relaxed);
            registry.push(r);
            r
        }
    };
    OWN.with(|o| o.set(Some(rec)));
    set_local(rec);
    let local = LOCAL.with(|l| l as *const AtomicPtr<ThreadRecord> as *mut _);
    rec.local.store(local, Ordering::Relaxed);
    drop(registry);
    rec
}

static ATTENTION: OnceLock<fn()> = OnceLock::new();

/// Sets what a thread runs when it finds [`request_attention`]'s mark (once per process;
/// later calls are ignored).
pub fn on_attention(handler: fn()) {
    let _ = ATTENTION.set(handler);
}

/// Asks every registered thread to run the [`on_attention`] handler at its next pin
/// (of any domain), before pinning. A thread inside a pin is asked at its next one.
pub fn request_attention() {
    let registry = REGISTRY.lock();
    for rec in registry.iter() {
        let local = rec.local.load(Ordering::Relaxed);
        if !local.is_null() {
            // SAFETY: `local` is the `LOCAL` of a live thread: it is set when the thread
            // registers and cleared (under the registry lock we hold) before its
            // thread-locals go away.
            unsafe { &*local }.store(ptr_of(&ATTENTION_RECORD), Ordering::Relaxed);
        }
    }
}

/// Points this thread back at its own record and runs the attention handler; returns
/// the thread's own record.
#[cold]
#[inline(never)]
fn attend() -> &'static ThreadRecord {
    let own = OWN.with(|o| o.get()).unwrap_or(&EXITING);
    set_local(own);
    if let Some(handler) = ATTENTION.get() {
        handler();
    }
    own
}

/// Domain slot indices in use: bit i set = some live domain owns slot i. [`FULL`] is
/// set for good.
static TAKEN: AtomicU64 = AtomicU64::new(1 << FULL);

/// Takes the lowest free slot index, or `None` when every one is owned.
fn take_index() -> Option<usize> {
    let mut taken = TAKEN.load(Ordering::Relaxed);
    loop {
        let free = (!taken).trailing_zeros() as usize;
        if free >= FULL {
            return None;
        }
        match TAKEN.compare_exchange_weak(
            taken,
            taken | 1 << free,
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => return Some(free),
            Err(now) => taken = now,
        }
    }
}

static MEMBARRIER: AtomicBool = AtomicBool::new(false);
static MODE: OnceLock<String> = OnceLock::new();

/// Sets up membarrier once per process (unless `HOTSWAP_NO_MEMBARRIER` is set) and
/// returns how readers are fenced.
pub fn init() -> &'static str {
    MODE.get_or_init(|| {
        if std::env::var_os("HOTSWAP_NO_MEMBARRIER").is_some() {
            return "fence (membarrier disabled by HOTSWAP_NO_MEMBARRIER)".to_owned();
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use rustix::thread::{membarrier, MembarrierCommand};
            match membarrier(MembarrierCommand::RegisterPrivateExpedited) {
                Ok(()) => {
                    MEMBARRIER.store(true, Ordering::SeqCst);
                    "membarrier".to_owned()
                }
                Err(e) => format!("fence (membarrier refused: {e})"),
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            "fence (membarrier is Linux-only)".to_owned()
        }
    })
}

/// How readers are fenced: `membarrier`, or `fence (…why…)`.
pub fn mode() -> &'static str {
    init()
}

/// Makes every reader's slot store that precedes this call visible to the caller.
/// Returns false when the barrier could not be run: then nothing may be freed.
fn heavy_fence() -> bool {
    if MEMBARRIER.load(Ordering::SeqCst) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use rustix::thread::{membarrier, MembarrierCommand};
            if let Err(e) = membarrier(MembarrierCommand::PrivateExpedited) {
                tracing::error!(error = %e, "membarrier failed after registration; deferring reclamation");
                return false;
            }
        }
    }
    fence(Ordering::SeqCst);
    true
}

/// Frees every value of `pending` that no reader holds; keeps the others in `pending`.
/// Returns how many it freed, or `None` when the barrier could not run (then it frees
/// nothing).
pub fn reclaim<T>(pending: &mut Vec<Retired<T>>) -> Option<usize> {
    // Every Retired in `pending` was retired before this call, so the heavy fence in
    // `protected` comes after each one's swap, as the module's argument needs.
    let held = protected()?;
    let before = pending.len();
    let (keep, free): (Vec<_>, Vec<_>) = pending.drain(..).partition(|r| held.contains(&r.addr()));
    *pending = keep;
    for r in free {
        // SAFETY: `protected()` ran after `r` was retired and no slot lists it.
        unsafe { r.free() };
    }
    Some(before - pending.len())
}

/// Every pointer some thread's slots hold right now, or `None` when that cannot be
/// known (then the caller frees nothing).
fn protected() -> Option<Vec<*const ()>> {
    if !heavy_fence() {
        return None;
    }
    let registry = REGISTRY.lock();
    let mut out = Vec::new();
    for rec in registry.iter() {
        for h in &rec.hazards {
            let p = h.load(Ordering::Acquire);
            if !p.is_null() && p != full_mark() {
                out.push(p as *const ());
            }
        }
    }
    Some(out)
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
/// [`free`](Retired::free) leaks the value.
#[must_use = "a retired value is released only by `free`, once no reader holds it"]
pub struct Retired<T>(*const T);

// SAFETY: a Retired owns one strong count of an `Arc<T>`; moving it to another thread
// is like moving the Arc, which is Send when T: Send + Sync.
unsafe impl<T: Send + Sync> Send for Retired<T> {}

impl<T> Retired<T> {
    /// The address, to compare with [`protected`].
    fn addr(&self) -> *const () {
        self.0 as *const ()
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
        init();
        let light = MEMBARRIER.load(Ordering::SeqCst);
        let own = take_index().unwrap_or(FULL);
        Domain {
            hot: Hot {
                current: AtomicPtr::new(Arc::into_raw(value.clone()) as *mut T),
                check: if light { own } else { FULL },
                own,
                light,
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
        let rec = local();
        // SAFETY: `check` is set once, in `new`, to `own` or FULL, both below SLOTS.
        let slot = unsafe { rec.hazards.get_unchecked(self.hot.check) };
        if !slot.load(Ordering::Relaxed).is_null() {
            return self.with_cold(rec, f);
        }
        // The slot checked is empty only when it is this domain's own slot in a thread's
        // own record, with membarrier registered: a compiler fence is enough.
        self.pin(slot, true, f)
    }

    /// Pins into `slot` (this domain's, empty) and runs `f`.
    #[inline(always)]
    fn pin<R>(
        &self,
        slot: &'static AtomicPtr<()>,
        light: bool,
        f: impl FnOnce(&T, Pinned) -> R,
    ) -> R {
        let current = &self.hot.current;
        let mut p = current.load(Ordering::Acquire);
        loop {
            slot.store(p as *mut (), Ordering::Release);
            if light {
                compiler_fence(Ordering::SeqCst);
            } else {
                fence(Ordering::SeqCst);
            }
            let q = current.load(Ordering::Acquire);
            if q == p {
                break;
            }
            p = q;
        }
        let _clear = ClearOnDrop(slot);
        // SAFETY: `p` was published and is held in our slot, validated against CURRENT
        // after the fence; the reclaimer frees only pointers no slot holds (module docs).
        f(unsafe { &*p }, Pinned::Fresh)
    }

    /// Everything but the fast path: an unregistered or exiting thread, fence mode, a
    /// domain without a slot, and nested pins.
    #[cold]
    #[inline(never)]
    fn with_cold<R>(&self, rec: &'static ThreadRecord, f: impl FnOnce(&T, Pinned) -> R) -> R {
        let rec = if std::ptr::eq(rec, &UNREGISTERED) {
            register()
        } else if std::ptr::eq(rec, &ATTENTION_RECORD) {
            attend()
        } else {
            rec
        };
        if std::ptr::eq(rec, &EXITING) || self.hot.own == FULL {
            return self.with_arc(f);
        }
        let slot = &rec.hazards[self.hot.own];
        let held = slot.load(Ordering::Relaxed) as *const T;
        if !held.is_null() {
            // SAFETY: only this domain writes its slot, and only in `pin`, so a full slot
            // is an outer pin of this domain on this thread, which holds `held` (a value
            // of this domain) until it returns, after we return.
            return f(unsafe { &*held }, Pinned::Outer);
        }
        self.pin(slot, self.hot.light, f)
    }

    /// Pins by holding an `Arc` clone. The clones this thread holds are listed in
    /// `ARC_PINS` so that a nested pin of the same domain reuses the outer one's value.
    #[cold]
    #[inline(never)]
    fn with_arc<R>(&self, f: impl FnOnce(&T, Pinned) -> R) -> R {
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
            // SAFETY: an outer `with_arc` frame of this domain on this thread holds the
            // Arc that `p` points into, and it removes the entry before it drops it.
            return f(unsafe { &*(p as *const T) }, Pinned::Outer);
        }
        let value = self.load_arc();
        let listed = ARC_PINS
            .try_with(|pins| {
                pins.borrow_mut()
                    .push((domain, Arc::as_ptr(&value) as *const ()))
            })
            .is_ok();
        let _unlist = Unlist(listed);
        f(&value, Pinned::Fresh)
    }
}

impl<T> Drop for Domain<T> {
    fn drop(&mut self) {
        // Only the owner of the domain drops it; no reader can still be inside `with`
        // on it (they borrow the domain), so every record's slot `own` is empty and the
        // index can go to another domain, and the published count can be released.
        if self.hot.own != FULL {
            TAKEN.fetch_and(!(1 << self.hot.own), Ordering::AcqRel);
        }
        let p = *self.hot.current.get_mut();
        // SAFETY: `p` came from `Arc::into_raw` and the domain owns that count.
        drop(unsafe { Arc::from_raw(p) });
    }
}

thread_local! {
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

/// Empties a slot when its pin ends, by return or by unwinding.
struct ClearOnDrop(&'static AtomicPtr<()>);

impl Drop for ClearOnDrop {
    #[inline(always)]
    fn drop(&mut self) {
        self.0.store(std::ptr::null_mut(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    /// Set in the child process that reruns the stress test in fence mode.
    const FENCE_CHILD: &str = "HOTSWAP_RECLAIM_FENCE_CHILD";

    /// Tests that need slots of their own take this for reading; the one that takes
    /// every free slot index takes it for writing, so the others never run slot-less.
    static SLOTS_GUARD: parking_lot::RwLock<()> = parking_lot::RwLock::new(());

    const LIVE: u64 = 0x11FE;
    const DEAD: u64 = 0xDEAD;

    /// A value that counts how many of its kind are alive, and marks itself dead when
    /// dropped (so that a reader reaching a freed one is likely to see it).
    struct Tracked {
        value: u64,
        state: AtomicU64,
        alive: Arc<AtomicU64>,
    }

    impl Tracked {
        fn value(&self) -> u64 {
            assert_eq!(self.state.load(Ordering::SeqCst), LIVE, "read after free");
            self.value
        }
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.state.store(DEAD, Ordering::SeqCst);
            self.alive.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn tracked(value: u64, alive: &Arc<AtomicU64>) -> Arc<Tracked> {
        alive.fetch_add(1, Ordering::SeqCst);
        Arc::new(Tracked {
            value,
            state: AtomicU64::new(LIVE),
            alive: alive.clone(),
        })
    }

    #[test]
    fn readers_never_see_freed_values() {
        let _slots = SLOTS_GUARD.read();
        if std::env::var_os(FENCE_CHILD).is_some() {
            assert!(mode().starts_with("fence"), "{}", mode());
        }
        let alive = Arc::new(AtomicU64::new(0));
        let domain = Arc::new(Domain::new(tracked(0, &alive)));
        // The pins below are hazard pins, fast (membarrier) or fenced, never Arc clones.
        assert_ne!(domain.hot.own, FULL);
        let fast = MEMBARRIER.load(Ordering::SeqCst);
        assert_eq!(domain.hot.check == domain.hot.own, fast);
        let stop = Arc::new(AtomicBool::new(false));
        // Readers announce themselves, so publishing starts only once all are reading
        // (on a loaded machine they might otherwise not run before it ends).
        let started = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let domain = domain.clone();
                let stop = stop.clone();
                let started = started.clone();
                std::thread::spawn(move || {
                    let mut last = 0;
                    let mut calls = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let v = domain.with(|t| {
                            // Nested pin of the same domain sees the same value.
                            let inner = domain.with(|u| u.value());
                            assert_eq!(inner, t.value());
                            t.value()
                        });
                        assert!(v >= last, "went backwards: {v} after {last}");
                        last = v;
                        if calls == 0 {
                            started.fetch_add(1, Ordering::SeqCst);
                        }
                        calls += 1;
                    }
                    calls
                })
            })
            .collect();
        while started.load(Ordering::SeqCst) < 4 {
            std::thread::yield_now();
        }
        let mut pending = Vec::new();
        for i in 1..=2000 {
            pending.push(domain.publish(tracked(i, &alive)));
            reclaim(&mut pending);
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
        reclaim(&mut pending);
        assert!(pending.is_empty(), "nothing is pinned once readers stopped");
        // Only the published value is alive.
        assert_eq!(alive.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn readers_never_see_freed_values_in_fence_mode() {
        // Membarrier is set up once per process, so fence mode needs a process of its
        // own: this test binary again, running only the stress test, with it disabled.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "reclaim::tests::readers_never_see_freed_values",
                "--nocapture",
            ])
            .env("HOTSWAP_NO_MEMBARRIER", "1")
            .env(FENCE_CHILD, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("1 passed"), "the stress test ran: {text}");
    }

    #[test]
    fn a_nested_pin_of_the_same_domain_keeps_the_outer_value() {
        let _slots = SLOTS_GUARD.read();
        let alive = Arc::new(AtomicU64::new(0));
        let domain = Domain::new(tracked(1, &alive));
        let mut pending = Vec::new();
        domain.with_pinned(|outer, how| {
            assert_eq!((outer.value, how), (1, Pinned::Fresh));
            pending.push(domain.publish(tracked(2, &alive)));
            reclaim(&mut pending);
            assert_eq!(pending.len(), 1, "the outer pin protects value 1");
            domain.with_pinned(|inner, how| {
                assert_eq!((inner.value, how), (1, Pinned::Outer));
            });
        });
        domain.with_pinned(|t, how| assert_eq!((t.value, how), (2, Pinned::Fresh)));
        reclaim(&mut pending);
        assert!(pending.is_empty());
        assert_eq!(alive.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn pins_of_different_domains_nest() {
        let _slots = SLOTS_GUARD.read();
        let alive = Arc::new(AtomicU64::new(0));
        let a = Domain::new(tracked(10, &alive));
        let b = Domain::new(tracked(20, &alive));
        let sum = a.with(|x| {
            b.with(|y| {
                a.with_pinned(|x2, how| {
                    assert_eq!(how, Pinned::Outer);
                    x.value + y.value + x2.value
                })
            })
        });
        assert_eq!(sum, 40);
        // Both slots were given back: b pins afresh on its own.
        b.with_pinned(|y, how| assert_eq!((y.value, how), (20, Pinned::Fresh)));
    }

    #[test]
    fn domains_beyond_the_slots_pin_by_arc_and_indices_are_reused() {
        let _slots = SLOTS_GUARD.write();
        let alive = Arc::new(AtomicU64::new(0));
        // More domains than slots (other tests may hold some as well).
        let domains: Vec<_> = (0..SLOTS as u64 + 4)
            .map(|i| Domain::new(tracked(i, &alive)))
            .collect();
        let overflow = domains
            .iter()
            .rfind(|d| d.hot.own == FULL)
            .expect("some domain found no free slot");
        let before = overflow.with(|t| t.value());
        // A value a slow-path pin uses survives its retirement and free until the pin
        // ends: the pin holds its own Arc. Nested pins stay on it.
        overflow.with(|t| {
            let mut pending = vec![overflow.publish(tracked(1000, &alive))];
            reclaim(&mut pending);
            assert!(pending.is_empty(), "a slow-path pin holds no slot");
            assert_eq!(t.value(), before);
            overflow.with_pinned(|nested, how| {
                assert_eq!((nested.value(), how), (before, Pinned::Outer));
            });
        });
        overflow.with_pinned(|t, how| assert_eq!((t.value(), how), (1000, Pinned::Fresh)));
        for (i, d) in domains.iter().enumerate() {
            if !std::ptr::eq(d, overflow) {
                assert_eq!(d.with(|t| d.with(|u| t.value + u.value)), 2 * i as u64);
            }
        }
        drop(domains);
        assert_eq!(alive.load(Ordering::SeqCst), 0, "every value was released");
        let again = Domain::new(tracked(7, &alive));
        assert_ne!(again.hot.own, FULL, "dropped domains gave their slots back");
        assert_eq!(again.with(|t| t.value), 7);
    }

    #[test]
    fn pins_from_thread_local_destructors_work() {
        let _slots = SLOTS_GUARD.read();
        struct PinOnExit(Arc<Domain<u64>>, std::sync::mpsc::Sender<u64>);
        impl Drop for PinOnExit {
            fn drop(&mut self) {
                let _ = self.1.send(self.0.with(|v| *v));
            }
        }
        thread_local! {
            static PIN_ON_EXIT: std::cell::RefCell<Option<PinOnExit>> =
                const { std::cell::RefCell::new(None) };
        }
        let domain = Arc::new(Domain::new(Arc::new(5u64)));
        for pinned_before in [false, true] {
            let (tx, rx) = std::sync::mpsc::channel();
            let d = domain.clone();
            std::thread::spawn(move || {
                PIN_ON_EXIT.with(|p| *p.borrow_mut() = Some(PinOnExit(d.clone(), tx)));
                if pinned_before {
                    // Registers the record, whose release may run before or after the
                    // destructor above: the destructor's pin then finds it exiting.
                    assert_eq!(d.with(|v| *v), 5);
                }
            })
            .join()
            .expect("a pin during teardown must not panic");
            assert_eq!(rx.recv().unwrap(), 5, "pinned before: {pinned_before}");
        }
    }
}
