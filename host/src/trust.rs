//! Who may put code into the host: the owner and mode checks of a strict plugin
//! directory, and the signatures a host with trusted keys requires.
//!
//! Whoever can write a file into the plugin directory runs code in the host at the next
//! reload, and the manifest's sha256 does not help against them: they can write the
//! manifest too. So, as sshd's StrictModes does for keys, a strict host (the default,
//! [`TrustMode::Strict`]) refuses a plugin directory, manifest or library that anyone
//! but its owner can write, or whose owner is neither the host's effective user nor
//! root. Links never lead out of the directory: `safe_fs` refuses every symbolic link,
//! in either mode. The checks of a file are made on the descriptor that was read (its
//! `fstat`), not on a second look at the path, and on every load: the cache of checked
//! files (`verified`) skips only the checksum and ELF checks, which depend on the bytes
//! alone.
//!
//! With trusted keys ([`crate::Builder::trusted_keys`]), a plugin is loaded only if its
//! manifest carries a valid minisign signature by one of them
//! (`hotswap_manifest::signature`). The manifest holds the library's sha256, which the
//! loader checks against the bytes it maps, before `dlopen`; so a library or manifest
//! changed after signing is refused before any of its code is mapped.
//!
//! ```no_run
//! use hotswap_host::{PluginManager, TrustedKey, Value};
//! use std::path::Path;
//!
//! // The README's trust-model example, compiled by `cargo test --doc`.
//! let manager = PluginManager::builder("/srv/app/plugins") // strict checks: the default
//!     .trusted_keys([
//!         TrustedKey::from_file(Path::new("release.key.pub"))?,
//!         TrustedKey::from_file(Path::new("next.key.pub"))?, // a rotation: both at once
//!     ])
//!     .build()?;
//! manager.load_plugins(&Value::Null)?; // only builds signed by one of them load
//! println!("{:?}", manager.status().trust); // mode, signatures_required, trusted_keys
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::error::LoadErrorKind;
use hotswap_manifest::safe_fs::{self, Access, FileError};
use hotswap_manifest::signature::{self, KeyId, TrustedKey};
use hotswap_manifest::Manifest;
use serde::Serialize;
use std::path::Path;

/// Largest signature file read (a real one is about 300 bytes).
const SIGNATURE_LIMIT: u64 = 64 * 1024;

/// How strictly the host checks who may have written what it loads (see
/// [`crate::Builder::trust_mode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TrustMode {
    /// The default: the plugin directory, manifests and libraries must be writable by
    /// their owner only, and owned by the host's effective user or root.
    #[default]
    Strict,
    /// No owner or mode checks (development). Symbolic links, FIFOs and devices are
    /// still refused, and trusted keys, if any, are still required.
    Permissive,
}

impl std::fmt::Display for TrustMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TrustMode::Strict => "strict",
            TrustMode::Permissive => "permissive",
        })
    }
}

/// What [`crate::PluginManager::status`] says about the trust checks in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TrustStatus {
    /// Strict or permissive owner and mode checks.
    pub mode: TrustMode,
    /// Whether only signed plugins are loaded (some key is trusted).
    pub signatures_required: bool,
    /// Ids of the trusted keys, as minisign prints them.
    pub trusted_keys: Vec<String>,
}

/// One manager's trust checks.
#[derive(Debug, Clone)]
pub(crate) struct Trust {
    mode: TrustMode,
    keys: Vec<TrustedKey>,
    /// The host's effective user id, read once when the manager was made.
    euid: u32,
}

impl Trust {
    pub fn new(mode: TrustMode, keys: Vec<TrustedKey>) -> Trust {
        Trust {
            mode,
            keys,
            euid: rustix::process::geteuid().as_raw(),
        }
    }

    pub fn status(&self) -> TrustStatus {
        TrustStatus {
            mode: self.mode,
            signatures_required: !self.keys.is_empty(),
            trusted_keys: self.keys.iter().map(|k| k.id().to_string()).collect(),
        }
    }

    /// Refuses the plugin directory `dir` if, in strict mode, others can write it or it
    /// has a foreign owner.
    pub fn check_dir(&self, dir: &Path) -> Result<(), LoadErrorKind> {
        if self.mode == TrustMode::Permissive {
            return Ok(());
        }
        let access = safe_fs::dir_access(dir)?;
        self.check_access(dir, &access)
    }

    /// Refuses the file at `path` (a manifest or library, `access` from the descriptor
    /// it was read through) if, in strict mode, others can write it or it has a foreign
    /// owner.
    pub fn check_file(&self, path: &Path, access: &Access) -> Result<(), LoadErrorKind> {
        if self.mode == TrustMode::Permissive {
            return Ok(());
        }
        self.check_access(path, access)
    }

    fn check_access(&self, path: &Path, access: &Access) -> Result<(), LoadErrorKind> {
        match access.loose(self.euid) {
            None => Ok(()),
            Some(why) => Err(LoadErrorKind::Insecure {
                path: path.to_owned(),
                mode: access.mode,
                why,
            }),
        }
    }

    /// With trusted keys, checks that the manifest `bytes` read from `manifest_path`
    /// carry a valid signature by one of them (`<manifest>.minisig`), and returns its
    /// key. Without trusted keys, `Ok(None)`.
    pub fn check_signature(
        &self,
        manifest_path: &Path,
        bytes: &[u8],
    ) -> Result<Option<KeyId>, LoadErrorKind> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        let sig_path = Manifest::signature_path(manifest_path);
        let text = match safe_fs::read_regular(&sig_path, Some(SIGNATURE_LIMIT)) {
            Ok(text) => text,
            Err(FileError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(LoadErrorKind::Unsigned {
                    manifest: manifest_path.to_owned(),
                    signature: sig_path,
                })
            }
            Err(e) => return Err(e.into()),
        };
        let text = String::from_utf8_lossy(&text);
        signature::verify(&self.keys, bytes, &text)
            .map(Some)
            .map_err(|error| LoadErrorKind::Signature {
                manifest: manifest_path.to_owned(),
                error,
            })
    }
}
