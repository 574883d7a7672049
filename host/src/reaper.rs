//! The reaper: one background thread per manager that frees what calls no longer use.
//!
//! It receives retired generations and dropped versions. A generation is freed once no
//! thread's hazard slot holds it (see `reclaim`); freeing it drops its versions, and a
//! version nobody else holds comes back here as a [`FreeJob`]: after the free delay it
//! runs `on_free`, drops the instance, closes the library, checks `/proc/self/maps`,
//! and deletes the host's private copy. Nothing of this runs on a caller's thread.

use crate::generation::Generation;
use crate::reclaim::{self, Retired};
use crate::status::{Records, VersionRecord};
use crate::version::VersionCtx;
use abi_stable::std_types::RResult;
use hotswap_plugin_api::vtable::{InstancePtr, PluginVTable};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What is left of a version once its last user is gone.
pub(crate) struct FreeJob {
    pub record: Arc<VersionRecord>,
    pub vtable: *const PluginVTable,
    pub instance: InstancePtr,
    pub library: Option<libloading::Library>,
    pub ctx: Arc<VersionCtx>,
    pub export: crate::version::ExportObj,
    /// Released only after this version's library is closed: providers outlive their
    /// dependents, and dependents' `on_free` runs first.
    pub providers: Vec<Arc<crate::version::Version>>,
}

// SAFETY: the instance is Send + Sync (Plugin requires it) and nothing else uses it any
// more; the vtable is immutable static data inside `library`, which moves with it.
unsafe impl Send for FreeJob {}

impl FreeJob {
    fn run(self) {
        let FreeJob {
            record,
            vtable,
            instance,
            library,
            ctx,
            export,
            providers,
        } = self;
        // SAFETY: `library` is still open (or the plugin is linked into the host binary),
        // and `vtable` points into it.
        let vt = unsafe { &*vtable };
        // SAFETY: the last Arc<Version> is gone: no call, value or task uses the
        // instance, so on_free and drop have the exclusive access they need.
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
        if let Some(lib) = library {
            if let Err(e) = lib.close() {
                tracing::warn!(plugin = %record.name, version = %record.version, "dlclose failed: {e}");
            }
        }
        if record.private_path.is_none() {
            // Linked statically: every plugin shares the host's one copy of
            // hotswap-plugin-api, whose host handle (for `vault()` and `spawn`) may still
            // point at this context. Keep it (a few bytes per plugin and manager) so that
            // handle never dangles; with its manager gone it only answers "gone".
            std::mem::forget(ctx);
        } else {
            drop(ctx);
        }
        // May free the providers: that only queues their FreeJobs behind this one.
        drop(providers);
        // A statically linked version has no file of its own: nothing to check or delete.
        let still_mapped = match &record.private_path {
            Some(path) => {
                let mapped = crate::maps::is_mapped(path).unwrap_or(false);
                if let Err(e) = std::fs::remove_file(path) {
                    tracing::debug!("cannot delete {}: {e}", path.display());
                }
                mapped
            }
            None => false,
        };
        if still_mapped {
            tracing::warn!(plugin = %record.name, version = %record.version, "{}", crate::status::PINNED_REASON);
        } else {
            tracing::debug!(plugin = %record.name, version = %record.version, id = record.id, "unloaded");
        }
        RECORDS.with(|r| {
            if let Some(records) = r.borrow().as_ref() {
                records.freed(&record, still_mapped);
            }
        });
    }
}

thread_local! {
    // The reaper thread's records, so a FreeJob need not carry them.
    static RECORDS: std::cell::RefCell<Option<Arc<Records>>> = const { std::cell::RefCell::new(None) };
}

pub(crate) enum Msg {
    Retire(Retired<Generation>),
    Free(Box<FreeJob>),
    WhenIdle(mpsc::Sender<()>),
}

/// Sends work to a manager's reaper.
#[derive(Clone)]
pub(crate) struct ReaperHandle {
    tx: mpsc::Sender<Msg>,
}

impl ReaperHandle {
    pub fn retire(&self, g: Retired<Generation>) {
        // If the reaper is gone (process teardown) the message is dropped, and dropping a
        // `Retired` leaks its value: the only safe choice, as a reader may still use it.
        let _ = self.tx.send(Msg::Retire(g));
    }

    pub fn free(&self, job: FreeJob) {
        if let Err(mpsc::SendError(Msg::Free(job))) = self.tx.send(Msg::Free(Box::new(job))) {
            // The reaper is gone; a reader could still be inside, so never free inline.
            std::mem::forget(job);
        }
    }

    /// Blocks until the reaper has nothing left to free, or `timeout`.
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
    std::thread::Builder::new()
        .name("hotswap-reaper".into())
        .spawn(move || {
            RECORDS.with(|r| *r.borrow_mut() = Some(records));
            match dispatch {
                Some(d) => tracing::dispatcher::with_default(&d, || run(rx, free_delay)),
                None => run(rx, free_delay),
            }
        })
        .expect("cannot start the hotswap reaper thread");
    ReaperHandle { tx }
}

fn run(rx: mpsc::Receiver<Msg>, free_delay: Duration) {
    let mut generations: Vec<Retired<Generation>> = Vec::new();
    let mut jobs: Vec<(Instant, FreeJob)> = Vec::new();
    let mut waiters: Vec<mpsc::Sender<()>> = Vec::new();
    let mut backoff = Duration::from_millis(1);
    let mut disconnected = false;
    loop {
        // Freeing a generation queues FreeJobs on our own channel: take them in before
        // deciding we are idle.
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Msg::Retire(g) => generations.push(g),
                Msg::Free(job) => jobs.push((Instant::now() + free_delay, *job)),
                Msg::WhenIdle(w) => waiters.push(w),
            }
        }
        let msg = if generations.is_empty() && jobs.is_empty() {
            for w in waiters.drain(..) {
                let _ = w.send(());
            }
            if disconnected {
                return;
            }
            rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        } else {
            let until_due = jobs
                .iter()
                .map(|(due, _)| due.saturating_duration_since(Instant::now()))
                .min()
                .unwrap_or(backoff);
            let wait = if generations.is_empty() {
                until_due
            } else {
                until_due.min(backoff)
            };
            if disconnected {
                std::thread::sleep(wait);
                Err(mpsc::RecvTimeoutError::Timeout)
            } else {
                rx.recv_timeout(wait)
            }
        };
        match msg {
            Ok(Msg::Retire(g)) => {
                generations.push(g);
                backoff = Duration::from_millis(1);
            }
            Ok(Msg::Free(job)) => jobs.push((Instant::now() + free_delay, *job)),
            Ok(Msg::WhenIdle(w)) => waiters.push(w),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => disconnected = true,
        }
        // Drain whatever else arrived before scanning, so one scan covers a burst.
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Msg::Retire(g) => generations.push(g),
                Msg::Free(job) => jobs.push((Instant::now() + free_delay, *job)),
                Msg::WhenIdle(w) => waiters.push(w),
            }
        }
        if !generations.is_empty() {
            // Dropping a generation drops its versions: FreeJobs come back to us.
            if let Some(freed) = reclaim::reclaim(&mut generations) {
                if freed == 0 {
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                } else {
                    backoff = Duration::from_millis(1);
                }
            }
        }
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = jobs.drain(..).partition(|(t, _)| *t <= now);
        jobs = later;
        for (_, job) in due {
            job.run();
        }
    }
}
