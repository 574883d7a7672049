//! Call metrics: how many calls each loaded version served (typed, async, by name,
//! live), how many of them failed or panicked, and a sampled latency histogram.
//!
//! Why striped by thread: a typed call costs about as much as a raw `extern "C"` call,
//! so counting it must not write a cache line another core writes (one shared atomic
//! counter would make every calling core fight for it). Each version's counters are one
//! cache line per thread slot; a thread takes a slot of its own the first time it
//! counts (given back when it exits, to the next thread that starts) and writes only
//! that line, with a plain load and store. Threads beyond [`OWNED`] at once share one
//! more line through atomic adds. A scrape sums the lines; nothing is counted unless
//! metrics are on ([`Builder::call_metrics`](crate::Builder::call_metrics)).
//!
//! Why sampled: reading a clock costs ten times a typed call, so one call in
//! `sample_every` (per thread and version, the first one included) is timed, and the
//! histogram counts those. A batch (`PinnedCalls`) tallies its calls in a local and
//! counts them when it calls another version or ends: untimed, and no memory written
//! per call.

use parking_lot::Mutex;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Thread slots with a line of their own in every version's counters.
const OWNED: usize = 64;
/// A thread without a slot of its own: counts on the shared line.
const SHARED: u16 = OWNED as u16;
/// A thread that has not counted yet.
const UNASSIGNED: u16 = u16::MAX;

/// Upper bounds (seconds) of the call-latency histogram buckets; `+Inf` is implied.
pub const LATENCY_BUCKETS: [f64; 10] = [1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, 60.0];

/// How a call reached the version: a label of the call metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Kind {
    Typed = 0,
    Async = 1,
    ByName = 2,
    Live = 3,
}

/// One thread slot's line: calls by kind.
#[repr(align(64))]
struct Line {
    calls: [AtomicU64; 4],
}

#[allow(clippy::declare_interior_mutable_const)]
const LINE: Line = Line {
    calls: [const { AtomicU64::new(0) }; 4],
};

/// The counters of one version.
#[repr(C)]
pub(crate) struct CallCounters {
    /// First, and inline: a count is one load of the slot's pointer away.
    lines: [Line; OWNED + 1],
    failures: AtomicU64,
    panics: AtomicU64,
    /// Sampled calls per bucket of `LATENCY_BUCKETS` (not cumulative), and above.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
    /// `sample_every - 1`, `sample_every` a power of two.
    mask: u64,
}

impl std::fmt::Debug for CallCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallCounters")
            .field("totals", &self.totals())
            .finish()
    }
}

impl CallCounters {
    /// Counters that time one call in `sample_every` (rounded up to a power of two).
    pub fn new(sample_every: u32) -> CallCounters {
        CallCounters {
            lines: [LINE; OWNED + 1],
            failures: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            buckets: [const { AtomicU64::new(0) }; LATENCY_BUCKETS.len() + 1],
            sum_ns: AtomicU64::new(0),
            // In u64: `u32::next_power_of_two` overflows above 2^31.
            mask: u64::from(sample_every.max(1)).next_power_of_two() - 1,
        }
    }

    /// Counts a call of `kind`; true when this one is to be timed ([`Self::timed`]).
    #[inline(always)]
    pub fn count(&self, kind: Kind) -> bool {
        let slot = SLOT.with(Cell::get) as usize;
        if slot < OWNED {
            // Only this thread writes this line while it holds the slot (the slot's
            // hand-over goes through `FREE`'s lock, which orders the two owners).
            let c = &self.lines[slot].calls[kind as usize];
            let n = c.load(Relaxed);
            c.store(n.wrapping_add(1), Relaxed);
            return n & self.mask == 0;
        }
        self.count_shared(kind)
    }

    #[cold]
    #[inline(never)]
    fn count_shared(&self, kind: Kind) -> bool {
        let slot = usize::from(assign());
        if slot < OWNED {
            return self.count(kind);
        }
        let n = self.lines[OWNED].calls[kind as usize].fetch_add(1, Relaxed);
        n & self.mask == 0
    }

    /// Counts `n` calls of `kind` at once (a batch's), none of them timed.
    pub fn add(&self, kind: Kind, n: u64) {
        let slot = usize::from(assign());
        let c = &self.lines[slot.min(OWNED)].calls[kind as usize];
        if slot < OWNED {
            c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
        } else {
            c.fetch_add(n, Relaxed);
        }
    }

    /// Runs the call `f` (one [`Self::count`] chose to time) and records how long it took.
    #[inline(always)]
    pub fn time<T>(&self, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let r = f();
        self.timed(start.elapsed());
        r
    }

    /// Records the duration of a timed call.
    #[cold]
    #[inline(never)]
    fn timed(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// Records a call that returned an error (`panicked`: a panic caught in the plugin).
    #[cold]
    pub fn failed(&self, panicked: bool) {
        self.failures.fetch_add(1, Relaxed);
        if panicked {
            self.panics.fetch_add(1, Relaxed);
        }
    }

    /// The counts so far.
    pub fn totals(&self) -> CallTotals {
        let mut t = CallTotals::default();
        for line in self.lines.iter() {
            for (sum, c) in t.calls.iter_mut().zip(&line.calls) {
                *sum = sum.wrapping_add(c.load(Relaxed));
            }
        }
        t.failures = self.failures.load(Relaxed);
        t.panics = self.panics.load(Relaxed);
        for (sum, c) in t.buckets.iter_mut().zip(&self.buckets) {
            *sum = c.load(Relaxed);
        }
        t.sum_ns = self.sum_ns.load(Relaxed);
        t
    }
}

/// Summed counters of one or more versions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CallTotals {
    pub calls: [u64; 4],
    pub failures: u64,
    pub panics: u64,
    pub buckets: [u64; LATENCY_BUCKETS.len() + 1],
    pub sum_ns: u64,
}

impl CallTotals {
    /// Adds `other` to these.
    pub fn add(&mut self, other: &CallTotals) {
        for (a, b) in self.calls.iter_mut().zip(&other.calls) {
            *a = a.wrapping_add(*b);
        }
        self.failures = self.failures.wrapping_add(other.failures);
        self.panics = self.panics.wrapping_add(other.panics);
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a = a.wrapping_add(*b);
        }
        self.sum_ns = self.sum_ns.wrapping_add(other.sum_ns);
    }

    /// As the public figures of `plugin` at `version`.
    pub fn to_metrics(self, plugin: &str, version: &str) -> CallMetrics {
        let mut cumulative = 0u64;
        let buckets = LATENCY_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(&bound, &n)| {
                cumulative += n;
                (bound, cumulative)
            })
            .collect();
        CallMetrics {
            plugin: plugin.to_owned(),
            version: version.to_owned(),
            typed_calls: self.calls[Kind::Typed as usize],
            async_calls: self.calls[Kind::Async as usize],
            by_name_calls: self.calls[Kind::ByName as usize],
            live_calls: self.calls[Kind::Live as usize],
            failures: self.failures,
            panics: self.panics,
            latency: Latency {
                buckets,
                count: self.buckets.iter().sum(),
                sum_seconds: self.sum_ns as f64 / 1e9,
            },
        }
    }
}

/// The call figures of one plugin version (all its loads with that crate version, the
/// unloaded ones included), from
/// [`PluginManager::call_metrics`](crate::PluginManager::call_metrics).
///
/// Calls that reached no version (the plugin or function missing from the generation)
/// are not counted: they fail before any version is chosen.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CallMetrics {
    /// Plugin name.
    pub plugin: String,
    /// Crate version.
    pub version: String,
    /// Calls through typed handles ([`Func`](crate::Func), interfaces, batches).
    pub typed_calls: u64,
    /// Calls of async functions ([`AsyncFunc`](crate::AsyncFunc)), counted when they start.
    pub async_calls: u64,
    /// Calls by name ([`PluginManager::invoke_func`](crate::PluginManager::invoke_func)
    /// and its `invoke_each` forms).
    pub by_name_calls: u64,
    /// Calls of live functions ([`PluginManager::call_live`](crate::PluginManager::call_live)).
    pub live_calls: u64,
    /// Calls that returned a [`CallError`](crate::CallError) from the version (panics
    /// included); a plugin's own `Err` value is a success here.
    pub failures: u64,
    /// Those failures that were panics caught in the plugin.
    pub panics: u64,
    /// Wall time of the sampled calls: synchronous ones (typed, by name, live), not
    /// those of a batch ([`PluginManager::pinned`](crate::PluginManager::pinned)).
    pub latency: Latency,
}

/// A histogram of sampled call durations.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Latency {
    /// `(upper bound in seconds, calls at or under it)`, cumulative, for each bound of
    /// [`LATENCY_BUCKETS`]; `count` is the `+Inf` bucket.
    pub buckets: Vec<(f64, u64)>,
    /// Calls timed.
    pub count: u64,
    /// Their summed duration, in seconds.
    pub sum_seconds: f64,
}

std::thread_local! {
    /// This thread's slot: `UNASSIGNED`, `SHARED`, or an owned slot below `OWNED`.
    /// `const` and without a destructor, so it reads in one load, even while the
    /// thread's other thread-locals are destroyed.
    static SLOT: Cell<u16> = const { Cell::new(UNASSIGNED) };
    /// Gives the owned slot back when the thread exits.
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

/// Slots given back by exited threads.
static FREE: Mutex<Vec<u16>> = parking_lot::const_mutex(Vec::new());
/// Slots never handed out yet start here.
static NEXT: AtomicU16 = AtomicU16::new(0);

/// An owned slot, given back on drop (the thread's exit).
struct Held(u16);

impl Drop for Held {
    fn drop(&mut self) {
        // From here on this thread counts on the shared line, so the slot's next owner
        // is the only writer of its lines.
        let _ = SLOT.try_with(|s| s.set(SHARED));
        FREE.lock().push(self.0);
    }
}

/// Gives this thread a slot if it has none and one is free: its own, or `SHARED`.
fn assign() -> u16 {
    let now = SLOT.with(Cell::get);
    if now != UNASSIGNED {
        return now;
    }
    let slot = FREE.lock().pop().or_else(|| {
        NEXT.fetch_update(Relaxed, Relaxed, |n| {
            (usize::from(n) < OWNED).then_some(n + 1)
        })
        .ok()
    });
    let Some(slot) = slot else {
        SLOT.with(|s| s.set(SHARED));
        return SHARED;
    };
    // A thread already tearing down its thread-locals cannot hold a slot to give back.
    let held = HELD
        .try_with(|h| *h.borrow_mut() = Some(Held(slot)))
        .is_ok();
    if !held {
        FREE.lock().push(slot);
        SLOT.with(|s| s.set(SHARED));
        return SHARED;
    }
    SLOT.with(|s| s.set(slot));
    slot
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_all_arrive() {
        let c = std::sync::Arc::new(CallCounters::new(1024));
        // More threads than owned slots, several at once, and slots handed over.
        let threads: Vec<_> = (0..(OWNED + 16))
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.count(Kind::Typed);
                    }
                    c.count(Kind::Live);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let t = c.totals();
        assert_eq!(t.calls[Kind::Typed as usize], (OWNED as u64 + 16) * 1000);
        assert_eq!(t.calls[Kind::Live as usize], OWNED as u64 + 16);
    }

    #[test]
    fn one_call_in_sample_every_is_timed_the_first_included() {
        let c = CallCounters::new(100); // rounded up to 128
        let timed = std::thread::spawn(move || (0..1024).filter(|_| c.count(Kind::ByName)).count())
            .join()
            .unwrap();
        assert_eq!(timed, 8);
    }

    #[test]
    fn durations_fall_in_their_bucket() {
        let c = CallCounters::new(1);
        c.timed(Duration::from_nanos(50));
        c.timed(Duration::from_micros(50));
        c.timed(Duration::from_secs(100));
        let m = c.totals().to_metrics("p", "1.0.0");
        assert_eq!(m.latency.count, 3);
        assert_eq!(m.latency.buckets[0], (1e-7, 1));
        assert_eq!(m.latency.buckets[3], (1e-4, 2));
        assert_eq!(m.latency.buckets.last().unwrap().1, 2);
    }
}
