//! A version's open library ([`Lib`]) and the work its last users hand to the reaper:
//! a [`FreeJob`] when the last `Version` goes (run `on_free`, drop the instance), a
//! [`CloseJob`] when the last `Lib` goes (close the library), sent through [`Jobs`].
//!
//! Below `version` and `reaper` on purpose: a `Version` sends its jobs from its `Drop`,
//! and the reaper, above both, runs them; `Jobs` is the reaper's inbox as these types
//! see it, so neither file imports the other.

use crate::ctx::VersionCtx;
use crate::spare::KeepAs;
use crate::status::VersionRecord;
use hotswap_abi::vtable::{InstancePtr, PluginVTable};
use parking_lot::Mutex;
use std::ffi::c_void;
use std::sync::{Arc, Weak};

/// Something kept alive until a job is done (a provider `Version` its dependent was
/// bound to), whatever its type.
pub(crate) type Keep = Arc<dyn Send + Sync>;

/// A version's export: owned by the version, freed by the reaper after `on_free`.
pub(crate) struct ExportObj {
    pub ptr: *mut c_void,
    pub layout: Option<&'static abi_stable::type_layout::TypeLayout>,
    pub drop: Option<unsafe extern "C" fn(*mut c_void)>,
}

impl ExportObj {
    pub fn none() -> ExportObj {
        ExportObj {
            ptr: std::ptr::null_mut(),
            layout: None,
            drop: None,
        }
    }
}

// SAFETY: the export is `Send + Sync` (`Export::new` requires it); the layout is
// immutable static data.
unsafe impl Send for ExportObj {}

/// The open library of one version (none for a plugin linked into the host binary).
/// Whoever may run the version's code holds an `Arc<Lib>`; when the last one goes, the
/// library is handed to the reaper, which closes it once no thread holds per-thread
/// state of it.
pub(crate) struct Lib {
    library: Option<libloading::Library>,
    record: Arc<VersionRecord>,
    ctx: Arc<VersionCtx>,
    /// Providers a dependent was bound to: released after its library is closed.
    providers: Mutex<Vec<Keep>>,
    jobs: Jobs,
    keep_as: Option<KeepAs>,
}

impl Lib {
    /// The library of a version; `keep_as`: where its private copy goes once the
    /// library is closed and unmapped (`None`: deleted).
    pub fn new(
        library: Option<libloading::Library>,
        record: Arc<VersionRecord>,
        ctx: Arc<VersionCtx>,
        jobs: Jobs,
        keep_as: Option<KeepAs>,
    ) -> Arc<Lib> {
        Arc::new(Lib {
            library,
            record,
            ctx,
            providers: Mutex::new(Vec::new()),
            jobs,
            keep_as,
        })
    }

    /// Keeps `providers` until this library is closed.
    pub fn keep_providers(&self, providers: Vec<Keep>) {
        self.providers.lock().extend(providers);
    }
}

impl Drop for Lib {
    fn drop(&mut self) {
        self.jobs.close(CloseJob {
            library: self.library.take().map(Closable::new),
            record: self.record.clone(),
            ctx: self.ctx.clone(),
            providers: std::mem::take(&mut *self.providers.lock()),
            keep_as: self.keep_as.take(),
        });
    }
}

/// A pointer to a vtable inside a library, movable to the hook thread with an
/// `Arc<Lib>` that keeps it valid.
#[derive(Clone, Copy)]
pub(crate) struct VtPtr(pub *const PluginVTable);

// SAFETY: the vtable is immutable static data of a library that whoever holds the
// pointer keeps open (with an `Arc<Lib>`).
unsafe impl Send for VtPtr {}

/// What is left of a version once its last user is gone.
pub(crate) struct FreeJob {
    pub record: Arc<VersionRecord>,
    pub vtable: VtPtr,
    pub instance: InstancePtr,
    pub lib: Arc<Lib>,
    pub ctx: Arc<VersionCtx>,
    pub export: ExportObj,
    /// Released only after this version's library is closed: providers outlive their
    /// dependents, and dependents' `on_free` runs first.
    pub providers: Vec<Keep>,
}

// SAFETY: the instance is Send + Sync (Plugin requires it) and nothing else uses it any
// more; the vtable is immutable static data inside `lib`, which moves with it.
unsafe impl Send for FreeJob {}

/// A library handed to the reaper: closed by [`close`](Self::close) only. Dropped any
/// other way (a panic unwinding past the job that holds it, an inbox that is gone) it
/// stays open and mapped, as a thread may still run its code: a leak, never a
/// `dlclose` that skipped the reaper's checks.
pub(crate) struct Closable(std::mem::ManuallyDrop<libloading::Library>);

impl Closable {
    fn new(library: libloading::Library) -> Closable {
        Closable(std::mem::ManuallyDrop::new(library))
    }

    /// `dlclose`s the library (see `libloading::Library::close`).
    pub fn close(self) -> Result<(), libloading::Error> {
        let mut me = std::mem::ManuallyDrop::new(self);
        // SAFETY: `me` is never used or dropped again, so the library is taken once.
        unsafe { std::mem::ManuallyDrop::take(&mut me.0) }.close()
    }
}

/// A library nobody may run any more, waiting to be closed.
pub(crate) struct CloseJob {
    /// `None` for a plugin linked into the host binary.
    pub library: Option<Closable>,
    pub record: Arc<VersionRecord>,
    pub ctx: Arc<VersionCtx>,
    pub providers: Vec<Keep>,
    /// Where the private copy goes once the library is unmapped (`None`: deleted).
    pub keep_as: Option<KeepAs>,
}

/// Work for the reaper.
pub(crate) enum Job {
    Free(Box<FreeJob>),
    Close(Box<CloseJob>),
    /// Something a closing library waits for changed.
    Poke,
}

type SendJob = dyn Fn(Job) -> Result<(), Job> + Send + Sync;

/// Sends [`Job`]s to a manager's reaper (its inbox, made by `reaper::start`).
#[derive(Clone)]
pub(crate) struct Jobs(Arc<SendJob>);

impl Jobs {
    /// An inbox that hands each job to `send`, which gives it back if the reaper is gone.
    pub fn new(send: impl Fn(Job) -> Result<(), Job> + Send + Sync + 'static) -> Jobs {
        Jobs(Arc::new(send))
    }

    pub fn free(&self, job: FreeJob) {
        if let Err(Job::Free(job)) = (self.0)(Job::Free(Box::new(job))) {
            // The reaper is gone; a reader could still be inside, so never free inline.
            std::mem::forget(job);
        }
    }

    pub fn close(&self, job: CloseJob) {
        if let Err(Job::Close(job)) = (self.0)(Job::Close(Box::new(job))) {
            // The reaper is gone: never close a library some thread may still need.
            std::mem::forget(job);
        }
    }

    /// A function that wakes the reaper (if it is still there) without keeping it.
    pub fn poker(&self) -> impl Fn() + Send + Sync + 'static {
        let weak: Weak<SendJob> = Arc::downgrade(&self.0);
        move || {
            if let Some(send) = weak.upgrade() {
                let _ = send(Job::Poke);
            }
        }
    }
}
