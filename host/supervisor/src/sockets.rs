//! The listening sockets: parsed from `--listen` URIs, bound once by the supervisor and
//! shared, as the very same open socket, by every child it starts. Old and new children
//! accept from one queue, so a connection waiting in it is served by whichever child
//! accepts next and none is reset (two sockets overlapping with `SO_REUSEPORT` would reset
//! what was queued on the one that closes; it is never used).
//!
//! Unix socket paths: a socket file left behind by a dead process (connecting to it is
//! refused) is removed before binding; one a live process still answers on is never
//! touched, and neither is a path that is not a socket. On exit the supervisor removes
//! the socket files it bound, unless another process has replaced them since.

use hotswap_listen::LISTEN_FDS_START;
use rustix::net::{sockopt, AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The listen backlog: connections the kernel queues while no child accepts (during a
/// hand-off). Linux caps it at `net.core.somaxconn`.
pub const BACKLOG: i32 = 4096;

/// Which IP family a `tcp*` URI asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `tcp://`: whatever the host resolves to first; a wildcard address is dual-stack.
    Any,
    /// `tcp4://`: IPv4 only.
    V4,
    /// `tcp6://`: IPv6 only (`IPV6_V6ONLY`).
    V6,
}

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP socket on `host:port`; an empty host means every interface.
    Tcp {
        /// Host name or IP address (without brackets); empty for the wildcard address.
        host: String,
        /// Port; 0 asks the kernel for a free one (the status shows which).
        port: u16,
        /// The scheme's family.
        family: Family,
    },
    /// A Unix-domain stream socket at a path.
    Unix(PathBuf),
}

/// One `--listen` URI: `tcp://HOST:PORT`, `tcp4://…`, `tcp6://[ADDR]:PORT`,
/// `unix:///PATH`, each optionally followed by `#NAME` (the name announced in
/// `LISTEN_FDNAMES`; default `listen0`, `listen1`, … by position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// The name from the URI's fragment, if any.
    pub name: Option<String>,
    /// The address.
    pub addr: ListenAddr,
}

/// Why a socket could not be parsed, bound, or its path prepared or removed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketError {
    /// The URI does not follow the accepted syntax.
    #[error("invalid listen address {uri:?}: {reason}")]
    BadUri {
        /// What was given.
        uri: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The host name could not be resolved, or resolved to no address of the family.
    #[error("cannot resolve {uri}: {reason}")]
    Resolve {
        /// The address.
        uri: String,
        /// The resolver's error or "no IPv4/IPv6 address".
        reason: String,
    },
    /// Creating, binding or listening failed.
    #[error("cannot listen on {uri}: {source}")]
    Bind {
        /// The address.
        uri: String,
        /// The cause (e.g. address in use, permission denied).
        #[source]
        source: io::Error,
    },
    /// The Unix socket path is answered by a live process.
    #[error("unix socket {path} is in use by a live process; refusing to remove it")]
    InUse {
        /// The path.
        path: PathBuf,
    },
    /// Something other than a socket exists at the path.
    #[error("{path} exists and is not a socket; refusing to remove it")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The existing socket file could not be probed or removed.
    #[error("cannot {action} existing unix socket {path}: {source}")]
    Stale {
        /// "probe" or "remove".
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl FromStr for ListenSpec {
    type Err = SocketError;

    fn from_str(uri: &str) -> Result<ListenSpec, SocketError> {
        let bad = |reason| SocketError::BadUri {
            uri: uri.to_owned(),
            reason,
        };
        let (rest, name) = match uri.rsplit_once('#') {
            Some((rest, name)) => {
                let valid = !name.is_empty()
                    && name.len() <= 255
                    && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
                if !valid {
                    return Err(bad(
                        "the #name must be 1-255 printable ASCII characters without ':'",
                    ));
                }
                (rest, Some(name.to_owned()))
            }
            None => (uri, None),
        };
        let (scheme, target) = rest
            .split_once("://")
            .ok_or_else(|| bad("expected SCHEME://ADDRESS (tcp, tcp4, tcp6 or unix)"))?;
        let addr = match scheme {
            "unix" => {
                if target.is_empty() || target.contains('\0') {
                    return Err(bad("expected unix:///PATH"));
                }
                ListenAddr::Unix(PathBuf::from(target))
            }
            "tcp" | "tcp4" | "tcp6" => {
                let family = match scheme {
                    "tcp4" => Family::V4,
                    "tcp6" => Family::V6,
                    _ => Family::Any,
                };
                let (host, port) = if let Some(inner) = target.strip_prefix('[') {
                    let (host, after) = inner
                        .split_once(']')
                        .ok_or_else(|| bad("unclosed '[' in IPv6 address"))?;
                    let port = after
                        .strip_prefix(':')
                        .ok_or_else(|| bad("expected :PORT after ']'"))?;
                    (host, port)
                } else {
                    target
                        .rsplit_once(':')
                        .ok_or_else(|| bad("expected HOST:PORT"))?
                };
                if host.contains(['/', '[', ']']) {
                    return Err(bad("invalid host"));
                }
                let port = port
                    .parse::<u16>()
                    .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
                ListenAddr::Tcp {
                    host: host.to_owned(),
                    port,
                    family,
                }
            }
            _ => return Err(bad("unknown scheme (expected tcp, tcp4, tcp6 or unix)")),
        };
        Ok(ListenSpec { name, addr })
    }
}

impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.addr {
            ListenAddr::Unix(p) => write!(f, "unix://{}", p.display())?,
            ListenAddr::Tcp { host, port, family } => {
                let scheme = match family {
                    Family::Any => "tcp",
                    Family::V4 => "tcp4",
                    Family::V6 => "tcp6",
                };
                if host.contains(':') {
                    write!(f, "{scheme}://[{host}]:{port}")?
                } else {
                    write!(f, "{scheme}://{host}:{port}")?
                }
            }
        }
        if let Some(name) = &self.name {
            write!(f, "#{name}")?;
        }
        Ok(())
    }
}

/// A bound, listening socket owned by the supervisor.
#[derive(Debug)]
pub(crate) struct BoundSocket {
    /// The name announced in `LISTEN_FDNAMES`.
    pub name: String,
    /// The address actually bound, as a URI (`tcp://127.0.0.1:41234`).
    pub address: String,
    /// The socket (close-on-exec in the supervisor; children get a copy on 3, 4, …).
    pub fd: OwnedFd,
    /// For a Unix socket: the path and the identity of the file bound, to remove it on
    /// exit only if it is still ours.
    unix: Option<(PathBuf, u64, u64)>,
}

impl BoundSocket {
    /// What a self-upgrade hands over of this socket (`handoff.rs`).
    pub(crate) fn handoff(&self) -> serde_json::Value {
        serde_json::json!({
            "fd": self.fd.as_raw_fd(),
            "name": self.name,
            "address": self.address,
            "unix": self.unix.as_ref().map(|(p, dev, ino)| serde_json::json!([p, dev, ino])),
        })
    }

    /// Takes over a socket a self-upgrade handed over (`handoff`'s output): checks the
    /// descriptor is a listening socket, makes it close-on-exec again.
    pub(crate) fn adopt(v: &serde_json::Value) -> Result<BoundSocket, String> {
        let fd = v["fd"]
            .as_i64()
            .and_then(|f| i32::try_from(f).ok())
            .filter(|f| *f > 2)
            .ok_or_else(|| format!("bad socket {v}"))?;
        // SAFETY: only borrowed for the check; a closed number fails it (EBADF).
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        match rustix::net::sockopt::socket_acceptconn(borrowed) {
            Ok(true) => {}
            _ => return Err(format!("descriptor {fd} is not a listening socket")),
        }
        // SAFETY: the replaced image owned this descriptor and handed it to this image
        // alone (the environment variable is read once, in `serve`); it is open (above).
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let socket = BoundSocket {
            name: v["name"].as_str().unwrap_or_default().to_owned(),
            address: v["address"].as_str().unwrap_or_default().to_owned(),
            fd,
            unix: v["unix"].as_array().and_then(|a| {
                Some((
                    PathBuf::from(a.first()?.as_str()?),
                    a.get(1)?.as_u64()?,
                    a.get(2)?.as_u64()?,
                ))
            }),
        };
        socket
            .set_inherited(false)
            .map_err(|e| format!("close-on-exec on {fd:?}: {e}", fd = socket.fd))?;
        Ok(socket)
    }

    /// Clears (`true`) or sets close-on-exec on the socket.
    pub(crate) fn set_inherited(&self, inherited: bool) -> io::Result<()> {
        let flags = if inherited {
            rustix::io::FdFlags::empty()
        } else {
            rustix::io::FdFlags::CLOEXEC
        };
        Ok(rustix::io::fcntl_setfd(&self.fd, flags)?)
    }

    /// Stops new connections at once, for every process holding the socket. A TCP
    /// socket gets `shutdown(SHUT_RD)`, which acts on the open file description the
    /// children share: the kernel stops listening and refuses new connections (RST to a
    /// SYN: `ECONNREFUSED`); connections already accepted are untouched, and accepting
    /// children see an error (`EINVAL`) from `accept`. A Unix socket's path is removed
    /// instead (a connect then finds nothing), because a shut-down Unix listener keeps
    /// polling readable with nothing to accept, which keeps some servers (tokio's)
    /// from finishing their drain. Best effort: a failure is logged.
    pub(crate) fn stop_accepting(&mut self) {
        if let Some((path, dev, ino)) = self.unix.take() {
            remove_if_ours(&path, dev, ino);
        } else if let Err(e) = rustix::net::shutdown(&self.fd, rustix::net::Shutdown::Read) {
            tracing::warn!(socket = %self.address, error = %e, "cannot stop accepting");
        }
    }
}

/// Removes the Unix socket file at `path` if it is still the one bound (`dev`, `ino`).
fn remove_if_ours(path: &Path, dev: u64, ino: u64) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.dev() == dev && m.ino() == ino => match std::fs::remove_file(path) {
            Ok(()) => tracing::info!(path = %path.display(), "removed unix socket"),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove unix socket")
            }
        },
        Ok(_) => tracing::info!(
            path = %path.display(),
            "unix socket path now belongs to another socket; left in place"
        ),
        Err(_) => {}
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if let Some((path, dev, ino)) = &self.unix {
            remove_if_ours(path, *dev, *ino);
        }
    }
}

/// Binds `spec` (the `index`th `--listen`).
pub(crate) fn bind(spec: &ListenSpec, index: usize) -> Result<BoundSocket, SocketError> {
    let name = spec
        .name
        .clone()
        .unwrap_or_else(|| format!("listen{index}"));
    let uri = spec.to_string();
    match &spec.addr {
        ListenAddr::Unix(path) => bind_unix_socket(path, None, &name),
        ListenAddr::Tcp { host, port, family } => {
            let fd = bind_tcp(host, *port, *family, &uri)?;
            let local = TcpListener::from(fd.try_clone().map_err(|source| SocketError::Bind {
                uri: uri.clone(),
                source,
            })?)
            .local_addr()
            .map_err(|source| SocketError::Bind {
                uri: uri.clone(),
                source,
            })?;
            Ok(BoundSocket {
                name,
                address: format!("tcp://{local}"),
                fd,
                unix: None,
            })
        }
    }
}

/// Binds a Unix socket at `path` named `name` (stale file removed, live one refused),
/// with permissions `mode` if given; the file is removed again when the socket drops.
pub(crate) fn bind_unix_socket(
    path: &Path,
    mode: Option<u32>,
    name: &str,
) -> Result<BoundSocket, SocketError> {
    let address = format!("unix://{}", path.display());
    let (fd, dev, ino) = bind_unix(path, mode, &address)?;
    Ok(BoundSocket {
        name: name.to_owned(),
        address,
        fd,
        unix: Some((path.to_owned(), dev, ino)),
    })
}

/// The addresses to try for a TCP URI, in order, each with its `IPV6_V6ONLY` setting.
fn tcp_candidates(
    host: &str,
    port: u16,
    family: Family,
    uri: &str,
) -> Result<Vec<(SocketAddr, bool)>, SocketError> {
    if host.is_empty() || host == "*" {
        return Ok(match family {
            // Dual-stack where IPv6 exists, else IPv4.
            Family::Any => vec![
                (SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)), false),
                (SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), false),
            ],
            Family::V4 => vec![(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), false)],
            Family::V6 => vec![(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)), true)],
        });
    }
    let resolved = (host, port)
        .to_socket_addrs()
        .map_err(|e| SocketError::Resolve {
            uri: uri.to_owned(),
            reason: e.to_string(),
        })?;
    let out: Vec<(SocketAddr, bool)> = resolved
        .filter(|a| match family {
            Family::Any => true,
            Family::V4 => a.is_ipv4(),
            Family::V6 => a.is_ipv6(),
        })
        .map(|a| (a, family == Family::V6))
        .collect();
    if out.is_empty() {
        return Err(SocketError::Resolve {
            uri: uri.to_owned(),
            reason: match family {
                Family::V4 => "no IPv4 address".into(),
                Family::V6 => "no IPv6 address".into(),
                Family::Any => "no address".into(),
            },
        });
    }
    Ok(out)
}

fn bind_tcp(host: &str, port: u16, family: Family, uri: &str) -> Result<OwnedFd, SocketError> {
    let mut last = None;
    for (addr, v6only) in tcp_candidates(host, port, family, uri)? {
        match bind_tcp_addr(addr, v6only) {
            Ok(fd) => return Ok(fd),
            Err(e) => last = Some(e),
        }
    }
    Err(SocketError::Bind {
        uri: uri.to_owned(),
        source: last.unwrap_or_else(|| io::Error::other("no address to bind")),
    })
}

fn bind_tcp_addr(addr: SocketAddr, v6only: bool) -> io::Result<OwnedFd> {
    let domain = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(domain, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    // SO_REUSEADDR only lets a restarted supervisor bind while old connections sit in
    // TIME_WAIT; it never lets two sockets listen on one port (that is SO_REUSEPORT).
    sockopt::set_socket_reuseaddr(&fd, true)?;
    if addr.is_ipv6() {
        sockopt::set_ipv6_v6only(&fd, v6only)?;
    }
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, BACKLOG)?;
    Ok(fd)
}

/// Makes `path` free for a new socket: nothing there is fine; a socket nobody answers
/// on (connection refused) is stale and removed; a live socket or a non-socket is an
/// error and left alone.
pub(crate) fn clear_stale_unix_socket(path: &Path) -> Result<(), SocketError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(SocketError::Stale {
                action: "probe",
                path: path.to_owned(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotASocket {
            path: path.to_owned(),
        });
    }
    match probe_unix(path) {
        Ok(()) => Err(SocketError::InUse {
            path: path.to_owned(),
        }),
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
            std::fs::remove_file(path).map_err(|source| SocketError::Stale {
                action: "remove",
                path: path.to_owned(),
                source,
            })?;
            tracing::warn!(path = %path.display(), "removed stale unix socket (nothing listens on it)");
            Ok(())
        }
        // EAGAIN: alive, its backlog is full.
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Err(SocketError::InUse {
            path: path.to_owned(),
        }),
        Err(source) => Err(SocketError::Stale {
            action: "probe",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Connects without blocking (a live server with a full backlog must not hang us).
fn probe_unix(path: &Path) -> io::Result<()> {
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    rustix::net::connect(&fd, &SocketAddrUnix::new(path)?)?;
    Ok(())
}

/// Binds and listens on a Unix socket at `path` after clearing a stale one; `mode`
/// (e.g. 0o600) restricts the new file's permissions through the umask while binding.
/// Returns the socket and the file's device and inode.
fn bind_unix(
    path: &Path,
    mode: Option<u32>,
    uri: &str,
) -> Result<(OwnedFd, u64, u64), SocketError> {
    clear_stale_unix_socket(path)?;
    let fail = |source: io::Error| SocketError::Bind {
        uri: uri.to_owned(),
        source,
    };
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| fail(e.into()))?;
    let addr = SocketAddrUnix::new(path).map_err(|e| fail(e.into()))?;
    let bound = match mode {
        Some(mode) => {
            // The umask is process-wide; the supervisor binds before it starts threads
            // that create files.
            let old = rustix::process::umask(rustix::fs::Mode::from_bits_truncate(!mode & 0o777));
            let r = rustix::net::bind(&fd, &addr);
            rustix::process::umask(old);
            r
        }
        None => rustix::net::bind(&fd, &addr),
    };
    bound.map_err(|e| fail(e.into()))?;
    rustix::net::listen(&fd, BACKLOG).map_err(|e| fail(e.into()))?;
    let meta = std::fs::symlink_metadata(path).map_err(fail)?;
    Ok((fd, meta.dev(), meta.ino()))
}

/// Occupies every free descriptor below `3 + count` with a close-on-exec `/dev/null`, so
/// that no descriptor the supervisor opens later (the sockets, the pipe the standard
/// library uses to report a failed exec) lands where a child's inherited sockets go. The
/// returned descriptors must live as long as the supervisor.
pub(crate) fn reserve_low_fds(count: usize) -> io::Result<Vec<OwnedFd>> {
    let limit = LISTEN_FDS_START + count as i32;
    let mut held = Vec::new();
    loop {
        let fd = rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        if std::os::fd::AsRawFd::as_raw_fd(&fd) >= limit {
            return Ok(held);
        }
        held.push(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn parse(s: &str) -> ListenSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn uris_parse() {
        assert_eq!(
            parse("tcp://127.0.0.1:8080").addr,
            ListenAddr::Tcp {
                host: "127.0.0.1".into(),
                port: 8080,
                family: Family::Any
            }
        );
        let v6 = parse("tcp6://[::1]:0#api");
        assert_eq!(v6.name.as_deref(), Some("api"));
        assert_eq!(
            v6.addr,
            ListenAddr::Tcp {
                host: "::1".into(),
                port: 0,
                family: Family::V6
            }
        );
        assert_eq!(v6.to_string(), "tcp6://[::1]:0#api");
        assert_eq!(
            parse("unix:///run/app.sock").addr,
            ListenAddr::Unix("/run/app.sock".into())
        );
        assert_eq!(
            parse("tcp4://:80").addr,
            ListenAddr::Tcp {
                host: "".into(),
                port: 80,
                family: Family::V4
            }
        );
        for bad in [
            "127.0.0.1:80",
            "udp://1.2.3.4:5",
            "tcp://host",
            "tcp://h:99999",
            "tcp://[::1:80",
            "unix://",
            "tcp://h:1#a:b",
            "tcp://h:1#",
        ] {
            assert!(bad.parse::<ListenSpec>().is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn tcp_binds_port_zero_and_reports_it() {
        let s = bind(&parse("tcp4://127.0.0.1:0"), 0).unwrap();
        assert_eq!(s.name, "listen0");
        assert!(s.address.starts_with("tcp://127.0.0.1:"), "{}", s.address);
        assert!(!s.address.ends_with(":0"));
        // The port is taken: a second bind fails with a message naming it.
        let port = s.address.rsplit(':').next().unwrap();
        let err = bind(&parse(&format!("tcp://127.0.0.1:{port}")), 1).unwrap_err();
        assert!(err.to_string().contains(port), "{err}");
    }

    #[test]
    fn stale_unix_socket_is_removed_live_and_foreign_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        drop(UnixListener::bind(&path).unwrap()); // leaves a stale file
        let s = bind(&parse(&format!("unix://{}#web", path.display())), 0).unwrap();
        assert_eq!(s.name, "web");
        // Live now: refused, and left in place.
        let err = bind(&parse(&format!("unix://{}", path.display())), 0).unwrap_err();
        assert!(matches!(err, SocketError::InUse { .. }), "{err}");
        assert!(path.exists());
        drop(s);
        assert!(!path.exists(), "removed on drop");
        std::fs::write(&path, b"data").unwrap();
        let err = bind(&parse(&format!("unix://{}", path.display())), 0).unwrap_err();
        assert!(matches!(err, SocketError::NotASocket { .. }), "{err}");
        assert!(path.exists());
    }
}
