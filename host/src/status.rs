//! What is in memory: every version still loaded or still mapped, and why.

use crate::call_stats::{CallCounters, CallMetrics, CallTotals};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Where a version is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum VersionState {
    /// Part of the generation calls start on now.
    Current,
    /// Retired, waiting for calls, values or tasks that still use it.
    Draining {
        /// Host-tracked tasks of this version still running.
        tasks: usize,
    },
    /// A lifecycle hook of this version overran its deadline and has not returned: the
    /// version was never published (or is being freed) and stays loaded while it runs.
    Stuck {
        /// The hook (`new`, `on_load`, …, `on_free`).
        step: String,
        /// Since when it runs, in milliseconds since the Unix epoch.
        since_ms: u64,
    },
    /// Drained and freed (`on_free` ran, or runs now); its library is closed once no
    /// thread holds per-thread values of it and no thread it started runs.
    Closing {
        /// Threads that still hold thread-local values or pthread-key values of this
        /// version; each destroys them at its next call into the host, or at its exit.
        thread_locals: usize,
        /// Threads this version started (`std::thread::spawn` in plugin code) that still
        /// run; stop them in `on_free`.
        threads: usize,
    },
    /// The library was closed, but the file is still mapped.
    Pinned {
        /// Why, as far as the host can tell.
        reason: String,
    },
}

/// One version still in memory, as [`Status`] lists it.
#[derive(Debug, Clone, Serialize)]
pub struct VersionStatus {
    /// Process-unique id of the loaded version.
    pub id: u64,
    /// Plugin name.
    pub plugin: String,
    /// Crate version.
    pub version: String,
    /// Unique build id from the manifest.
    pub build_id: String,
    /// The file in the plugin directory it was loaded from.
    pub file: PathBuf,
    /// sha256 of the file.
    pub sha256: String,
    /// Threads this version's code started (`std::thread::spawn` in the plugin or a
    /// crate it uses) that still run, whatever its state.
    pub threads: usize,
    /// What this version's code holds on the heap now (its instance, statics, caches
    /// and leaks; see [`HeapStatus`]); `None` when not measured (linked into the host
    /// binary, or built with plugin-api's `no-heap-stats` feature).
    pub heap: Option<HeapStatus>,
    /// Its state.
    #[serde(flatten)]
    pub state: VersionState,
}

/// Heap a version's code allocated and has not freed, counted inside the plugin by the
/// allocation functions `export_plugin!` defines (`hotswap_plugin_api::heap`).
///
/// Counted where the code runs: a block the plugin allocates and the host frees stays
/// counted against the version, a block the host allocates and the plugin frees lowers
/// it, so `bytes` can be below zero. A plugin whose `#[global_allocator]` bypasses
/// `malloc` is not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct HeapStatus {
    /// Usable bytes of the blocks still allocated.
    pub bytes: i64,
    /// How many blocks.
    pub blocks: i64,
}

/// How many of each structure a manager keeps per version or per reload, right now, from
/// [`PluginManager::footprint`](crate::PluginManager::footprint): counted by the manager
/// itself, not by an allocator, so a test can assert that none grows with the number of
/// reloads (`tests/footprint.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Footprint {
    /// Version records kept for `status()`: loaded versions, versions not yet closed,
    /// and closed ones glibc keeps mapped. A record goes when its version is unloaded
    /// (the `unloaded` count and `unloaded_heap` sum keep what is left of it).
    pub records: usize,
    /// Plugin files remembered as already checked (at most 64, oldest forgotten first).
    pub verified_files: usize,
    /// Typed-function symbols registered: one per distinct handle, never per reload.
    pub typed_symbols: usize,
    /// Private copies of plugin files on disk (one per version not yet closed).
    pub private_copies: usize,
    /// Private copies of unloaded versions kept to be reused by a load of the same
    /// checked file instead of copying it again (at most 4, oldest deleted first).
    pub spare_copies: usize,
    /// Layout checks remembered as passed, by file checksum (at most 256, oldest
    /// forgotten first).
    pub checked_layouts: usize,
    /// (plugin, crate version) label sets whose unloaded versions' call counts are kept
    /// for the call metrics (at most 256, oldest forgotten first).
    pub call_metric_labels: usize,
}

/// A snapshot of the host, from [`PluginManager::status`](crate::PluginManager::status).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Id of the current generation (0 before the first load).
    pub generation: u64,
    /// Every version still in memory: current, draining, pinned.
    pub versions: Vec<VersionStatus>,
    /// How readers are fenced: `membarrier`, or `fence (…why…)`.
    pub reclamation: String,
    /// Reloads published since start: generations that replaced another, so the first
    /// load is not counted (one `load_plugins` and one `reload` give 1).
    pub reloads: u64,
    /// Lifecycle hooks that overran their deadline since start (each failed its reload).
    pub hook_timeouts: u64,
    /// Versions unloaded and verified unmapped since start.
    pub unloaded: u64,
    /// Heap the unloaded versions' code left allocated when they unloaded (what they
    /// leaked: statics, caches, forgotten buffers), summed; never reclaimed, as the host
    /// cannot tell a leak from a block still in use elsewhere. Each unload also logs its
    /// own figure (`tracing`, with `plugin`, `version`, `leaked_bytes`, `leaked_blocks`).
    pub unloaded_heap: HeapStatus,
    /// The trust checks in force: strict or permissive plugin directory, and the keys
    /// whose signature is required, if any (see `Builder::trust_mode`).
    pub trust: crate::trust::TrustStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordState {
    Loaded,
    /// A hook overran its deadline (`step`, since `since`) and has not returned yet.
    Stuck {
        step: String,
        since: SystemTime,
    },
    /// Drained: `on_free` and the instance's drop run (since `since`).
    Freeing {
        since: SystemTime,
    },
    /// Freed; the library closes once `Holds::is_clear`.
    Closing,
    Freed {
        still_mapped: bool,
    },
}

/// The host's record of one loaded version; outlives the version until it is unmapped.
#[derive(Debug)]
pub(crate) struct VersionRecord {
    pub id: u64,
    pub name: String,
    pub version: String,
    pub build_id: String,
    pub file: PathBuf,
    /// The private copy that was dlopened; `None` for a plugin linked into the host
    /// binary, which has no file of its own to check in `/proc/self/maps` or delete.
    pub private_path: Option<PathBuf>,
    pub sha256: String,
    #[allow(dead_code)]
    pub loaded_at: SystemTime,
    pub state: Mutex<RecordState>,
    /// What the version holds on threads (thread-locals, keys, threads, tasks).
    pub holds: Arc<crate::threads::Holds>,
    /// Keeps the version's host context alive while its file stays mapped after
    /// `dlclose` (its code could still call back); released once it is unmapped.
    pub keep_alive: Mutex<Option<Box<dyn std::any::Any + Send + Sync>>>,
    /// Where its heap figure comes from (see [`HeapSource`]).
    pub heap: Mutex<HeapSource>,
    /// Its call counters; `None` with call metrics off. Typed slots point into them,
    /// so they live as long as the record, which outlives the version.
    pub calls: Option<CallCounters>,
}

/// Where a record's heap figure comes from.
#[derive(Debug)]
pub(crate) enum HeapSource {
    /// Not counted by this plugin.
    Unmeasured,
    /// The version's `PluginVTable::heap`: valid only while its library is open, which
    /// the reaper guarantees by replacing it with `Final` (under this mutex) before it
    /// closes the library.
    Live(extern "C" fn() -> hotswap_abi::vtable::HeapUsage),
    /// The last figure, read just before the library was closed.
    Final(HeapStatus),
}

impl HeapSource {
    /// A source for a version whose `PluginVTable::heap` is `f`.
    pub fn new(f: extern "C" fn() -> hotswap_abi::vtable::HeapUsage) -> HeapSource {
        if f().measured {
            HeapSource::Live(f)
        } else {
            HeapSource::Unmeasured
        }
    }
}

impl HeapSource {
    fn read(&self) -> Option<HeapStatus> {
        match self {
            HeapSource::Unmeasured => None,
            // The library is open while the source is `Live` (see `HeapSource::Live`).
            HeapSource::Live(f) => {
                let u = f();
                Some(HeapStatus {
                    bytes: u.bytes,
                    blocks: u.blocks,
                })
            }
            HeapSource::Final(h) => Some(*h),
        }
    }
}

impl VersionRecord {
    /// Its heap figure now.
    pub fn heap(&self) -> Option<HeapStatus> {
        self.heap.lock().read()
    }

    /// Reads the heap figure one last time and keeps it: called before the library is
    /// closed, after which the version's `heap` function must not run.
    pub fn seal_heap(&self) -> Option<HeapStatus> {
        let mut source = self.heap.lock();
        let h = source.read();
        if let Some(h) = h {
            *source = HeapSource::Final(h);
        }
        h
    }
}

/// Label sets (plugin, crate version) whose unloaded versions' call counts are kept;
/// past it, the oldest set is forgotten, so a host that loads ever new crate versions
/// keeps bounded memory.
const RETIRED_LABELS: usize = 256;

/// All records of a manager, shared with its reaper.
#[derive(Debug, Default)]
pub(crate) struct Records {
    pub list: Mutex<Vec<Arc<VersionRecord>>>,
    pub unloaded: Mutex<u64>,
    /// Heap left allocated by unloaded versions, summed (`Status::unloaded_heap`).
    pub unloaded_heap: Mutex<HeapStatus>,
    /// One call in this many is timed; `None`: call metrics off.
    pub call_sampling: Option<u32>,
    /// Call counts of unloaded versions, by (plugin, crate version), oldest first.
    /// Locked only under `list`'s lock, so a scrape never counts a version twice.
    retired: Mutex<Vec<(String, String, CallTotals)>>,
    /// Notified (with `list` locked) whenever a version is freed: what a reload waiting
    /// for old versions to unload waits on (`waiting_to_unload_below`).
    unloaded_one: parking_lot::Condvar,
}

impl Records {
    /// Records whose versions count calls, timing one in `call_sampling` (`None`: off).
    pub fn new(call_sampling: Option<u32>) -> Records {
        Records {
            call_sampling,
            ..Records::default()
        }
    }

    /// The call counters of a new version's record.
    pub fn counters(&self) -> Option<CallCounters> {
        self.call_sampling.map(CallCounters::new)
    }

    /// The call figures of every (plugin, crate version): the versions in memory and the
    /// unloaded ones, summed, in order of plugin and version.
    pub fn call_metrics(&self) -> Vec<CallMetrics> {
        let list = self.list.lock();
        let mut sums: BTreeMap<(String, String), CallTotals> = BTreeMap::new();
        for (plugin, version, t) in self.retired.lock().iter() {
            sums.entry((plugin.clone(), version.clone()))
                .or_default()
                .add(t);
        }
        for r in list.iter() {
            if let Some(c) = &r.calls {
                sums.entry((r.name.clone(), r.version.clone()))
                    .or_default()
                    .add(&c.totals());
            }
        }
        drop(list);
        sums.into_iter()
            .map(|((plugin, version), t)| t.to_metrics(&plugin, &version))
            .collect()
    }

    /// Label sets with retired call counts kept (`Footprint::call_metric_labels`).
    pub fn retired_labels(&self) -> usize {
        self.retired.lock().len()
    }

    /// Moves `r`'s call counts to the retired sums (called with `list` locked).
    fn retire_calls(&self, r: &VersionRecord) {
        let Some(c) = &r.calls else { return };
        let totals = c.totals();
        let mut retired = self.retired.lock();
        match retired
            .iter_mut()
            .find(|(p, v, _)| *p == r.name && *v == r.version)
        {
            Some((_, _, t)) => t.add(&totals),
            None => {
                if retired.len() == RETIRED_LABELS {
                    retired.remove(0);
                }
                retired.push((r.name.clone(), r.version.clone(), totals));
            }
        }
    }

    pub fn add(&self, r: Arc<VersionRecord>) {
        self.list.lock().push(r);
    }

    /// Versions in memory and not yet freed, `live` of them (the current generation's)
    /// aside: the old versions still waiting to unload. Waits until there are fewer than
    /// `limit`, or `timeout`, and returns how many there are then.
    pub fn waiting_to_unload_below(&self, limit: usize, live: usize, timeout: Duration) -> usize {
        let deadline = crate::deadline::after(timeout);
        let mut list = self.list.lock();
        loop {
            let waiting = list
                .iter()
                .filter(|r| !matches!(*r.state.lock(), RecordState::Freed { .. }))
                .count()
                .saturating_sub(live);
            if waiting < limit || std::time::Instant::now() >= deadline {
                return waiting;
            }
            self.unloaded_one.wait_until(&mut list, deadline);
        }
    }

    /// Called by the reaper after closing a library.
    pub fn freed(&self, r: &Arc<VersionRecord>, still_mapped: bool) {
        *r.state.lock() = RecordState::Freed { still_mapped };
        if !still_mapped {
            *r.keep_alive.lock() = None;
            *self.unloaded.lock() += 1;
            if let HeapSource::Final(h) = &*r.heap.lock() {
                let mut sum = self.unloaded_heap.lock();
                sum.bytes += h.bytes.max(0);
                sum.blocks += h.blocks.max(0);
            }
            let mut list = self.list.lock();
            self.retire_calls(r);
            list.retain(|x| !Arc::ptr_eq(x, r));
        }
        // Taken for the notification, so that a waiter between its count and its wait
        // cannot miss it.
        let _list = self.list.lock();
        self.unloaded_one.notify_all();
    }
}

/// Why glibc may keep a closed library mapped.
pub(crate) const PINNED_REASON: &str = "dlclose did not unmap it: glibc still holds it (a thread-local destructor registered while its thread was already exiting, which glibc runs when that thread ends, or another dlopen handle to the same file)";
