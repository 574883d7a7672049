//! The primitives the domain is built from, std's (and parking_lot's) in a normal build
//! and loom's under `cfg(loom)`, behind one set of names, so that the loom models check
//! the very code the host runs.
//!
//! Only what takes part in the protocol is swapped: the slot and pointer atomics, the
//! fences, the thread records' statics, the thread-locals and the locks. Process-wide
//! configuration (the membarrier mode, the attention handler) stays std's: it is set
//! before any model thread runs and is not part of what is checked.

pub(crate) use std::sync::atomic::Ordering;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU64};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU64};

/// The fence a reader runs between its slot store and its validating load: only a
/// compiler fence when membarrier runs the CPU half on the reclaimer's side (`light`),
/// a `SeqCst` fence otherwise (fence mode).
///
/// loom has no compiler fence and no membarrier: under `cfg(loom)` `light` is never
/// set (the domain always runs in fence mode there), and this is always the fence.
#[inline(always)]
pub(crate) fn reader_fence(light: bool) {
    #[cfg(not(loom))]
    if light {
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        return;
    }
    let _ = light;
    fence(Ordering::SeqCst);
}

/// The value of an atomic pointer the caller has exclusive access to.
pub(crate) fn exclusive_load<T>(atomic: &mut AtomicPtr<T>) -> *mut T {
    #[cfg(not(loom))]
    {
        *atomic.get_mut()
    }
    #[cfg(loom)]
    {
        atomic.with_mut(|p| *p)
    }
}

/// A mutex with parking_lot's interface (`lock` returns the guard), loom's under
/// `cfg(loom)`.
pub(crate) struct Mutex<T> {
    #[cfg(not(loom))]
    inner: parking_lot::Mutex<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

/// The guard [`Mutex::lock`] returns.
#[cfg(not(loom))]
pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;
/// The guard [`Mutex::lock`] returns.
#[cfg(loom)]
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    /// An unlocked mutex holding `value`.
    #[cfg(not(loom))]
    pub(crate) const fn new(value: T) -> Mutex<T> {
        Mutex {
            inner: parking_lot::Mutex::new(value),
        }
    }

    /// An unlocked mutex holding `value`.
    #[cfg(loom)]
    pub(crate) fn new(value: T) -> Mutex<T> {
        Mutex {
            inner: loom::sync::Mutex::new(value),
        }
    }

    /// Locks, waiting as long as it takes. Never fails: nothing panics while holding
    /// one of the domain's locks, and a poisoned loom lock (a model that failed) is
    /// taken anyway.
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(loom))]
        {
            self.inner.lock()
        }
        #[cfg(loom)]
        {
            self.inner.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}

/// Declares `fn NAME() -> &'static T`, a process-wide value: a `static` (and a `const
/// fn`, so thread-local initialisers can take its address) normally, a loom
/// `lazy_static` (new in every model execution) under `cfg(loom)`.
macro_rules! global {
    ($(#[$m:meta])* $vis:vis fn $name:ident() -> &$t:ty { $init:expr }) => {
        $(#[$m])*
        #[cfg(not(loom))]
        #[inline(always)]
        $vis const fn $name() -> &'static $t {
            static VALUE: $t = $init;
            &VALUE
        }
        $(#[$m])*
        #[cfg(loom)]
        $vis fn $name() -> &'static $t {
            loom::lazy_static! {
                static ref VALUE: $t = $init;
            }
            &VALUE
        }
    };
}

/// Declares thread-locals: std's with a `const` initialiser normally (one
/// thread-pointer-relative load, readable during teardown), loom's under `cfg(loom)`.
macro_rules! local {
    ($($(#[$m:meta])* static $name:ident: $t:ty = const $init:block;)*) => {
        #[cfg(not(loom))]
        std::thread_local! {
            $($(#[$m])* static $name: $t = const $init;)*
        }
        #[cfg(loom)]
        loom::thread_local! {
            $($(#[$m])* static $name: $t = $init;)*
        }
    };
}

pub(crate) use {global, local};
