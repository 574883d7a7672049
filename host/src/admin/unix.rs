//! The admin unix socket: created with mode 0600 without a window where it is more open,
//! a stale socket file from a dead host replaced, a live host's socket left alone.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::AdminError;

/// A bound socket and the identity of its file, to remove only our own file later.
pub(crate) struct BoundSocket {
    pub listener: UnixListener,
    pub path: PathBuf,
    dev: u64,
    ino: u64,
}

impl BoundSocket {
    /// Removes the socket file if it is still the one this host created.
    pub fn remove_file(&self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.dev() == self.dev && meta.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Binds `path` with mode 0600.
///
/// The socket is bound inside a fresh private directory (mode 0700) beside `path`,
/// chmod-ed to 0600 there, then renamed onto `path`, so it is never reachable with wider
/// permissions (the process umask is left alone: it is process-wide). A socket file
/// already at `path` is replaced if nobody answers on it (a crashed host's leftover);
/// fails with [`AdminError::InUse`] if a process answers, and refuses to replace
/// anything that is not a socket.
pub(crate) fn bind(path: &Path) -> Result<BoundSocket, AdminError> {
    let err = |what: &'static str| {
        move |source: io::Error| AdminError::Unix {
            path: path.to_owned(),
            what,
            source,
        }
    };
    check_existing(path)?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    if path.file_name().is_none() {
        return Err(AdminError::Unix {
            path: path.to_owned(),
            what: "check the socket path",
            source: io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
        });
    }
    // Short names: a socket path is limited to 107 bytes, and the staged one should not
    // be much longer than the final one.
    let private = tempfile::Builder::new()
        .prefix(".hs")
        .tempdir_in(&parent)
        .map_err(err("create a private directory beside the socket"))?;
    // tempfile creates directories with mode 0700; make sure of it anyway.
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700))
        .map_err(err("restrict the private directory"))?;
    let staged = private.path().join("s");
    let listener = UnixListener::bind(&staged).map_err(err("bind"))?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
        .map_err(err("set mode 0600 on"))?;
    // Another host may have bound `path` since the check: look once more right before
    // the rename (the remaining window is a rename race between two hosts started at
    // the same instant on the same path, which one of them then loses on its next start).
    check_existing(path)?;
    std::fs::rename(&staged, path).map_err(err("move into place"))?;
    let meta = std::fs::symlink_metadata(path).map_err(err("stat"))?;
    Ok(BoundSocket {
        listener,
        path: path.to_owned(),
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// Ok if nothing is at `path` or a stale socket (removed here); an error otherwise.
fn check_existing(path: &Path) -> Result<(), AdminError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(AdminError::Unix {
                path: path.to_owned(),
                what: "stat",
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(AdminError::NotASocket(path.to_owned()));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(AdminError::InUse(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing a stale admin socket");
            match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(AdminError::Unix {
                    path: path.to_owned(),
                    what: "remove the stale socket",
                    source,
                }),
            }
        }
        Err(source) => Err(AdminError::Unix {
            path: path.to_owned(),
            what: "probe the existing socket",
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_is_private_stale_ones_are_replaced_live_ones_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("admin.sock");
        let first = bind(&path).expect("bind");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // The staging directory is gone.
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
        // A live socket is not taken over.
        assert!(matches!(bind(&path), Err(AdminError::InUse(_))));
        // A dead one (its listener closed, the file left behind) is.
        drop(first.listener);
        let second = bind(&path).expect("replace a stale socket");
        second.remove_file();
        assert!(!path.exists());
        // Anything else is left alone.
        std::fs::write(&path, "precious").expect("write");
        assert!(matches!(bind(&path), Err(AdminError::NotASocket(_))));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "precious");
    }
}
