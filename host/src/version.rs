//! [`Version`]: one loaded plugin file with its instance; [`Lib`], the open library it
//! runs from.
//!
//! Ownership decides when code goes away (DESIGN invariants 3 and 7): a `Version` holds
//! its `Lib`, and so does everything else that runs or may run the version's code (a
//! hook job on a reload's hook thread, the thread running its `on_free`). When the last
//! `Arc<Version>` goes, the reaper runs `on_free` and the instance's drop; when the last
//! `Arc<Lib>` goes, the reaper closes the library once no thread holds per-thread state
//! of it ([`crate::threads`]). Neither ever happens on a caller's thread.

use crate::call_stats::{CallCounters, Kind};
use crate::ctx::VersionCtx;
use crate::error::{CallError, LoadError, LoadErrorKind, Step};
use crate::library::{ExportObj, FreeJob, Jobs, Keep, Lib, VtPtr};
use crate::status::VersionRecord;
use abi_stable::std_types::{RResult, RSlice, RStr};
use hotswap_abi::vtable::{FailKind, Failure, InstancePtr, PluginVTable, TypedFn};
use hotswap_plugin_api::Value;
use std::sync::{Arc, OnceLock};

/// A dependency as the host keeps it.
#[derive(Debug, Clone)]
pub(crate) struct Dependency {
    pub plugin: String,
    pub version_req: String,
    /// The type the dependent expects, inside the dependent's library (which the
    /// `Version` holding this keeps open).
    pub layout: Option<&'static abi_stable::type_layout::TypeLayout>,
}

/// A failure copied out of the plugin: the plugin-made message is dropped at the
/// boundary, inside the hook job, while the library is open.
#[derive(Debug, Clone)]
pub(crate) struct OwnedFailure {
    pub kind: FailKind,
    pub message: String,
}

impl OwnedFailure {
    pub fn of(f: Failure) -> OwnedFailure {
        OwnedFailure {
            kind: f.kind,
            message: f.message.as_str().to_owned(),
        }
    }

    pub fn into_kind(self) -> LoadErrorKind {
        match self.kind {
            FailKind::Error => LoadErrorKind::Hook(self.message),
            FailKind::Panic => LoadErrorKind::Panic(self.message),
        }
    }
}

/// A plugin-made result turned into host-owned data where it is received.
pub(crate) fn owned<T>(r: RResult<T, Failure>) -> Result<T, OwnedFailure> {
    r.into_result().map_err(OwnedFailure::of)
}

/// One loaded version of a plugin.
pub struct Version {
    pub(crate) record: Arc<VersionRecord>,
    /// Points into `lib`, valid while it is open (for as long as `self`).
    vtable: *const PluginVTable,
    instance: InstancePtr,
    pub(crate) reloadable: bool,
    pub(crate) imports: Vec<Dependency>,
    pub(crate) export: ExportObj,
    /// The providers this version's instance was bound to (set once, before `on_load`):
    /// held so they stay loaded for as long as this instance may call into them.
    pub(crate) providers: OnceLock<Vec<Arc<Version>>>,
    lib: Arc<Lib>,
    pub(crate) ctx: Arc<VersionCtx>,
    jobs: Jobs,
}

// SAFETY: the instance is `Send + Sync` (the `Plugin` trait requires it), the vtable is
// immutable static data, and every `&mut`-access hook runs only while the version is
// not yet published or already drained (see `PluginVTable`'s contract).
unsafe impl Send for Version {}
// SAFETY: as above.
unsafe impl Sync for Version {}

/// What a version's instantiation hooks answered, in host-owned form.
pub(crate) struct Instantiated {
    pub instance: InstancePtr,
    pub reloadable: bool,
    pub imports: Vec<Dependency>,
    pub export: ExportObj,
}

impl Version {
    /// # Safety
    /// `vtable` must point into `lib`'s library (or, with none, be static data of the
    /// host binary: a statically linked plugin), and `parts.instance` come from its
    /// `new`, with `parts.export` made by its `export`.
    pub(crate) unsafe fn new(
        record: Arc<VersionRecord>,
        lib: Arc<Lib>,
        vtable: *const PluginVTable,
        parts: Instantiated,
        ctx: Arc<VersionCtx>,
        jobs: Jobs,
    ) -> Arc<Version> {
        Arc::new_cyclic(|weak: &std::sync::Weak<Version>| {
            ctx.set_version(weak.clone());
            Version {
                record,
                vtable,
                instance: parts.instance,
                reloadable: parts.reloadable,
                imports: parts.imports,
                export: parts.export,
                providers: OnceLock::new(),
                lib,
                ctx,
                jobs,
            }
        })
    }

    pub(crate) fn vtable(&self) -> &PluginVTable {
        // SAFETY: the library stays open for as long as `self` exists (it holds `lib`).
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

    /// A call's failure as a host-owned error; counted in the version's call metrics.
    #[cold]
    #[inline(never)]
    pub(crate) fn call_error(&self, function: &str, f: Failure) -> CallError {
        if let Some(c) = &self.record.calls {
            c.failed(f.kind == FailKind::Panic);
        }
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
        self.counted(Kind::Live, || self.call_live_uncounted(name, args))
    }

    fn call_live_uncounted(&self, name: &str, args: &[Value]) -> Result<Value, CallError> {
        let f = self
            .vtable()
            .live
            .iter()
            .find(|f| f.name.as_str() == name)
            .ok_or_else(|| CallError::UnknownLive(name.to_owned()))?;
        // SAFETY: live instance, shared access (live functions take `&self`).
        match unsafe { (f.call)(self.instance, RSlice::from_slice(args)) } {
            RResult::ROk(v) => host_owned(v).map_err(|f| self.call_error(name, f)),
            RResult::RErr(e) => Err(self.call_error(name, e)),
        }
    }

    /// Calls `invoke_func`; the result is copied into host memory before returning.
    #[inline]
    pub fn invoke(&self, function: &str, args: &[Value]) -> Result<Value, CallError> {
        // SAFETY: taken from `self`, which the borrow keeps alive for the call.
        unsafe { self.by_name().invoke(self, function, args) }
    }

    /// What a call by name needs of this version, to keep in a flat table.
    pub(crate) fn by_name(&self) -> ByName {
        ByName {
            entry: self.vtable().invoke_func,
            instance: self.instance,
            calls: self
                .record
                .calls
                .as_ref()
                .map_or(std::ptr::null(), |c| c as *const CallCounters),
        }
    }

    /// Runs the call `f`, counted (and timed if sampled) as a call of `kind`.
    #[inline(always)]
    fn counted<T>(&self, kind: Kind, f: impl FnOnce() -> T) -> T {
        match &self.record.calls {
            Some(c) if c.count(kind) => timed(c, f),
            _ => f(),
        }
    }
}

/// The entry point of a call by name (`PluginVTable::invoke_func`).
type InvokeFn =
    unsafe extern "C" fn(InstancePtr, RStr<'_>, RSlice<'_, Value>) -> RResult<Value, Failure>;

/// What a call by name needs of one version, copied out of it ([`Version::by_name`]): the
/// entry point and instance, and the call counters (null when call metrics are off), so
/// that a generation keeps them beside the plugin's name and a call by name reads one
/// table instead of chasing the version and its record.
#[derive(Clone, Copy)]
pub(crate) struct ByName {
    entry: InvokeFn,
    instance: InstancePtr,
    calls: *const CallCounters,
}

impl ByName {
    /// Calls `function` with `args`; the result is host-owned. Counted in the version's
    /// call metrics; a failure is a [`CallError`] naming `version`'s plugin.
    ///
    /// # Safety
    /// `self` must have been taken from `version` (by [`Version::by_name`]), which then
    /// stays alive for the call: it holds the library the entry point is in, the
    /// instance and the record the counters are in.
    #[inline(always)]
    pub(crate) unsafe fn invoke(
        &self,
        version: &Version,
        function: &str,
        args: &[Value],
    ) -> Result<Value, CallError> {
        let call = || {
            // SAFETY: the entry point and instance of a live version (the caller's
            // contract), and `invoke_func` takes shared access.
            let r = unsafe { (self.entry)(self.instance, function.into(), args.into()) };
            match r {
                // A scalar owns nothing of the plugin and is returned as it is (matched
                // by reference first, so it is moved once); anything else is rebuilt by
                // host code (`clone`) and the plugin-made value dropped right here,
                // while its library is still loaded (`rebuilt`).
                RResult::ROk(v) if is_scalar(&v) => Ok(v),
                RResult::ROk(v) => rebuilt(v).map_err(|f| version.call_error(function, f)),
                RResult::RErr(f) => Err(version.call_error(function, f)),
            }
        };
        // SAFETY: non-null, `calls` points into the record `version` holds (the
        // caller's contract).
        match unsafe { self.calls.as_ref() } {
            Some(c) if c.count(Kind::ByName) => timed(c, call),
            _ => call(),
        }
    }
}

/// Runs `f` timed into `c`: out of line, so the inlined call path carries one copy of
/// the call, not a second inside the clock reads.
#[cold]
#[inline(never)]
fn timed<T>(c: &CallCounters, f: impl FnOnce() -> T) -> T {
    c.time(f)
}

/// Whether `v` owns nothing (no allocation made by plugin code).
#[inline(always)]
fn is_scalar(v: &Value) -> bool {
    matches!(
        v,
        Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_)
    )
}

/// `v`, made by plugin code, as a host-owned value: a scalar as it is (it owns nothing
/// of the plugin), anything else cloned by host code and the plugin-made value dropped
/// here (its drop runs the plugin's own code, while its library is loaded).
#[inline(always)]
fn host_owned(v: Value) -> Result<Value, Failure> {
    if is_scalar(&v) {
        Ok(v)
    } else {
        rebuilt(v)
    }
}

/// `v` rebuilt by host code, and the plugin-made `v` dropped: out of line, so a call
/// by name answering a scalar carries neither the clone's nor the drop's code.
#[cold]
#[inline(never)]
fn rebuilt(v: Value) -> Result<Value, Failure> {
    // The clone recurses: a value nested without end would overflow this stack.
    if crate::value_depth::deeper_than(&v, crate::value_depth::MAX_DEPTH) {
        return Err(Failure {
            kind: FailKind::Error,
            message: format!(
                "the plugin's answer is nested deeper than {} levels",
                crate::value_depth::MAX_DEPTH
            )
            .into(),
        });
    }
    Ok(v.clone())
}

impl Drop for Version {
    fn drop(&mut self) {
        let job = FreeJob {
            record: self.record.clone(),
            vtable: VtPtr(self.vtable),
            instance: self.instance,
            lib: self.lib.clone(),
            ctx: self.ctx.clone(),
            export: std::mem::replace(&mut self.export, ExportObj::none()),
            providers: (self.providers.take().unwrap_or_default())
                .into_iter()
                .map(|p| p as Keep)
                .collect(),
        };
        self.jobs.free(job);
    }
}
