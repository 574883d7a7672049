//! The manifest `hotswap build` writes beside every plugin file.
//!
//! A plugin directory is scanned for `*.manifest.json` files; each one names the
//! library file it describes. The manifest is the only thing the host trusts to pick
//! the newest build of a plugin, and its `sha256` is checked against the bytes the
//! host actually maps.

use crate::safe_fs::{self, BadFileName, FileError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The value of [`Manifest::format`] this host understands.
pub const MANIFEST_FORMAT: &str = "hotswap-manifest/1";

/// Suffix of manifest files in a plugin directory.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

/// What `hotswap build` knows about one built plugin file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Plugin name: the crate's package name.
    pub name: String,
    /// The crate's version from its `Cargo.toml`.
    pub version: String,
    /// File name (no directory) of the library this manifest describes, in the same directory.
    pub file: String,
    /// Full git commit of the plugin's source, `None` when it is not in a git repository.
    pub git_commit: Option<String>,
    /// Whether the work tree had uncommitted changes; `None` outside git.
    pub git_dirty: Option<bool>,
    /// Build time as RFC 3339 (UTC), for people.
    pub build_time: String,
    /// Build time in milliseconds since the Unix epoch: the key the host sorts builds by.
    pub build_time_ms: u64,
    /// Unique id of this build (also part of the file name).
    pub build_id: String,
    /// Lower-case hex sha256 of the library file.
    pub sha256: String,
    /// Hash of the plugin's sources (and `--include`d files): equal sources, equal hash.
    pub source_hash: String,
    /// `hotswap-plugin-api` ABI version read from the built file's header: `[major, minor]`.
    pub plugin_api_abi: [u32; 2],
    /// Output of `rustc --version`.
    pub rustc_version: String,
    /// Cargo profile used: `release` or `dev`.
    pub profile: String,
    /// Target triple the file was built for.
    pub target: String,
    /// Case-insensitive name prefix of live functions and types (`--live-prefix`).
    pub live_prefix: String,
    /// Functions named with that prefix found in the sources; each must be registered
    /// in `export_plugin!(…, live { … })` (the host checks on load).
    #[serde(default)]
    pub live_functions: Vec<String>,
    /// The panic strategy the library was built with. `abort` only with
    /// `hotswap build --allow-panic-abort`; a host refuses a file built with
    /// `panic = "abort"` whatever this says. Absent in older manifests:
    /// `unwind`.
    #[serde(default)]
    pub panic: PanicStrategy,
}

/// How a plugin was compiled to handle panics (cargo's `profile.*.panic`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PanicStrategy {
    /// The default: a panic unwinds to the boundary and comes back to the host as an error.
    #[default]
    Unwind,
    /// A panic anywhere in the plugin aborts the whole host process.
    Abort,
}

impl std::fmt::Display for PanicStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PanicStrategy::Unwind => "unwind",
            PanicStrategy::Abort => "abort",
        })
    }
}

/// Why a manifest could not be read (see [`Manifest::read`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {path}: {source}")]
    Io {
        /// The manifest's path.
        path: PathBuf,
        /// What the read failed with.
        #[source]
        source: std::io::Error,
    },
    /// The file is not JSON of the manifest's shape.
    #[error("manifest {path} is corrupt: {source}")]
    Corrupt {
        /// The manifest's path.
        path: PathBuf,
        /// What the JSON parser tripped on.
        #[source]
        source: serde_json::Error,
    },
    /// The manifest is of another format version than [`MANIFEST_FORMAT`].
    #[error("manifest {path} has format {found:?}, this host reads {MANIFEST_FORMAT:?}")]
    Format {
        /// The manifest's path.
        path: PathBuf,
        /// The `format` it declares.
        found: String,
    },
    /// The manifest is not a regular file (a FIFO, a device, a link, …) or is too large.
    #[error(transparent)]
    File(#[from] FileError),
    /// `file` is not a plain file name in the manifest's directory.
    #[error("manifest {path} names file {file:?}, which is not a plain file name in its directory: {reason}")]
    FileName {
        /// The manifest's path.
        path: PathBuf,
        /// The `file` it names.
        file: String,
        /// What is wrong with that name.
        reason: BadFileName,
    },
}

impl Manifest {
    /// Reads and validates the manifest at `path`.
    ///
    /// Fails with [`ManifestError`] when the file cannot be read, is not a regular file
    /// (never blocking on a FIFO or device, never following a link: see
    /// [`safe_fs`]), is larger than 1 MiB, is not valid JSON of this
    /// shape, has another format version, or its `file` is not a plain file name.
    pub fn read(path: &Path) -> Result<Manifest, ManifestError> {
        let text = safe_fs::read_regular(path, Some(safe_fs::MANIFEST_LIMIT))?;
        Manifest::parse(path, &text)
    }

    /// Parses and validates the manifest bytes `text`, read from `path` (for messages),
    /// as [`Manifest::read`] does after reading them.
    pub fn parse(path: &Path, text: &[u8]) -> Result<Manifest, ManifestError> {
        let manifest: Manifest =
            serde_json::from_slice(text).map_err(|source| ManifestError::Corrupt {
                path: path.to_owned(),
                source,
            })?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(ManifestError::Format {
                path: path.to_owned(),
                found: manifest.format,
            });
        }
        safe_fs::check_file_name(&manifest.file).map_err(|reason| ManifestError::FileName {
            path: path.to_owned(),
            file: manifest.file.clone(),
            reason,
        })?;
        Ok(manifest)
    }

    /// Writes the manifest as pretty JSON to `path`, atomically (write then rename), so
    /// a host scanning the directory never sees half a manifest. Fails with the I/O error
    /// of the write or the rename (the temporary `*.json.tmp` is removed then).
    ///
    /// The file is created with mode 0644 (less if the umask says so, never more): a
    /// strict host refuses a manifest anyone but its owner can write.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }

    /// The bytes [`Manifest::write`] writes (pretty JSON): what `hotswap build --sign`
    /// signs.
    pub fn to_bytes(&self) -> std::io::Result<Vec<u8>> {
        serde_json::to_vec_pretty(self).map_err(std::io::Error::other)
    }

    /// Path of the signature of the manifest at `manifest_path`
    /// (`<manifest>.minisig`, see [`signature`](crate::signature)).
    pub fn signature_path(manifest_path: &Path) -> PathBuf {
        let mut name = manifest_path.as_os_str().to_owned();
        name.push(crate::signature::SIGNATURE_SUFFIX);
        PathBuf::from(name)
    }

    /// Path of the manifest describing `library` (`<library>` minus extension + suffix).
    pub fn path_for(library: &Path) -> PathBuf {
        let stem = library
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        library.with_file_name(format!("{stem}{MANIFEST_SUFFIX}"))
    }
}

/// Writes `bytes` to `path` atomically (a fresh `<path>.tmp`, then a rename), created
/// with mode 0644 whatever the umask allows beyond it (a stricter umask still applies):
/// what a strict host accepts. Fails with the I/O error of the write or the rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // A leftover temporary file keeps its old mode when opened again: start afresh.
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        file.write_all(bytes)?;
        drop(file);
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}
