//! The host, as plugin code sees it: background tasks the host tracks, and the vault
//! handle given to `on_init`.

use crate::vtable::{ExtensionFfi, FailKind, FfiTask, HostHandle, VaultHandle};
use crate::{Lendable, Value};
use abi_stable::StableAbi;
use std::ffi::c_void;
#[cfg(not(feature = "static"))]
use std::sync::OnceLock;

// One per loaded library file: each version of a plugin is its own copy of the file,
// so this static is per version, which is what the host's task tracking needs.
#[cfg(not(feature = "static"))]
static HOST: OnceLock<HostHandle> = OnceLock::new();

// Linked statically (`static` feature), every plugin and the host share this one copy of
// the crate and nothing is ever unloaded: the newest instance's handle wins. The DataBag,
// the extension and live functions it reaches are the manager's, the same for every
// plugin; only tasks `spawn`ed outside a hook are counted against that newest version.
#[cfg(feature = "static")]
static HOST: std::sync::RwLock<Option<HostHandle>> = std::sync::RwLock::new(None);

pub(crate) fn set(host: HostHandle) {
    // A second instance from the same file gets the same handle; keeping the first is fine.
    #[cfg(not(feature = "static"))]
    if HOST.set(host).is_ok() {
        crate::log::install(host);
    }
    // Statically linked, plugin events already reach the host's own `tracing`: no bridge.
    #[cfg(feature = "static")]
    {
        *HOST
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(host);
    }
}

/// The handle of the host that created this plugin, if it did yet.
pub(crate) fn current() -> Option<HostHandle> {
    #[cfg(not(feature = "static"))]
    return HOST.get().copied();
    #[cfg(feature = "static")]
    return *HOST
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
}

/// Why [`spawn`] did not start the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnError(pub String);

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot spawn task: {}", self.0)
    }
}

impl std::error::Error for SpawnError {}

/// Runs `task` on a thread the host starts and tracks: this plugin version is not
/// unloaded while the task runs, and a panic inside it is caught and logged by the host.
///
/// A task that runs until stopped must end once [`retired`] turns true (poll it):
/// `on_free` runs only after the last task ended, so it cannot be what stops one.
///
/// Prefer this to `std::thread::spawn`: a raw thread is invisible to the host, which may
/// unload the code it runs (the author's responsibility, see the README).
///
/// Fails when called before the host created this plugin (from a static initializer) or
/// when the host refuses (it is shutting down).
pub fn spawn(name: &str, task: impl FnOnce() + Send + 'static) -> Result<(), SpawnError> {
    let host =
        current().ok_or_else(|| SpawnError("the host has not created this plugin yet".into()))?;
    type Boxed = Box<dyn FnOnce() + Send>;
    /// # Safety
    /// `data` must be the task below, run at most once and not dropped after.
    unsafe extern "C" fn run(data: *mut c_void) {
        // SAFETY: `data` is the `Box<Boxed>` leaked below; the host calls run at most once
        // and never calls drop after run.
        let task = unsafe { Box::from_raw(data.cast::<Boxed>()) };
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(*task)) {
            let msg = crate::panic::panic_text(payload);
            crate::panic::warn_stderr(format_args!("hotswap: a plugin task panicked: {msg}"));
        }
    }
    /// # Safety
    /// `data` must be the task below, never run, dropped once.
    unsafe extern "C" fn drop(data: *mut c_void) {
        // SAFETY: as in `run`; the host calls drop only for a task it did not run.
        let task = unsafe { Box::from_raw(data.cast::<Boxed>()) };
        // What the task captured may panic as it drops: not out of this function.
        crate::panic::drop_guarded(task, "a plugin task that never ran");
    }
    let data = Box::into_raw(Box::new(Box::new(task) as Boxed)).cast::<c_void>();
    let ffi = FfiTask { data, run, drop };
    // SAFETY: `ctx` is the host's own pointer, passed back unchanged.
    match unsafe { (host.vtable.spawn)(host.ctx, name.into(), ffi) } {
        abi_stable::std_types::RResult::ROk(()) => Ok(()),
        abi_stable::std_types::RResult::RErr(f) => {
            debug_assert_eq!(f.kind, FailKind::Error);
            Err(SpawnError(f.message.into_string()))
        }
    }
}

/// Whether this plugin version is retired: it is no longer in the host's current
/// generation, so no new call reaches it and it only waits to be unloaded.
///
/// It turns true right after a reload publishes a generation without this version (a
/// newer build replaced it, or its plugin was removed), when this version's load or the
/// reload that loaded it failed, or when the host's manager is gone; once true it stays true
/// (also after `on_free`). It is false while the version is being loaded (`new`,
/// `on_load`, `on_init`) and while it is current, and false before the host created
/// this plugin.
///
/// **Background work must poll it and end.** A task started with [`spawn`] or
/// [`spawn_async`](crate::spawn_async) holds its version loaded until it ends, and
/// `on_free` runs only after the last one ended: a task that waits for `on_free` to stop
/// it never ends, and its version never unloads. A thread the plugin starts itself does
/// not hold the version (`on_free` still runs), but keeps its library mapped until it
/// ends: stop it on `retired()` too. Loop with `while !retired() { … }` (a cheap call: a
/// few atomic loads in the host), and let calls still running on the version finish as
/// usual.
pub fn retired() -> bool {
    match current() {
        // SAFETY: the host's own context pointer, passed back unchanged.
        Some(host) => unsafe { (host.vtable.retired)(host.ctx) },
        None => false,
    }
}

/// The vault: host-owned state that outlives every version of every plugin.
///
/// - the DataBag ([`get`](Vault::get), [`set`](Vault::set)): string keys, stable
///   values, copied into host memory on write, so they survive this plugin's unload;
/// - the host's Extension ([`with_extension`](Vault::with_extension)): an object the
///   host makes for each generation (`Builder::extension_newer`);
/// - live functions ([`call_live`](Vault::call_live)): found by name in whichever
///   version is current when called.
///
/// `on_init` receives one; [`vault()`](crate::vault) gives one anywhere else.
#[derive(Clone, Copy)]
pub struct Vault {
    host: HostHandle,
    generation: u64,
}

/// The vault of the host that loaded this plugin.
///
/// Fails only before the host created this plugin (from a static initializer).
pub fn vault() -> Result<Vault, crate::Error> {
    let host =
        current().ok_or_else(|| crate::Error::msg("the host has not created this plugin yet"))?;
    Ok(Vault {
        host,
        generation: 0,
    })
}

impl Vault {
    pub(crate) fn from_handle(handle: VaultHandle) -> Vault {
        Vault {
            host: handle.host,
            generation: handle.generation,
        }
    }

    /// Id of the generation this `on_init` belongs to (grows by one per published
    /// reload); 0 for a vault from [`vault()`](crate::vault).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A copy of the DataBag value under `key`.
    pub fn get(&self, key: &str) -> Option<Value> {
        // SAFETY: the host's own context pointer, passed back unchanged.
        match unsafe { (self.host.vtable.bag_get)(self.host.ctx, key.into()) } {
            Value::Null => None,
            v => Some(v),
        }
    }

    /// Stores `value` under `key`; the host keeps its own copy. `Value::Null` removes.
    ///
    /// Written from a hook of a reload (`on_load`, `on_init`, …) the value is staged:
    /// this version reads it back at once, everyone else sees it when the reload
    /// publishes, and never if the reload fails. Fails once this version is freed
    /// (from a thread-local destructor or a thread that outlived it), and for a version
    /// whose reload failed.
    pub fn set(&self, key: &str, value: impl Into<Value>) -> Result<(), crate::Error> {
        let value = value.into();
        // SAFETY: as in `get`; the host copies `value` before returning.
        match unsafe { (self.host.vtable.bag_set)(self.host.ctx, key.into(), &value) } {
            abi_stable::std_types::RResult::ROk(()) => Ok(()),
            abi_stable::std_types::RResult::RErr(f) => Err(crate::Error::msg(f.message.as_str())),
        }
    }

    /// Removes `key` from the DataBag (staged like [`set`](Vault::set)).
    pub fn remove(&self, key: &str) -> Result<(), crate::Error> {
        self.set(key, Value::Null)
    }

    /// Runs `f` with the host's extension of the generation this call runs on.
    ///
    /// Fails when the host has no extension, when it is not a `T` (abi_stable's layout
    /// check), or when `f` panics. The reference cannot outlive `f`: the extension
    /// belongs to a generation, and a later one has its own. `T` is [`Lendable`]
    /// (as `Builder::extension_newer` requires): the extension outlives this plugin's
    /// version, so `f` must not be able to store a value of this plugin's in it.
    pub fn with_extension<T: StableAbi + Lendable + 'static, R, F: FnOnce(&T) -> R>(
        &self,
        f: F,
    ) -> Result<R, crate::Error> {
        struct State<F, R> {
            f: Option<F>,
            out: Option<Result<R, crate::Error>>,
        }
        /// # Safety
        /// `data` must be the `State<F, R>` of this call, and `ext` the host's lent
        /// extension, valid during the call.
        unsafe extern "C" fn trampoline<T: StableAbi + 'static, F: FnOnce(&T) -> R, R>(
            data: *mut c_void,
            ext: &ExtensionFfi,
        ) {
            // SAFETY: `data` is the `State` on `with_extension`'s stack, exclusively ours
            // for the duration of this callback.
            let state = unsafe { &mut *data.cast::<State<F, R>>() };
            let out = if ext.ptr.is_null() {
                Err(crate::Error::msg(
                    "the host has no extension (Builder::extension_newer)",
                ))
            } else if let Err(e) = crate::live::check_type::<T>(ext.layout) {
                Err(e)
            } else {
                let f = state.f.take().expect("called once");
                // SAFETY: the host lends the extension for this callback and the layout
                // check above proved it is a `T`.
                let ext = unsafe { &*ext.ptr.cast::<T>() };
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(ext)))
                    .map_err(|p| crate::Error::msg(crate::panic::panic_text(p)))
            };
            state.out = Some(out);
        }
        let mut state = State::<F, R> {
            f: Some(f),
            out: None,
        };
        // SAFETY: the host calls `trampoline::<T, F, R>` at most once, with `data`.
        unsafe {
            (self.host.vtable.extension)(
                self.host.ctx,
                crate::vtable::ExtensionCallback {
                    func: trampoline::<T, F, R>,
                },
                (&mut state as *mut State<F, R>).cast(),
            )
        };
        state
            .out
            .unwrap_or_else(|| Err(crate::Error::msg("the host did not lend its extension")))
    }

    /// Calls the live function `name` on the current generation (of whichever plugin
    /// registers it); the result is a copy in this plugin's memory.
    pub fn call_live(&self, name: &str, args: &[Value]) -> Result<Value, crate::Error> {
        // SAFETY: as in `get`.
        match unsafe { (self.host.vtable.call_live)(self.host.ctx, name.into(), args.into()) } {
            abi_stable::std_types::RResult::ROk(v) => Ok(v.clone()),
            abi_stable::std_types::RResult::RErr(f) => Err(crate::Error::msg(f.message.as_str())),
        }
    }
}
