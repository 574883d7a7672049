//! Signing keys: `hotswap keygen` makes a pair, `hotswap build --sign` reads the secret
//! key and signs each manifest it writes (`hotswap_manifest::signature`, minisign's
//! format).

use crate::error::BuildError;
use hotswap_manifest::signature::{self, KeyId, SecretKey};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What [`keygen`] wrote.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    /// The secret key (mode 0600): give it to `hotswap build --sign`.
    pub secret: PathBuf,
    /// The public key (mode 0644): give it to the host (`Builder::trusted_keys`).
    pub public: PathBuf,
    /// The pair's key id, as minisign prints it.
    pub id: KeyId,
}

/// The public key file that goes with the secret key file `secret`: `<secret>.pub`.
pub fn public_key_path(secret: &Path) -> PathBuf {
    let mut name = secret.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Makes a new key pair: the secret key at `secret` (created with mode 0600, never
/// overwriting an existing file) and the public key at `<secret>.pub`. Fails with
/// [`BuildError::Key`] if either file exists or cannot be written.
pub fn keygen(secret: &Path) -> Result<KeyFiles, BuildError> {
    let public = public_key_path(secret);
    let pair = signature::generate().map_err(|e| BuildError::Key {
        path: secret.to_owned(),
        reason: e.to_string(),
    })?;
    let create = |path: &Path, mode: u32, text: &str| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| BuildError::Key {
                path: path.to_owned(),
                reason: format!("cannot create it: {e}"),
            })
    };
    if public.exists() {
        return Err(BuildError::Key {
            path: public,
            reason: "already exists; not overwritten".to_owned(),
        });
    }
    create(secret, 0o600, &pair.secret)?;
    if let Err(e) = create(&public, 0o644, &pair.public) {
        let _ = std::fs::remove_file(secret);
        return Err(e);
    }
    Ok(KeyFiles {
        secret: secret.to_owned(),
        public,
        id: pair.id,
    })
}

/// Reads the secret key at `path` for `--sign`. Refuses, as ssh does, a key file that
/// its group or other users can read or write (`chmod 600` it), and anything but an
/// unencrypted minisign secret key.
pub fn read_secret_key(path: &Path) -> Result<SecretKey, BuildError> {
    let fail = |reason: String| BuildError::Key {
        path: path.to_owned(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(fail(format!(
            "it is accessible by other users (mode {mode:04o}): `chmod 600` it"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    SecretKey::parse(&text).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_writes_a_private_secret_key_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("release.key");
        let files = keygen(&secret).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&files.secret), 0o600);
        assert_eq!(mode(&files.public), 0o644);
        let key = read_secret_key(&secret).unwrap();
        assert_eq!(key.id(), files.id);
        let public = signature::TrustedKey::from_file(&files.public).unwrap();
        assert_eq!(public.id(), files.id);
        assert!(matches!(keygen(&secret), Err(BuildError::Key { .. })));
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = read_secret_key(&secret).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }
}
