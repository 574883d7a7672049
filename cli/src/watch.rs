//! `hotswap watch`: the edit-and-see-it-live loop. Builds the plugin (cargo's progress
//! shows), asks the host to reload through its admin endpoint, then does both again
//! whenever a source file of the plugin changes, until interrupted.
//!
//! What counts as a change is the plugin's source hash (the one `hotswap build` records
//! in the manifest), not a file event: cargo rewrites a copied `Cargo.lock` during the
//! build, editors save files unchanged, and such events find the hash of the last build
//! and are ignored. A change names the files whose content differs from what the last
//! build hashed (not the events' paths, which may be our own build's outputs). At
//! start, when the output directory already has a build of the current sources (same
//! hash and profile, no extra cargo arguments to tell apart), nothing is built or
//! reloaded until the first change.

use crate::admin::AdminArgs;
use clap::Args;
use hotswap_build::sources::SourceDigests;
use hotswap_build::{BuildOptions, DEFAULT_SOURCE_PATTERN};
use hotswap_host::admin::client::Client;
use hotswap_host::watch::{watch_dir, WatchError};
use hotswap_manifest::{Manifest, MANIFEST_SUFFIX};
use regex::Regex;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// Arguments of `hotswap watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Which host to talk to (`--admin`, `--token`).
    #[command(flatten)]
    pub admin: AdminArgs,

    /// Print each build step and the exact cargo command
    #[arg(short, long)]
    pub verbose: bool,

    /// Build with the dev profile instead of release
    #[arg(long)]
    pub debug: bool,

    /// Cargo target directory [default: the plugin's own, where `cargo build --release`
    /// builds; its hotswap-build subdirectory when run from a build script]
    #[arg(long, value_name = "DIR")]
    pub target_dir: Option<PathBuf>,

    /// After each build, delete all but the N newest builds of the plugin in <OUTPUT_DIR>
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: u32,

    /// Quiet time, in milliseconds, after the last change before building
    #[arg(long, value_name = "MS", default_value_t = 300)]
    pub debounce: u64,

    /// Directory of the plugin crate to watch and build
    #[arg(value_name = "PLUGIN_DIR")]
    pub plugin_dir: PathBuf,

    /// The host's plugin directory, where builds go
    #[arg(value_name = "OUTPUT_DIR")]
    pub output_dir: PathBuf,

    /// Extra arguments passed to `cargo build` (after `--`), e.g. `--features v2`
    #[arg(last = true, value_name = "CARGO_ARGS")]
    pub cargo_args: Vec<String>,
}

/// Why `hotswap watch` could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchCmdError {
    /// The arguments do not name an endpoint.
    #[error(transparent)]
    Args(#[from] crate::admin::AdminArgsError),
    /// The plugin directory cannot be resolved.
    #[error("cannot open plugin directory {}", path.display())]
    PluginDir {
        /// The directory given.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Watching failed.
    #[error(transparent)]
    Watch(#[from] WatchError),
}

/// Which changed paths count as a source change of the plugin at `root`: the files that
/// `hotswap build` hashes (`*.rs`, `Cargo.toml`, `Cargo.lock`), outside `target`
/// directories, hidden directories and the given build outputs.
#[derive(Debug, Clone)]
pub struct SourceFilter {
    root: PathBuf,
    ignored: Vec<PathBuf>,
    pattern: Regex,
}

impl SourceFilter {
    /// A filter for the plugin crate at `root` (absolute), ignoring everything under each
    /// of `ignored` (absolute).
    pub fn new(root: PathBuf, ignored: Vec<PathBuf>) -> SourceFilter {
        SourceFilter {
            root,
            ignored,
            pattern: Regex::new(DEFAULT_SOURCE_PATTERN)
                .expect("DEFAULT_SOURCE_PATTERN is a valid regex"),
        }
    }

    /// Whether a change of `path` should trigger a build.
    pub fn is_source(&self, path: &Path) -> bool {
        if self.ignored.iter().any(|i| path.starts_with(i)) {
            return false;
        }
        let Ok(rel) = path.strip_prefix(&self.root) else {
            return false;
        };
        let mut parts = Vec::new();
        for c in rel.components() {
            let Component::Normal(name) = c else {
                return false;
            };
            let name = name.to_string_lossy();
            if name == "target" || name.starts_with('.') {
                return false;
            }
            parts.push(name.into_owned());
        }
        self.pattern.is_match(&parts.join("/"))
    }
}

/// Runs `hotswap watch` until interrupted; returns the exit status when it cannot start.
pub fn run(args: WatchArgs) -> i32 {
    match watch(args) {
        Ok(()) => 0,
        Err(e) => crate::report(&e),
    }
}

fn watch(args: WatchArgs) -> Result<(), WatchCmdError> {
    let client = args.admin.client()?;
    let root =
        std::fs::canonicalize(&args.plugin_dir).map_err(|source| WatchCmdError::PluginDir {
            path: args.plugin_dir.clone(),
            source,
        })?;
    let mut ignored = Vec::new();
    for dir in [Some(&args.output_dir), args.target_dir.as_ref()]
        .into_iter()
        .flatten()
    {
        if let Ok(abs) = std::path::absolute(dir) {
            ignored.push(std::fs::canonicalize(&abs).unwrap_or(abs));
        }
    }
    let filter = SourceFilter::new(root.clone(), ignored);
    let options = BuildOptions {
        verbose: args.verbose,
        debug: args.debug,
        target_dir: args.target_dir.clone(),
        keep: Some(args.keep as usize),
        cargo_args: args.cargo_args.clone(),
        ..BuildOptions::new(root.clone(), args.output_dir.clone())
    };

    let (tx, rx) = mpsc::channel::<Vec<PathBuf>>();
    let _watcher = watch_dir(
        root.clone(),
        true,
        Duration::from_millis(args.debounce),
        move |p| filter.is_source(p),
        move |paths| {
            // The receiver lives as long as this function, which never returns normally.
            let _ = tx.send(paths);
        },
    )?;
    eprintln!(
        "watching {} (Ctrl-C to stop); builds go to {}, reloads to {}",
        root.display(),
        args.output_dir.display(),
        client.target()
    );
    let digests = || hotswap_build::sources::source_digests(&root, None, None);
    // The sources as the last build hashed them; `None` when unknown (builds again).
    let mut built: Option<SourceDigests> = None;
    match digests() {
        Ok(now)
            if args.cargo_args.is_empty()
                && has_build_of(&args.output_dir, &now.hash, args.debug) =>
        {
            eprintln!(
                "up to date: {} already has a build of these sources; waiting for a change",
                args.output_dir.display()
            );
            built = Some(now);
        }
        _ => built = build_and_reload(&options, &client).or(built),
    }
    while let Ok(mut paths) = rx.recv() {
        // Changes that arrived during the last build are in this round too.
        while let Ok(more) = rx.try_recv() {
            paths.extend(more);
        }
        paths.sort();
        paths.dedup();
        let names: Vec<String> = paths
            .iter()
            .map(|p| p.strip_prefix(&root).unwrap_or(p).display().to_string())
            .collect();
        let now = digests();
        // The files whose content differs from the last build's: an event for our own
        // build's output (cargo rewriting Cargo.lock) may come in the same round as an
        // edit's, or alone; either way it is not named as a change.
        let changed = match (&now, &built) {
            (Ok(now), Some(last)) if now.hash == last.hash => {
                eprintln!("unchanged sources ({}); nothing to do", names.join(", "));
                continue;
            }
            (Ok(now), Some(last)) => now.changed_since(last),
            _ => names,
        };
        eprintln!("\nchanged: {}", changed.join(", "));
        built = build_and_reload(&options, &client).or(built);
    }
    Ok(())
}

/// Whether `dir` holds a build with source hash `hash` and the profile `--debug` picks.
fn has_build_of(dir: &Path, hash: &str, debug: bool) -> bool {
    let profile = if debug { "dev" } else { "release" };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        path.to_string_lossy().ends_with(MANIFEST_SUFFIX)
            && Manifest::read(&path).is_ok_and(|m| m.source_hash == hash && m.profile == profile)
    })
}

/// One round: build, then reload; failures are printed and the loop goes on. Returns
/// the sources as the build hashed them, if it succeeded.
fn build_and_reload(options: &BuildOptions, client: &Client) -> Option<SourceDigests> {
    eprintln!("== building {}", options.plugin_dir.display());
    let sources = match hotswap_build::build(options) {
        Ok(output) => {
            println!("{}", output.summary(options.verbose));
            output.sources
        }
        Err(e) => {
            eprintln!(
                "error: {}\nwaiting for the next change",
                crate::error_chain(&e)
            );
            return None;
        }
    };
    eprintln!("== reloading through {}", client.target());
    match crate::reload::reload(client, None) {
        Ok(response) => match response.json() {
            Ok(report) => print!("{}", crate::reload::format_report(&report)),
            Err(_) => println!("{}", response.text().trim()),
        },
        Err(e) => eprintln!(
            "error: {}\nwaiting for the next change",
            crate::error_chain(&e)
        ),
    }
    Some(sources)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sources_outside_build_outputs_count() {
        let f = SourceFilter::new("/p".into(), vec!["/p/out".into()]);
        assert!(f.is_source(Path::new("/p/src/lib.rs")));
        assert!(f.is_source(Path::new("/p/Cargo.toml")));
        assert!(f.is_source(Path::new("/p/Cargo.lock")));
        assert!(!f.is_source(Path::new("/p/src/.lib.rs.swp")));
        assert!(!f.is_source(Path::new("/p/src/lib.rs~")));
        assert!(!f.is_source(Path::new("/p/target/release/build/x.rs")));
        assert!(!f.is_source(Path::new("/p/.git/x.rs")));
        assert!(!f.is_source(Path::new("/p/out/gen.rs")));
        assert!(!f.is_source(Path::new("/elsewhere/lib.rs")));
        assert!(!f.is_source(Path::new("/p/README.md")));
    }
}
