//! Plugin files already checked once, so that loading the same file again (a rollback,
//! two builds alternating, a dependent rebound) does not hash and parse it again.
//!
//! A file counts as checked when its [`FileIdentity`] (device, inode, size, modification
//! and status-change times, read before and after the bytes) and the sha256 its
//! manifest names are both the ones it passed the checksum, ELF and `panic = "abort"`
//! checks with. A changed manifest, a new file, or a file written since misses, and is
//! checked in full. See `FileIdentity` for the one case that is not caught (an in-place
//! rewrite to the same size within one file-time tick): whoever can do that can also
//! write a matching manifest, which the trust model already covers.
//!
//! Only checks of the bytes are skipped. The owner and mode checks of a strict host and
//! the signature of the manifest (`trust`) are not cached: they run on every scan and
//! load, on the descriptor actually read, and the sha256 a file is remembered with comes
//! from a manifest whose signature was just checked.

use hotswap_manifest::safe_fs::FileIdentity;
use parking_lot::Mutex;
use std::collections::VecDeque;

/// How many checked files are remembered (the oldest is forgotten first).
const REMEMBERED: usize = 64;

/// The files one manager has checked.
#[derive(Debug, Default)]
pub(crate) struct Verified {
    seen: Mutex<VecDeque<(FileIdentity, String)>>,
}

impl Verified {
    /// Whether the file `identity` with the manifest checksum `sha256` passed the checks.
    pub fn contains(&self, identity: &FileIdentity, sha256: &str) -> bool {
        self.seen
            .lock()
            .iter()
            .any(|(i, s)| i == identity && s == sha256)
    }

    /// Records that the file `identity` passed the checks with `sha256`.
    pub fn insert(&self, identity: FileIdentity, sha256: &str) {
        let mut seen = self.seen.lock();
        if seen.iter().any(|(i, s)| *i == identity && s == sha256) {
            return;
        }
        if seen.len() == REMEMBERED {
            seen.pop_front();
        }
        seen.push_back((identity, sha256.to_owned()));
    }

    /// How many files are remembered.
    pub fn len(&self) -> usize {
        self.seen.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity_of(dir: &std::path::Path, name: &str, bytes: &[u8]) -> FileIdentity {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        hotswap_manifest::safe_fs::read_regular_identified(&path, None)
            .unwrap()
            .1
            .unwrap()
    }

    #[test]
    fn a_file_is_known_only_with_the_checksum_it_passed_with_and_the_list_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let v = Verified::default();
        let a = identity_of(dir.path(), "a", b"a");
        assert!(!v.contains(&a, "sha-a"));
        v.insert(a, "sha-a");
        v.insert(a, "sha-a");
        assert!(v.contains(&a, "sha-a"));
        assert!(!v.contains(&a, "another manifest"));
        assert_eq!(v.len(), 1);
        for i in 0..REMEMBERED + 10 {
            let f = identity_of(dir.path(), &format!("f{i}"), b"x");
            v.insert(f, "sha");
        }
        assert_eq!(v.len(), REMEMBERED);
        assert!(!v.contains(&a, "sha-a"), "the oldest was forgotten");
    }
}
