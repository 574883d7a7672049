//! [`VersionCtx`]: what a version's plugin code uses to find its way back to the host
//! (`HostHandle::ctx`), and [`Services`], what it reaches through it.
//!
//! This sits below the version and the manager on purpose: the manager owns the
//! versions, and their context must reach the manager's vault, extension and live
//! functions without naming it. `Services` turns that dependency around (the manager's
//! shared state implements it), so no file here imports one above it.

use crate::error::CallError;
use crate::threads::Holds;
use crate::vault::{ExtensionObj, Staging, Vault};
use hotswap_plugin_api::Value;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};

/// What plugin code reaches through its context: the manager's shared state.
pub(crate) trait Services: Send + Sync {
    /// The manager's DataBag.
    fn vault(&self) -> &Vault;
    /// Runs `f` with the extension of the generation the calling thread runs on (nested
    /// in a call, that call's generation).
    fn with_extension(&self, f: &mut dyn FnMut(Option<&ExtensionObj>));
    /// Calls the live function `name` on the current generation.
    fn call_live(&self, name: &str, args: &[Value]) -> Result<Value, CallError>;
}

/// What the host gives a version's plugin code to find its way back (`HostHandle::ctx`).
/// Kept alive for as long as the version's file is mapped (see `reaper`), so a callback
/// from its code never reads freed memory.
pub(crate) struct VersionCtx {
    /// The version, for `spawn` (a task keeps it alive); set once it exists.
    version: OnceLock<Weak<dyn Send + Sync>>,
    pub label: String,
    /// Plugin name and crate version, attached to the plugin's log events.
    pub plugin: String,
    pub version_str: String,
    /// The manager, for the vault, the extension and live functions.
    pub manager: Weak<dyn Services>,
    /// What the version holds on threads.
    pub holds: Arc<Holds>,
    /// Set once `on_free` and the instance's drop ran: callbacks then refuse.
    freed: AtomicBool,
    /// Set once the version left the current generation (or never reached it): its
    /// code learns it through `HostVTable::retired`.
    retired: AtomicBool,
    /// The DataBag writes of the reload that loaded this version.
    staging: Mutex<Option<Arc<Staging>>>,
}

impl VersionCtx {
    pub fn new(
        label: String,
        plugin: String,
        version_str: String,
        manager: Weak<dyn Services>,
        holds: Arc<Holds>,
        staging: Option<Arc<Staging>>,
    ) -> Arc<VersionCtx> {
        Arc::new(VersionCtx {
            version: OnceLock::new(),
            label,
            plugin,
            version_str,
            manager,
            holds,
            freed: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            staging: Mutex::new(staging),
        })
    }

    /// Records the version this context belongs to (once, when it is made).
    pub fn set_version(&self, version: Weak<dyn Send + Sync>) {
        let _ = self.version.set(version);
    }

    /// The version, to keep it loaded while a task of it runs; `None` once it is being
    /// freed.
    pub fn version(&self) -> Option<Arc<dyn Send + Sync>> {
        self.version.get().and_then(Weak::upgrade)
    }

    /// `on_free` and the instance's drop ran.
    pub fn set_freed(&self) {
        self.freed.store(true, Ordering::SeqCst);
    }

    pub fn is_freed(&self) -> bool {
        self.freed.load(Ordering::SeqCst)
    }

    /// The version is retired: a published generation no longer holds it, or the
    /// reload that loaded it failed (see `manager.rs::swap_inner`).
    pub fn set_retired(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    /// What `HostVTable::retired` answers: marked retired, freed, or its manager is
    /// gone (nothing will ever call it again). Never upgrades the manager's `Weak`, so
    /// a plugin thread polling this never ends up dropping the manager.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst) || self.is_freed() || self.manager.strong_count() == 0
    }

    pub fn staging(&self) -> Option<Arc<Staging>> {
        self.staging.lock().clone()
    }
}
