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
//! Nesting: a thread has [`SLOTS`] slots, filled from 0 upwards and emptied from the top.
//! The fast path is the outermost call: slot 0 is empty, so it takes slot 0 and reads
//! no other bookkeeping. A pin taken while slot 0 is in use (a nested call) goes the
//! cold way: if the innermost pin on this thread is of the same domain, it reuses that
//! generation (so a call that started on generation N stays on N in every nested call);
//! otherwise it takes the next slot. When slots run out, or while the thread is being
//! torn down, pins fall back to cloning an `Arc` under a mutex: slower, equally safe.

use parking_lot::Mutex;
use std::cell::Cell;
use std::sync::atomic::{compiler_fence, fence, AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Hazard slots per thread (nesting depth across different managers).
pub const SLOTS: usize = 4;

/// One thread's hazard slots. Leaked once made, reused after its thread exits.
struct ThreadRecord {
    hazards: [AtomicPtr<()>; SLOTS],
    /// Which domain each slot belongs to; read and written only by the owning thread,
    /// and read only on the (cold) nested path.
    owners: [AtomicUsize; SLOTS],
    in_use: AtomicBool,
}

static REGISTRY: Mutex<Vec<&'static ThreadRecord>> = Mutex::new(Vec::new());

/// A thread's record, or null before its first pin, or `EXITING` during teardown.
const EXITING: *const ThreadRecord = std::ptr::dangling::<ThreadRecord>();

thread_local! {
    // `const` and drop-free, so reading it compiles to one thread-pointer-relative load.
    static LOCAL: Cell<*const ThreadRecord> = const { Cell::new(std::ptr::null()) };
    static RELEASE: ReleaseOnExit = const { ReleaseOnExit };
}

struct ReleaseOnExit;

impl Drop for ReleaseOnExit {
    fn drop(&mut self) {
        let rec = LOCAL.with(|l| l.replace(EXITING));
        if !rec.is_null() && rec != EXITING {
            // SAFETY: non-null, non-EXITING values of LOCAL are leaked `&'static` records.
            let rec = unsafe { &*rec };
            rec.in_use.store(false, Ordering::Release);
        }
    }
}

#[cold]
fn register() -> *const ThreadRecord {
    let mut registry = REGISTRY.lock();
    let rec = match registry.iter().find(|r| {
        r.in_use
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }) {
        Some(r) => *r,
        None => {
            let r: &'static ThreadRecord = Box::leak(Box::new(ThreadRecord {
                hazards: Default::default(),
                owners: Default::default(),
                in_use: AtomicBool::new(true),
            }));
            registry.push(r);
            r
        }
    };
    drop(registry);
    // Touching RELEASE registers its destructor, which frees the record at thread exit.
    RELEASE.with(|_| ());
    LOCAL.with(|l| l.set(rec));
    rec
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

/// Every pointer some thread's slots hold right now, or `None` when that cannot be
/// known (then the caller frees nothing).
pub fn protected() -> Option<Vec<*const ()>> {
    if !heavy_fence() {
        return None;
    }
    let registry = REGISTRY.lock();
    let mut out = Vec::new();
    for rec in registry.iter() {
        for h in &rec.hazards {
            let p = h.load(Ordering::Acquire);
            if !p.is_null() {
                out.push(p as *const ());
            }
        }
    }
    Some(out)
}

static NEXT_DOMAIN: AtomicUsize = AtomicUsize::new(1);

/// A published `Arc<T>` that readers use without touching shared cache lines.
///
/// The domain owns one strong count of the published value through the raw pointer;
/// [`Domain::publish`] hands the previous pointer back to the caller, who must pass it
/// to [`free_unprotected`] (the reaper does) instead of dropping it.
pub struct Domain<T> {
    current: AtomicPtr<T>,
    /// Readers need only a compiler fence (membarrier is registered). Cached here, on
    /// the same cache line as `current`, so the fast path reads no other global.
    light: bool,
    /// The same value as `current`, for the slow path.
    slow: Mutex<Arc<T>>,
    id: usize,
}

/// A retired pointer, waiting until no reader holds it.
pub struct Retired<T>(*const T);

// SAFETY: a Retired owns one strong count of an `Arc<T>`; moving it to another thread
// is like moving the Arc, which is Send when T: Send + Sync.
unsafe impl<T: Send + Sync> Send for Retired<T> {}

impl<T> Retired<T> {
    /// The address, to compare with [`protected`].
    pub fn addr(&self) -> *const () {
        self.0 as *const ()
    }

    /// Drops the strong count. Call only once no slot holds [`Retired::addr`] (after
    /// [`protected`] said so).
    pub fn free(self) {
        // SAFETY: the pointer came from `Arc::into_raw` in `publish`/`new` and this
        // Retired is its only owner; the caller checked no reader holds it.
        drop(unsafe { Arc::from_raw(self.0) });
    }
}

impl<T> Domain<T> {
    /// A domain publishing `value`.
    pub fn new(value: Arc<T>) -> Domain<T> {
        init();
        Domain {
            current: AtomicPtr::new(Arc::into_raw(value.clone()) as *mut T),
            light: MEMBARRIER.load(Ordering::SeqCst),
            slow: Mutex::new(value),
            id: NEXT_DOMAIN.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Publishes `value`; calls that start from now on see it. Returns the previous
    /// value, which readers may still be using.
    pub fn publish(&self, value: Arc<T>) -> Retired<T> {
        let mut slow = self.slow.lock();
        *slow = value.clone();
        let old = self
            .current
            .swap(Arc::into_raw(value) as *mut T, Ordering::AcqRel);
        Retired(old)
    }

    /// An `Arc` of the current value (takes a lock: not for the hot path).
    pub fn load_arc(&self) -> Arc<T> {
        self.slow.lock().clone()
    }

    /// Runs `f` on the current value, which stays alive until `f` returns.
    #[inline(always)]
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        let rec = LOCAL.with(|l| l.get());
        if rec.is_null() || rec == EXITING {
            return self.with_cold(rec, f);
        }
        // SAFETY: non-null, non-EXITING values of LOCAL are leaked `&'static` records
        // owned by this thread.
        let rec = unsafe { &*rec };
        if !rec.hazards[0].load(Ordering::Relaxed).is_null() {
            return self.with_nested(rec, f);
        }
        self.with_slot(rec, 0, f)
    }

    /// Pins into slot `i` (empty, and every slot below it full) and runs `f`.
    #[inline(always)]
    fn with_slot<R>(&self, rec: &'static ThreadRecord, i: usize, f: impl FnOnce(&T) -> R) -> R {
        let slot = &rec.hazards[i];
        let mut p = self.current.load(Ordering::Acquire);
        loop {
            slot.store(p as *mut (), Ordering::Relaxed);
            if self.light {
                compiler_fence(Ordering::SeqCst);
            } else {
                fence(Ordering::SeqCst);
            }
            let q = self.current.load(Ordering::Acquire);
            if q == p {
                break;
            }
            p = q;
        }
        rec.owners[i].store(self.id, Ordering::Relaxed);
        let _unpin = Unpin(slot);
        // SAFETY: `p` was published and is held in our slot, validated against CURRENT
        // after the fence; the reclaimer frees only pointers no slot holds (module docs).
        f(unsafe { &*p })
    }

    #[cold]
    #[inline(never)]
    fn with_nested<R>(&self, rec: &'static ThreadRecord, f: impl FnOnce(&T) -> R) -> R {
        // Slots fill upwards and empty from the top, so the full ones are 0..top.
        let top = (0..SLOTS)
            .take_while(|&i| !rec.hazards[i].load(Ordering::Relaxed).is_null())
            .count();
        if rec.owners[top - 1].load(Ordering::Relaxed) == self.id {
            let p = rec.hazards[top - 1].load(Ordering::Relaxed) as *const T;
            // SAFETY: the outer pin on this thread holds `p` (a `T` of this domain, as its
            // owner says) in its slot until it returns, which is after we return.
            return f(unsafe { &*p });
        }
        if top == SLOTS {
            return self.with_arc(f);
        }
        self.with_slot(rec, top, f)
    }

    #[cold]
    #[inline(never)]
    fn with_cold<R>(&self, rec: *const ThreadRecord, f: impl FnOnce(&T) -> R) -> R {
        if rec.is_null() {
            register();
            self.with(f)
        } else {
            self.with_arc(f)
        }
    }

    #[cold]
    #[inline(never)]
    fn with_arc<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        let value = self.load_arc();
        f(&value)
    }
}

impl<T> Drop for Domain<T> {
    fn drop(&mut self) {
        // Only the owner of the domain drops it; no reader can still be inside `with`
        // on it (they borrow the domain), so the published count can be released.
        let p = *self.current.get_mut();
        // SAFETY: `p` came from `Arc::into_raw` and the domain owns that count.
        drop(unsafe { Arc::from_raw(p) });
    }
}

struct Unpin(&'static AtomicPtr<()>);

impl Drop for Unpin {
    #[inline(always)]
    fn drop(&mut self) {
        self.0.store(std::ptr::null_mut(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    struct Tracked {
        value: u64,
        alive: Arc<AtomicU64>,
    }
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.alive.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn reclaim(pending: &mut Vec<Retired<Tracked>>) {
        let Some(held) = protected() else { return };
        let (keep, free): (Vec<_>, Vec<_>) =
            pending.drain(..).partition(|r| held.contains(&r.addr()));
        *pending = keep;
        free.into_iter().for_each(Retired::free);
    }

    #[test]
    fn readers_never_see_freed_values() {
        let alive = Arc::new(AtomicU64::new(1));
        let make = |v| {
            alive.fetch_add(1, Ordering::SeqCst);
            Arc::new(Tracked {
                value: v,
                alive: alive.clone(),
            })
        };
        alive.fetch_sub(1, Ordering::SeqCst);
        let domain = Arc::new(Domain::new(make(0)));
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
                            let inner = domain.with(|u| u.value);
                            assert_eq!(inner, t.value);
                            t.value
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
            pending.push(domain.publish(make(i)));
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
}
