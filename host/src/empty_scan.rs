//! A scan that found nothing to load, or found libraries nobody packaged: said out
//! loud (a warning), or refused ([`Builder::require_plugins`](crate::Builder::require_plugins)).
//!
//! Kept apart from `scan` on purpose: the scan decides what to load, this only looks
//! at what it did not take, so neither changes when the other does.

use crate::error::Error;
use crate::scan::{Candidate, Listing};
use hotswap_manifest::Manifest;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// How to package a plugin, in the words of every message here.
const HOW: &str = "package plugins with `hotswap build <plugin crate> <plugin dir>`, which \
                   writes the library and its manifest";

/// Warns of every bare library in `dir` (a `.so` beside which no manifest describes
/// it, as `listing` of `dir` shows) and of a scan that found no plugin; with `require`,
/// a scan that found no plugin is an [`Error::NoPlugins`] naming the bare files.
///
/// A bare library beside plugins that do load is only a warning, even with `require`:
/// `hotswap build` writes the library just before its manifest, so a reload that runs
/// during a build sees one for a moment.
pub(crate) fn check(
    dir: &Path,
    listing: &Listing,
    candidates: &BTreeMap<String, Candidate>,
    whitelist: Option<&HashSet<String>>,
    require: bool,
) -> Result<(), Error> {
    let bare = bare_libraries(listing, candidates);
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

/// The libraries `listing` shows that no manifest describes: neither a candidate's
/// file nor a file with a manifest of the same stem (an older build, not chosen).
fn bare_libraries(listing: &Listing, candidates: &BTreeMap<String, Candidate>) -> Vec<PathBuf> {
    let chosen: HashSet<PathBuf> = candidates.values().map(Candidate::library_path).collect();
    let manifests: HashSet<&PathBuf> = listing.manifests.iter().collect();
    listing
        .libraries
        .iter()
        .filter(|p| !chosen.contains(*p) && !manifests.contains(&Manifest::path_for(p)))
        .cloned()
        .collect()
}
