//! A scan that found nothing to load, or found libraries nobody packaged: said out
//! loud (a warning), or refused ([`Builder::require_plugins`](crate::Builder::require_plugins)).
//!
//! Kept apart from `scan` on purpose: the scan decides what to load, this only looks
//! at what it did not take, so neither changes when the other does.

use crate::error::Error;
use crate::scan::Candidate;
use hotswap_manifest::Manifest;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// How to package a plugin, in the words of every message here.
const HOW: &str = "package plugins with `hotswap build <plugin crate> <plugin dir>`, which \
                   writes the library and its manifest";

/// Warns of every bare library in `dir` (a `.so` beside which no manifest describes
/// it) and of a scan that found no plugin; with `require`, a scan that found no plugin
/// is an [`Error::NoPlugins`] naming the bare files.
///
/// A bare library beside plugins that do load is only a warning, even with `require`:
/// `hotswap build` writes the library just before its manifest, so a reload that runs
/// during a build sees one for a moment.
pub(crate) fn check(
    dir: &Path,
    candidates: &BTreeMap<String, Candidate>,
    whitelist: Option<&HashSet<String>>,
    require: bool,
) -> Result<(), Error> {
    let bare = bare_libraries(dir, candidates);
    for file in &bare {
        tracing::warn!(
            file = %file.display(),
            "{} has no manifest beside it and is not loaded: {HOW}",
            file.display()
        );
    }
    if !candidates.is_empty() {
        return Ok(());
    }
    let whitelisted = whitelist.is_some();
    if require {
        return Err(Error::NoPlugins {
            dir: dir.to_owned(),
            bare,
            whitelisted,
        });
    }
    tracing::warn!(
        dir = %dir.display(),
        "no plugin to load in {}{}: {HOW}",
        dir.display(),
        if whitelisted { " (after the whitelist)" } else { "" }
    );
    Ok(())
}

/// The libraries of `dir` that no manifest describes: neither a candidate's file nor a
/// file with a manifest of the same stem (an older build, not chosen). Best effort: a
/// directory that cannot be listed has no bare files here (the scan reported it).
fn bare_libraries(dir: &Path, candidates: &BTreeMap<String, Candidate>) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let chosen: HashSet<PathBuf> = candidates.values().map(Candidate::library_path).collect();
    let mut bare: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(std::env::consts::DLL_SUFFIX))
        })
        .filter(|p| !chosen.contains(p) && !Manifest::path_for(p).exists())
        .collect();
    bare.sort();
    bare
}
