//! Reading files of the plugin directory without letting them block or lead elsewhere.
//!
//! Whoever writes the plugin directory can put anything there: a FIFO named
//! `x.manifest.json` (a plain `open` blocks until a writer comes, with the reload lock
//! held), a manifest whose `file` names a device (`/dev/zero` reads forever), a socket, a
//! directory, or a symbolic link to any of these or to a file outside the directory.
//! [`read_regular`] reads only regular files: it checks the entry without following
//! links, opens it with `O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY` (a FIFO or device
//! that replaced the entry in between opens without waiting), checks the opened
//! descriptor again with `fstat`, and refuses anything but a regular file with a
//! [`FileError`] that names what it found. Symbolic links are refused outright: that is
//! the simplest rule under which nothing read leaves the directory.
//!
//! [`check_file_name`] is the other half: the library a manifest names must be a plain
//! file name in the manifest's own directory.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest manifest the host reads (a real one is about 1 KiB).
pub const MANIFEST_LIMIT: u64 = 1 << 20;

/// Why a file of the plugin directory was not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The file cannot be opened or read (missing, no permission, …).
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
    /// A named pipe: reading it would wait for a writer.
    #[error("{} is a FIFO (named pipe), not a regular file: refused without reading it", path.display())]
    Fifo {
        /// The file.
        path: PathBuf,
    },
    /// A character device (`/dev/zero`, a tty, …).
    #[error("{} is a character device, not a regular file: refused without reading it", path.display())]
    CharDevice {
        /// The file.
        path: PathBuf,
    },
    /// A block device.
    #[error("{} is a block device, not a regular file: refused without reading it", path.display())]
    BlockDevice {
        /// The file.
        path: PathBuf,
    },
    /// A unix socket.
    #[error("{} is a socket, not a regular file: refused without reading it", path.display())]
    Socket {
        /// The file.
        path: PathBuf,
    },
    /// A directory.
    #[error("{} is a directory, not a regular file", path.display())]
    Directory {
        /// The file.
        path: PathBuf,
    },
    /// A symbolic link, wherever it points.
    #[error("{} is a symbolic link: manifests and plugin files must be regular files in the plugin directory, not links (copy the file instead)", path.display())]
    Symlink {
        /// The file.
        path: PathBuf,
    },
    /// Larger than the limit for its kind of file.
    #[error("{} is larger than {limit} bytes: refused", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit, in bytes.
        limit: u64,
    },
}

impl FileError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            FileError::Io { path, .. }
            | FileError::Fifo { path }
            | FileError::CharDevice { path }
            | FileError::BlockDevice { path }
            | FileError::Socket { path }
            | FileError::Directory { path }
            | FileError::Symlink { path }
            | FileError::TooLarge { path, .. } => path,
        }
    }
}

/// Why a manifest's `file` is not a plain file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadFileName {
    /// `""`.
    Empty,
    /// `"."` or `".."`.
    Dots,
    /// An absolute path.
    Absolute,
    /// Contains `/` (another directory).
    Separator,
    /// Contains a NUL byte.
    Nul,
}

impl std::fmt::Display for BadFileName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BadFileName::Empty => "it is empty",
            BadFileName::Dots => "it is `.` or `..`",
            BadFileName::Absolute => "it is an absolute path",
            BadFileName::Separator => "it contains `/`",
            BadFileName::Nul => "it contains a NUL byte",
        })
    }
}

/// Checks that `name` is a plain file name: not empty, not `.` or `..`, no `/`, no NUL,
/// not absolute; so joined to a directory it names an entry of that directory.
pub fn check_file_name(name: &str) -> Result<(), BadFileName> {
    if name.is_empty() {
        Err(BadFileName::Empty)
    } else if name.starts_with('/') || Path::new(name).is_absolute() {
        Err(BadFileName::Absolute)
    } else if name.contains('/') {
        Err(BadFileName::Separator)
    } else if name.contains('\0') {
        Err(BadFileName::Nul)
    } else if name == "." || name == ".." {
        Err(BadFileName::Dots)
    } else {
        Ok(())
    }
}

/// Reads the regular file at `path` (at most `limit` bytes, if given), refusing FIFOs,
/// devices, sockets, directories and symbolic links without blocking on them.
pub fn read_regular(path: &Path, limit: Option<u64>) -> Result<Vec<u8>, FileError> {
    read_regular_identified(path, limit).map(|(bytes, _)| bytes)
}

/// Which file, and which contents of it: device, inode, size, and the modification and
/// status-change times. The status-change time (`ctime`) moves on every write and
/// cannot be set by an unprivileged user, so two equal identities mean the same bytes,
/// except for a rewrite in place, to the same size, within one tick of the kernel's
/// file-time clock (a few milliseconds) of the previous one, or by root resetting the
/// clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileIdentity {
    // The field types of `stat` differ between platforms: the casts are not all no-ops.
    #[allow(clippy::unnecessary_cast)]
    fn of(stat: &rustix::fs::Stat) -> FileIdentity {
        FileIdentity {
            dev: stat.st_dev as u64,
            ino: stat.st_ino as u64,
            size: stat.st_size as i64,
            mtime: (stat.st_mtime as i64, stat.st_mtime_nsec as i64),
            ctime: (stat.st_ctime as i64, stat.st_ctime_nsec as i64),
        }
    }
}

/// Who owns a file and who may write it: what a strict host checks (see [`Access::loose`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Access {
    /// The permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// The owner's user id.
    pub uid: u32,
}

/// What makes a file or directory unsafe to load code from (see [`Access::loose`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loose {
    /// Writable by its group (`mode & 0o020`).
    GroupWritable,
    /// Writable by every user (`mode & 0o002`).
    WorldWritable,
    /// Owned by a user that is neither root nor `expected`.
    ForeignOwner {
        /// The owner.
        uid: u32,
        /// The user the host runs as.
        expected: u32,
    },
}

impl std::fmt::Display for Loose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Loose::GroupWritable => f.write_str("writable by its group"),
            Loose::WorldWritable => f.write_str("writable by every user"),
            Loose::ForeignOwner { uid, expected } => write!(
                f,
                "owned by uid {uid}, neither root nor the host's user (uid {expected})"
            ),
        }
    }
}

impl Access {
    // The field types of `stat` differ between platforms: the casts are not all no-ops.
    #[allow(clippy::unnecessary_cast)]
    fn of(stat: &rustix::fs::Stat) -> Access {
        Access {
            mode: (stat.st_mode as u32) & 0o7777,
            uid: stat.st_uid as u32,
        }
    }

    /// Why a host running as user `euid` must not load code from this file or
    /// directory, or `None` if it may: writable by anyone but its owner, or owned by
    /// anyone but `euid` and root, as sshd's StrictModes decides.
    pub fn loose(&self, euid: u32) -> Option<Loose> {
        if self.mode & 0o002 != 0 {
            Some(Loose::WorldWritable)
        } else if self.mode & 0o020 != 0 {
            Some(Loose::GroupWritable)
        } else if self.uid != 0 && self.uid != euid {
            Some(Loose::ForeignOwner {
                uid: self.uid,
                expected: euid,
            })
        } else {
            None
        }
    }
}

/// The [`Access`] of the directory `dir` (links in its path followed: the directory
/// itself is what is checked). Fails when it cannot be looked at, or is no directory.
pub fn dir_access(dir: &Path) -> Result<Access, FileError> {
    let stat = rustix::fs::stat(dir).map_err(|e| FileError::Io {
        path: dir.to_owned(),
        source: e.into(),
    })?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Directory {
        return Err(FileError::Io {
            path: dir.to_owned(),
            source: std::io::Error::other("not a directory"),
        });
    }
    Ok(Access::of(&stat))
}

/// A regular file's bytes, as [`read_regular_checked`] read them.
#[derive(Debug)]
pub struct ReadFile {
    /// The contents.
    pub bytes: Vec<u8>,
    /// Which file and contents, if it did not change while it was read (see
    /// [`read_regular_identified`]).
    pub identity: Option<FileIdentity>,
    /// Owner and permissions of the very file that was read (from `fstat` of the
    /// descriptor, not a second look at the path).
    pub access: Access,
}

/// Like [`read_regular_identified`], and also the [`Access`] of the descriptor read.
pub fn read_regular_checked(path: &Path, limit: Option<u64>) -> Result<ReadFile, FileError> {
    read_regular_inner(path, limit)
}

/// Like [`read_regular`], and also the file's [`FileIdentity`] if it did not change
/// while it was read (`None` if it did: the bytes may then be a mix of two versions).
pub fn read_regular_identified(
    path: &Path,
    limit: Option<u64>,
) -> Result<(Vec<u8>, Option<FileIdentity>), FileError> {
    open_regular(path)?.read_all(limit)
}

fn read_regular_inner(path: &Path, limit: Option<u64>) -> Result<ReadFile, FileError> {
    let file = open_regular(path)?;
    let access = file.access();
    let (bytes, identity) = file.read_all(limit)?;
    Ok(ReadFile {
        bytes,
        identity,
        access,
    })
}

/// A regular file of the plugin directory, opened without blocking and without
/// following a link (as [`read_regular`] opens it), with its identity when opened.
#[derive(Debug)]
pub struct OpenRegular {
    file: std::fs::File,
    path: PathBuf,
    before: FileIdentity,
    access: Access,
}

/// Opens `path` as [`read_regular`] does, without reading it.
///
/// # Errors
///
/// As [`read_regular`]: anything but a regular file, a link, or an I/O error.
pub fn open_regular(path: &Path) -> Result<OpenRegular, FileError> {
    let io = |source: std::io::Error| FileError::Io {
        path: path.to_owned(),
        source,
    };
    // Look first without following links or opening anything: opening some devices
    // has effects of its own.
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    refuse_non_regular(path, file_kind(&meta.file_type()))?;
    use rustix::fs::{Mode, OFlags};
    // O_NONBLOCK: should a FIFO or device replace the entry after the check, open
    // returns at once instead of waiting; O_NOFOLLOW: a link put there meanwhile fails
    // with ELOOP.
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP => FileError::Symlink {
            path: path.to_owned(),
        },
        e => io(e.into()),
    })?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| io(e.into()))?;
    refuse_non_regular(
        path,
        Kind::from(rustix::fs::FileType::from_raw_mode(stat.st_mode)),
    )?;
    Ok(OpenRegular {
        // A regular file: reads never block, O_NONBLOCK or not.
        file: std::fs::File::from(fd),
        path: path.to_owned(),
        before: FileIdentity::of(&stat),
        access: Access::of(&stat),
    })
}

impl OpenRegular {
    /// The file's identity when it was opened.
    pub fn identity(&self) -> FileIdentity {
        self.before
    }

    /// Owner and permissions of the file opened (from `fstat` of the descriptor, not a
    /// second look at the path).
    pub fn access(&self) -> Access {
        self.access
    }

    fn io(&self, source: std::io::Error) -> FileError {
        FileError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// The identity now if it is still the one at open (nothing wrote the file since).
    fn unchanged(&self) -> Option<FileIdentity> {
        match rustix::fs::fstat(&self.file).map(|s| FileIdentity::of(&s)) {
            Ok(after) if after == self.before => Some(self.before),
            _ => None,
        }
    }

    /// Reads the whole file (refusing more than `limit` bytes), with its identity if it
    /// did not change while it was read (`None` if it did: the bytes may then be a mix
    /// of two versions).
    ///
    /// # Errors
    ///
    /// [`FileError::TooLarge`] past `limit`, or an I/O error.
    pub fn read_all(
        self,
        limit: Option<u64>,
    ) -> Result<(Vec<u8>, Option<FileIdentity>), FileError> {
        // Room for the size `fstat` gave and one byte more: the file is read in one
        // call and its end seen in a second, where an empty buffer starts at 32 bytes
        // and doubles (a dozen reads and copies for a library). Never more than the
        // limit asks for, or than 256 MiB up front (past that it grows as it reads).
        const MOST_UP_FRONT: u64 = 256 << 20;
        let expected = u64::try_from(self.before.size).unwrap_or(0);
        let room = expected
            .min(limit.unwrap_or(u64::MAX))
            .min(MOST_UP_FRONT)
            .saturating_add(1);
        let mut bytes = Vec::with_capacity(usize::try_from(room).unwrap_or(0));
        match limit {
            Some(limit) => {
                (&self.file)
                    .take(limit.saturating_add(1))
                    .read_to_end(&mut bytes)
                    .map_err(|e| self.io(e))?;
                if bytes.len() as u64 > limit {
                    return Err(FileError::TooLarge {
                        path: self.path.clone(),
                        limit,
                    });
                }
            }
            None => {
                (&self.file)
                    .read_to_end(&mut bytes)
                    .map_err(|e| self.io(e))?;
            }
        }
        let identity = self.unchanged();
        Ok((bytes, identity))
    }

    /// Copies the whole file to a new file `to` (which must not exist), inside the
    /// kernel where it can (`copy_file_range`: no buffer in this process), and returns
    /// its identity if it did not change during the copy (`None` if it did: `to` may
    /// then hold a mix of two versions, and the caller should not use it).
    ///
    /// # Errors
    ///
    /// An I/O error creating or writing `to` (which may then be left partly written),
    /// or reading this file.
    pub fn copy_to(self, to: &Path) -> Result<Option<FileIdentity>, FileError> {
        let to_io = |source: std::io::Error| FileError::Io {
            path: to.to_owned(),
            source,
        };
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(to)
            .map_err(to_io)?;
        std::io::copy(&mut &self.file, &mut out).map_err(|e| self.io(e))?;
        Ok(self.unchanged())
    }
}

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Regular,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
    Directory,
    Symlink,
    Unknown,
}

impl From<rustix::fs::FileType> for Kind {
    fn from(t: rustix::fs::FileType) -> Kind {
        use rustix::fs::FileType as T;
        match t {
            T::RegularFile => Kind::Regular,
            T::Fifo => Kind::Fifo,
            T::CharacterDevice => Kind::CharDevice,
            T::BlockDevice => Kind::BlockDevice,
            T::Socket => Kind::Socket,
            T::Directory => Kind::Directory,
            T::Symlink => Kind::Symlink,
            _ => Kind::Unknown,
        }
    }
}

fn file_kind(t: &std::fs::FileType) -> Kind {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        Kind::Regular
    } else if t.is_symlink() {
        Kind::Symlink
    } else if t.is_dir() {
        Kind::Directory
    } else if t.is_fifo() {
        Kind::Fifo
    } else if t.is_char_device() {
        Kind::CharDevice
    } else if t.is_block_device() {
        Kind::BlockDevice
    } else if t.is_socket() {
        Kind::Socket
    } else {
        Kind::Unknown
    }
}

fn refuse_non_regular(path: &Path, kind: Kind) -> Result<(), FileError> {
    let path = path.to_owned();
    Err(match kind {
        Kind::Regular => return Ok(()),
        Kind::Fifo => FileError::Fifo { path },
        Kind::CharDevice => FileError::CharDevice { path },
        Kind::BlockDevice => FileError::BlockDevice { path },
        Kind::Socket => FileError::Socket { path },
        Kind::Directory => FileError::Directory { path },
        Kind::Symlink => FileError::Symlink { path },
        Kind::Unknown => FileError::Io {
            path: path.clone(),
            source: std::io::Error::other("not a regular file"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_names_the_contents() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lib.so");
        std::fs::write(&file, b"one").unwrap();
        let (bytes, first) = read_regular_identified(&file, None).unwrap();
        assert_eq!(bytes, b"one");
        let (_, again) = read_regular_identified(&file, None).unwrap();
        assert!(first.is_some());
        assert_eq!(first, again, "nothing changed, the same identity");
        std::fs::write(&file, b"three").unwrap();
        let (bytes, changed) = read_regular_identified(&file, None).unwrap();
        assert_eq!(bytes, b"three");
        assert_ne!(first, changed);
    }

    #[test]
    fn loose_modes_and_foreign_owners_are_named() {
        let a = |mode, uid| Access { mode, uid };
        assert_eq!(a(0o755, 1000).loose(1000), None);
        assert_eq!(a(0o644, 0).loose(1000), None, "root's files are fine");
        assert_eq!(a(0o775, 1000).loose(1000), Some(Loose::GroupWritable));
        assert_eq!(a(0o757, 1000).loose(1000), Some(Loose::WorldWritable));
        assert_eq!(a(0o1777, 0).loose(0), Some(Loose::WorldWritable));
        assert_eq!(
            a(0o755, 65534).loose(1000),
            Some(Loose::ForeignOwner {
                uid: 65534,
                expected: 1000
            })
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o664)).unwrap();
        let read = read_regular_checked(&file, None).unwrap();
        assert_eq!(read.access.mode, 0o664);
        assert_eq!(read.access.uid, rustix::process::geteuid().as_raw());
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
        assert_eq!(dir_access(dir.path()).unwrap().mode, 0o750);
        assert!(dir_access(&file).is_err());
    }

    #[test]
    fn plain_names_pass_and_others_are_named() {
        assert_eq!(check_file_name("world-0.1.0-x.so"), Ok(()));
        assert_eq!(check_file_name("..so"), Ok(()));
        assert_eq!(check_file_name(""), Err(BadFileName::Empty));
        assert_eq!(check_file_name("."), Err(BadFileName::Dots));
        assert_eq!(check_file_name(".."), Err(BadFileName::Dots));
        assert_eq!(check_file_name("/dev/zero"), Err(BadFileName::Absolute));
        assert_eq!(check_file_name("../x.so"), Err(BadFileName::Separator));
        assert_eq!(check_file_name("sub/x.so"), Err(BadFileName::Separator));
        assert_eq!(check_file_name("x\0.so"), Err(BadFileName::Nul));
    }

    #[test]
    fn regular_files_are_read_and_the_rest_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"bytes").unwrap();
        assert_eq!(read_regular(&file, None).unwrap(), b"bytes");
        assert_eq!(read_regular(&file, Some(5)).unwrap(), b"bytes");
        assert!(matches!(
            read_regular(&file, Some(4)),
            Err(FileError::TooLarge { limit: 4, .. })
        ));

        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(matches!(
            read_regular(&fifo, None),
            Err(FileError::Fifo { .. })
        ));
        assert!(matches!(
            read_regular(dir.path(), None),
            Err(FileError::Directory { .. })
        ));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(matches!(
            read_regular(&link, None),
            Err(FileError::Symlink { .. })
        ));
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), None),
            Err(FileError::CharDevice { .. })
        ));
        let missing = dir.path().join("missing");
        let e = read_regular(&missing, None).unwrap_err();
        assert!(matches!(&e, FileError::Io { .. }), "{e}");
        assert_eq!(e.path(), missing);
    }
}
