//! A reload's lifecycle hooks run on a thread of their own, under a deadline.
//!
//! Why a thread: a hook that never returns must not hold the reload lock forever (the
//! reload that ran it fails with a named timeout, and the next reload works), and what
//! a hook leaves on its thread (thread-locals, a runtime's registrations) dies with that
//! thread instead of living on a host thread for good. One [`HookThread`] serves one
//! reload and ends with it; a thread stuck in a hook keeps what it runs alive (its job
//! holds the version), so the stuck version is never unloaded under it.
//!
//! Starting a thread is a tenth of a fast reload, so a reload's hook thread, as its last
//! job, starts the next reload's ([`HookThread::hand_on`]), off the reload's path: each
//! reload still runs its hooks on a thread of its own that ran no other reload's hooks.
//! And neither side sleeps between a reload's hooks: the reload looks for each answer,
//! yielding, for up to [`SPIN`] before it sleeps on it, and the hook thread looks for
//! its next job for up to [`LINGER`] after each one (until the reload says it has no
//! more, [`HookThread::rest`]). A hook that answers at once (most do) is then not paid
//! for with thread wake-ups, tens of microseconds each on a virtual machine. A new
//! thread does not linger before its first job: it sleeps until the next reload, and
//! while the reload runs its dlopen, a thread of the process spinning on the other CPU
//! would make every mapping change there interrupt it.
//!
//! Before a version's hooks, the thread has nothing to do: a reload lends it host work
//! to overlap with its own ([`HookThread::lend`]: writing a new file's private copy
//! while the reload hashes it).

use crate::error::Step;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Default deadline of one hook.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a reload looks for a hook's answer, yielding, before it sleeps on it.
const SPIN: Duration = Duration::from_micros(200);

/// How long the hook thread looks for its next job, yielding, before it sleeps.
const LINGER: Duration = Duration::from_micros(500);

/// Where a reload's hook thread leaves the next reload's (see [`HookThread::hand_on`]).
pub(crate) type NextHooks = Arc<Mutex<Option<HookThread>>>;

type Job = Box<dyn FnOnce() + Send>;

/// What a job reports while it runs.
enum Event<R> {
    /// The job moved on to another hook: its deadline starts again.
    Step(Step),
    /// The job's result.
    Done(R),
}

/// Lets a job that runs several hooks say which one it is in.
pub(crate) struct Progress<R>(mpsc::Sender<Event<R>>);

impl<R> Progress<R> {
    /// The job starts `step`; the deadline applies to it from now.
    pub fn step(&self, step: Step) {
        let _ = self.0.send(Event::Step(step));
    }
}

/// Why a job did not finish.
#[derive(Debug)]
pub(crate) enum HookFailure {
    /// The hook in `step` ran longer than the deadline `limit` (and may still run).
    Overran {
        step: Step,
        elapsed: Duration,
        limit: Duration,
    },
    /// The hook thread could not be started, or ended without an answer, at `step`.
    Thread { step: Step, why: String },
}

/// The thread one reload runs its hooks on.
pub(crate) struct HookThread {
    jobs: Option<mpsc::Sender<Job>>,
    timeout: Duration,
    /// Set once a job overran: the thread is busy for good, nothing more is sent to it.
    stuck: bool,
    start_error: Option<String>,
    /// Whether the thread lingers after a job ([`rest`](Self::rest) clears it).
    linger: Arc<AtomicBool>,
    /// The reload the hooks belong to ([`serve`](Self::serve)).
    serving: Option<Serving>,
}

/// The manager whose reload the hook thread serves: its hooks' jobs run marked as part
/// of that reload (`reloading`), under its logger.
#[derive(Clone)]
struct Serving {
    owner: usize,
    logger: Option<tracing::Dispatch>,
}

/// The hook thread's next job: looked for during [`LINGER`], yielding, while `linger`,
/// then waited for. `None` once the reload dropped its sender.
fn next_job(rx: &mpsc::Receiver<Job>, linger: &AtomicBool) -> Option<Job> {
    let since = Instant::now();
    while since.elapsed() < LINGER && linger.load(Ordering::Relaxed) {
        match rx.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::TryRecvError::Empty) => std::thread::yield_now(),
            Err(mpsc::TryRecvError::Disconnected) => return None,
        }
    }
    rx.recv().ok()
}

impl HookThread {
    /// Starts the thread (named `name`); every hook it runs has `timeout`. A failure to
    /// start is reported by the first [`run`](Self::run).
    pub fn start(name: String, timeout: Duration) -> HookThread {
        let (tx, rx) = mpsc::channel::<Job>();
        let linger = Arc::new(AtomicBool::new(true));
        let linger_here = linger.clone();
        let started = std::thread::Builder::new().name(name).spawn(move || {
            // What hooks register on this thread dies with it, at the reload's end.
            crate::threads::transient();
            let Ok(mut job) = rx.recv() else { return };
            loop {
                // A hook catches its plugin's panics; this catches the host's (the
                // subscriber, given an event of the job), so the thread serves on: the
                // job's answer is lost, which its reload reports as a failed step.
                crate::contain::contain("a hook job", job);
                match next_job(&rx, &linger_here) {
                    Some(next) => job = next,
                    None => return,
                }
            }
        });
        let start_error = started
            .err()
            .map(|e| format!("cannot start a hook thread: {e}"));
        HookThread {
            jobs: Some(tx),
            timeout,
            stuck: false,
            start_error,
            linger,
            serving: None,
        }
    }

    /// Runs the hooks of this reload as part of the reload of manager `owner` (see
    /// `reloading`: a hook's call back into that manager for a handle fails at once
    /// instead of waiting for the reload), under `logger` when the manager has one.
    pub fn serve(&mut self, owner: usize, logger: Option<tracing::Dispatch>) {
        self.serving = Some(Serving { owner, logger });
    }

    /// The thread `next` holds, started for this reload by the previous one's (see
    /// [`hand_on`](Self::hand_on)), or else a new one, named `name`; every hook it runs
    /// has `timeout`.
    pub fn take_or_start(next: &NextHooks, name: &str, timeout: Duration) -> HookThread {
        match next.lock().take() {
            Some(mut hooks) => {
                hooks.timeout = timeout;
                hooks
            }
            None => HookThread::start(name.to_owned(), timeout),
        }
    }

    /// Ends this reload's use of the thread: as its last job, the thread starts the
    /// next reload's hook thread (named `name`) and leaves it in `next`, then ends.
    /// Nothing is handed on by a thread stuck in a hook, or one that never started:
    /// the next reload then starts its own.
    pub fn hand_on(self, next: &NextHooks, name: &str) {
        if self.stuck || self.start_error.is_some() {
            return;
        }
        let (slot, name) = (Arc::downgrade(next), name.to_owned());
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(Box::new(move || {
                // The manager may be gone meanwhile: then nobody wants a thread.
                if let Some(slot) = slot.upgrade() {
                    let hooks = HookThread::start(name, DEFAULT_TIMEOUT);
                    if hooks.start_error.is_none() {
                        *slot.lock() = Some(hooks);
                    }
                }
            }));
        }
    }

    /// Runs host code (never a hook) on the hook thread, to overlap it with the reload's
    /// own work: its result comes back on the receiver. The thread sleeps right after
    /// it. `None` when the thread cannot take it (it did not start, or is stuck in a
    /// hook): the caller runs `work` itself.
    pub fn lend<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<mpsc::Receiver<T>> {
        if self.stuck || self.start_error.is_some() {
            return None;
        }
        let (tx, rx) = mpsc::channel();
        self.linger.store(false, Ordering::Relaxed);
        let job: Job = Box::new(move || {
            let _ = tx.send(work());
        });
        self.jobs.as_ref()?.send(job).ok()?;
        Some(rx)
    }

    /// This reload has no more hooks to run: the thread sleeps after its current job
    /// instead of lingering for another.
    pub fn rest(&self) {
        self.linger.store(false, Ordering::Relaxed);
    }

    /// Runs `job`, which starts with hook `first`, on the hook thread and waits for it,
    /// each of its hooks for at most the deadline. If it overruns, `on_late` runs with
    /// its result once it finishes (on the hook thread), instead of the caller getting it.
    pub fn run<R: Send + 'static>(
        &mut self,
        first: Step,
        job: impl FnOnce(&Progress<R>) -> R + Send + 'static,
        on_late: impl FnOnce(R) + Send + 'static,
    ) -> Result<R, HookFailure> {
        let thread = |why: &str| HookFailure::Thread {
            step: first,
            why: why.to_owned(),
        };
        if let Some(e) = &self.start_error {
            return Err(thread(e));
        }
        if self.stuck {
            return Err(thread("the hook thread is still in a hook that overran"));
        }
        let (tx, rx) = mpsc::channel::<Event<R>>();
        // `on_late` is for the hook thread only when the caller gave up; otherwise the
        // caller drops it, so that nothing it holds (a library, a version) outlives the
        // answer on the hook thread: a reload that returned has let go of everything.
        type Late<R> = Box<dyn FnOnce(R) + Send>;
        let late: Arc<Mutex<Option<Late<R>>>> = Arc::new(Mutex::new(Some(Box::new(on_late))));
        let late_on_thread = late.clone();
        let serving = self.serving.clone();
        let boxed: Job = Box::new(move || {
            let _mark = serving
                .as_ref()
                .map(|s| crate::reloading::ReloadingHere::mark(s.owner));
            let logger = serving.as_ref().and_then(|s| s.logger.as_ref());
            crate::contain::with_logger(logger, move || {
                let progress = Progress(tx);
                // Calling the FnOnce consumes it: what it captured is dropped before
                // the answer is sent.
                let result = job(&progress);
                if let Err(mpsc::SendError(Event::Done(result))) =
                    progress.0.send(Event::Done(result))
                {
                    if let Some(on_late) = late_on_thread.lock().take() {
                        on_late(result);
                    }
                }
            })
        });
        let take_late = || drop(late.lock().take());
        self.linger.store(true, Ordering::Relaxed);
        let sent = self.jobs.as_ref().map(|j| j.send(boxed));
        if !matches!(sent, Some(Ok(()))) {
            return Err(thread("the hook thread has ended"));
        }
        let mut step = first;
        let mut since = Instant::now();
        // Most hooks answer within microseconds: look for the answer, letting the hook
        // thread run, before sleeping on it.
        let spun = Instant::now();
        while spun.elapsed() < SPIN {
            match rx.try_recv() {
                Ok(Event::Done(r)) => {
                    take_late();
                    return Ok(r);
                }
                Ok(Event::Step(s)) => {
                    step = s;
                    since = Instant::now();
                }
                Err(mpsc::TryRecvError::Empty) => std::thread::yield_now(),
                Err(mpsc::TryRecvError::Disconnected) => break,
            }
        }
        loop {
            let left = crate::deadline::from(since, self.timeout)
                .saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Event::Step(s)) => {
                    step = s;
                    since = Instant::now();
                }
                Ok(Event::Done(r)) => {
                    take_late();
                    return Ok(r);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // One last look: a result that made it in time after all is taken.
                    while let Ok(event) = rx.try_recv() {
                        match event {
                            Event::Done(r) => {
                                take_late();
                                return Ok(r);
                            }
                            Event::Step(s) => {
                                step = s;
                                since = Instant::now();
                            }
                        }
                    }
                    if since.elapsed() < self.timeout {
                        continue;
                    }
                    self.stuck = true;
                    return Err(HookFailure::Overran {
                        step,
                        elapsed: since.elapsed(),
                        limit: self.timeout,
                    });
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(HookFailure::Thread {
                        step,
                        why: "the hook thread ended without an answer".into(),
                    })
                }
            }
        }
    }
}
