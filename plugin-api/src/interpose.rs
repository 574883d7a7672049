//! The libc functions through which a plugin's code registers per-thread state and
//! starts threads, defined again inside the plugin so the host owns what they register.
//!
//! `export_plugin!` defines `__cxa_thread_atexit_impl`, `pthread_key_create`,
//! `pthread_key_delete`, `pthread_setspecific` and `pthread_create` in the plugin's
//! cdylib, each calling the function of the same name here. The host opens plugins with
//! `RTLD_DEEPBIND`, so the plugin's own references (its copy of std, and of every crate
//! it uses) bind to these definitions first, while the rest of the process keeps
//! glibc's. Each one forwards to the host (`HostVTable::thread_atexit` and the others),
//! which records the registration for this version and calls glibc's function.
//!
//! Why: a `thread_local!` with a destructor, registered with glibc on a host thread,
//! makes glibc keep the library mapped for as long as that thread lives (one pinned
//! copy per reload and per calling thread); a pthread key's destructor is not tracked
//! at all, so glibc calls it at thread exit even after the library was unmapped (a
//! crash), and each version's keys are never deleted (after ~1,024 reloads the process
//! runs out of keys). Owned by the host, the destructors run on their own thread at its
//! next call boundary once the version is retired, or at its exit, the keys are deleted
//! before the library is closed, and threads the plugin starts are counted so the
//! library is not closed while one runs.
//!
//! Before the host has created the plugin (or in a process that is not a hotswap
//! host), every function falls back to glibc's, found with `dlsym(RTLD_NEXT, …)`.

use crate::vtable::{Destructor, DtorFn, StartFn, StartRoutine};
use std::ffi::{c_int, c_uint, c_ulong, c_void, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};

/// glibc's definition of `name`, the next one after this library's own; cached in
/// `cache`. `None` if there is none (then the caller reports an error code).
fn next(cache: &AtomicUsize, name: &CStr) -> Option<usize> {
    let cached = cache.load(Ordering::Acquire);
    if cached != 0 {
        return Some(cached);
    }
    // SAFETY: `name` is NUL-terminated; RTLD_NEXT searches the objects after this one,
    // so it never returns the definitions of this module.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    if p == 0 {
        return None;
    }
    cache.store(p, Ordering::Release);
    Some(p)
}

/// Generates a fallback caller: `$f` is glibc's function of type `$ty`.
macro_rules! fallback {
    ($cache:ident, $name:literal, $ty:ty) => {{
        static $cache: AtomicUsize = AtomicUsize::new(0);
        next(&$cache, $name).map(|p| {
            // SAFETY: `p` is glibc's function of this name, whose C type is `$ty`.
            unsafe { std::mem::transmute::<usize, $ty>(p) }
        })
    }};
}

type AtexitFn = unsafe extern "C" fn(Destructor, *mut c_void, *mut c_void) -> c_int;
type KeyCreateFn = unsafe extern "C" fn(*mut c_uint, Option<Destructor>) -> c_int;
type KeyDeleteFn = unsafe extern "C" fn(c_uint) -> c_int;
type KeySetFn = unsafe extern "C" fn(c_uint, *const c_void) -> c_int;
type CreateFn =
    unsafe extern "C" fn(*mut c_ulong, *const c_void, StartRoutine, *mut c_void) -> c_int;

/// `__cxa_thread_atexit_impl` of this plugin.
///
/// # Safety
/// As glibc's: `dtor(obj)` must be sound to call once on this thread at its exit.
pub unsafe fn thread_atexit(dtor: Destructor, obj: *mut c_void, dso: *mut c_void) -> c_int {
    if let Some(host) = crate::host::current() {
        // SAFETY: the host's own context and function; the contract is glibc's.
        return unsafe { (host.vtable.thread_atexit)(host.ctx, DtorFn { func: dtor }, obj, dso) };
    }
    match fallback!(ATEXIT, c"__cxa_thread_atexit_impl", AtexitFn) {
        // SAFETY: glibc's function, with the caller's arguments.
        Some(f) => unsafe { f(dtor, obj, dso) },
        None => -1,
    }
}

/// `pthread_key_create` of this plugin.
///
/// # Safety
/// As glibc's: `key` valid for writes; `dtor`, if any, sound to call on any thread.
pub unsafe fn key_create(key: *mut c_uint, dtor: Option<Destructor>) -> c_int {
    if let Some(host) = crate::host::current() {
        // SAFETY: as above.
        return unsafe {
            (host.vtable.key_create)(host.ctx, key, dtor.map(|func| DtorFn { func }))
        };
    }
    match fallback!(KEY_CREATE, c"pthread_key_create", KeyCreateFn) {
        // SAFETY: as above.
        Some(f) => unsafe { f(key, dtor) },
        None => libc::EAGAIN,
    }
}

/// `pthread_key_delete` of this plugin.
///
/// # Safety
/// As glibc's.
pub unsafe fn key_delete(key: c_uint) -> c_int {
    if let Some(host) = crate::host::current() {
        // SAFETY: as above.
        return unsafe { (host.vtable.key_delete)(host.ctx, key) };
    }
    match fallback!(KEY_DELETE, c"pthread_key_delete", KeyDeleteFn) {
        // SAFETY: as above.
        Some(f) => unsafe { f(key) },
        None => libc::EINVAL,
    }
}

/// `pthread_setspecific` of this plugin.
///
/// # Safety
/// As glibc's.
pub unsafe fn key_set(key: c_uint, value: *const c_void) -> c_int {
    if let Some(host) = crate::host::current() {
        // SAFETY: as above.
        return unsafe { (host.vtable.key_set)(host.ctx, key, value) };
    }
    match fallback!(KEY_SET, c"pthread_setspecific", KeySetFn) {
        // SAFETY: as above.
        Some(f) => unsafe { f(key, value) },
        None => libc::EINVAL,
    }
}

/// `pthread_create` of this plugin.
///
/// # Safety
/// As glibc's: `thread` valid for writes, `attr` null or an initialised attribute
/// object, `start(arg)` sound to run on a new thread.
pub unsafe fn thread_create(
    thread: *mut c_ulong,
    attr: *const c_void,
    start: StartRoutine,
    arg: *mut c_void,
) -> c_int {
    if let Some(host) = crate::host::current() {
        // SAFETY: as above.
        return unsafe {
            (host.vtable.thread_create)(host.ctx, thread, attr, StartFn { func: start }, arg)
        };
    }
    match fallback!(CREATE, c"pthread_create", CreateFn) {
        // SAFETY: as above.
        Some(f) => unsafe { f(thread, attr, start, arg) },
        None => libc::EAGAIN,
    }
}
