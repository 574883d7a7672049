//! The host's side of `HostVTable`: what plugin code calls back into (spawn, the
//! DataBag, the extension, live functions, logs, the timer and background futures,
//! and the per-thread registrations of [`crate::threads`]).
//!
//! Every function receives the `ctx` of the calling version, a [`VersionCtx`] the host
//! keeps alive for as long as that version's file is mapped, so none reads freed
//! memory. Once the version is freed (`on_free` and its drop ran), the DataBag, spawn,
//! the extension and live functions answer errors; logs still pass, and per-thread
//! registrations are still taken (their code is still mapped, and the reaper waits for
//! them).

use crate::block_on::block_on;
use crate::ctx::VersionCtx;
use crate::threads;
use crate::timer;
use crate::vault::ExtensionObj;
use abi_stable::std_types::{RResult, RSlice, RStr};
use async_ffi::FfiFuture;
use hotswap_abi::vtable::{
    AtforkFns, DtorFn, ExtensionCallback, ExtensionFfi, FailKind, Failure, FfiTask, HostHandle,
    HostVTable, StartFn,
};
use hotswap_plugin_api::Value;
use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CStr, CString, OsStr};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::Arc;

pub(crate) static HOST_VTABLE: HostVTable = HostVTable {
    spawn: host_spawn,
    bag_get: host_bag_get,
    bag_set: host_bag_set,
    extension: host_extension,
    call_live: host_call_live,
    log: host_log,
    max_log_level: host_max_log_level,
    thread_atexit: host_thread_atexit,
    key_create: host_key_create,
    key_delete: host_key_delete,
    key_set: host_key_set,
    thread_create: host_thread_create,
    alloc: host_alloc,
    alloc_zeroed: host_alloc_zeroed,
    dealloc: host_dealloc,
    realloc: host_realloc,
    sleep: host_sleep,
    spawn_future: host_spawn_future,
    retired: host_retired,
    env_set: host_env_set,
    env_remove: host_env_remove,
    env_clear: host_env_clear,
    env_get: host_env_get,
    atfork: host_atfork,
};

/// The layout a plugin asks for, if it is one the global allocator may be given:
/// non-empty, a power-of-two alignment, a size that does not overflow when rounded up.
fn heap_layout(size: usize, align: usize) -> Option<std::alloc::Layout> {
    std::alloc::Layout::from_size_align(size, align)
        .ok()
        .filter(|l| l.size() != 0)
}

/// # Safety
/// None: any pair is checked (see [`HostVTable::alloc`]).
unsafe extern "C" fn host_alloc(size: usize, align: usize) -> *mut u8 {
    match heap_layout(size, align) {
        // SAFETY: a valid, non-empty layout.
        Some(l) => unsafe { std::alloc::alloc(l) },
        None => std::ptr::null_mut(),
    }
}

/// # Safety
/// None, as `host_alloc`.
unsafe extern "C" fn host_alloc_zeroed(size: usize, align: usize) -> *mut u8 {
    match heap_layout(size, align) {
        // SAFETY: a valid, non-empty layout.
        Some(l) => unsafe { std::alloc::alloc_zeroed(l) },
        None => std::ptr::null_mut(),
    }
}

/// # Safety
/// See [`HostVTable::dealloc`]: a live block of `host_alloc` with its size and alignment.
unsafe extern "C" fn host_dealloc(ptr: *mut u8, size: usize, align: usize) {
    // SAFETY: the caller's contract: the block was allocated with this very layout,
    // which `heap_layout` accepted then.
    unsafe {
        std::alloc::dealloc(
            ptr,
            std::alloc::Layout::from_size_align_unchecked(size, align),
        )
    }
}

/// # Safety
/// See [`HostVTable::realloc`].
unsafe extern "C" fn host_realloc(
    ptr: *mut u8,
    size: usize,
    align: usize,
    new_size: usize,
) -> *mut u8 {
    if heap_layout(new_size, align).is_none() {
        return std::ptr::null_mut();
    }
    // SAFETY: the caller's contract for the old block (allocated with this layout);
    // the new size is non-zero and does not overflow when rounded up to `align`.
    unsafe {
        std::alloc::realloc(
            ptr,
            std::alloc::Layout::from_size_align_unchecked(size, align),
            new_size,
        )
    }
}

/// The handle a version's plugin code gets (`new`): its context and these callbacks.
pub(crate) fn handle(ctx: &Arc<VersionCtx>) -> HostHandle {
    HostHandle {
        ctx: Arc::as_ptr(ctx).cast(),
        vtable: &HOST_VTABLE,
    }
}

/// The context behind a `HostHandle::ctx`.
///
/// # Safety
/// `ctx` must be a pointer from [`handle`], passed back by that version's
/// code: the host keeps that context alive while the version's file is mapped, which it
/// is while its code runs.
unsafe fn ctx<'a>(ctx: *const c_void) -> &'a VersionCtx {
    // SAFETY: upheld by the caller.
    unsafe { &*ctx.cast::<VersionCtx>() }
}

fn error<T>(message: impl Into<String>) -> RResult<T, Failure> {
    let message: String = message.into();
    RResult::RErr(Failure {
        kind: FailKind::Error,
        message: message.into(),
    })
}

const FREED: &str = "this plugin version has been unloaded";

/// # Safety
/// See [`HostVTable`].
unsafe extern "C" fn host_log(
    c: *const c_void,
    level: u8,
    target: RStr<'_>,
    message: RStr<'_>,
    fields: RStr<'_>,
) {
    // SAFETY: called by plugin code with its own HostHandle.
    let c = unsafe { ctx(c) };
    // The subscriber is the host's user's code, run here inside an `extern "C"`
    // function, where a panic would abort: a panicking subscriber loses this event.
    crate::contain::contain("the subscriber, given a plugin's event", || {
        crate::plugin_log::emit(
            level,
            c.plugin.as_str(),
            c.version_str.as_str(),
            target.as_str(),
            message.as_str(),
            fields.as_str(),
        )
    });
}

/// # Safety
/// See [`HostVTable`].
unsafe extern "C" fn host_max_log_level(_: *const c_void) -> u8 {
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        LevelFilter::OFF => 0,
        LevelFilter::ERROR => 1,
        LevelFilter::WARN => 2,
        LevelFilter::INFO => 3,
        LevelFilter::DEBUG => 4,
        _ => 5,
    }
}

thread_local! {
    // The extension of the generation being assembled, while its hooks run on this
    // thread: `on_load`/`on_init` must see the generation they initialise, not the one
    // still serving. Drop-free on purpose (see `hotswap_reclaim`).
    static INITIALIZING: Cell<*const ExtensionObj> = const { Cell::new(std::ptr::null()) };
}

/// Runs `f` with `extension` lent to plugins' `with_extension` on this thread.
pub(crate) fn initializing<R>(extension: Option<&Arc<ExtensionObj>>, f: impl FnOnce() -> R) -> R {
    struct Reset(*const ExtensionObj);
    impl Drop for Reset {
        fn drop(&mut self) {
            INITIALIZING.with(|c| c.set(self.0));
        }
    }
    let ptr = extension.map_or(std::ptr::null(), Arc::as_ptr);
    let _reset = Reset(INITIALIZING.with(|c| c.replace(ptr)));
    f()
}

/// # Safety
/// See [`HostVTable`].
unsafe extern "C" fn host_bag_get(c: *const c_void, key: RStr<'_>) -> Value {
    // SAFETY: called by plugin code with its own HostHandle.
    let c = unsafe { ctx(c) };
    if c.is_freed() {
        return Value::Null;
    }
    let Some(m) = c.manager.upgrade() else {
        return Value::Null;
    };
    // Host code (and the subscriber, on its events) inside an `extern "C"` function.
    crate::contain::contain("a DataBag read", || match c.staging() {
        Some(staging) => staging.get(m.vault(), key.as_str()),
        None => m.vault().get(key.as_str()),
    })
    .flatten()
    .unwrap_or(Value::Null)
}

/// # Safety
/// See [`HostVTable`].
unsafe extern "C" fn host_bag_set(
    c: *const c_void,
    key: RStr<'_>,
    value: &Value,
) -> RResult<(), Failure> {
    // SAFETY: called by plugin code with its own HostHandle.
    let c = unsafe { ctx(c) };
    if c.is_freed() {
        return error(format!(
            "{FREED}: DataBag write of {:?} refused",
            key.as_str()
        ));
    }
    let Some(m) = c.manager.upgrade() else {
        return error("the host is shutting down");
    };
    // The host copies the value, by recursion: a value nested without end (safe plugin
    // code can build one) would overflow the host's stack, which aborts.
    if crate::value_depth::deeper_than(value, crate::value_depth::MAX_DEPTH) {
        return error(format!(
            "DataBag write of {:?} refused: the value is nested deeper than {} levels",
            key.as_str(),
            crate::value_depth::MAX_DEPTH
        ));
    }
    // As in `host_bag_get`.
    let set = crate::contain::contain("a DataBag write", || match c.staging() {
        Some(staging) => staging.set(m.vault(), key.as_str(), value),
        None => {
            m.vault().set(key.as_str(), value.clone());
            Ok(())
        }
    });
    match set {
        Some(Ok(())) => RResult::ROk(()),
        Some(Err(why)) => error(why),
        None => error(format!(
            "DataBag write of {:?}: the host panicked (see its stderr)",
            key.as_str()
        )),
    }
}

/// # Safety
/// See [`HostVTable`]; `f` must be sound to call once with `data`.
unsafe extern "C" fn host_extension(c: *const c_void, f: ExtensionCallback, data: *mut c_void) {
    let lend = |ext: Option<&ExtensionObj>| {
        let ffi = match ext {
            Some(e) => ExtensionFfi {
                ptr: e.ptr,
                layout: Some(e.layout),
            },
            None => ExtensionFfi {
                ptr: std::ptr::null(),
                layout: None,
            },
        };
        // SAFETY: the plugin's own trampoline with its own `data`; the extension stays
        // alive during the call (pinned generation, or the one being initialised).
        unsafe { (f.func)(data, &ffi) }
    };
    let init = INITIALIZING.with(|c| c.get());
    if !init.is_null() {
        // SAFETY: set by `initializing` from an Arc that outlives its closure.
        return lend(Some(unsafe { &*init }));
    }
    // SAFETY: called by plugin code with its own HostHandle.
    let c = unsafe { ctx(c) };
    if c.is_freed() {
        return lend(None);
    }
    // Host code inside an `extern "C"` function: on a panic the plugin's callback
    // may not have run, which its `with_extension` reports as an error.
    crate::contain::contain("lending the extension", || match c.manager.upgrade() {
        Some(m) => m.with_extension(&mut |ext| lend(ext)),
        None => lend(None),
    });
}

/// # Safety
/// See [`HostVTable`].
unsafe extern "C" fn host_call_live(
    c: *const c_void,
    name: RStr<'_>,
    args: RSlice<'_, Value>,
) -> RResult<Value, Failure> {
    // SAFETY: called by plugin code with its own HostHandle.
    let c = unsafe { ctx(c) };
    if c.is_freed() {
        return error(format!("{FREED}: live call {:?} refused", name.as_str()));
    }
    let Some(m) = c.manager.upgrade() else {
        return error("the host is shutting down");
    };
    // Host code (metrics, the subscriber) inside an `extern "C"` function.
    match crate::contain::contain("a live call", || {
        m.call_live(name.as_str(), args.as_slice())
    }) {
        Some(Ok(v)) => RResult::ROk(v),
        Some(Err(e)) => error(e.to_string()),
        None => error(format!(
            "live call {:?}: the host panicked (see its stderr)",
            name.as_str()
        )),
    }
}

/// A task closure owned by plugin code, moved to a host thread.
struct SendTask(FfiTask);
// SAFETY: `hotswap_plugin_api::spawn` only accepts `Send` closures.
unsafe impl Send for SendTask {}

/// Runs `job` on a new host thread counted as a task of the version (status shows it;
/// the version stays loaded until `job` returned and was dropped). When no thread can
/// be started, `job` is dropped unrun, here (while the calling plugin code runs).
fn spawn_tracked<J>(c: &VersionCtx, name: RStr<'_>, job: J) -> RResult<(), Failure>
where
    J: FnOnce() + Send + 'static,
{
    let version = match c.version() {
        Some(v) if !c.is_freed() => v,
        _ => return error("the version is being unloaded"),
    };
    let holds = c.holds.clone();
    let thread_name = format!("{}:{}", c.label, name.as_str());
    c.holds.task_started();
    let spawned = std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            // The task's own panics are caught in the plugin; this catches the host's
            // (a subscriber given its events), so that the task still ends and its
            // version may unload.
            crate::contain::contain("a plugin's background task", job);
            holds.task_ended();
            // Dropping `version` here may free it: that only queues work for the reaper.
            drop(version);
        });
    match spawned {
        Ok(_) => RResult::ROk(()),
        Err(e) => {
            c.holds.task_ended();
            error(format!("cannot start a thread: {e}"))
        }
    }
}

/// # Safety
/// See [`HostVTable`]; `task` must be a task `hotswap_plugin_api::spawn` made.
unsafe extern "C" fn host_spawn(
    c: *const c_void,
    name: RStr<'_>,
    task: FfiTask,
) -> RResult<(), Failure> {
    // SAFETY: called by plugin code with its own HostHandle.
    let c = unsafe { ctx(c) };
    if c.version().is_none() || c.is_freed() {
        // SAFETY: the task was not run; drop it once, as FfiTask requires.
        unsafe { (task.drop)(task.data) };
        return error("the version is being unloaded");
    }
    let task = SendTask(task);
    spawn_tracked(c, name, move || {
        let task = task;
        // SAFETY: run once, never dropped after; the plugin catches the task's panics.
        unsafe { (task.0.run)(task.0.data) };
    })
    // On a failed thread start the closure (and the task inside it) was dropped
    // without running: FfiTask's data leaks rather than being dropped twice.
}

/// A background future of a plugin: dropped (plugin code) before the thread lets go of
/// the version, whichever way the thread ends.
struct Background(Option<FfiFuture<()>>);

impl Drop for Background {
    fn drop(&mut self) {
        // Runs while the job's caller still holds the version (or, on a failed thread
        // start, while plugin code that called `spawn_future` runs).
        drop(self.0.take());
    }
}

/// # Safety
/// See [`HostVTable`]; `task` must be a future made by the calling version's code.
unsafe extern "C" fn host_spawn_future(
    c: *const c_void,
    name: RStr<'_>,
    task: FfiFuture<()>,
) -> RResult<(), Failure> {
    // SAFETY: called by plugin code with its own HostHandle.
    let c = unsafe { ctx(c) };
    let task = Background(Some(task));
    spawn_tracked(c, name, move || {
        let mut task = task;
        if let Some(f) = task.0.as_mut() {
            // The plugin's future catches its own panics; async-ffi turns any other
            // into a panic of this poll, which stops here.
            let run = std::panic::AssertUnwindSafe(|| block_on(f));
            if std::panic::catch_unwind(run).is_err() {
                tracing::error!(target: "hotswap::plugin", "a plugin's background future panicked");
            }
        }
        drop(task);
    })
}

/// # Safety
/// See [`HostVTable::atfork`]: the handlers are the calling version's code.
unsafe extern "C" fn host_atfork(c: *const c_void, handlers: AtforkFns) -> c_int {
    // The context's address names the version: its library closes only after the
    // reaper forgot these (`Reaper::close`).
    crate::atfork::register(c as usize, handlers)
}

/// # Safety
/// See [`HostVTable::retired`].
unsafe extern "C" fn host_retired(c: *const c_void) -> bool {
    // SAFETY: called by plugin code with its own HostHandle.
    let c = unsafe { ctx(c) };
    c.is_retired()
}

/// A name `setenv` accepts: non-empty, no `=`, no NUL (`std::env::set_var` panics on
/// any other).
fn env_name(name: &[u8]) -> Option<&OsStr> {
    let ok = !name.is_empty() && !name.contains(&b'=') && !name.contains(&0);
    ok.then(|| OsStr::from_bytes(name))
}

// Sound although `std::env::set_var` and `remove_var` are `unsafe` in edition 2024
// (this crate is 2021, where they are safe fns): the hazard is another thread reading
// `environ` while a write reallocates it. Every write of a plugin's code comes here
// (its `setenv`, `unsetenv`, `putenv` and `clearenv` are these entries), so std's
// environment lock, the host's, now serialises host and plugin writers against the
// host's readers (`var_os`, `vars_os`) and against plugin `getenv`s, which are
// `host_env_get`. What still reads `environ` without that lock is not covered: a
// plugin's `env::vars()` (its own std's lock), C code that walks `environ`, and C
// libraries outside plugins calling glibc's `getenv` while the host writes (README).

/// Serialises the plugins' environment writes, so that `setenv(name, value, 0)` (check,
/// then set) is one step among them.
static ENV_WRITES: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// # Safety
/// None (see [`HostVTable::env_set`]): any slices are checked.
unsafe extern "C" fn host_env_set(
    name: RSlice<'_, u8>,
    value: RSlice<'_, u8>,
    overwrite: bool,
) -> c_int {
    let Some(name) = env_name(name.as_slice()) else {
        return libc::EINVAL;
    };
    if value.as_slice().contains(&0) {
        return libc::EINVAL;
    }
    let value = OsStr::from_bytes(value.as_slice());
    // A `setenv` that keeps an existing variable checks and sets as one step, as
    // glibc's does under its lock: plugin writers racing for one name take turns.
    let _one_at_a_time = ENV_WRITES.lock();
    if !overwrite && std::env::var_os(name).is_some() {
        return 0;
    }
    // `set_var` panics only when glibc's `setenv` fails (out of memory): answered as
    // glibc would, never unwound into plugin code.
    match std::panic::catch_unwind(|| std::env::set_var(name, value)) {
        Ok(()) => 0,
        Err(_) => libc::ENOMEM,
    }
}

/// # Safety
/// None (see [`HostVTable::env_remove`]).
unsafe extern "C" fn host_env_remove(name: RSlice<'_, u8>) -> c_int {
    let Some(name) = env_name(name.as_slice()) else {
        return libc::EINVAL;
    };
    let _one_at_a_time = ENV_WRITES.lock();
    match std::panic::catch_unwind(|| std::env::remove_var(name)) {
        Ok(()) => 0,
        Err(_) => libc::ENOMEM,
    }
}

/// # Safety
/// None (see [`HostVTable::env_clear`]).
unsafe extern "C" fn host_env_clear() -> c_int {
    let _one_at_a_time = ENV_WRITES.lock();
    let names: Vec<_> = std::env::vars_os().map(|(name, _)| name).collect();
    for name in names {
        if env_name(name.as_bytes()).is_some() {
            let _ = std::panic::catch_unwind(|| std::env::remove_var(&name));
        }
    }
    0
}

/// Every value `host_env_get` has answered, kept for the life of the process: C code
/// keeps a `getenv` pointer as long as it likes (SQLite caches `TMPDIR`'s and reads it
/// from any thread), and glibc's answers live that long too (it never frees what
/// `setenv` made). Interned by value, so what this holds is bounded by the distinct
/// values ever read, as glibc's leak is by those ever set.
static ENV_VALUES: parking_lot::Mutex<Option<HashSet<Box<CStr>>>> = parking_lot::Mutex::new(None);

/// # Safety
/// None (see [`HostVTable::env_get`]).
unsafe extern "C" fn host_env_get(name: RSlice<'_, u8>) -> *const c_char {
    let Some(key) = env_name(name.as_slice()) else {
        return std::ptr::null();
    };
    let Some(value) = std::env::var_os(key).and_then(|v| CString::new(v.into_vec()).ok()) else {
        return std::ptr::null();
    };
    let mut values = ENV_VALUES.lock();
    let values = values.get_or_insert_with(HashSet::new);
    if let Some(kept) = values.get(value.as_c_str()) {
        return kept.as_ptr();
    }
    // A `Box<CStr>`'s bytes never move, whatever the set does with the box itself.
    let kept = value.into_boxed_c_str();
    let answer = kept.as_ptr();
    values.insert(kept);
    answer
}

/// # Safety
/// See [`HostVTable`].
unsafe extern "C" fn host_sleep(c: *const c_void, nanos: u64) -> FfiFuture<()> {
    // SAFETY: called by plugin code with its own HostHandle.
    let c = unsafe { ctx(c) };
    match c.version() {
        Some(version) if !c.is_freed() => {
            let keeper: timer::Keeper = Arc::downgrade(&version) as _;
            FfiFuture::new(timer::sleep(std::time::Duration::from_nanos(nanos), keeper))
        }
        // A freed version's code (a thread it left running) gets a sleep that keeps no
        // waker: nothing could keep its version alive until a wake.
        _ => FfiFuture::new(std::future::ready(())),
    }
}

/// # Safety
/// See [`HostVTable::thread_atexit`].
unsafe extern "C" fn host_thread_atexit(
    c: *const c_void,
    dtor: DtorFn,
    obj: *mut c_void,
    dso: *mut c_void,
) -> c_int {
    // SAFETY: called by plugin code with its own HostHandle.
    let c = unsafe { ctx(c) };
    // SAFETY: glibc's contract, forwarded by the plugin.
    unsafe { threads::thread_atexit(&c.holds, dtor.func, obj, dso) }
}

/// # Safety
/// See [`HostVTable::key_create`].
unsafe extern "C" fn host_key_create(
    c: *const c_void,
    key: *mut c_uint,
    dtor: Option<DtorFn>,
) -> c_int {
    // SAFETY: called by plugin code with its own HostHandle.
    let c = unsafe { ctx(c) };
    // SAFETY: glibc's contract, forwarded by the plugin.
    unsafe { threads::key_create(&c.holds, key, dtor.map(|d| d.func)) }
}

/// # Safety
/// See [`HostVTable::key_delete`].
unsafe extern "C" fn host_key_delete(c: *const c_void, key: c_uint) -> c_int {
    // SAFETY: called by plugin code with its own HostHandle.
    let c = unsafe { ctx(c) };
    threads::key_delete(&c.holds, key)
}

/// # Safety
/// See [`HostVTable::key_set`].
unsafe extern "C" fn host_key_set(c: *const c_void, key: c_uint, value: *const c_void) -> c_int {
    // SAFETY: called by plugin code with its own HostHandle.
    let c = unsafe { ctx(c) };
    // SAFETY: glibc's contract, forwarded by the plugin.
    unsafe { threads::key_set(&c.holds, key, value) }
}

/// # Safety
/// See [`HostVTable::thread_create`].
unsafe extern "C" fn host_thread_create(
    c: *const c_void,
    thread: *mut c_ulong,
    attr: *const c_void,
    start: StartFn,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: called by plugin code with its own HostHandle.
    let c = unsafe { ctx(c) };
    // SAFETY: glibc's contract, forwarded by the plugin.
    unsafe { threads::thread_create(&c.holds, thread, attr, start.func, arg) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(name: &str) -> Option<String> {
        // SAFETY: any slice is checked; the answer is a NUL-terminated string kept for
        // good, or null.
        let p = unsafe { host_env_get(name.as_bytes().into()) };
        // SAFETY: as above.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    #[test]
    fn a_getenv_answer_stays_valid_after_later_reads_and_writes() {
        let name = "HOTSWAP_TEST_GETENV_KEPT";
        std::env::set_var(name, "first");
        // SAFETY: as in `get`.
        let first = unsafe { host_env_get(name.as_bytes().into()) };
        assert!(!first.is_null());
        // C code may keep `first` for good (SQLite caches `TMPDIR`'s): later reads of the
        // same name, a new value and another thread's reads must not free it.
        assert_eq!(get(name).as_deref(), Some("first"));
        // SAFETY: as in `get`.
        let again = unsafe { host_env_get(name.as_bytes().into()) };
        assert_eq!(again, first, "one value, one copy");
        std::env::set_var(name, "second");
        assert_eq!(get(name).as_deref(), Some("second"));
        std::thread::spawn(move || get(name)).join().unwrap();
        // SAFETY: `first` is kept for the life of the process.
        assert_eq!(unsafe { CStr::from_ptr(first) }.to_str(), Ok("first"));
        std::env::remove_var(name);
        assert_eq!(get(name), None);
        assert_eq!(get("A=B"), None, "a name with '=' is never set");
    }
}
