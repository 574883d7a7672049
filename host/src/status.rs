//! What is in memory: every version still loaded or still mapped, and why.

use parking_lot::Mutex;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

/// Where a version is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum VersionState {
    /// Part of the generation calls start on now.
    Current,
    /// Retired, waiting for calls, values or tasks that still use it.
    Draining {
        /// Host-tracked tasks of this version still running.
        tasks: usize,
    },
    /// `on_free` ran and the library was closed, but the file is still mapped.
    Pinned {
        /// Why, as far as the host can tell.
        reason: String,
    },
}

/// One version still in memory, as [`Status`] lists it.
#[derive(Debug, Clone, Serialize)]
pub struct VersionStatus {
    /// Process-unique id of the loaded version.
    pub id: u64,
    /// Plugin name.
    pub plugin: String,
    /// Crate version.
    pub version: String,
    /// Unique build id from the manifest.
    pub build_id: String,
    /// The file in the plugin directory it was loaded from.
    pub file: PathBuf,
    /// sha256 of the file.
    pub sha256: String,
    /// Its state.
    #[serde(flatten)]
    pub state: VersionState,
}

/// A snapshot of the host, from [`PluginManager::status`](crate::PluginManager::status).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Id of the current generation (0 before the first load).
    pub generation: u64,
    /// Every version still in memory: current, draining, pinned.
    pub versions: Vec<VersionStatus>,
    /// How readers are fenced: `membarrier`, or `fence (…why…)`.
    pub reclamation: String,
    /// Reloads published since start.
    pub reloads: u64,
    /// Versions unloaded and verified unmapped since start.
    pub unloaded: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordState {
    Loaded,
    Freed { still_mapped: bool },
}

/// The host's record of one loaded version; outlives the version until it is unmapped.
#[derive(Debug)]
pub(crate) struct VersionRecord {
    pub id: u64,
    pub name: String,
    pub version: String,
    pub build_id: String,
    pub file: PathBuf,
    /// The private copy that was dlopened; `None` for a plugin linked into the host
    /// binary, which has no file of its own to check in `/proc/self/maps` or delete.
    pub private_path: Option<PathBuf>,
    pub sha256: String,
    #[allow(dead_code)]
    pub loaded_at: SystemTime,
    pub state: Mutex<RecordState>,
}

/// All records of a manager, shared with its reaper.
#[derive(Debug, Default)]
pub(crate) struct Records {
    pub list: Mutex<Vec<Arc<VersionRecord>>>,
    pub unloaded: Mutex<u64>,
}

impl Records {
    pub fn add(&self, r: Arc<VersionRecord>) {
        self.list.lock().push(r);
    }

    /// Called by the reaper after closing a library.
    pub fn freed(&self, r: &Arc<VersionRecord>, still_mapped: bool) {
        *r.state.lock() = RecordState::Freed { still_mapped };
        if !still_mapped {
            *self.unloaded.lock() += 1;
            self.list.lock().retain(|x| !Arc::ptr_eq(x, r));
        }
    }
}

/// Why glibc may keep a closed library mapped.
pub(crate) const PINNED_REASON: &str = "dlclose did not unmap it: a thread that ran its code registered a thread-local destructor and is still alive (glibc keeps the object until that thread exits), or something else holds a dlopen handle to it";
