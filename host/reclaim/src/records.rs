//! Per-thread hazard records, the registry that lists them, the slot indices domains
//! own, and the attention mechanism (see the crate docs).

use crate::sync::{global, local, AtomicBool, AtomicPtr, AtomicU64, Mutex, Ordering};
use std::cell::Cell;
use std::sync::OnceLock;

/// Slots per thread record: one per live domain, the last one always full (no domain owns it).
///
/// Under `cfg(loom)` it is 4, to keep the models' scans (one load per slot) small.
pub const SLOTS: usize = if cfg!(loom) { 4 } else { 64 };

/// The slot index no domain owns: full in every record, so checking it takes the cold
/// path.
pub(crate) const FULL: usize = SLOTS - 1;

/// What a permanently full slot holds: an address no domain publishes, so it protects
/// nothing and is never taken for an outer pin.
static FULL_MARK: u8 = 0;

/// The address of [`FULL_MARK`], as the slots hold it.
pub(crate) const fn full_mark() -> *mut () {
    std::ptr::addr_of!(FULL_MARK) as *mut ()
}

/// One thread's hazard slots. Leaked once made, reused after its thread exits.
///
/// Aligned to a cache line so that no other data (another thread's record, anything else
/// on the heap) shares a line with the slots this thread writes on every call.
#[repr(align(64))]
pub(crate) struct ThreadRecord {
    /// Slot `i` is written only by domain `i`'s pins on the owning thread.
    pub(crate) hazards: [AtomicPtr<()>; SLOTS],
    in_use: AtomicBool,
    /// The owning thread's `LOCAL`, while it has one (set and cleared under the registry
    /// lock): where [`request_attention`] points the thread at `ATTENTION_RECORD`.
    local: AtomicPtr<AtomicPtr<ThreadRecord>>,
}

impl ThreadRecord {
    /// A record whose every slot is full: what a thread without a record of its own
    /// checks, so that its pins go the cold way.
    #[cfg(not(loom))]
    const fn all_full() -> ThreadRecord {
        ThreadRecord {
            hazards: [const { AtomicPtr::new(full_mark()) }; SLOTS],
            in_use: AtomicBool::new(true),
            local: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// A record whose every slot is full (loom's atomics have no `const` constructor).
    #[cfg(loom)]
    fn all_full() -> ThreadRecord {
        ThreadRecord {
            hazards: std::array::from_fn(|_| AtomicPtr::new(full_mark())),
            in_use: AtomicBool::new(true),
            local: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// A registered thread's record: every domain slot empty, [`FULL`] full.
    fn empty() -> ThreadRecord {
        let rec = ThreadRecord {
            hazards: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            in_use: AtomicBool::new(true),
            local: AtomicPtr::new(std::ptr::null_mut()),
        };
        rec.hazards[FULL].store(full_mark(), Ordering::Relaxed);
        rec
    }
}

global! {
    /// The record of a thread before its first pin.
    pub(crate) fn unregistered() -> &ThreadRecord { ThreadRecord::all_full() }
}
global! {
    /// The record of a thread whose thread-locals are being torn down.
    pub(crate) fn exiting() -> &ThreadRecord { ThreadRecord::all_full() }
}
global! {
    /// The record of a thread asked for attention (see the crate docs).
    pub(crate) fn attention_record() -> &ThreadRecord { ThreadRecord::all_full() }
}
global! {
    /// Every record ever made (records are leaked and reused, never freed).
    fn registry() -> &Mutex<Vec<&'static ThreadRecord>> { Mutex::new(Vec::new()) }
}

const fn ptr_of(rec: &'static ThreadRecord) -> *mut ThreadRecord {
    rec as *const ThreadRecord as *mut ThreadRecord
}

local! {
    // Drop-free, so it stays readable during thread teardown (std's `const` form also
    // makes reading it one thread-pointer-relative load).
    // Atomic only so that `request_attention` may redirect it from another thread; its
    // owner reads it with a relaxed load, the same instruction as a plain one. It always
    // points at a `'static` record.
    static LOCAL: AtomicPtr<ThreadRecord> = const { AtomicPtr::new(ptr_of(unregistered())) };
    // This thread's own record once registered (what `LOCAL` goes back to after an
    // attention request).
    static OWN: Cell<Option<&'static ThreadRecord>> = const { Cell::new(None) };
    // Releases the record at thread exit; holds it itself, so that it needs no other
    // thread-local then (loom drops them all at once).
    static RELEASE: ReleaseOnExit = const { ReleaseOnExit(Cell::new(None)) };
}

/// This thread's current record.
#[inline(always)]
pub(crate) fn local() -> &'static ThreadRecord {
    // The closure returns the raw pointer, not the reference: a reference would let
    // the compiler fold `with`'s access check into a null test of the loaded pointer
    // (two instructions on every pin).
    let rec = LOCAL.with(|l| l.load(Ordering::Relaxed));
    // SAFETY: `LOCAL` only ever holds pointers to `'static` records (the statics, or
    // leaked registered ones).
    unsafe { &*rec }
}

fn set_local(rec: &'static ThreadRecord) {
    // Fails only during teardown, after `ReleaseOnExit` (loom) or never (std).
    let _ = LOCAL.try_with(|l| l.store(ptr_of(rec), Ordering::Relaxed));
}

struct ReleaseOnExit(Cell<Option<&'static ThreadRecord>>);

impl Drop for ReleaseOnExit {
    fn drop(&mut self) {
        // loom lets `join` return before the joined thread's thread-locals drop, so this
        // may run after the model ended and its statics (the registry) are gone: under
        // loom a record is never released (the models do not cover record reuse).
        if cfg!(loom) {
            return;
        }
        // Under the registry lock, so no attention request writes `LOCAL` after this.
        let registry = registry().lock();
        let own = self.0.take();
        let _ = OWN.try_with(|o| o.set(None));
        set_local(exiting());
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

/// Gives this thread a record of its own (a free one, or a new one) and points `LOCAL`
/// at it; returns [`exiting`] when the thread is too far into teardown to register.
#[cold]
pub(crate) fn register() -> &'static ThreadRecord {
    // Touching RELEASE registers its destructor, which frees the record at thread exit.
    // A thread whose first pin comes from another thread-local's destructor can no
    // longer register one: it pins the slow way, like any exiting thread.
    if RELEASE.try_with(|_| ()).is_err() {
        set_local(exiting());
        return exiting();
    }
    let mut registry = registry().lock();
    let rec = match registry.iter().find(|r| {
        r.in_use
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }) {
        Some(r) => *r,
        None => {
            let r: &'static ThreadRecord = Box::leak(Box::new(ThreadRecord::empty()));
            registry.push(r);
            r
        }
    };
    OWN.with(|o| o.set(Some(rec)));
    RELEASE.with(|r| r.0.set(Some(rec)));
    set_local(rec);
    let local = LOCAL.with(|l| l as *const AtomicPtr<ThreadRecord> as *mut _);
    rec.local.store(local, Ordering::Relaxed);
    drop(registry);
    rec
}

/// Calls `f` on every slot of every record, under the registry lock (so no record is
/// added meanwhile; records are never removed).
pub(crate) fn for_each_slot(mut f: impl FnMut(&AtomicPtr<()>)) {
    let registry = registry().lock();
    for rec in registry.iter() {
        for h in &rec.hazards {
            f(h);
        }
    }
}

static ATTENTION: OnceLock<fn()> = OnceLock::new();

/// Sets what a thread runs when it finds [`request_attention`]'s mark (once per process;
/// later calls are ignored).
pub fn on_attention(handler: fn()) {
    let _ = ATTENTION.set(handler);
}

/// Asks every registered thread to run the [`on_attention`] handler at its next pin
/// (of any domain), before pinning. A thread inside a pin is asked at its next one.
///
/// Not covered by the loom models (see the crate docs).
pub fn request_attention() {
    let registry = registry().lock();
    for rec in registry.iter() {
        let local = rec.local.load(Ordering::Relaxed);
        if !local.is_null() {
            // SAFETY: `local` is the `LOCAL` of a live thread: it is set when the thread
            // registers and cleared (under the registry lock we hold) before its
            // thread-locals go away.
            unsafe { &*local }.store(ptr_of(attention_record()), Ordering::Relaxed);
        }
    }
}

/// Points this thread back at its own record and runs the attention handler; returns
/// the thread's own record.
#[cold]
#[inline(never)]
pub(crate) fn attend() -> &'static ThreadRecord {
    let own = OWN.with(|o| o.get()).unwrap_or(exiting());
    // Under the registry lock, which every request holds while it marks `LOCAL`: a
    // request that marked it before this is undone here, but it also happens before
    // the handler below runs, which so sees what it was asked for; a request after
    // this leaves its mark for the next pin. Without the lock, a second request
    // marking `LOCAL` between this thread's read of it and this store was lost.
    let registry = registry().lock();
    set_local(own);
    drop(registry);
    if let Some(handler) = ATTENTION.get() {
        handler();
    }
    own
}

global! {
    /// Domain slot indices in use: bit i set = some live domain owns slot i. [`FULL`] is
    /// set for good.
    fn taken() -> &AtomicU64 { AtomicU64::new(1 << FULL) }
}

/// Takes the lowest free slot index, or `None` when every one is owned.
pub(crate) fn take_index() -> Option<usize> {
    let taken_bits = taken();
    let mut taken = taken_bits.load(Ordering::Relaxed);
    loop {
        let free = (!taken).trailing_zeros() as usize;
        if free >= FULL {
            return None;
        }
        match taken_bits.compare_exchange_weak(
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

/// Gives back a slot index taken with [`take_index`]; its slot must be empty in every
/// record.
pub(crate) fn give_back_index(index: usize) {
    taken().fetch_and(!(1 << index), Ordering::AcqRel);
}
