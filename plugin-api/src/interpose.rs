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
//! The environment functions too: `setenv`, `unsetenv`, `putenv`, `clearenv` and
//! `getenv`. A plugin has its own std, with its own environment lock, so its
//! `env::set_var` (safe in edition 2021) would reallocate glibc's `environ` while a host
//! thread reads it under the host std's lock (a crash in the host's `env::vars_os`).
//! Here every write goes to the host (`HostVTable::env_set` and the others), which
//! makes it with its own std under its lock, and `getenv` reads the host's
//! `env::var_os` under that lock, answered as a copy the host keeps for good (see
//! [`getenv`]). Still unserialised: what walks `environ` itself (the plugin's
//! `env::vars()`, its `std::process::Command`, C code), and C code outside plugins
//! calling glibc's `getenv`.
//!
//! And `sigaction` and `signal`, which refuse to install a handler function while a
//! host serves the plugin: a handler is process-wide, so it (and any later handler that
//! chains to it, as signal-hook's do) would run after this library was unmapped.
//!
//! And `__register_atfork` (what `pthread_atfork` calls), whose handlers the host keeps
//! and runs around each fork while the version is loaded: registered with glibc, a fork
//! racing the version's `dlclose` would run a handler glibc was removing, or one already
//! unmapped.
//!
//! Before the host has created the plugin (or in a process that is not a hotswap
//! host), every function falls back to glibc's, found with `dlsym(RTLD_NEXT, …)`.

use crate::vtable::{Destructor, DtorFn, StartFn, StartRoutine};
use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CStr};
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

type RegisterAtforkFn = unsafe extern "C" fn(
    Option<crate::vtable::ForkHandler>,
    Option<crate::vtable::ForkHandler>,
    Option<crate::vtable::ForkHandler>,
    *mut c_void,
) -> c_int;

/// `__register_atfork` of this plugin (`pthread_atfork` is a static stub of glibc's that
/// calls it with the library's `__dso_handle`).
///
/// # Safety
/// As glibc's: each handler sound to call around any fork while this library is loaded.
pub unsafe fn register_atfork(
    prepare: Option<crate::vtable::ForkHandler>,
    parent: Option<crate::vtable::ForkHandler>,
    child: Option<crate::vtable::ForkHandler>,
    dso: *mut c_void,
) -> c_int {
    if let Some(host) = crate::host::current() {
        let handlers = crate::vtable::AtforkFns {
            prepare,
            parent,
            child,
        };
        // SAFETY: the host's own context and function; the contract is glibc's.
        return unsafe { (host.vtable.atfork)(host.ctx, handlers) };
    }
    match fallback!(ATFORK, c"__register_atfork", RegisterAtforkFn) {
        // SAFETY: glibc's function, with the caller's arguments.
        Some(f) => unsafe { f(prepare, parent, child, dso) },
        None => libc::ENOMEM,
    }
}

type SetenvFn = unsafe extern "C" fn(*const c_char, *const c_char, c_int) -> c_int;
type UnsetenvFn = unsafe extern "C" fn(*const c_char) -> c_int;
type PutenvFn = unsafe extern "C" fn(*mut c_char) -> c_int;
type ClearenvFn = unsafe extern "C" fn() -> c_int;
type GetenvFn = unsafe extern "C" fn(*const c_char) -> *mut c_char;

/// Answers -1 with `errno` set to `code`, as glibc's environment functions fail.
fn fail(code: c_int) -> c_int {
    // SAFETY: glibc's per-thread errno, always valid for writes on this thread.
    unsafe { *libc::__errno_location() = code };
    -1
}

/// A name `setenv` and `unsetenv` accept: non-empty, without `=`.
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && !name.contains(&b'=')
}

/// What the host's entries answer (0 or an errno value), as the C function returns it.
fn answer(code: c_int) -> c_int {
    if code == 0 {
        0
    } else {
        fail(code)
    }
}

/// `setenv` of this plugin (what its std's `env::set_var` calls).
///
/// # Safety
/// As glibc's: `name` and `value` null or NUL-terminated strings.
pub unsafe fn setenv(name: *const c_char, value: *const c_char, overwrite: c_int) -> c_int {
    if let Some(host) = crate::host::current() {
        if name.is_null() || value.is_null() {
            return fail(libc::EINVAL);
        }
        // SAFETY: non-null NUL-terminated strings, the caller's contract.
        let (name, value) = unsafe { (CStr::from_ptr(name), CStr::from_ptr(value)) };
        if !valid_name(name.to_bytes()) {
            return fail(libc::EINVAL);
        }
        // SAFETY: the host's function; it copies both before returning.
        let code = unsafe {
            (host.vtable.env_set)(
                name.to_bytes().into(),
                value.to_bytes().into(),
                overwrite != 0,
            )
        };
        return answer(code);
    }
    match fallback!(SETENV, c"setenv", SetenvFn) {
        // SAFETY: glibc's function, with the caller's arguments.
        Some(f) => unsafe { f(name, value, overwrite) },
        None => fail(libc::ENOSYS),
    }
}

/// `unsetenv` of this plugin (what its std's `env::remove_var` calls).
///
/// # Safety
/// As glibc's: `name` null or a NUL-terminated string.
pub unsafe fn unsetenv(name: *const c_char) -> c_int {
    if let Some(host) = crate::host::current() {
        if name.is_null() {
            return fail(libc::EINVAL);
        }
        // SAFETY: a non-null NUL-terminated string, the caller's contract.
        let name = unsafe { CStr::from_ptr(name) };
        if !valid_name(name.to_bytes()) {
            return fail(libc::EINVAL);
        }
        // SAFETY: the host's function; it copies the name before returning.
        return answer(unsafe { (host.vtable.env_remove)(name.to_bytes().into()) });
    }
    match fallback!(UNSETENV, c"unsetenv", UnsetenvFn) {
        // SAFETY: as above.
        Some(f) => unsafe { f(name) },
        None => fail(libc::ENOSYS),
    }
}

/// `putenv` of this plugin: `NAME=VALUE` sets, a bare `NAME` removes (glibc's
/// extension). Through the host, the variable is a copy: unlike glibc's `putenv`, a
/// later change to `string` does not change the environment.
///
/// # Safety
/// As glibc's: `string` a NUL-terminated string.
pub unsafe fn putenv(string: *mut c_char) -> c_int {
    if let Some(host) = crate::host::current() {
        if string.is_null() {
            return fail(libc::EINVAL);
        }
        // SAFETY: a non-null NUL-terminated string, the caller's contract.
        let bytes = unsafe { CStr::from_ptr(string) }.to_bytes();
        let code = match bytes.iter().position(|&b| b == b'=') {
            Some(0) => libc::EINVAL,
            // SAFETY: the host's functions; they copy what they get before returning.
            Some(i) => unsafe {
                (host.vtable.env_set)(bytes[..i].into(), bytes[i + 1..].into(), true)
            },
            None if bytes.is_empty() => libc::EINVAL,
            // SAFETY: as above.
            None => unsafe { (host.vtable.env_remove)(bytes.into()) },
        };
        return answer(code);
    }
    match fallback!(PUTENV, c"putenv", PutenvFn) {
        // SAFETY: as above.
        Some(f) => unsafe { f(string) },
        None => fail(libc::ENOSYS),
    }
}

/// `clearenv` of this plugin.
///
/// # Safety
/// As glibc's (none beyond it).
pub unsafe fn clearenv() -> c_int {
    if let Some(host) = crate::host::current() {
        // SAFETY: the host's function.
        return unsafe { (host.vtable.env_clear)() };
    }
    match fallback!(CLEARENV, c"clearenv", ClearenvFn) {
        // SAFETY: as above.
        Some(f) => unsafe { f() },
        None => fail(libc::ENOSYS),
    }
}

/// `getenv` of this plugin (what its std's `env::var_os` calls): the host's value, read
/// under the host std's lock, answered as a copy the host keeps for the life of the
/// process (interned by value), so the pointer stays valid for good, as glibc's do in
/// practice (C code caches them: SQLite keeps `TMPDIR`'s); the string must not be
/// written. Unlike glibc's, not async-signal-safe: it takes locks and may allocate.
///
/// # Safety
/// As glibc's: `name` null or a NUL-terminated string.
pub unsafe fn getenv(name: *const c_char) -> *mut c_char {
    if name.is_null() {
        return std::ptr::null_mut();
    }
    if let Some(host) = crate::host::current() {
        // SAFETY: a non-null NUL-terminated string, the caller's contract.
        let name = unsafe { CStr::from_ptr(name) }.to_bytes();
        // SAFETY: the host's function; it copies the name and answers a buffer of its own.
        return unsafe { (host.vtable.env_get)(name.into()) }.cast_mut();
    }
    match fallback!(GETENV, c"getenv", GetenvFn) {
        // SAFETY: as above.
        Some(f) => unsafe { f(name) },
        None => std::ptr::null_mut(),
    }
}

type SigactionFn =
    unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;
type SignalFn = unsafe extern "C" fn(c_int, libc::sighandler_t) -> libc::sighandler_t;

/// Whether `handler` is a function of this plugin's (not `SIG_DFL` or `SIG_IGN`).
fn is_function(handler: libc::sighandler_t) -> bool {
    handler != libc::SIG_DFL && handler != libc::SIG_IGN
}

/// Says, once per process of this library, why a signal handler was refused.
fn refused_handler(signal: c_int) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        tracing::warn!(
            signal,
            "a plugin may not install a signal handler: a handler is process-wide and \
             would outlive this plugin's library (the next signal would run unmapped \
             code); signals are the host's, which tells plugins through calls or the vault"
        );
    });
}

/// `sigaction` of this plugin (what `signal-hook` and a plugin's own tokio call): while
/// a host serves the plugin, installing a handler function is refused with `EPERM`
/// (a handler is process-wide: it, and whatever handler chains to it, would outlive
/// the plugin's library); querying, `SIG_DFL` and `SIG_IGN` go to glibc's.
///
/// # Safety
/// As glibc's: `act` and `old` null or valid.
pub unsafe fn sigaction(
    signal: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    // SAFETY: `act` null or valid (the caller's contract).
    if let Some(act) = unsafe { act.as_ref() } {
        if crate::host::current().is_some() && is_function(act.sa_sigaction) {
            refused_handler(signal);
            return fail(libc::EPERM);
        }
    }
    match fallback!(SIGACTION, c"sigaction", SigactionFn) {
        // SAFETY: glibc's function, with the caller's arguments.
        Some(f) => unsafe { f(signal, act, old) },
        None => fail(libc::ENOSYS),
    }
}

/// `signal` of this plugin: as [`sigaction`], a handler function is refused while a
/// host serves the plugin (`SIG_ERR`, `errno` `EPERM`).
///
/// # Safety
/// As glibc's.
pub unsafe fn signal(signal: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    if crate::host::current().is_some() && is_function(handler) {
        refused_handler(signal);
        fail(libc::EPERM);
        return libc::SIG_ERR;
    }
    match fallback!(SIGNAL, c"signal", SignalFn) {
        // SAFETY: glibc's function, with the caller's arguments.
        Some(f) => unsafe { f(signal, handler) },
        None => {
            fail(libc::ENOSYS);
            libc::SIG_ERR
        }
    }
}
