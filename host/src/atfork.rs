//! Fork handlers of plugin code (`pthread_atfork`, through the plugin's
//! `__register_atfork`): kept here per version and run around every fork of the process
//! by handlers of the host's own, registered with glibc once.
//!
//! Why not glibc's list: glibc runs each registered handler with its own lock released,
//! and the `dlclose` of a version unregisters that version's handlers and unmaps their
//! code meanwhile, so a fork on any thread racing a version's unload walked a list that
//! shrank under it (glibc's "array index not less than array length" abort) or called
//! an unmapped handler (rand 0.8's `thread_rng` registers three per version). Here a
//! fork holds [`HANDLERS`] from its prepare step to its parent or child step, and the
//! reaper [`forget`]s a version's handlers, under the same lock, before it closes the
//! library: a fork either runs them before the close or never sees them.

use hotswap_abi::vtable::{AtforkFns, ForkHandler};
use std::cell::UnsafeCell;
use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

/// One registration: the version it belongs to (its context's address) and its
/// handlers.
struct Registration {
    owner: usize,
    handlers: AtforkFns,
}

/// Every plugin's registrations, in registration order. Locked by a fork from prepare
/// to parent (or child), and by each registration and each [`forget`].
static HANDLERS: ForkLock = ForkLock {
    locked: AtomicBool::new(false),
    list: UnsafeCell::new(Vec::new()),
    pending: UnsafeCell::new(Vec::new()),
};

/// A lock a fork can hold across `fork()` and drop in the child. Why not a mutex of
/// parking_lot or std: the child is a copy of one thread of the parent, and their
/// unlock may wake waiters through state other threads of the parent held when it
/// forked (parking_lot's global table of parked threads), which no thread of the child
/// will ever release: the child hung in its fork handler. This one is a flag, waited
/// for by yielding: every section under it is a few instructions or the handlers of
/// one fork.
struct ForkLock {
    locked: AtomicBool,
    list: UnsafeCell<Vec<Registration>>,
    /// Registrations made by fork handlers while they run, added to `list` after.
    pending: UnsafeCell<Vec<Registration>>,
}

// SAFETY: `list` and `pending` are only touched by the thread that holds `locked` (see
// `lock`, `with`, and `DEPTH` for a fork's handlers).
unsafe impl Sync for ForkLock {}

impl ForkLock {
    fn lock(&self) {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::thread::yield_now();
        }
    }

    fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// Ends one fork's hold: at the outermost, what its handlers registered joins the
    /// list and the lock is released.
    ///
    /// # Safety
    /// This thread holds the lock, taken by [`prepare`].
    unsafe fn fork_done(&self) {
        let depth = DEPTH.with(|d| {
            let n = d.get().saturating_sub(1);
            d.set(n);
            n
        });
        if depth == 0 {
            // SAFETY: the lock is held (the caller's contract) and no handler runs now.
            unsafe { (*self.list.get()).append(&mut *self.pending.get()) };
            self.unlock();
        }
    }

    /// Runs `f` on the list under the lock.
    fn with<R>(&self, f: impl FnOnce(&mut Vec<Registration>) -> R) -> R {
        self.lock();
        struct Unlock<'a>(&'a ForkLock);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                self.0.unlock();
            }
        }
        let _unlock = Unlock(self);
        // SAFETY: this thread holds the lock.
        f(unsafe { &mut *self.list.get() })
    }
}

static INSTALL: Once = Once::new();

/// What installing the host's own handlers answered (0: installed).
static INSTALLED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

thread_local! {
    /// How deep this thread is in forks whose handlers run (a handler may fork again,
    /// as glibc allows): the lock is taken at the outermost and kept for the inner ones.
    static DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Keeps `handlers` for the version whose context is at `owner`; installs the host's
/// own fork handlers with glibc the first time. 0, or glibc's error (every time, once
/// installing failed).
pub(crate) fn register(owner: usize, handlers: AtforkFns) -> c_int {
    INSTALL.call_once(|| {
        // SAFETY: three functions of the host binary, which is never unloaded, sound to
        // run around any fork (see each).
        let r = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        INSTALLED.store(r, Ordering::Relaxed);
    });
    let installed = INSTALLED.load(Ordering::Relaxed);
    if installed != 0 {
        return installed;
    }
    let registration = Registration { owner, handlers };
    if DEPTH.with(|d| d.get()) > 0 {
        // A fork handler registering: this thread holds the lock, and the list is being
        // walked; the registration joins it when the fork's handlers are done.
        // SAFETY: this thread holds the lock (`DEPTH`).
        unsafe { &mut *HANDLERS.pending.get() }.push(registration);
        return 0;
    }
    HANDLERS.with(|list| list.push(registration));
    0
}

/// Drops the registrations of the version whose context is at `owner`: called before
/// its library is closed. Waits for a fork in progress to finish its handlers.
pub(crate) fn forget(owner: usize) {
    HANDLERS.with(|list| list.retain(|r| r.owner != owner));
}

/// Runs `pick`'s handler of every registration, in `order`, while this fork holds the
/// lock.
///
/// # Safety
/// The caller holds [`HANDLERS`]'s lock (taken by [`prepare`], not yet released).
unsafe fn run(pick: fn(&AtforkFns) -> Option<ForkHandler>, reverse: bool) {
    // SAFETY: the lock is held (the caller's contract), so nobody changes the list.
    let list = unsafe { &*HANDLERS.list.get() };
    let mut each = |r: &Registration| {
        if let Some(f) = pick(&r.handlers) {
            // SAFETY: a handler of a version whose library stays open while it is in
            // the list (`forget` runs before the close, and waits for this lock).
            unsafe { f() }
        }
    };
    if reverse {
        list.iter().rev().for_each(&mut each);
    } else {
        list.iter().for_each(&mut each);
    }
}

extern "C" fn prepare() {
    // Held until `parent` or `child`; a fork inside a handler finds it held here.
    if DEPTH.with(|d| d.replace(d.get() + 1)) == 0 {
        HANDLERS.lock();
    }
    // SAFETY: held.
    unsafe { run(|h| h.prepare, true) };
}

extern "C" fn parent() {
    // SAFETY: `prepare` took the lock on this thread for this fork.
    unsafe {
        run(|h| h.parent, false);
        HANDLERS.fork_done();
    }
}

extern "C" fn child() {
    // SAFETY: as in `parent`: the child is a copy of the forking thread (its
    // thread-locals too), which holds the lock; no other thread of the parent exists
    // here.
    unsafe {
        run(|h| h.child, false);
        HANDLERS.fork_done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static PREPARED: AtomicUsize = AtomicUsize::new(0);
    static IN_PARENT: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn count_prepare() {
        PREPARED.fetch_add(1, Ordering::SeqCst);
    }
    unsafe extern "C" fn count_parent() {
        IN_PARENT.fetch_add(1, Ordering::SeqCst);
    }

    static NESTED: AtomicUsize = AtomicUsize::new(0);

    /// The list is the process's: one test's forks would run the other's handlers.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
        ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forks once more, and registers once more, from inside a fork handler (glibc
    /// allows both): neither may wait for the lock this fork holds.
    unsafe extern "C" fn fork_again() {
        if NESTED.fetch_add(1, Ordering::SeqCst) == 0 {
            // SAFETY: fork and, in the child, only `_exit`; the parent reaps it.
            unsafe {
                let pid = libc::fork();
                if pid == 0 {
                    libc::_exit(0);
                }
                let mut status = 0;
                libc::waitpid(pid, &mut status, 0);
            }
            let noop = AtforkFns {
                prepare: None,
                parent: None,
                child: None,
            };
            assert_eq!(register(3, noop), 0);
        }
    }

    fn fork_true() {
        use std::os::unix::process::CommandExt;
        let uid =
            std::fs::metadata("/proc/self").map_or(0, |m| std::os::unix::fs::MetadataExt::uid(&m));
        // A uid makes std fork (not `posix_spawn`), which runs the handlers.
        let status = std::process::Command::new("true")
            .uid(uid)
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn a_handler_may_fork_and_register_again() {
        let _turn = one_at_a_time();
        let fns = AtforkFns {
            prepare: Some(fork_again),
            parent: None,
            child: None,
        };
        assert_eq!(register(2, fns), 0);
        fork_true();
        assert!(NESTED.load(Ordering::SeqCst) >= 1);
        forget(2);
        forget(3);
        fork_true();
    }

    #[test]
    fn a_fork_runs_the_handlers_kept_and_none_forgotten() {
        let _turn = one_at_a_time();
        let fns = AtforkFns {
            prepare: Some(count_prepare),
            parent: Some(count_parent),
            child: None,
        };
        assert_eq!(register(1, fns), 0);
        let fork = || {
            use std::os::unix::process::CommandExt;
            let uid = std::fs::metadata("/proc/self")
                .map_or(0, |m| std::os::unix::fs::MetadataExt::uid(&m));
            // A uid makes std fork (not `posix_spawn`), which runs the handlers.
            let status = std::process::Command::new("true")
                .uid(uid)
                .status()
                .unwrap();
            assert!(status.success());
        };
        fork();
        assert_eq!(PREPARED.load(Ordering::SeqCst), 1);
        assert_eq!(IN_PARENT.load(Ordering::SeqCst), 1);
        forget(1);
        fork();
        assert_eq!(PREPARED.load(Ordering::SeqCst), 1);
        assert_eq!(IN_PARENT.load(Ordering::SeqCst), 1);
    }
}
