//! [`StaticLinkError`]: why `hotswap build --static-linking` failed.

use super::markers::{BLOCK_BEGIN, BLOCK_END, PLUGIN_API};
use crate::error::BuildError;
use crate::metadata::MetadataError;
use std::io;
use std::path::PathBuf;

/// Why `hotswap build --static-linking` failed. Each message names the file or crate;
/// the underlying cause (if any) is the error's `source()`. Nothing is left half-written:
/// when a step after the first write fails, both files are restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StaticLinkError {
    /// A crate directory does not exist or cannot be read.
    #[error("cannot open {what} directory {}", path.display())]
    Dir {
        /// Which crate: `plugin` or `host`.
        what: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A crate directory has no `Cargo.toml`.
    #[error("{} has no Cargo.toml: the {what} directory must be a cargo package", path.display())]
    NoCargoToml {
        /// Which crate: `plugin` or `host`.
        what: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
    },
    /// The plugin and the host are the same crate.
    #[error("the plugin and the host are the same crate ({})", path.display())]
    SameCrate {
        /// The file or directory concerned.
        path: PathBuf,
    },
    /// `cargo metadata` could not run, failed, or printed something unexpected.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The package has no library target.
    #[error("package `{package}` has no library target, so a host cannot link it ({})", manifest.display())]
    NoLibTarget {
        /// The cargo package.
        package: String,
        /// The package's `Cargo.toml`.
        manifest: PathBuf,
    },
    /// The plugin's library is not built as an rlib.
    #[error(
        "package `{package}` cannot be linked statically: its library is {crate_types:?}; \
         declare `crate-type = [\"cdylib\", \"rlib\"]` under [lib] in {} (one source, built \
         both ways)",
        manifest.display()
    )]
    NotRlib {
        /// The cargo package.
        package: String,
        /// The library's crate types.
        crate_types: Vec<String>,
        /// The package's `Cargo.toml`.
        manifest: PathBuf,
    },
    /// The plugin does not depend on `hotswap-plugin-api`.
    #[error("package `{package}` does not depend on {PLUGIN_API}: it is not a hotswap plugin ({})", manifest.display())]
    NotAPlugin {
        /// The cargo package.
        package: String,
        /// The package's `Cargo.toml`.
        manifest: PathBuf,
    },
    /// The plugin's sources could not be listed for live functions.
    #[error("cannot list the sources of {}", dir.display())]
    Sources {
        /// The directory.
        dir: PathBuf,
        /// The underlying error.
        #[source]
        source: BuildError,
    },
    /// A path is not valid UTF-8, so it cannot be written into `Cargo.toml`.
    #[error("path {} is not valid UTF-8 and cannot be written into Cargo.toml", path.display())]
    NonUtf8Path {
        /// The file or directory concerned.
        path: PathBuf,
    },
    /// A file of the host crate cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file of the host crate cannot be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The generated block of the host's `Cargo.toml` was edited by hand.
    #[error(
        "{}:{line}: the block between `{BLOCK_BEGIN}` and `{BLOCK_END}` holds a line this \
         command did not write ({text:?}); fix or remove the block and run again",
        path.display()
    )]
    EditedBlock {
        /// The file or directory concerned.
        path: PathBuf,
        /// The line number (from 1).
        line: usize,
        /// The line's text.
        text: String,
    },
    /// The host's `Cargo.toml` has a begin marker without an end marker, or the reverse.
    #[error("{}: unbalanced `{BLOCK_BEGIN}` / `{BLOCK_END}` lines", path.display())]
    BrokenBlock {
        /// The file or directory concerned.
        path: PathBuf,
    },
    /// The host's `Cargo.toml` declares a linked plugin outside the generated block.
    #[error(
        "{}: `{package}` is already declared outside the generated block; remove that \
         declaration (the block declares it)",
        path.display()
    )]
    DeclaredTwice {
        /// The file or directory concerned.
        path: PathBuf,
        /// The cargo package.
        package: String,
    },
    /// The host's `Cargo.toml`, without the generated block, is not TOML (the block's
    /// markers are not where this command puts them).
    #[error("cannot parse {} without its generated block", path.display())]
    Toml {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: toml_edit::TomlError,
    },
    /// The edited `Cargo.toml` was refused by cargo (both files were restored).
    #[error("cargo refused the edited {} (restored as it was)", path.display())]
    Rejected {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Box<StaticLinkError>,
    },
}
