//! The reaper: one background thread per manager that frees what calls no longer use.
//!
//! It receives retired generations, dropped versions and released libraries:
//!
//! 1. A generation is freed once no thread's hazard slot holds it (see `hotswap_reclaim`);
//!    freeing it drops its versions.
//! 2. A version nobody holds comes back as a [`FreeJob`]: after the free delay it is
//!    marked drained (its per-thread state may now be destroyed at call boundaries,
//!    see `threads`), and a short-lived thread runs its `on_free`, frees its export and
//!    drops its instance. That thread belongs to the version: what the hooks leave on
//!    it dies with it, and the library waits for it.
//! 3. A library nobody holds comes back as a [`CloseJob`]: once no thread holds
//!    per-thread state of it and no thread it started runs, its keys are deleted, it
//!    is closed, `/proc/self/maps` is checked, and the private copy deleted. A file
//!    still mapped keeps its host context alive (its code could still call back).
//!
//! Nothing of this runs on a caller's thread, and the reaper never waits on plugin code.

use crate::generation::Generation;
use crate::library::{CloseJob, ExportObj, FreeJob, Job, Jobs, VtPtr};
use crate::maps::Mapped;
use crate::status::{RecordState, Records, VersionRecord};
use crate::threads::{self, Role};
use abi_stable::std_types::RResult;
use hotswap_abi::vtable::InstancePtr;
use hotswap_reclaim::Retired;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub(crate) enum Msg {
    Retire(Retired<Generation>),
    Job(Job),
    WhenIdle(mpsc::Sender<()>),
}

/// Sends work to a manager's reaper.
#[derive(Clone)]
pub(crate) struct ReaperHandle {
    tx: Arc<mpsc::Sender<Msg>>,
}

impl ReaperHandle {
    pub fn retire(&self, g: Retired<Generation>) {
        // If the reaper is gone (process teardown) the message is dropped, and dropping a
        // `Retired` leaks its value: the only safe choice, as a reader may still use it.
        let _ = self.tx.send(Msg::Retire(g));
    }

    /// The inbox versions and libraries send their jobs to.
    pub fn jobs(&self) -> Jobs {
        let tx = self.tx.clone();
        Jobs::new(move |job| {
            tx.send(Msg::Job(job))
                .map_err(|mpsc::SendError(msg)| match msg {
                    Msg::Job(job) => job,
                    // Only a job was sent.
                    _ => Job::Poke,
                })
        })
    }

    /// Blocks until the reaper has nothing left to free by itself, or `timeout`.
    /// Libraries waiting for threads that must call again or exit (their thread-locals)
    /// or for threads a plugin started do not count: those wait for the plugin's
    /// threads, not for the reaper.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Msg::WhenIdle(tx)).is_err() {
            return true;
        }
        rx.recv_timeout(timeout).is_ok()
    }
}

/// Starts a reaper thread.
pub(crate) fn start(
    records: Arc<Records>,
    free_delay: Duration,
    dispatch: Option<tracing::Dispatch>,
) -> ReaperHandle {
    let (tx, rx) = mpsc::channel();
    let freeing = Arc::new(AtomicUsize::new(0));
    let handle = ReaperHandle { tx: Arc::new(tx) };
    // Weak: a reaper holding its own inbox's sender would never see it disconnect.
    let inbox = Arc::downgrade(&handle.tx);
    std::thread::Builder::new()
        .name("hotswap-reaper".into())
        .spawn(move || {
            let mut reaper = Reaper {
                records,
                free_delay,
                freeing,
                fresh: false,
                inbox,
                generations: Vec::new(),
                jobs: Vec::new(),
                closing: Vec::new(),
                waiters: Vec::new(),
            };
            crate::contain::with_logger(dispatch.as_ref(), || reaper.run(rx))
        })
        .expect("cannot start the hotswap reaper thread");
    handle
}

struct Reaper {
    records: Arc<Records>,
    free_delay: Duration,
    freeing: Arc<AtomicUsize>,
    /// A message came in since the last `step`: there may be work to do now.
    fresh: bool,
    /// Its own inbox, for an `on_free` thread to wake it when it is done.
    inbox: std::sync::Weak<mpsc::Sender<Msg>>,
    generations: Vec<Retired<Generation>>,
    jobs: Vec<(Instant, FreeJob)>,
    closing: Vec<CloseJob>,
    waiters: Vec<mpsc::Sender<()>>,
}

/// What the reaper's loop carries from one round to the next.
struct Round {
    /// How long to wait for a message while work waits on something slow.
    backoff: Duration,
    /// The inbox is gone (the manager was dropped): finish the work left, then stop.
    disconnected: bool,
}

impl Reaper {
    fn take(&mut self, msg: Msg) {
        self.fresh = true;
        match msg {
            Msg::Retire(g) => self.generations.push(g),
            Msg::Job(Job::Free(job)) => self
                .jobs
                .push((crate::deadline::after(self.free_delay), *job)),
            Msg::Job(Job::Close(job)) => self.closing.push(*job),
            Msg::Job(Job::Poke) => {}
            Msg::WhenIdle(w) => self.waiters.push(w),
        }
    }

    fn drain(&mut self, rx: &mpsc::Receiver<Msg>) {
        while let Ok(msg) = rx.try_recv() {
            self.take(msg);
        }
    }

    /// Nothing left that the reaper or the host's own short-lived threads will finish.
    fn idle(&mut self, rx: &mpsc::Receiver<Msg>) -> bool {
        if self.freeing.load(Ordering::SeqCst) != 0 {
            return false;
        }
        // An `on_free` thread hands its library back before it lowers `freeing`: look
        // once more, so that library is seen.
        self.drain(rx);
        self.generations.is_empty()
            && self.jobs.is_empty()
            && self.closing.iter().all(|j| {
                let holds = &j.ctx.holds;
                !holds.is_clear() && !holds.settling()
            })
    }

    fn run(&mut self, rx: mpsc::Receiver<Msg>) {
        let mut round = Round {
            backoff: Duration::from_millis(1),
            disconnected: false,
        };
        // A panic here is host code's or the user's subscriber's (an event the reaper
        // logs): the round ends, the reaper goes on. What that round held in hand is
        // dropped: a library only ever closes through `close` (`Closable`), and a
        // version's parts are leaked, so nothing is freed early; at worst one version
        // stays in memory.
        loop {
            match crate::contain::contain("the reaper's round", || self.round(&rx, &mut round)) {
                Some(true) => return,
                Some(false) => {}
                None => round.backoff = Duration::from_millis(1),
            }
        }
    }

    /// One round: the work at hand, then waiting for more. True when the reaper is done
    /// for good (its inbox is gone and nothing is left).
    fn round(&mut self, rx: &mpsc::Receiver<Msg>, round: &mut Round) -> bool {
        let backoff = &mut round.backoff;
        self.drain(rx);
        self.step(backoff);
        self.drain(rx);
        if self.idle(rx) {
            for w in self.waiters.drain(..) {
                let _ = w.send(());
            }
        }
        let nothing = self.generations.is_empty()
            && self.jobs.is_empty()
            && self.closing.is_empty()
            && self.freeing.load(Ordering::SeqCst) == 0;
        if nothing && round.disconnected {
            return true;
        }
        // A message taken after the step (a library handed back, already clear)
        // is work for now: sleeping first would delay it by a whole backoff, and
        // a `collect` waiting for idleness with it.
        if self.fresh {
            return false;
        }
        let msg = if nothing {
            rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        } else {
            let until_due = self
                .jobs
                .iter()
                .map(|(due, _)| due.saturating_duration_since(Instant::now()))
                .min()
                .unwrap_or(Duration::MAX);
            let wait = until_due.min(*backoff);
            if round.disconnected {
                std::thread::sleep(wait);
                Err(mpsc::RecvTimeoutError::Timeout)
            } else {
                rx.recv_timeout(wait)
            }
        };
        match msg {
            Ok(msg) => {
                if matches!(msg, Msg::Retire(_)) {
                    *backoff = Duration::from_millis(1);
                }
                self.take(msg);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Nothing arrived: whatever we wait on is slow; look less often.
                *backoff = (*backoff * 2).min(Duration::from_secs(1));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => round.disconnected = true,
        }
        false
    }

    /// One round: free generations no reader holds, start due frees, close what is clear.
    fn step(&mut self, backoff: &mut Duration) {
        self.fresh = false;
        if !self.generations.is_empty() {
            // Dropping a generation drops its versions: FreeJobs come back to us.
            match hotswap_reclaim::reclaim(&mut self.generations) {
                Ok(freed) if freed > 0 => *backoff = Duration::from_millis(1),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "membarrier failed after registration; deferring reclamation")
                }
            }
        }
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self.jobs.drain(..).partition(|(t, _)| *t <= now);
        self.jobs = later;
        // Each job on its own: a panic in one (host code) loses only that one's parts,
        // not the round's other jobs'.
        for (_, job) in due {
            crate::contain::contain("starting a version's free", || self.start_free(job));
        }
        let (clear, waiting): (Vec<_>, Vec<_>) =
            self.closing.drain(..).partition(|j| j.ctx.holds.is_clear());
        self.closing = waiting;
        for job in clear {
            crate::contain::contain("closing a library", || self.close(job));
        }
    }

    /// The version is drained: its per-thread values may go, and its `on_free` runs on a
    /// thread of its own.
    fn start_free(&mut self, job: FreeJob) {
        let FreeJob {
            record,
            vtable,
            instance,
            lib,
            ctx,
            export,
            providers,
        } = job;
        lib.keep_providers(providers);
        ctx.holds.drain();
        *record.state.lock() = RecordState::Freeing {
            since: SystemTime::now(),
        };
        ctx.holds.add_thread(Role::Cleanup);
        self.freeing.fetch_add(1, Ordering::SeqCst);
        let freeing = self.freeing.clone();
        let inbox = self.inbox.upgrade();
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        let holds = ctx.holds.clone();
        let parts = Parts {
            vtable,
            instance,
            export,
        };
        let work = move |adopted: bool| {
            let parts = parts;
            if adopted {
                threads::transient();
            }
            // Inline on the reaper (no thread to be had), the reaper becomes the
            // version's: its hooks' per-thread state never runs under them, and the
            // library stays open for good (safe; thread starts failing is rare).
            threads::adopt(holds, Role::Cleanup);
            // A panic here is the subscriber's (an event of `free_instance`): the
            // version's state moves on all the same, so the reaper never waits for it.
            crate::contain::contain("freeing a version", || {
                crate::contain::with_logger(Some(&dispatch), || free_instance(&record, parts))
            });
            ctx.set_freed();
            {
                let mut state = record.state.lock();
                if matches!(*state, RecordState::Freeing { .. }) {
                    *state = RecordState::Closing;
                }
            }
            // Possibly the last holder: the library goes to the reaper (before `freeing`
            // drops, see `Reaper::idle`).
            drop(lib);
            drop(ctx);
            freeing.fetch_sub(1, Ordering::SeqCst);
            // The reaper may be asleep, waiting for `freeing` to drop (a `collect`
            // waiting for it to be idle): without this, it would see it only at its next
            // backoff, up to a second later.
            if let Some(inbox) = inbox {
                let _ = inbox.send(Msg::Job(Job::Poke));
            }
        };
        let work = std::sync::Arc::new(parking_lot::Mutex::new(Some(work)));
        let on_thread = work.clone();
        let spawned = std::thread::Builder::new()
            .name("hotswap-free".into())
            .spawn(move || {
                if let Some(w) = on_thread.lock().take() {
                    w(true)
                }
            });
        if spawned.is_err() {
            // No thread to be had: free here (see `work`).
            if let Some(w) = work.lock().take() {
                w(false)
            }
        }
    }

    fn close(&mut self, job: CloseJob) {
        let CloseJob {
            library,
            record,
            ctx,
            providers,
            keep_as,
        } = job;
        // No thread has a value of the version's keys left: deleting them loses no
        // destructor, and glibc never calls one into unmapped code.
        ctx.holds.delete_keys();
        // Nor does a fork run one of its fork handlers from here on.
        crate::atfork::forget(Arc::as_ptr(&ctx) as usize);
        // The last figure of what the version's code left on the heap, while its code
        // is still there to be asked; from here `status()` reports this one.
        let leaked = record.seal_heap();
        // What to log, said once the bookkeeping is done: the subscriber is the user's
        // code, and a panic in it must not leave the record or the providers behind.
        let mut notes: Vec<String> = Vec::new();
        let still_mapped = match library {
            Some(lib) => {
                if let Err(e) = lib.close() {
                    notes.push(format!("dlclose failed: {e}"));
                }
                match &record.private_path {
                    Some(path) => {
                        let mapped = crate::maps::how_mapped(path);
                        match (mapped, keep_as) {
                            // Closed and surely unmapped: a later load of the same file
                            // may reuse the copy (see `spare`).
                            (Some(Mapped::No), Some(k)) => {
                                if let Err(why) = k.spares.put(k.source, &k.name, path) {
                                    notes.push(why);
                                }
                            }
                            _ => {
                                if let Err(e) = std::fs::remove_file(path) {
                                    notes.push(format!("cannot delete {}: {e}", path.display()));
                                }
                            }
                        }
                        if mapped == Some(Mapped::DataOnly) {
                            // Its code is gone, so nothing of it runs again: unloaded.
                            notes.push(DATA_ONLY.to_owned());
                        }
                        mapped == Some(Mapped::Code)
                    }
                    None => false,
                }
            }
            None => {
                // Linked statically: every plugin shares the host's one copy of
                // hotswap-plugin-api, whose host handle (for `vault()` and `spawn`) may
                // still point at this context. Keep it (a few bytes per plugin and
                // manager) so that handle never dangles.
                std::mem::forget(ctx.clone());
                false
            }
        };
        if still_mapped {
            // Its code may still run and call back: the context lives until unmapped.
            *record.keep_alive.lock() = Some(Box::new(ctx));
        } else {
            drop(ctx);
        }
        self.records.freed(&record, still_mapped);
        // May free the providers: that only queues their jobs behind this one.
        drop(providers);
        crate::contain::contain("the subscriber, given an unload's events", || {
            report_close(&record, still_mapped, leaked, &notes)
        });
    }
}

/// The events of a closed library: `notes` (warnings), then whether it unloaded and
/// what its code left on the heap.
fn report_close(
    record: &VersionRecord,
    still_mapped: bool,
    leaked: Option<crate::status::HeapStatus>,
    notes: &[String],
) {
    for note in notes {
        tracing::warn!(plugin = %record.name, version = %record.version, "{note}");
    }
    if still_mapped {
        tracing::warn!(plugin = %record.name, version = %record.version, "{}", crate::status::PINNED_REASON);
        return;
    }
    match leaked {
        // Every plugin leaves a little: its copy of tracing keeps its global
        // subscriber (about 150 bytes) for good. More is worth an operator's eye.
        Some(h) if h.bytes > QUIET_LEAK => tracing::info!(
            plugin = %record.name,
            version = %record.version,
            id = record.id,
            leaked_bytes = h.bytes,
            leaked_blocks = h.blocks,
            "unloaded; its code left {} bytes in {} blocks allocated (statics, caches or leaks; not reclaimed)",
            h.bytes,
            h.blocks
        ),
        Some(h) => tracing::debug!(
            plugin = %record.name,
            version = %record.version,
            id = record.id,
            leaked_bytes = h.bytes,
            leaked_blocks = h.blocks,
            "unloaded"
        ),
        None => {
            tracing::debug!(plugin = %record.name, version = %record.version, id = record.id, "unloaded")
        }
    }
}

/// Why an unloaded version's file is still mapped, without its code.
const DATA_ONLY: &str = "unloaded, but a read-only mapping of its file that its own code made \
     stays (std's backtrace symbolizer keeps one of every object it read, in a static): \
     the file's size of address space and page cache, never reclaimed; format backtraces \
     in the host rather than in a plugin";

/// Heap bytes an unloaded version may leave and be logged at DEBUG rather than INFO.
const QUIET_LEAK: i64 = 1024;

/// What `on_free` and the drop need, moved to the version's `on_free` thread.
struct Parts {
    vtable: VtPtr,
    instance: InstancePtr,
    export: ExportObj,
}

// SAFETY: as for `FreeJob`: the instance is Send + Sync and used by nobody else.
unsafe impl Send for Parts {}

/// Runs `on_free`, frees the export and drops the instance: the version is drained, so
/// these hooks have the exclusive access they need.
fn free_instance(record: &VersionRecord, parts: Parts) {
    let Parts {
        vtable,
        instance,
        export,
    } = parts;
    // SAFETY: the caller holds the library open (`Arc<Lib>`), and `vtable` points into it.
    let vt = unsafe { &*vtable.0 };
    // SAFETY: the last Arc<Version> is gone: no call, value or task uses the instance,
    // so on_free and drop have the exclusive access they need.
    if let RResult::RErr(f) = unsafe { (vt.on_free)(instance) } {
        tracing::warn!(plugin = %record.name, version = %record.version, "on_free failed: {}", f.message);
    }
    if let (false, Some(free)) = (export.ptr.is_null(), export.drop) {
        // SAFETY: the export was made by this library's `export` hook and is freed
        // once, here; its dependents are gone (they hold this version).
        unsafe { free(export.ptr) };
    }
    // SAFETY: as above; the instance is not used again.
    if let RResult::RErr(f) = unsafe { (vt.drop)(instance) } {
        tracing::warn!(plugin = %record.name, version = %record.version, "dropping the instance failed: {}", f.message);
    }
}
