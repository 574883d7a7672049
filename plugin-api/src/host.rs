//! The host, as plugin code sees it: background tasks the host tracks, and the vault
//! handle given to `on_init`.

use crate::vtable::{FailKind, FfiTask, HostHandle, VaultHandle};
use std::ffi::c_void;
use std::sync::OnceLock;

// One per loaded library file: each version of a plugin is its own copy of the file,
// so this static is per version, which is what the host's task tracking needs.
static HOST: OnceLock<HostHandle> = OnceLock::new();

pub(crate) fn set(host: HostHandle) {
    // A second instance from the same file gets the same handle; keeping the first is fine.
    let _ = HOST.set(host);
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
/// Prefer this to `std::thread::spawn`: a raw thread is invisible to the host, which may
/// unload the code it runs (the author's responsibility, see the README).
///
/// Fails when called before the host created this plugin (from a static initializer) or
/// when the host refuses (it is shutting down).
pub fn spawn(name: &str, task: impl FnOnce() + Send + 'static) -> Result<(), SpawnError> {
    let host = HOST
        .get()
        .ok_or_else(|| SpawnError("the host has not created this plugin yet".into()))?;
    type Boxed = Box<dyn FnOnce() + Send>;
    unsafe extern "C" fn run(data: *mut c_void) {
        // SAFETY: `data` is the `Box<Boxed>` leaked below; the host calls run at most once
        // and never calls drop after run.
        let task = unsafe { Box::from_raw(data.cast::<Boxed>()) };
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(*task)) {
            let msg = crate::glue::panic_message(&*payload);
            eprintln!("hotswap: a plugin task panicked: {msg}");
        }
    }
    unsafe extern "C" fn drop(data: *mut c_void) {
        // SAFETY: as in `run`; the host calls drop only for a task it did not run.
        std::mem::drop(unsafe { Box::from_raw(data.cast::<Boxed>()) });
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

/// The vault as `on_init` sees it: for now the generation being initialised; host-owned
/// state (DataBag, Extension, live things) hangs off it.
pub struct Vault {
    handle: VaultHandle,
}

impl Vault {
    pub(crate) fn from_handle(handle: VaultHandle) -> Vault {
        Vault { handle }
    }

    /// Id of the generation this `on_init` belongs to (grows by one per published reload).
    pub fn generation(&self) -> u64 {
        self.handle.generation
    }
}
