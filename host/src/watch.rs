//! File watching for development (cargo feature `watch`, on by default): a debounced
//! directory watcher ([`watch_dir`]), and [`reload_on_change`], which reloads through the
//! host's [`Trigger`] when builds land in the plugin directory.
//!
//! Events are debounced: after the first change the watcher waits until the directory
//! has been quiet for the debounce period (a build writes a library, then its manifest),
//! or at most twenty periods, then reports every path seen. Reads (inotify's open and
//! close-after-read) are ignored, so a reload reading the directory does not start
//! another.

use crate::trigger::{Source, Trigger};
use notify::{EventKind, RecursiveMode, Watcher as _};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Default quiet period of [`reload_on_change`].
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(300);

/// Why a watch could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The platform watcher could not be created or could not watch the directory.
    #[error("cannot watch {}", dir.display())]
    Notify {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: notify::Error,
    },
    /// The debounce thread could not be started.
    #[error("cannot start the file-watch thread")]
    Thread(#[source] std::io::Error),
}

/// A running watch. Dropping it (or [`stop`](Self::stop)) stops watching and joins its
/// thread, waiting for a callback in progress.
pub struct DirWatcher {
    watcher: Option<notify::RecommendedWatcher>,
    thread: Option<JoinHandle<()>>,
    dir: PathBuf,
}

impl std::fmt::Debug for DirWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatcher")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl DirWatcher {
    /// The directory watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops watching (same as dropping it).
    pub fn stop(self) {}
}

impl Drop for DirWatcher {
    fn drop(&mut self) {
        // Dropping the platform watcher drops its event sender: the thread's channel
        // disconnects and the thread ends after its current callback.
        drop(self.watcher.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Watches `dir` (and its subdirectories when `recursive`) and calls `on_change` with the
/// changed paths that `relevant` accepts, once per burst of changes (debounced by
/// `debounce`), on a thread named `hotswap-watch`.
///
/// Fails if the directory cannot be watched (missing, unreadable, out of inotify
/// watches) or the thread cannot start.
pub fn watch_dir(
    dir: impl Into<PathBuf>,
    recursive: bool,
    debounce: Duration,
    relevant: impl Fn(&Path) -> bool + Send + 'static,
    mut on_change: impl FnMut(Vec<PathBuf>) + Send + 'static,
) -> Result<DirWatcher, WatchError> {
    let dir = dir.into();
    let notify_err = |source| WatchError::Notify {
        dir: dir.clone(),
        source,
    };
    let (tx, rx) = mpsc::channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            Ok(event) if is_change(&event.kind) => {
                for path in event.paths {
                    // The receiver is gone only while the watch shuts down.
                    let _ = tx.send(path);
                }
            }
            Ok(_) => {}
            // On notify's thread: a panicking subscriber must not end the watch.
            Err(e) => {
                crate::contain::contain(
                    "the subscriber, given a file watch error",
                    || tracing::warn!(error = %e, "file watch error"),
                );
            }
        }
    })
    .map_err(notify_err)?;
    let mode = if recursive {
        RecursiveMode::Recursive
    } else {
        RecursiveMode::NonRecursive
    };
    watcher.watch(&dir, mode).map_err(notify_err)?;
    let thread = std::thread::Builder::new()
        .name("hotswap-watch".into())
        .spawn(move || {
            while let Some(paths) = next_burst(&rx, debounce, &relevant) {
                // The caller's code: a panic in it must not end the watch.
                crate::contain::contain("the file watch's handler", || on_change(paths));
            }
        })
        .map_err(WatchError::Thread)?;
    Ok(DirWatcher {
        watcher: Some(watcher),
        thread: Some(thread),
        dir,
    })
}

/// Whether an event may change what a build or a reload sees (not a mere read).
fn is_change(kind: &EventKind) -> bool {
    use notify::event::{MetadataKind, ModifyKind};
    !matches!(
        kind,
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime))
    )
}

/// Waits for the next relevant path, then collects until quiet; `None` when the watch
/// has stopped.
fn next_burst(
    rx: &mpsc::Receiver<PathBuf>,
    debounce: Duration,
    relevant: &impl Fn(&Path) -> bool,
) -> Option<Vec<PathBuf>> {
    let mut paths = BTreeSet::new();
    loop {
        let p = rx.recv().ok()?;
        if relevant(&p) {
            paths.insert(p);
            break;
        }
    }
    let hard_stop = crate::deadline::after(debounce.saturating_mul(20));
    loop {
        let wait = debounce.min(hard_stop.saturating_duration_since(Instant::now()));
        if wait.is_zero() {
            break;
        }
        match rx.recv_timeout(wait) {
            Ok(p) => {
                if relevant(&p) {
                    paths.insert(p);
                }
            }
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    Some(paths.into_iter().collect())
}

/// Reloads through `trigger` when anything changes in the manager's plugin directory (as
/// it is now: a later `reload_from` another directory is not followed), debounced by
/// `debounce` ([`DEFAULT_DEBOUNCE`] is a good start). For development; a failed reload
/// is logged and the current generation keeps serving, and the next change tries again.
///
/// Fails as [`watch_dir`] does.
pub fn reload_on_change(trigger: Trigger, debounce: Duration) -> Result<DirWatcher, WatchError> {
    let dir = trigger.manager().dir();
    watch_dir(
        dir,
        false,
        debounce,
        |path| {
            // Editors' and tools' hidden temporary files are not builds.
            !path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        },
        move |paths| {
            tracing::info!(changed = paths.len(), "plugin directory changed: reloading");
            let _ = trigger.reload(Source::Watch);
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The debounce itself, without the file system: every event already queued when a
    /// burst starts is one change (whatever the scheduler does), duplicates and
    /// irrelevant paths left out; a closed channel ends the watch.
    #[test]
    fn a_burst_of_events_is_one_change() {
        let (tx, rx) = mpsc::channel();
        for name in ["a.rs", "notes.txt", "b.rs", "a.rs", "c.rs"] {
            tx.send(PathBuf::from(name)).unwrap();
        }
        let rs = |p: &Path| p.extension().is_some_and(|e| e == "rs");
        let burst = next_burst(&rx, Duration::from_millis(1), &rs).expect("a burst");
        assert_eq!(burst, ["a.rs", "b.rs", "c.rs"].map(PathBuf::from));
        tx.send(PathBuf::from("d.rs")).unwrap();
        drop(tx);
        // What was sent before the close is still one change; then the watch is over.
        assert_eq!(
            next_burst(&rx, Duration::from_millis(1), &rs),
            Some(vec![PathBuf::from("d.rs")])
        );
        assert_eq!(next_burst(&rx, Duration::from_millis(1), &rs), None);
    }

    /// Through the file system: every written file is reported (in one change or more:
    /// how notify's events are spread over time is the scheduler's business), the
    /// irrelevant one never.
    #[test]
    fn written_files_are_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (tx, rx) = mpsc::channel();
        let w = watch_dir(
            dir.path(),
            true,
            Duration::from_millis(150),
            |p| p.extension().is_some_and(|e| e == "rs"),
            move |paths| {
                let _ = tx.send(paths);
            },
        )
        .expect("watch a temp dir");
        std::fs::write(dir.path().join("ignored.txt"), "x").expect("write");
        for i in 0..5 {
            std::fs::write(dir.path().join(format!("f{i}.rs")), "x").expect("write");
        }
        let mut seen = BTreeSet::new();
        while seen.len() < 5 {
            let paths = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("every write reported");
            for p in paths {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                assert!(name.ends_with(".rs"), "{name} is not relevant");
                seen.insert(name);
            }
        }
        drop(w);
    }

    /// Access events (opening, reading, closing: a write was already a modify event) and
    /// access-time updates are no change; writes,
    /// creations, removals and renames are. Checked on the event kinds themselves: on
    /// the file system, a late event of an earlier write cannot be told from a read's.
    #[test]
    fn reads_are_not_changes() {
        use notify::event::{
            AccessKind, AccessMode, CreateKind, DataChange, MetadataKind, ModifyKind, RemoveKind,
            RenameMode,
        };
        for read in [
            EventKind::Access(AccessKind::Open(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)),
        ] {
            assert!(!is_change(&read), "{read:?}");
        }
        for change in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Content)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Remove(RemoveKind::File),
        ] {
            assert!(is_change(&change), "{change:?}");
        }
    }
}
