//! [`BuildError`]: why `hotswap build` failed.

use crate::metadata::MetadataError;
use hotswap_manifest::elf::ElfError;
use std::env::consts::DLL_SUFFIX;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// Why `hotswap build` failed. Each message names the step and the file; the underlying
/// cause (if any) is the error's `source()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The plugin directory does not exist or cannot be read.
    #[error("cannot open plugin directory {}", path.display())]
    PluginDir {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A relative path could not be made absolute (the current directory is unreadable).
    #[error("cannot resolve {} against the current directory", path.display())]
    Resolve {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The plugin directory has no `Cargo.toml`.
    #[error("{} has no Cargo.toml: the plugin directory must be a cargo package", path.display())]
    NoCargoToml {
        /// The file or directory concerned.
        path: PathBuf,
    },
    /// A program (cargo, rustc) could not be started.
    #[error("cannot run `{program}` for {step}")]
    Spawn {
        /// The program that was run.
        program: String,
        /// What it was run for.
        step: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `cargo metadata` could not run, failed, or printed something unexpected.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The manifest is not one of the packages `cargo metadata` lists.
    #[error(
        "`cargo metadata` lists no package with manifest {} (a virtual workspace manifest? \
         point at the plugin crate's own directory)",
        manifest.display()
    )]
    PackageNotFound {
        /// The package's `Cargo.toml`.
        manifest: PathBuf,
    },
    /// The package has no library target.
    #[error(
        "package `{package}` has no library target: a plugin is a library with \
         `crate-type = [\"cdylib\"]` under [lib] in {}",
        manifest.display()
    )]
    NoLibTarget {
        /// The cargo package.
        package: String,
        /// The package's `Cargo.toml`.
        manifest: PathBuf,
    },
    /// The package's library is not built as a `cdylib`.
    #[error(
        "package `{package}` is not a cdylib: add `crate-type = [\"cdylib\"]` under [lib] in {}",
        manifest.display()
    )]
    NotCdylib {
        /// The cargo package.
        package: String,
        /// The package's `Cargo.toml`.
        manifest: PathBuf,
    },
    /// `--debug` together with a cargo argument choosing another profile.
    #[error("conflicting profiles: {0}")]
    ProfileConflict(String),
    /// `cargo build` exited with an error (cargo printed why on stderr).
    #[error("`cargo build` of {} failed ({status}); cargo's messages are above", manifest.display())]
    Cargo {
        /// The package's `Cargo.toml`.
        manifest: PathBuf,
        /// The exit status.
        status: ExitStatus,
    },
    /// Reading cargo's JSON messages failed.
    #[error("cannot read the output of `cargo build`")]
    CargoOutput(#[source] io::Error),
    /// Cargo succeeded but named no cdylib for the package.
    #[error(
        "`cargo build` succeeded but reported no {DLL_SUFFIX} library for package `{package}`"
    )]
    NoArtifact {
        /// The cargo package.
        package: String,
    },
    /// `--no-build` and the library is not in the target directory.
    #[error(
        "--no-build: there is no built library at {} (build it first, with the same --debug, \
         --target-dir and cargo arguments)",
        path.display()
    )]
    MissingArtifact {
        /// The file or directory concerned.
        path: PathBuf,
    },
    /// libgit2 failed on the repository holding the plugin.
    #[error("cannot read the git state of {}", path.display())]
    Git {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: git2::Error,
    },
    /// The built library cannot be read.
    #[error("cannot read built library {}", path.display())]
    ReadArtifact {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The built library is not a loadable hotswap plugin.
    #[error("built library {} cannot be loaded by a hotswap host", path.display())]
    NotAPlugin {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: ElfError,
    },
    /// The library is built with `panic = "abort"` and `--allow-panic-abort` was not given.
    #[error("{plugin} is built with panic = \"abort\": a panic in it would abort the host; use panic = \"unwind\" (the default) or pass --allow-panic-abort")]
    PanicAbort {
        /// The plugin.
        plugin: String,
    },
    /// A source file could not be read while computing the source hash.
    #[error("cannot hash plugin sources: cannot read {}", path.display())]
    SourceHash {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `rustc -vV` failed or printed something unexpected.
    #[error("cannot get the compiler version from `{program} -vV`: {detail}")]
    Rustc {
        /// The program that was run.
        program: String,
        /// What was wrong.
        detail: String,
    },
    /// Writing into the output directory failed.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Writing the manifest failed (the library just written was removed again).
    #[error("cannot write manifest {}", path.display())]
    WriteManifest {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A signing key file could not be made or read, or is not fit for signing.
    #[error("signing key {}: {reason}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Signing a manifest failed.
    #[error("cannot sign manifest {}: {reason}", path.display())]
    Sign {
        /// The manifest.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// `--leave-temps` could not create its directory.
    #[error("cannot create a directory for temporary files")]
    TempDir(#[source] io::Error),
}
