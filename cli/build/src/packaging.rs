//! Packaging a built library: its unique file name and build id, the copy into the
//! output directory, and the manifest beside it.

use crate::error::BuildError;
use crate::git::short_commit;
use crate::time::UtcTime;
use hotswap_manifest::signature::{self, SecretKey};
use hotswap_manifest::{write_atomic, Manifest};
use std::env::consts::DLL_SUFFIX;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// `<UTC time, compact>-<4 hex digits>`, e.g. `20261121T190803123Z-3fa9`.
pub(crate) fn build_id(time: &UtcTime, salt: u16) -> String {
    format!("{}-{salt:04x}", time.compact())
}

/// 16 bits that differ between builds: std's randomly keyed hasher over time and pid.
pub(crate) fn random_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.finish() as u16
}

/// File name of a packaged plugin: `{name}-{version}-{commit8|nogit}-{build_id}{DLL_SUFFIX}`.
pub fn library_file_name(
    name: &str,
    version: &str,
    commit: Option<&str>,
    build_id: &str,
) -> String {
    format!(
        "{name}-{version}-{}-{build_id}{DLL_SUFFIX}",
        short_commit(commit)
    )
}

/// Writes `bytes` (read from the built library) to `dest` through a temporary file in
/// the same directory and a rename, so `dest` appears complete or not at all. The file
/// is created with mode 0644 (a stricter umask applies, a looser one does not): a
/// strict host refuses a library anyone but its owner can write.
pub(crate) fn write_library(
    bytes: &[u8],
    dest: &Path,
    leave_temps: bool,
) -> Result<(), BuildError> {
    let file_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dest.with_file_name(format!(".{file_name}.tmp"));
    let write = || -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        // A leftover temporary file would keep its old mode: start afresh.
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, dest)
    };
    write().map_err(|source| {
        if !leave_temps {
            let _ = std::fs::remove_file(&tmp);
        }
        BuildError::Write {
            path: dest.to_owned(),
            source,
        }
    })
}

/// Writes `manifest` to `manifest_path`, beside the `library` it describes (already
/// written), and, with a `key`, its signature `<manifest>.minisig` first (so a host
/// never sees a manifest of this build without its signature); returns the
/// signature's path. Every file is 0644. Fails with [`BuildError::WriteManifest`] or
/// [`BuildError::Sign`], after removing `library` (and the signature): a library
/// without its manifest is never loaded, so it is not left lying around.
pub(crate) fn write_manifest(
    manifest: &Manifest,
    manifest_path: &Path,
    library: &Path,
    key: Option<&SecretKey>,
) -> Result<Option<PathBuf>, BuildError> {
    let cleanup = |signature: Option<&Path>| {
        let _ = std::fs::remove_file(library);
        if let Some(s) = signature {
            let _ = std::fs::remove_file(s);
        }
    };
    let write_failed = |source| BuildError::WriteManifest {
        path: manifest_path.to_owned(),
        source,
    };
    let bytes = manifest.to_bytes().map_err(|e| {
        cleanup(None);
        write_failed(e)
    })?;
    let signature = match key {
        None => None,
        Some(key) => {
            let sig_path = Manifest::signature_path(manifest_path);
            let comment = format!(
                "hotswap plugin {} {} build {} sha256 {}",
                manifest.name, manifest.version, manifest.build_id, manifest.sha256
            );
            let text = signature::sign(key, &bytes, &comment).map_err(|e| {
                cleanup(None);
                BuildError::Sign {
                    path: manifest_path.to_owned(),
                    reason: e.to_string(),
                }
            })?;
            write_atomic(&sig_path, text.as_bytes()).map_err(|source| {
                cleanup(Some(&sig_path));
                BuildError::Write {
                    path: sig_path.clone(),
                    source,
                }
            })?;
            Some(sig_path)
        }
    };
    write_atomic(manifest_path, &bytes).map_err(|e| {
        cleanup(signature.as_deref());
        write_failed(e)
    })?;
    Ok(signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotswap_manifest::MANIFEST_SUFFIX;

    #[test]
    fn file_names() {
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let id = "20261121T190803123Z-3fa9";
        assert_eq!(
            library_file_name("world", "0.1.0", Some(commit), id),
            format!("world-0.1.0-01234567-{id}{DLL_SUFFIX}")
        );
        assert_eq!(
            library_file_name("world", "0.1.0", None, id),
            format!("world-0.1.0-nogit-{id}{DLL_SUFFIX}")
        );
        let lib = PathBuf::from("/out").join(library_file_name("world", "0.1.0", None, id));
        assert_eq!(
            Manifest::path_for(&lib),
            PathBuf::from(format!("/out/world-0.1.0-nogit-{id}{MANIFEST_SUFFIX}"))
        );
        assert_eq!(
            build_id(&UtcTime::from_unix_ms(1_795_288_083_123), 0x3fa9),
            id
        );
    }
}
