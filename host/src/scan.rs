//! Finding what to load: the newest build of each plugin in a directory, by manifest,
//! or the build a rollback holds it at; and the list of builds kept there.

use crate::error::{Error, LoadError, LoadErrorKind, Step};
use crate::trust::Trust;
use hotswap_manifest::safe_fs::{self, Access};
use hotswap_manifest::{Manifest, ManifestError, MANIFEST_SUFFIX};
use std::collections::{BTreeMap, HashMap, HashSet};
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

/// The entries of a plugin directory a reload looks at, listed once: the manifests to
/// read, and the libraries (which `empty_scan` checks are all described).
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// `*.manifest.json` entries, sorted.
    pub manifests: Vec<PathBuf>,
    /// Entries named like a shared library of this platform, sorted.
    pub libraries: Vec<PathBuf>,
}

/// Lists `dir` (names only: nothing is opened or followed). Fails on an unreadable
/// directory, naming it.
pub(crate) fn list(dir: &Path) -> Result<Listing, Error> {
    let failed = |source| Error::Dir {
        dir: dir.to_owned(),
        source,
    };
    let mut listing = Listing::default();
    for entry in std::fs::read_dir(dir).map_err(failed)? {
        let entry = entry.map_err(failed)?;
        // The entry's own path (a name that is not UTF-8 stays as it is).
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(MANIFEST_SUFFIX) {
            listing.manifests.push(entry.path());
        } else if name.ends_with(std::env::consts::DLL_SUFFIX) {
            listing.libraries.push(entry.path());
        }
    }
    listing.manifests.sort();
    listing.libraries.sort();
    Ok(listing)
}

/// Every build of every plugin in `dir`, by name, oldest first (by `build_time_ms`),
/// filtered by `whitelist` when there is one.
///
/// Manifests are read with [`safe_fs`](hotswap_manifest::safe_fs): a FIFO, device, socket,
/// directory or symbolic link named `*.manifest.json` fails the scan at once, and so
/// does a manifest whose `file` is not a plain file name.
///
/// Fails on an unreadable directory or a corrupt manifest (a directory with one bad
/// manifest is not half-loaded). No trust check: see [`chosen_builds`].
pub(crate) fn all_builds(
    dir: &Path,
    whitelist: Option<&HashSet<String>>,
) -> Result<BTreeMap<String, Vec<Candidate>>, Error> {
    builds_listed(&list(dir)?, whitelist)
}

/// [`all_builds`] of the directory `listing` lists.
fn builds_listed(
    listing: &Listing,
    whitelist: Option<&HashSet<String>>,
) -> Result<BTreeMap<String, Vec<Candidate>>, Error> {
    let paths = listing.manifests.iter().cloned();
    let mut all: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
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
        all.entry(candidate.manifest.name.clone())
            .or_default()
            .push(candidate);
    }
    for builds in all.values_mut() {
        // Stable: builds of one time stay in path order (the last one is loaded).
        builds.sort_by_key(|b| b.manifest.build_time_ms);
    }
    Ok(all)
}

/// The newest of one plugin's builds (oldest first); fails when two different builds
/// (by sha256) claim the newest build time, since which one is meant is unknowable.
fn newest(builds: &[Candidate]) -> Result<Option<&Candidate>, Error> {
    let Some(last) = builds.last() else {
        return Ok(None);
    };
    let time = last.manifest.build_time_ms;
    if let Some(other) = builds
        .iter()
        .rev()
        .take_while(|b| b.manifest.build_time_ms == time)
        .find(|b| b.manifest.sha256 != last.manifest.sha256)
    {
        return Err(LoadError {
            plugin: Some(last.manifest.name.clone()),
            version: Some(last.manifest.version.clone()),
            file: None,
            step: Step::Scan,
            kind: LoadErrorKind::Duplicate {
                name: last.manifest.name.clone(),
                first: other.library_path(),
                second: last.library_path(),
            },
        }
        .into());
    }
    Ok(Some(last))
}

/// A plugin held at an older build by a rollback: reloads load `build_id` instead of
/// the newest build until a build newer than `ceiling_ms` (the newest one at the time
/// of the rollback) appears, so a rollback is not undone by the next reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pin {
    pub build_id: String,
    pub ceiling_ms: u64,
}

/// The build of every plugin a reload loads: the newest, or the pinned one (see
/// [`Pin`]), from the directory `dir` that `listing` lists. Fails as [`all_builds`],
/// when two different builds of one plugin claim its newest build time; and, at [`Step::Trust`], when `trust` refuses the directory or a
/// chosen build's manifest (its owner, its mode, its signature: see [`Trust`]). Only
/// the chosen builds are checked: an old unsigned build left in the directory does not
/// stop a signed newer one.
pub(crate) fn chosen_builds(
    dir: &Path,
    listing: &Listing,
    whitelist: Option<&HashSet<String>>,
    pins: &HashMap<String, Pin>,
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
    let chosen = choose(listing, whitelist, pins)?;
    for c in chosen.values() {
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
    Ok(chosen)
}

/// [`chosen_builds`] before the trust checks.
fn choose(
    listing: &Listing,
    whitelist: Option<&HashSet<String>>,
    pins: &HashMap<String, Pin>,
) -> Result<BTreeMap<String, Candidate>, Error> {
    let all = builds_listed(listing, whitelist)?;
    let mut chosen = BTreeMap::new();
    for (name, builds) in &all {
        let pinned = pins.get(name).and_then(|pin| {
            let newest = builds.last()?.manifest.build_time_ms;
            if newest > pin.ceiling_ms {
                return None;
            }
            builds.iter().find(|b| b.manifest.build_id == pin.build_id)
        });
        let build = match pinned {
            Some(b) => Some(b),
            None => newest(builds)?,
        };
        if let Some(build) = build {
            chosen.insert(name.clone(), build.clone());
        }
    }
    Ok(chosen)
}

/// The pin a rollback of `plugin` sets: to build `to`, or else to the newest build older
/// than the running one (`running`, a build id).
///
/// Fails with [`Error::Rollback`] when the plugin has no build in the directory, `to`
/// is not one of its builds, or there is no build older than the running one.
pub(crate) fn rollback_pin(
    all: &BTreeMap<String, Vec<Candidate>>,
    plugin: &str,
    running: Option<&str>,
    to: Option<&str>,
) -> Result<Pin, Error> {
    let fail = |reason: String| Error::Rollback {
        plugin: plugin.to_owned(),
        reason,
    };
    let builds = all
        .get(plugin)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| fail("it has no build in the plugin directory".into()))?;
    let ids = || {
        builds
            .iter()
            .map(|b| b.manifest.build_id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let target = match to {
        Some(id) => builds
            .iter()
            .find(|b| b.manifest.build_id == id)
            .ok_or_else(|| {
                fail(format!(
                    "no build {id} in the directory (builds: {})",
                    ids()
                ))
            })?,
        None => {
            let running =
                running.ok_or_else(|| fail("it is not loaded; name a build to load".into()))?;
            let at = builds
                .iter()
                .position(|b| b.manifest.build_id == running)
                .ok_or_else(|| {
                    fail(format!(
                        "its running build {running} is no longer in the directory; name a build (builds: {})",
                        ids()
                    ))
                })?;
            let older = builds[..at]
                .iter()
                .rev()
                .find(|b| b.manifest.build_time_ms < builds[at].manifest.build_time_ms);
            older.ok_or_else(|| {
                fail(format!(
                    "no build older than the running one ({running}) is kept in the directory"
                ))
            })?
        }
    };
    Ok(Pin {
        build_id: target.manifest.build_id.clone(),
        ceiling_ms: builds.last().map_or(0, |b| b.manifest.build_time_ms),
    })
}

/// One build of a plugin kept in the plugin directory, as `GET /status` and
/// `hotswap status` list them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BuildInfo {
    /// Plugin name.
    pub plugin: String,
    /// Build id (name it to `hotswap rollback --to`).
    pub build_id: String,
    /// Crate version.
    pub version: String,
    /// Build time, RFC 3339.
    pub build_time: String,
    /// Whether this build is the one running in the current generation.
    pub running: bool,
    /// Whether a rollback holds the plugin at this build.
    pub pinned: bool,
}

/// Every build kept in `dir`, oldest first per plugin, marked with what runs and what
/// is pinned.
pub(crate) fn build_list(
    all: &BTreeMap<String, Vec<Candidate>>,
    running: &HashMap<String, String>,
    pins: &HashMap<String, Pin>,
) -> Vec<BuildInfo> {
    let mut out = Vec::new();
    for (name, builds) in all {
        for b in builds {
            let m = &b.manifest;
            out.push(BuildInfo {
                plugin: name.clone(),
                build_id: m.build_id.clone(),
                version: m.version.clone(),
                build_time: m.build_time.clone(),
                running: running.get(name) == Some(&m.build_id),
                pinned: pins.get(name).is_some_and(|p| {
                    p.build_id == m.build_id
                        && builds
                            .last()
                            .is_some_and(|n| n.manifest.build_time_ms <= p.ceiling_ms)
                }),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_keeps_each_entry_path_as_it_is_and_sorts_manifests_from_libraries() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        // A name that is not UTF-8: listed by its own bytes, not a lossy copy of them.
        let odd = std::ffi::OsStr::from_bytes(b"odd-\xff.manifest.json");
        for name in [
            odd,
            "a.manifest.json".as_ref(),
            "a.so".as_ref(),
            "notes.txt".as_ref(),
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let listing = list(dir.path()).unwrap();
        assert_eq!(listing.manifests.len(), 2, "{listing:?}");
        assert!(listing.manifests.iter().all(|p| p.exists()), "{listing:?}");
        assert!(listing.manifests.contains(&dir.path().join(odd)));
        assert_eq!(listing.libraries, vec![dir.path().join("a.so")]);
        assert!(matches!(
            list(&dir.path().join("gone")),
            Err(Error::Dir { .. })
        ));
    }
}
