//! Progress messages on stderr and the `--leave-temps` directory.

use crate::error::BuildError;
use std::path::PathBuf;

/// Progress messages on stderr, shown with `--verbose`.
pub(crate) struct Log {
    /// Print [`Log::step`] messages (`--verbose`).
    pub(crate) verbose: bool,
}

impl Log {
    /// A step of the build, shown with `--verbose`.
    pub(crate) fn step(&self, msg: std::fmt::Arguments<'_>) {
        if self.verbose {
            eprintln!("hotswap: {msg}");
        }
    }

    /// A warning, always shown.
    pub(crate) fn warn(&self, msg: std::fmt::Arguments<'_>) {
        eprintln!("hotswap: warning: {msg}");
    }
}

/// The directory `--leave-temps` keeps cargo's output and the list of hashed files in.
/// Without `--leave-temps` nothing is written.
pub(crate) struct Temps {
    /// The directory, when `--leave-temps` asked for one.
    pub(crate) dir: Option<PathBuf>,
}

impl Temps {
    /// A new directory if `leave`, else nothing; fails when it cannot be created.
    pub(crate) fn new(leave: bool) -> Result<Temps, BuildError> {
        if !leave {
            return Ok(Temps { dir: None });
        }
        let dir = tempfile::Builder::new()
            .prefix("hotswap-build-")
            .tempdir()
            .map_err(BuildError::TempDir)?
            .keep();
        eprintln!("hotswap: keeping temporary files in {}", dir.display());
        Ok(Temps { dir: Some(dir) })
    }

    /// Where the temporary file `name` goes, if temporary files are kept.
    pub(crate) fn path(&self, name: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(name))
    }

    /// Best effort: a temporary file that cannot be written is reported, not fatal.
    pub(crate) fn save(&self, name: &str, contents: &[u8]) {
        if let Some(path) = self.path(name) {
            if let Err(e) = std::fs::write(&path, contents) {
                eprintln!(
                    "hotswap: warning: cannot write temporary file {}: {e}",
                    path.display()
                );
            }
        }
    }
}
