//! Spare private copies: the private copy of an unloaded version, kept so that loading
//! the same checked file again (a rollback, two builds alternating, a dependent rebound
//! to an unchanged file) opens it where it is instead of copying the library again
//! (copying a library of a few hundred KiB is most of a reload's time: the kernel
//! allocates and fills every page; even a rename into the version's own name costs a
//! twentieth of a reload, so the spare keeps its name).
//!
//! A copy is kept only once its library is closed and no longer mapped (the reaper
//! checks `/proc/self/maps`; a copy still mapped is deleted as before), so `dlopen` of
//! it never returns a library that is still open; its name (`spare-<n>-<file>`, `n`
//! counting the manager's spares) is never given to another file while it lives. It
//! is taken only for a file the `verified` cache knows with the same [`FileIdentity`]
//! and manifest sha256 it was made from, so it holds exactly the bytes that file has
//! and that passed the checks; the owner and mode checks of the file (`trust`) still
//! run on every load, on the descriptor opened. Copies live in the manager's private
//! directory (mode 0700), which only the host's user can write. At most [`SPARES`] are
//! kept: the oldest is deleted when another comes, and all go with the private
//! directory when the manager is dropped.

use hotswap_manifest::safe_fs::FileIdentity;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How many spare copies one manager keeps at most.
pub(crate) const SPARES: usize = 4;

/// The file a private copy was made from: its identity and its manifest's sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Source {
    pub identity: FileIdentity,
    pub sha256: String,
}

/// One manager's spare copies, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Spares {
    kept: Mutex<VecDeque<(Source, PathBuf)>>,
    /// Numbers the spares' file names.
    named: AtomicU64,
}

impl Spares {
    /// The path of the spare copy of `source`, if there is one, which from now on is
    /// the caller's: to open as a new version's private copy, and to delete or
    /// [`put`](Self::put) back when that version is unloaded. `None` when there is no
    /// such copy (the caller copies the file as usual).
    pub fn take(&self, source: &Source) -> Option<PathBuf> {
        let mut kept = self.kept.lock();
        let at = kept.iter().position(|(s, _)| s == source)?;
        kept.remove(at).map(|(_, path)| path)
    }

    /// Keeps `path`, the private copy of `source` whose library is closed and unmapped,
    /// for a later [`take`](Self::take), renamed to `spare-<n>-<name>` beside it (`name`:
    /// the library's file name in the plugin directory; the version's own path is gone,
    /// as for a deleted copy); deletes the oldest copy past [`SPARES`], and a copy of
    /// the same bytes (the same checksum) already kept, whose file was rewritten since
    /// or is the same one. A copy that cannot be renamed is deleted. `Err` says what
    /// could not be done (for the caller to log: this runs where no event may be sent
    /// before the unload's bookkeeping is done).
    pub fn put(&self, source: Source, name: &str, path: &Path) -> Result<(), String> {
        let n = self.named.fetch_add(1, Ordering::Relaxed);
        let spare = path.with_file_name(format!("spare-{n}-{name}"));
        if let Err(e) = std::fs::rename(path, &spare) {
            let _ = std::fs::remove_file(path);
            return Err(format!("cannot keep {}: {e}", path.display()));
        }
        let path = spare;
        let dropped: Vec<PathBuf> = {
            let mut kept = self.kept.lock();
            let mut dropped = Vec::new();
            if let Some(i) = kept.iter().position(|(s, _)| s.sha256 == source.sha256) {
                dropped.extend(kept.remove(i).map(|(_, p)| p));
            }
            kept.push_back((source, path));
            while kept.len() > SPARES {
                dropped.extend(kept.pop_front().map(|(_, p)| p));
            }
            dropped
        };
        let mut why = Ok(());
        for p in dropped {
            if let Err(e) = std::fs::remove_file(&p) {
                why = Err(format!("cannot delete {}: {e}", p.display()));
            }
        }
        why
    }

    /// How many spare copies are kept.
    pub fn len(&self) -> usize {
        self.kept.lock().len()
    }
}

/// Where the private copy of a version goes when its library is closed and unmapped:
/// to the manager's spares, as a copy of `source`, the library named `name` in the
/// plugin directory.
#[derive(Debug, Clone)]
pub(crate) struct KeepAs {
    pub spares: Arc<Spares>,
    pub source: Source,
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source_of(dir: &Path, name: &str, sha: &str) -> (Source, PathBuf) {
        let path = dir.join(name);
        std::fs::write(&path, name.as_bytes()).unwrap();
        let identity = hotswap_manifest::safe_fs::read_regular_identified(&path, None)
            .unwrap()
            .1
            .unwrap();
        let source = Source {
            identity,
            sha256: sha.to_owned(),
        };
        let copy = dir.join(format!("copy-{name}"));
        std::fs::write(&copy, name.as_bytes()).unwrap();
        (source, copy)
    }

    #[test]
    fn a_spare_is_taken_once_only_for_its_source_and_the_oldest_go_past_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let spares = Spares::default();
        let (a, a_copy) = source_of(dir.path(), "a", "sha-a");
        spares.put(a.clone(), "a", &a_copy).unwrap();
        assert!(!a_copy.exists(), "renamed to a spare's name");
        let other_sha = Source {
            sha256: "another manifest".into(),
            ..a.clone()
        };
        assert_eq!(spares.take(&other_sha), None, "same file, another checksum");
        let taken = spares.take(&a).expect("kept");
        assert_eq!(taken, dir.path().join("spare-0-a"));
        assert_eq!(std::fs::read(&taken).unwrap(), b"a", "the copy, as it was");
        assert_eq!(spares.take(&a), None, "taken once");
        // Put back after another use: named afresh, not by a name that grows.
        spares.put(a.clone(), "a", &taken).unwrap();
        assert!(!taken.exists());
        assert_eq!(spares.take(&a), Some(dir.path().join("spare-1-a")));
        // The one taken stays, as a version's copy would (the file count below has it).
        std::fs::rename(dir.path().join("spare-1-a"), dir.path().join("1-a")).unwrap();

        let mut copies = Vec::new();
        for i in 0..SPARES + 2 {
            let (s, c) = source_of(dir.path(), &format!("f{i}"), &format!("sha-{i}"));
            spares.put(s.clone(), &format!("f{i}"), &c).unwrap();
            copies.push(s);
        }
        assert_eq!(spares.len(), SPARES);
        let files = || std::fs::read_dir(dir.path()).unwrap().count();
        // The sources, the one taken, and the spares kept: the oldest were deleted.
        assert_eq!(files(), 1 + (SPARES + 2) + 1 + SPARES);
        for s in &copies[..2] {
            assert_eq!(spares.take(s), None);
        }
        // A second copy of the same bytes replaces the first (same checksum).
        let again = dir.path().join("again");
        std::fs::write(&again, b"x").unwrap();
        let rewritten = Source {
            identity: a.identity,
            ..copies[SPARES + 1].clone()
        };
        spares.put(rewritten, "again", &again).unwrap();
        assert_eq!(spares.len(), SPARES);
        assert_eq!(files(), 1 + (SPARES + 2) + 1 + SPARES);
    }
}
