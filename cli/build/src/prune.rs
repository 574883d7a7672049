//! `--keep`: deleting old builds of a plugin from the output directory.

use crate::log::Log;
use hotswap_manifest::{Manifest, MANIFEST_SUFFIX};
use std::io;
use std::path::{Path, PathBuf};

/// One build of a plugin found in the output directory, for pruning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildEntry {
    /// `build_time_ms` of its manifest.
    pub build_time_ms: u64,
    /// `build_id` of its manifest (breaks ties between equal times).
    pub build_id: String,
}

/// Indices into `builds` of the builds `--keep keep` deletes: all but the `keep` newest
/// (by build time, then build id). The build whose id is `current` is always kept.
pub fn select_prunable(builds: &[BuildEntry], keep: usize, current: &str) -> Vec<usize> {
    let mut order: Vec<usize> = (0..builds.len()).collect();
    order.sort_by(|&a, &b| {
        let key = |i: usize| {
            let b = &builds[i];
            (b.build_id == current, b.build_time_ms, b.build_id.as_str())
        };
        key(b).cmp(&key(a))
    });
    let mut doomed: Vec<usize> = order.into_iter().skip(keep).collect();
    doomed.sort_unstable();
    doomed
}

/// Deletes all but the `keep` newest builds of `current`'s plugin in `dir` (manifest first,
/// then library, so a host never finds a manifest without its library). Returns the
/// libraries deleted. Problems are warnings: the build itself has already succeeded.
pub(crate) fn prune(dir: &Path, current: &Manifest, keep: usize, log: &Log) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            log.warn(format_args!(
                "--keep: cannot list {}: {e}; nothing pruned",
                dir.display()
            ));
            return Vec::new();
        }
    };
    let mut found: Vec<(PathBuf, Manifest)> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let is_manifest = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(MANIFEST_SUFFIX));
        if !is_manifest {
            continue;
        }
        match Manifest::read(&path) {
            Ok(m) if m.name == current.name => found.push((path, m)),
            Ok(_) => {}
            Err(e) => log.step(format_args!("--keep: skipping {e}")),
        }
    }
    let builds: Vec<BuildEntry> = found
        .iter()
        .map(|(_, m)| BuildEntry {
            build_time_ms: m.build_time_ms,
            build_id: m.build_id.clone(),
        })
        .collect();
    let mut pruned = Vec::new();
    for index in select_prunable(&builds, keep, &current.build_id) {
        let (manifest_path, manifest) = &found[index];
        // Only ever delete a plain file name inside `dir`, whatever the manifest says.
        if Path::new(&manifest.file).file_name() != Some(std::ffi::OsStr::new(&manifest.file)) {
            log.warn(format_args!(
                "--keep: {} names file {:?} outside its directory; not deleted",
                manifest_path.display(),
                manifest.file
            ));
            continue;
        }
        let library = dir.join(&manifest.file);
        log.step(format_args!("--keep: deleting {}", library.display()));
        if let Err(e) = std::fs::remove_file(manifest_path) {
            log.warn(format_args!(
                "--keep: cannot delete {}: {e}",
                manifest_path.display()
            ));
            continue;
        }
        // Its signature, if it was signed, goes with it.
        let _ = std::fs::remove_file(Manifest::signature_path(manifest_path));
        match std::fs::remove_file(&library) {
            Ok(()) => pruned.push(library),
            Err(e) if e.kind() == io::ErrorKind::NotFound => pruned.push(library),
            Err(e) => log.warn(format_args!(
                "--keep: cannot delete {}: {e}",
                library.display()
            )),
        }
    }
    pruned
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packaging::library_file_name;
    use crate::time::UtcTime;
    use hotswap_manifest::MANIFEST_FORMAT;

    fn entry(ms: u64, id: &str) -> BuildEntry {
        BuildEntry {
            build_time_ms: ms,
            build_id: id.into(),
        }
    }

    #[test]
    fn prune_selection() {
        let builds = [
            entry(100, "a"),
            entry(300, "c"),
            entry(200, "b"),
            entry(300, "d"),
        ];
        // Newest first: d (300, "d" > "c"), c, b, a.
        assert_eq!(select_prunable(&builds, 1, "d"), [0, 1, 2]);
        assert_eq!(select_prunable(&builds, 2, "d"), [0, 2]);
        assert_eq!(select_prunable(&builds, 4, "d"), Vec::<usize>::new());
        assert_eq!(select_prunable(&builds, 10, "d"), Vec::<usize>::new());
        // The current build survives even if another claims to be newer (clock skew).
        assert_eq!(select_prunable(&builds, 1, "a"), [1, 2, 3]);
        assert_eq!(select_prunable(&[], 1, "a"), Vec::<usize>::new());
    }

    #[test]
    fn prune_deletes_old_builds_of_this_plugin_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let make = |name: &str, ms: u64, id: &str| {
            let file = library_file_name(name, "0.1.0", None, id);
            std::fs::write(dir.path().join(&file), b"lib").expect("write lib");
            let m = Manifest {
                format: MANIFEST_FORMAT.into(),
                name: name.into(),
                version: "0.1.0".into(),
                file: file.clone(),
                git_commit: None,
                git_dirty: None,
                build_time: UtcTime::from_unix_ms(ms).rfc3339(),
                build_time_ms: ms,
                build_id: id.into(),
                sha256: String::new(),
                source_hash: String::new(),
                plugin_api_abi: [1, 0],
                rustc_version: String::new(),
                profile: "release".into(),
                target: String::new(),
                live_prefix: "live_".into(),
                live_functions: Vec::new(),
                panic: Default::default(),
            };
            m.write(&Manifest::path_for(&dir.path().join(&file)))
                .expect("write manifest");
            m
        };
        make("world", 1, "1");
        make("world", 2, "2");
        make("other", 0, "0");
        let current = make("world", 3, "3");
        let pruned = prune(dir.path(), &current, 1, &Log { verbose: false });
        assert_eq!(pruned.len(), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), 4, "{left:?}");
        assert!(left
            .iter()
            .all(|n| n.contains("-3") || n.starts_with("other-")));
    }
}
