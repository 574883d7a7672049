//! Per-thread state of plugin code, owned by the host: thread-local destructors,
//! pthread keys and threads a plugin starts (the host side of
//! `hotswap_plugin_api::interpose`).
//!
//! A plugin's `__cxa_thread_atexit_impl`, `pthread_key_create`, `pthread_key_delete`,
//! `pthread_setspecific` and `pthread_create` come here, with the [`Holds`] of the
//! version whose code called them. Each thread keeps a list of what versions registered
//! on it ([`Item`]s): a thread-local's destructor, or a key that has a value on this
//! thread. An item runs on its own thread, in reverse order of registration:
//!
//! - at a **call boundary** once its version is drained (no call, value or task uses it
//!   any more, [`Holds::drain`]): the reclamation domain sends the thread's next pin the
//!   cold way ([`hotswap_reclaim::request_attention`]) and the cold path runs
//!   [`run_drained`] before pinning;
//! - at **thread exit**, whatever its version's state (what glibc would have done).
//!
//! The reaper closes a version's library only once no item of it is left on any thread,
//! no thread it started runs, and nothing could be registered behind the host's back
//! ([`Holds::is_clear`]); then it deletes the version's keys.
//!
//! Why running an item at a boundary is sound: an item of version V runs only after V's
//! last `Arc<Version>` is gone (drained). Plugin code of V then runs nowhere except on
//! threads V owns (those it started, and the short-lived thread that runs its `on_free`),
//! which are never given V's items before they exit, and inside the items themselves,
//! which a thread runs one batch at a time (`RUNNING`). So when a thread runs V's items
//! at a boundary, no frame of V's code is on its stack, and the thread-local values the
//! destructors drop are never used again: V's code cannot run on that thread any more.
//! A registration the host cannot take (the thread's list is already destroyed, during
//! its exit) goes to glibc for a thread-local destructor, and glibc then keeps the file
//! mapped until it ran (which the maps check reports). Keys are created with no
//! destructor on glibc's side (the host runs them), so glibc never calls into a
//! version's code for a key, whatever happens; a value set during a thread's exit after
//! its list is gone is leaked, never destroyed in unmapped code.

use parking_lot::Mutex;
use std::cell::{Cell, RefCell};
use std::ffi::{c_int, c_uint, c_ulong, c_void};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// A destructor as glibc takes it.
type Destructor = unsafe extern "C" fn(*mut c_void);

extern "C" {
    // glibc's registration of a thread-local destructor (GLIBC_2.18), used when the host
    // cannot keep the registration itself.
    fn __cxa_thread_atexit_impl(dtor: Destructor, obj: *mut c_void, dso: *mut c_void) -> c_int;
}

/// What a version holds on threads, and whether its per-thread state may be destroyed.
#[derive(Default)]
pub(crate) struct Holds {
    /// Items of this version on threads' lists, not yet run.
    items: AtomicUsize,
    /// Threads this version started still running.
    threads: AtomicUsize,
    /// Host threads doing this version's own work (its `on_free`) not yet exited.
    cleanup: AtomicUsize,
    /// Of `items`, those on the host's short-lived threads (hook and `on_free`
    /// threads), which run them when they end, soon.
    transient: AtomicUsize,
    /// Tasks started through `hotswap_plugin_api::spawn` still running.
    tasks: AtomicUsize,
    /// No call, value or task uses the version: its items run at call boundaries.
    drained: AtomicBool,
    /// The version's pthread keys, with their destructors.
    keys: Mutex<Vec<(c_uint, Option<Destructor>)>>,
    /// Tells the reaper that one of the counts above dropped.
    wake: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Holds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holds")
            .field("items", &self.items())
            .field("threads", &self.threads())
            .field("tasks", &self.tasks())
            .field("cleanup", &self.cleanup.load(Ordering::SeqCst))
            .field("transient", &self.transient.load(Ordering::SeqCst))
            .field("drained", &self.drained.load(Ordering::SeqCst))
            .finish()
    }
}

impl Holds {
    /// Sets what tells the reaper that the counts changed (once).
    pub fn on_change(&self, wake: impl Fn() + Send + Sync + 'static) {
        let _ = self.wake.set(Box::new(wake));
    }

    /// Marks the version drained: from now on its items run at each thread's next call
    /// boundary. Asks every thread for a boundary if some item is waiting.
    pub fn drain(&self) {
        self.drained.store(true, Ordering::SeqCst);
        if self.items.load(Ordering::SeqCst) > 0 {
            hotswap_reclaim::request_attention();
            if let Some(tell) = ON_DRAIN.get() {
                tell();
            }
        }
    }

    /// Threads that still hold per-thread values of this version.
    pub fn items(&self) -> usize {
        self.items.load(Ordering::SeqCst)
    }

    /// Threads this version started that still run.
    pub fn threads(&self) -> usize {
        self.threads.load(Ordering::SeqCst)
    }

    /// Nothing of the version is left on any thread: its library may be closed.
    pub fn is_clear(&self) -> bool {
        self.items() == 0 && self.threads() == 0 && self.cleanup.load(Ordering::SeqCst) == 0
    }

    /// What still holds the version will let go by itself soon: only the host's own
    /// short-lived threads, which are ending. (Not so for thread-locals on threads that
    /// must call again or exit first, and for threads the plugin started.)
    pub fn settling(&self) -> bool {
        self.cleanup.load(Ordering::SeqCst) > 0
            || (self.threads() == 0
                && self.items() > 0
                && self.items() == self.transient.load(Ordering::SeqCst))
    }

    /// Tasks started through `spawn` still running.
    pub fn tasks(&self) -> usize {
        self.tasks.load(Ordering::SeqCst)
    }

    /// Counts a task started through `spawn`, until [`task_ended`](Self::task_ended).
    pub fn task_started(&self) {
        self.tasks.fetch_add(1, Ordering::SeqCst);
    }

    /// See [`task_started`](Self::task_started).
    pub fn task_ended(&self) {
        self.tasks.fetch_sub(1, Ordering::SeqCst);
    }

    /// Counts one more thread of this version, as `role`, before it starts; the thread
    /// calls [`adopt`] with the same role.
    pub fn add_thread(&self, role: Role) {
        self.counter(role).fetch_add(1, Ordering::SeqCst);
    }

    fn counter(&self, role: Role) -> &AtomicUsize {
        match role {
            Role::Plugin => &self.threads,
            Role::Cleanup => &self.cleanup,
        }
    }

    /// Releases a count [`add_thread`](Self::add_thread) took.
    fn release_thread(&self, role: Role) {
        if self.counter(role).fetch_sub(1, Ordering::SeqCst) == 1 {
            self.changed();
        }
    }

    fn release_item(&self, transient: bool) {
        if transient {
            self.transient.fetch_sub(1, Ordering::SeqCst);
        }
        if self.items.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.changed();
        }
    }

    fn changed(&self) {
        if let Some(wake) = self.wake.get() {
            wake();
        }
    }

    /// Deletes the version's pthread keys. Called by the reaper once [`is_clear`]
    /// (Self::is_clear) holds, before the library is closed: no thread has a value of
    /// them left, so no destructor is lost, and glibc never calls one into unmapped code.
    pub fn delete_keys(&self) {
        for (key, _) in self.keys.lock().drain(..) {
            // SAFETY: the key was created by `pthread_key_create` and not yet deleted.
            unsafe { libc::pthread_key_delete(key) };
        }
    }

    fn dtor_of(&self, key: c_uint) -> Option<Option<Destructor>> {
        self.keys
            .lock()
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, d)| *d)
    }
}

enum Kind {
    /// A thread-local's destructor and its object.
    Local { dtor: Destructor, obj: *mut c_void },
    /// A key of the version with a value on this thread.
    Key(c_uint),
}

/// One registration of one version on one thread.
struct Item {
    holds: Arc<Holds>,
    kind: Kind,
    /// Registered on a host short-lived thread (see [`transient`]).
    transient: bool,
}

/// Why a thread belongs to a version (see [`adopt`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The plugin's code started it (`pthread_create`).
    Plugin,
    /// The host runs the version's `on_free` and drop on it.
    Cleanup,
}

impl Item {
    /// Runs the registration on this (its own) thread, once.
    fn run(self) {
        match self.kind {
            // SAFETY: glibc's contract for the registration: run once on the thread that
            // registered it, which is this one; the version is still mapped (the reaper
            // waits for this item).
            Kind::Local { dtor, obj } => unsafe { dtor(obj) },
            Kind::Key(key) => {
                // A key the plugin deleted itself has no destructor to run any more.
                if let Some(Some(dtor)) = self.holds.dtor_of(key) {
                    // As glibc does at thread exit: clear the value, then destroy it;
                    // again if the destructor set a new one (bounded, as glibc's).
                    for _ in 0..4 {
                        // SAFETY: a live key of this version.
                        let value = unsafe { libc::pthread_getspecific(key) };
                        if value.is_null() {
                            break;
                        }
                        // SAFETY: as above; then the value is this destructor's, once.
                        unsafe {
                            libc::pthread_setspecific(key, std::ptr::null());
                            dtor(value);
                        }
                    }
                }
            }
        }
        self.holds.release_item(self.transient);
    }
}

/// A thread's items, and the version that owns the thread, if any.
struct Local {
    items: RefCell<Vec<Item>>,
    /// Set on threads a version started and on the thread of its `on_free`: their
    /// items run only at exit, and the exit releases the thread's count.
    owner: RefCell<Option<(Arc<Holds>, Role)>>,
}

impl Drop for Local {
    fn drop(&mut self) {
        // Thread exit: everything left runs now, newest first, as glibc would.
        loop {
            let item = self.items.borrow_mut().pop();
            match item {
                Some(item) => item.run(),
                None => break,
            }
        }
        if let Some((owner, role)) = self.owner.borrow_mut().take() {
            owner.release_thread(role);
        }
    }
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            items: RefCell::new(Vec::new()),
            owner: RefCell::new(None),
        }
    };
    // Set while this thread runs a batch of items, so a destructor that calls back into
    // the host does not start another batch under itself.
    static RUNNING: Cell<bool> = const { Cell::new(false) };
    // Set on the host's short-lived threads (see `transient`).
    static TRANSIENT: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as one of the host's short-lived threads (a reload's hook thread,
/// a version's `on_free` thread): what plugins register on it is destroyed when it
/// ends, soon, so a reaper waiting for that need not call it idle yet.
pub(crate) fn transient() {
    TRANSIENT.with(|t| t.set(true));
}

fn push(holds: &Arc<Holds>, kind: Kind) -> Result<(), Kind> {
    let transient = TRANSIENT.try_with(|t| t.get()).unwrap_or(false);
    if transient {
        holds.transient.fetch_add(1, Ordering::SeqCst);
    }
    holds.items.fetch_add(1, Ordering::SeqCst);
    let item = Item {
        holds: holds.clone(),
        kind,
        transient,
    };
    let mut item = Some(item);
    let kept = LOCAL.try_with(|l| l.items.borrow_mut().push(item.take().expect("once")));
    match (kept, item) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(item)) => {
            if transient {
                holds.transient.fetch_sub(1, Ordering::SeqCst);
            }
            holds.items.fetch_sub(1, Ordering::SeqCst);
            Err(item.kind)
        }
        (Err(_), None) => unreachable!("the item was pushed"),
    }
}

/// The thread is `holds`' own (it started it, or runs its `on_free`): its items run at
/// exit, and the exit releases the count [`Holds::add_thread`] took for `role`.
pub(crate) fn adopt(holds: Arc<Holds>, role: Role) {
    // A thread whose list is gone is exiting: its count is released right away.
    let mut owner = Some((holds, role));
    let _ = LOCAL.try_with(|l| *l.owner.borrow_mut() = owner.take());
    if let Some((h, role)) = owner {
        h.release_thread(role);
    }
}

/// What a host thread that runs plugin code without ever pinning a generation (the
/// timer's, whose wakes may be plugin code) is told when a version drains, so that it
/// runs [`run_drained`] itself: the attention requests reach only threads that pin.
static ON_DRAIN: OnceLock<fn()> = OnceLock::new();

/// Sets [`ON_DRAIN`] (once per process; later calls are ignored).
pub(crate) fn on_drain(tell: fn()) {
    let _ = ON_DRAIN.set(tell);
}

/// Runs, on this thread, the items of every drained version, except the version that
/// owns the thread. Called at a call boundary (the reclamation cold path).
pub(crate) fn run_drained() {
    if RUNNING.with(|r| r.replace(true)) {
        return;
    }
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            RUNNING.with(|r| r.set(false));
        }
    }
    let _reset = Reset;
    let due: Vec<Item> = LOCAL
        .try_with(|l| {
            let owner = l.owner.borrow().as_ref().map(|(h, _)| h.clone());
            let mut items = l.items.borrow_mut();
            let mut due = Vec::new();
            let mut i = 0;
            while i < items.len() {
                let it = &items[i];
                let own = owner.as_ref().is_some_and(|o| Arc::ptr_eq(o, &it.holds));
                if it.holds.drained.load(Ordering::SeqCst) && !own {
                    due.push(items.remove(i));
                } else {
                    i += 1;
                }
            }
            due
        })
        .unwrap_or_default();
    for item in due.into_iter().rev() {
        item.run();
    }
}

/// The host's `__cxa_thread_atexit_impl` for plugin code of `holds`' version.
///
/// # Safety
/// glibc's contract: `dtor(obj)` is sound to call once, on this thread.
pub(crate) unsafe fn thread_atexit(
    holds: &Arc<Holds>,
    dtor: Destructor,
    obj: *mut c_void,
    dso: *mut c_void,
) -> c_int {
    match push(holds, Kind::Local { dtor, obj }) {
        Ok(()) => 0,
        // The thread is exiting and its list is gone: glibc keeps this one (and keeps
        // the library mapped until it ran).
        // SAFETY: glibc's function, with the plugin's arguments.
        Err(_) => unsafe { __cxa_thread_atexit_impl(dtor, obj, dso) },
    }
}

/// The host's `pthread_key_create` for plugin code of `holds`' version.
///
/// # Safety
/// As `pthread_key_create`: `key` valid for writes.
pub(crate) unsafe fn key_create(
    holds: &Holds,
    key: *mut c_uint,
    dtor: Option<Destructor>,
) -> c_int {
    // The destructor is the host's to run (see `Item::run`); glibc must never call it,
    // because it may run after the library is gone.
    let mut k: libc::pthread_key_t = 0;
    // SAFETY: a valid out pointer, no destructor.
    let r = unsafe { libc::pthread_key_create(&mut k, None) };
    if r == 0 {
        holds.keys.lock().push((k, dtor));
        // SAFETY: the caller's out pointer.
        unsafe { key.write(k) };
    }
    r
}

/// The host's `pthread_key_delete` for plugin code of `holds`' version.
pub(crate) fn key_delete(holds: &Holds, key: c_uint) -> c_int {
    let mut keys = holds.keys.lock();
    match keys.iter().position(|(k, _)| *k == key) {
        Some(i) => {
            keys.remove(i);
            // SAFETY: a key of this version, deleted once (removed from the list).
            unsafe { libc::pthread_key_delete(key) }
        }
        None => libc::EINVAL,
    }
}

/// The host's `pthread_setspecific` for plugin code of `holds`' version.
///
/// # Safety
/// As `pthread_setspecific`.
pub(crate) unsafe fn key_set(holds: &Arc<Holds>, key: c_uint, value: *const c_void) -> c_int {
    // SAFETY: the plugin's own key and value.
    let r = unsafe { libc::pthread_setspecific(key, value) };
    if r != 0 || value.is_null() || !matches!(holds.dtor_of(key), Some(Some(_))) {
        return r;
    }
    let listed = LOCAL
        .try_with(|l| {
            l.items
                .borrow()
                .iter()
                .any(|i| Arc::ptr_eq(&i.holds, holds) && matches!(i.kind, Kind::Key(k) if k == key))
        })
        .unwrap_or(false);
    if !listed {
        // If the thread's list is gone (it is exiting), the value leaks: glibc has no
        // destructor for the key, so nothing runs in the plugin's code for it.
        let _ = push(holds, Kind::Key(key));
    }
    r
}

/// What a plugin's thread starts with.
struct Start {
    start: extern "C" fn(*mut c_void) -> *mut c_void,
    arg: *mut c_void,
    holds: Arc<Holds>,
}

extern "C" fn trampoline(p: *mut c_void) -> *mut c_void {
    // SAFETY: `p` is the `Box<Start>` leaked by `thread_create`, handed to this thread
    // only.
    let start = unsafe { Box::from_raw(p.cast::<Start>()) };
    adopt(start.holds, Role::Plugin);
    (start.start)(start.arg)
}

/// The host's `pthread_create` for plugin code of `holds`' version: the thread counts
/// against the version until its exit, after its per-thread state was destroyed.
///
/// # Safety
/// As `pthread_create`: `thread` valid for writes, `attr` null or initialised,
/// `start(arg)` sound to run on a new thread.
pub(crate) unsafe fn thread_create(
    holds: &Arc<Holds>,
    thread: *mut c_ulong,
    attr: *const c_void,
    start: extern "C" fn(*mut c_void) -> *mut c_void,
    arg: *mut c_void,
) -> c_int {
    holds.add_thread(Role::Plugin);
    let boxed = Box::into_raw(Box::new(Start {
        start,
        arg,
        holds: holds.clone(),
    }));
    // SAFETY: the caller's arguments; our trampoline takes ownership of `boxed`.
    let r = unsafe {
        libc::pthread_create(
            thread.cast(),
            attr.cast(),
            trampoline,
            boxed.cast::<c_void>(),
        )
    };
    if r != 0 {
        // SAFETY: the thread was not created, so `boxed` is still ours.
        drop(unsafe { Box::from_raw(boxed) });
        holds.release_thread(Role::Plugin);
    }
    r
}
