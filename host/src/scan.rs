//! Finding what to load: the newest build of each plugin in a directory, by manifest.

use crate::error::{Error, LoadError, LoadErrorKind, Step};
use crate::trust::Trust;
use hotswap_manifest::safe_fs::{self, Access};
use hotswap_manifest::{Manifest, ManifestError, MANIFEST_SUFFIX};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// A build chosen for loading.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub manifest_path: PathBuf,
    pub manifest: Manifest,
    /// The manifest's bytes as read (what a signature covers).
    pub raw: Vec<u8>,
    /// Owner and mode of the manifest file that was read.
    pub access: Access,
}

impl Candidate {
    pub fn library_path(&self) -> PathBuf {
        self.manifest_path.with_file_name(&self.manifest.file)
    }
}

/// A manifest that is not a regular file, or names no plain file, gets the same kinds
/// of error as a library that is not one; every other manifest error stays one.
fn scan_error(e: ManifestError) -> LoadErrorKind {
    match e {
        ManifestError::File(e) => LoadErrorKind::File(e),
        ManifestError::FileName { path, file, reason } => LoadErrorKind::FileName {
            manifest: path,
            file,
            reason,
        },
        e => LoadErrorKind::Manifest(e),
    }
}

/// The newest build (by `build_time_ms`) of every plugin in `dir`, by name, filtered
/// by `whitelist` when there is one.
///
/// Manifests are read with [`safe_fs`](hotswap_manifest::safe_fs): a FIFO, device, socket,
/// directory or symbolic link named `*.manifest.json` fails the scan at once, and so
/// does a manifest whose `file` is not a plain file name.
///
/// Fails on an unreadable directory, a corrupt manifest (a directory with one bad
/// manifest is not half-loaded), or two different builds of one plugin claiming the
/// same build time; and, at [`Step::Trust`], when `trust` refuses the directory or a
/// chosen build's manifest (its owner, its mode, its signature: see [`Trust`]).
pub(crate) fn newest_builds(
    dir: &Path,
    whitelist: Option<&HashSet<String>>,
    trust: &Trust,
) -> Result<BTreeMap<String, Candidate>, Error> {
    trust.check_dir(dir).map_err(|kind| match kind {
        // A directory that cannot be looked at is the same error with or without checks.
        LoadErrorKind::File(safe_fs::FileError::Io { source, .. }) => Error::Dir {
            dir: dir.to_owned(),
            source,
        },
        kind => LoadError {
            plugin: None,
            version: None,
            file: Some(dir.to_owned()),
            step: Step::Trust,
            kind,
        }
        .into(),
    })?;
    let newest = newest_unchecked(dir, whitelist)?;
    for c in newest.values() {
        let refuse = |kind| LoadError {
            plugin: Some(c.manifest.name.clone()),
            version: Some(c.manifest.version.clone()),
            file: Some(c.manifest_path.clone()),
            step: Step::Trust,
            kind,
        };
        trust
            .check_file(&c.manifest_path, &c.access)
            .map_err(refuse)?;
        trust
            .check_signature(&c.manifest_path, &c.raw)
            .map_err(refuse)?;
    }
    Ok(newest)
}

/// The newest builds, before the trust checks (only the chosen builds are checked: an
/// old unsigned build left in the directory does not stop a signed newer one).
fn newest_unchecked(
    dir: &Path,
    whitelist: Option<&HashSet<String>>,
) -> Result<BTreeMap<String, Candidate>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Dir {
        dir: dir.to_owned(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Dir {
            dir: dir.to_owned(),
            source,
        })?;
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(MANIFEST_SUFFIX) {
            paths.push(entry.path());
        }
    }
    paths.sort();
    let mut newest: BTreeMap<String, Candidate> = BTreeMap::new();
    for path in paths {
        let scan_failed = |e| LoadError {
            plugin: None,
            version: None,
            file: Some(path.clone()),
            step: Step::Scan,
            kind: scan_error(e),
        };
        let read = safe_fs::read_regular_checked(&path, Some(safe_fs::MANIFEST_LIMIT))
            .map_err(|e| scan_failed(e.into()))?;
        let manifest = Manifest::parse(&path, &read.bytes).map_err(scan_failed)?;
        if whitelist.is_some_and(|w| !w.contains(&manifest.name)) {
            continue;
        }
        let candidate = Candidate {
            manifest_path: path,
            manifest,
            raw: read.bytes,
            access: read.access,
        };
        match newest.get(&candidate.manifest.name) {
            Some(old) if old.manifest.build_time_ms > candidate.manifest.build_time_ms => {}
            Some(old)
                if old.manifest.build_time_ms == candidate.manifest.build_time_ms
                    && old.manifest.sha256 != candidate.manifest.sha256 =>
            {
                return Err(LoadError {
                    plugin: Some(candidate.manifest.name.clone()),
                    version: Some(candidate.manifest.version.clone()),
                    file: None,
                    step: Step::Scan,
                    kind: LoadErrorKind::Duplicate {
                        name: candidate.manifest.name.clone(),
                        first: old.library_path(),
                        second: candidate.library_path(),
                    },
                }
                .into());
            }
            _ => {
                newest.insert(candidate.manifest.name.clone(), candidate);
            }
        }
    }
    Ok(newest)
}
