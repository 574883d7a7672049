//! [`Version`]: one loaded plugin file with its instance. Owns the library handle; when
//! the last `Arc<Version>` goes, the version is handed to the reaper, which runs
//! `on_free` and closes the library on its own thread (DESIGN invariant 3).

use crate::error::{CallError, LoadError, LoadErrorKind, Step};
use crate::manager::Shared;
use crate::reaper::{FreeJob, ReaperHandle};
use crate::status::VersionRecord;
use crate::vault::ExtensionObj;
use abi_stable::std_types::{RResult, RSlice};
use hotswap_plugin_api::vtable::{
    ExtensionCallback, ExtensionFfi, FailKind, Failure, FfiTask, HostHandle, HostVTable,
    InstancePtr, PluginVTable, TypedFn,
};
use hotswap_plugin_api::Value;
use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

/// A dependency as the host keeps it.
#[derive(Debug, Clone)]
pub(crate) struct Dependency {
    pub plugin: String,
    pub version_req: String,
    /// The type the dependent expects, inside the dependent's library.
    pub layout: Option<&'static abi_stable::type_layout::TypeLayout>,
}

/// A version's export: owned by the version, freed by the reaper after `on_free`.
pub(crate) struct ExportObj {
    pub ptr: *mut c_void,
    pub layout: Option<&'static abi_stable::type_layout::TypeLayout>,
    pub drop: Option<unsafe extern "C" fn(*mut c_void)>,
}

/// What the host gives a version's plugin code to find its way back (`HostHandle::ctx`).
pub(crate) struct VersionCtx {
    version: OnceLock<Weak<Version>>,
    /// Tasks started through `hotswap_plugin_api::spawn` and still running.
    pub tasks: AtomicUsize,
    pub label: String,
    /// `"<name> <crate version>"`, attached to the plugin's log events.
    plugin: String,
    /// The manager, for the vault, the extension and live functions.
    manager: Weak<Shared>,
}

impl VersionCtx {
    pub fn new(label: String, plugin: String, manager: Weak<Shared>) -> Arc<VersionCtx> {
        Arc::new(VersionCtx {
            version: OnceLock::new(),
            tasks: AtomicUsize::new(0),
            label,
            plugin,
            manager,
        })
    }

    pub fn handle(self: &Arc<Self>) -> HostHandle {
        HostHandle {
            ctx: Arc::as_ptr(self).cast(),
            vtable: &HOST_VTABLE,
        }
    }
}

static HOST_VTABLE: HostVTable = HostVTable {
    spawn: host_spawn,
    bag_get: host_bag_get,
    bag_set: host_bag_set,
    extension: host_extension,
    call_live: host_call_live,
    log: host_log,
    max_log_level: host_max_log_level,
};

unsafe extern "C" fn host_log(
    c: *const c_void,
    level: u8,
    target: abi_stable::std_types::RStr<'_>,
    message: abi_stable::std_types::RStr<'_>,
    fields: abi_stable::std_types::RStr<'_>,
) {
    // SAFETY: called by plugin code with its own HostHandle.
    let c = unsafe { ctx(c) };
    let (plugin, version) = c.plugin.split_once(' ').unwrap_or((c.plugin.as_str(), ""));
    let (target, message, fields) = (target.as_str(), message.as_str(), fields.as_str());
    macro_rules! emit {
        ($level:expr) => {
            tracing::event!(target: "hotswap::plugin", $level, plugin, version, plugin_target = target, fields, "{message}")
        };
    }
    match level {
        1 => emit!(tracing::Level::ERROR),
        2 => emit!(tracing::Level::WARN),
        3 => emit!(tracing::Level::INFO),
        4 => emit!(tracing::Level::DEBUG),
        _ => emit!(tracing::Level::TRACE),
    }
}

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
    // still serving. Drop-free on purpose (see `reclaim`).
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
/// `ctx` must be a pointer from `VersionCtx::handle` of a version still loaded.
unsafe fn ctx<'a>(ctx: *const c_void) -> &'a VersionCtx {
    // SAFETY: upheld by the caller; the VersionCtx outlives the library.
    unsafe { &*ctx.cast::<VersionCtx>() }
}

unsafe extern "C" fn host_bag_get(c: *const c_void, key: abi_stable::std_types::RStr<'_>) -> Value {
    // SAFETY: called by plugin code with its own HostHandle.
    let c = unsafe { ctx(c) };
    c.manager
        .upgrade()
        .and_then(|m| m.vault.get(key.as_str()))
        .unwrap_or(Value::Null)
}

unsafe extern "C" fn host_bag_set(
    c: *const c_void,
    key: abi_stable::std_types::RStr<'_>,
    value: &Value,
) {
    // SAFETY: called by plugin code with its own HostHandle.
    let c = unsafe { ctx(c) };
    if let Some(m) = c.manager.upgrade() {
        m.vault.set(key.as_str(), value.clone());
    }
}

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
    match c.manager.upgrade() {
        // Nested in a call, `with` reuses the generation that call runs on.
        Some(m) => m.domain.with(|g| lend(g.extension.as_deref())),
        None => lend(None),
    }
}

unsafe extern "C" fn host_call_live(
    c: *const c_void,
    name: abi_stable::std_types::RStr<'_>,
    args: RSlice<'_, Value>,
) -> RResult<Value, Failure> {
    // SAFETY: called by plugin code with its own HostHandle.
    let c = unsafe { ctx(c) };
    let Some(m) = c.manager.upgrade() else {
        return RResult::RErr(Failure {
            kind: FailKind::Error,
            message: "the host is shutting down".into(),
        });
    };
    match m
        .domain
        .with(|g| g.call_live(name.as_str(), args.as_slice()))
    {
        Ok(v) => RResult::ROk(v),
        Err(e) => RResult::RErr(Failure {
            kind: FailKind::Error,
            message: e.to_string().into(),
        }),
    }
}

/// A task closure owned by plugin code, moved to a host thread.
struct SendTask(FfiTask);
// SAFETY: `hotswap_plugin_api::spawn` only accepts `Send` closures.
unsafe impl Send for SendTask {}

unsafe extern "C" fn host_spawn(
    ctx: *const c_void,
    name: abi_stable::std_types::RStr<'_>,
    task: FfiTask,
) -> RResult<(), Failure> {
    // SAFETY: `ctx` is the pointer we put in the HostHandle of this version; the
    // VersionCtx outlives the library (the reaper drops it after dlclose).
    let ctx = unsafe { &*ctx.cast::<VersionCtx>() };
    let Some(version) = ctx.version.get().and_then(Weak::upgrade) else {
        // SAFETY: the task was not run; drop it once, as FfiTask requires.
        unsafe { (task.drop)(task.data) };
        return RResult::RErr(Failure {
            kind: FailKind::Error,
            message: "the version is being unloaded".into(),
        });
    };
    let task = SendTask(task);
    let thread_name = format!("{}:{}", ctx.label, name.as_str());
    ctx.tasks.fetch_add(1, Ordering::SeqCst);
    let spawned = std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            let task = task;
            // SAFETY: run once, never dropped after; the plugin catches the task's panics.
            unsafe { (task.0.run)(task.0.data) };
            version.ctx.tasks.fetch_sub(1, Ordering::SeqCst);
            // Dropping `version` here may free it: that only queues work for the reaper.
            drop(version);
        });
    match spawned {
        Ok(_) => RResult::ROk(()),
        Err(e) => {
            // The closure (and the task inside it) was dropped by the failed spawn
            // without running: FfiTask's data leaks rather than being dropped twice.
            ctx.tasks.fetch_sub(1, Ordering::SeqCst);
            RResult::RErr(Failure {
                kind: FailKind::Error,
                message: format!("cannot start a thread: {e}").into(),
            })
        }
    }
}

/// One loaded version of a plugin.
pub struct Version {
    pub(crate) record: Arc<VersionRecord>,
    /// Points into `library`, valid while it is open (for as long as `self`).
    vtable: *const PluginVTable,
    instance: InstancePtr,
    pub(crate) reloadable: bool,
    pub(crate) imports: Vec<Dependency>,
    pub(crate) export: ExportObj,
    /// The providers this version's instance was bound to (set once, before `on_load`):
    /// held so they stay loaded for as long as this instance may call into them.
    pub(crate) providers: OnceLock<Vec<Arc<Version>>>,
    /// `None` for a plugin linked into the host binary (its code is never unloaded).
    library: Option<libloading::Library>,
    pub(crate) ctx: Arc<VersionCtx>,
    reaper: ReaperHandle,
}

// SAFETY: the instance is `Send + Sync` (the `Plugin` trait requires it), the vtable is
// immutable static data, and every `&mut`-access hook runs only while the version is
// not yet published or already drained (see `PluginVTable`'s contract).
unsafe impl Send for Version {}
// SAFETY: as above.
unsafe impl Sync for Version {}

impl Version {
    /// # Safety
    /// `vtable` must point into `library` (or, with `library` `None`, be static data of
    /// the host binary: a statically linked plugin), and `instance` come from its `new`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn new(
        record: Arc<VersionRecord>,
        library: Option<libloading::Library>,
        vtable: *const PluginVTable,
        instance: InstancePtr,
        ctx: Arc<VersionCtx>,
        reaper: ReaperHandle,
        reloadable: bool,
        imports: Vec<Dependency>,
        export: ExportObj,
    ) -> Arc<Version> {
        Arc::new_cyclic(|weak| {
            let _ = ctx.version.set(weak.clone());
            Version {
                record,
                vtable,
                instance,
                reloadable,
                imports,
                export,
                providers: OnceLock::new(),
                library,
                ctx,
                reaper,
            }
        })
    }

    pub(crate) fn vtable(&self) -> &PluginVTable {
        // SAFETY: the library stays open for as long as `self` exists.
        unsafe { &*self.vtable }
    }

    pub(crate) fn instance(&self) -> InstancePtr {
        self.instance
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// The plugin's crate version.
    pub fn version(&self) -> &str {
        &self.record.version
    }

    /// Unique id of this loaded version in the process.
    pub fn id(&self) -> u64 {
        self.record.id
    }

    pub(crate) fn typed(&self, name: &str) -> Option<&TypedFn> {
        self.vtable().typed.iter().find(|t| t.name.as_str() == name)
    }

    pub(crate) fn load_error(&self, step: Step, kind: LoadErrorKind) -> LoadError {
        LoadError {
            plugin: Some(self.record.name.clone()),
            version: Some(self.record.version.clone()),
            file: Some(self.record.file.clone()),
            step,
            kind,
        }
    }

    /// Turns a hook's result into ours, copying the plugin's message out.
    pub(crate) fn hook<T>(&self, step: Step, r: RResult<T, Failure>) -> Result<T, Box<LoadError>> {
        match r {
            RResult::ROk(v) => Ok(v),
            RResult::RErr(f) => {
                let msg = f.message.as_str().to_owned();
                Err(Box::new(self.load_error(
                    step,
                    match f.kind {
                        FailKind::Error => LoadErrorKind::Hook(msg),
                        FailKind::Panic => LoadErrorKind::Panic(msg),
                    },
                )))
            }
        }
    }

    pub(crate) fn call_error(&self, function: &str, f: Failure) -> CallError {
        let (plugin, version) = (self.record.name.clone(), self.record.version.clone());
        let (function, message) = (function.to_owned(), f.message.as_str().to_owned());
        match f.kind {
            FailKind::Error => CallError::Failed {
                plugin,
                version,
                function,
                message,
            },
            FailKind::Panic => CallError::Panicked {
                plugin,
                version,
                function,
                message,
            },
        }
    }

    /// Calls the live function `name` of this version.
    pub(crate) fn call_live(&self, name: &str, args: &[Value]) -> Result<Value, CallError> {
        let f = self
            .vtable()
            .live
            .iter()
            .find(|f| f.name.as_str() == name)
            .ok_or_else(|| CallError::UnknownLive(name.to_owned()))?;
        // SAFETY: live instance, shared access (live functions take `&self`).
        match unsafe { (f.call)(self.instance, RSlice::from_slice(args)) } {
            RResult::ROk(v) => Ok(v.clone()),
            RResult::RErr(e) => Err(self.call_error(name, e)),
        }
    }

    /// Calls `invoke_func`; the result is copied into host memory before returning.
    pub fn invoke(&self, function: &str, args: &[Value]) -> Result<Value, CallError> {
        let vt = self.vtable();
        // SAFETY: the instance is live while `self` is, and invoke_func takes shared access.
        let r =
            unsafe { (vt.invoke_func)(self.instance, function.into(), RSlice::from_slice(args)) };
        match r {
            // `clone` rebuilds every allocation with the host's code; the plugin-made
            // value is dropped right here, while its library is still loaded.
            RResult::ROk(v) => Ok(v.clone()),
            RResult::RErr(f) => Err(self.call_error(function, f)),
        }
    }
}

impl Drop for Version {
    fn drop(&mut self) {
        let job = FreeJob {
            record: self.record.clone(),
            vtable: self.vtable,
            instance: self.instance,
            library: self.library.take(),
            ctx: self.ctx.clone(),
            export: std::mem::replace(
                &mut self.export,
                ExportObj {
                    ptr: std::ptr::null_mut(),
                    layout: None,
                    drop: None,
                },
            ),
            providers: self.providers.take().unwrap_or_default(),
        };
        self.reaper.free(job);
    }
}
