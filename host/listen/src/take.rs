//! Taking the inherited sockets: read the environment, check every descriptor, then own
//! them.

use crate::listener::{Inherited, Listener};
use crate::protocol::{EINHORN_FDS, LISTEN_FDNAMES, LISTEN_FDS, LISTEN_FDS_START, LISTEN_PID};
use rustix::io::FdFlags;
use rustix::net::{sockopt, AddressFamily, SocketType};
use std::net::TcpListener;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};

/// The most descriptors [`take`] accepts; more is a corrupt environment, not a setup.
const MAX_FDS: usize = 1024;

/// Set once [`take`] has turned descriptors into owned listeners, so that a second call
/// cannot own (and later close) the same descriptors twice.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Why inherited sockets could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// [`take`] was called before in this process; the descriptors belong to that call.
    #[error("the inherited sockets were already taken by an earlier call")]
    AlreadyTaken,
    /// An environment variable did not hold what the protocol says.
    #[error("environment variable {var}={value:?} is invalid: {reason}")]
    BadEnv {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A descriptor named by the environment is closed or not a listening stream socket.
    #[error("inherited descriptor {fd} is not usable: {reason}")]
    BadFd {
        /// The descriptor number.
        fd: RawFd,
        /// What is wrong with it.
        reason: String,
    },
}

fn env_str(var: &'static str) -> Result<Option<String>, ListenError> {
    match std::env::var_os(var) {
        None => Ok(None),
        Some(v) => v.into_string().map(Some).map_err(|v| ListenError::BadEnv {
            var,
            value: v.to_string_lossy().into_owned(),
            reason: "not UTF-8",
        }),
    }
}

/// Where the sockets are, according to the environment: descriptor numbers and names.
/// Empty when the environment passes nothing (or passes it to another process).
fn plan_from_env() -> Result<Vec<(RawFd, Option<String>)>, ListenError> {
    plan(
        env_str(LISTEN_FDS)?.as_deref(),
        env_str(LISTEN_PID)?.as_deref(),
        env_str(LISTEN_FDNAMES)?.as_deref(),
        env_str(EINHORN_FDS)?.as_deref(),
        std::process::id(),
    )
}

/// The protocol itself, on plain values (so it can be tested without touching the
/// process environment).
fn plan(
    listen_fds: Option<&str>,
    listen_pid: Option<&str>,
    names: Option<&str>,
    einhorn: Option<&str>,
    my_pid: u32,
) -> Result<Vec<(RawFd, Option<String>)>, ListenError> {
    if let Some(count) = listen_fds {
        let bad = |var, value: &str, reason| ListenError::BadEnv {
            var,
            value: value.to_owned(),
            reason,
        };
        // As sd_listen_fds: without a LISTEN_PID, or with another process's, the sockets
        // were not meant for us.
        let Some(pid) = listen_pid else {
            return Ok(Vec::new());
        };
        let pid: u32 = pid
            .trim()
            .parse()
            .map_err(|_| bad(LISTEN_PID, pid, "not a process id"))?;
        if pid != my_pid {
            tracing::debug!(listen_pid = pid, "LISTEN_FDS is meant for another process");
            return Ok(Vec::new());
        }
        let n: usize = count
            .trim()
            .parse()
            .map_err(|_| bad(LISTEN_FDS, count, "not a number"))?;
        if n > MAX_FDS {
            return Err(bad(LISTEN_FDS, count, "more than 1024 descriptors"));
        }
        let names: Vec<Option<String>> = match names {
            Some(list) if !list.is_empty() || n == 1 => {
                let parts: Vec<&str> = list.split(':').collect();
                if parts.len() != n {
                    return Err(bad(
                        LISTEN_FDNAMES,
                        list,
                        "the number of names differs from LISTEN_FDS",
                    ));
                }
                parts.into_iter().map(|s| Some(s.to_owned())).collect()
            }
            _ => vec![None; n],
        };
        return Ok(names
            .into_iter()
            .enumerate()
            .map(|(i, name)| (LISTEN_FDS_START + i as RawFd, name))
            .collect());
    }
    if let Some(list) = einhorn {
        let mut out = Vec::new();
        for word in list.split_whitespace() {
            let fd: RawFd = word.parse().map_err(|_| ListenError::BadEnv {
                var: EINHORN_FDS,
                value: list.to_owned(),
                reason: "not a space-separated list of descriptor numbers",
            })?;
            if fd < 0 || out.len() >= MAX_FDS {
                return Err(ListenError::BadEnv {
                    var: EINHORN_FDS,
                    value: list.to_owned(),
                    reason: "negative descriptor or more than 1024 descriptors",
                });
            }
            out.push((fd, None));
        }
        return Ok(out);
    }
    Ok(Vec::new())
}

/// Checks that `fd` is an open, listening stream socket and says which kind.
fn inspect(fd: BorrowedFd<'_>) -> Result<AddressFamily, String> {
    rustix::io::fcntl_getfd(fd).map_err(|e| format!("not open ({e})"))?;
    let kind = sockopt::socket_type(fd).map_err(|e| format!("not a socket ({e})"))?;
    if kind != SocketType::STREAM {
        return Err("not a stream socket".into());
    }
    if !sockopt::socket_acceptconn(fd).map_err(|e| format!("SO_ACCEPTCONN: {e}"))? {
        return Err("not listening".into());
    }
    sockopt::socket_domain(fd).map_err(|e| format!("SO_DOMAIN: {e}"))
}

/// Takes the listening sockets this process inherited, in order (fd 3 first).
///
/// Returns an empty list when the environment passes none (the program was started
/// without a supervisor) or when `LISTEN_PID` names another process. Each socket is
/// marked close-on-exec, as `sd_listen_fds` does. The environment is left as it is:
/// `LISTEN_PID` already keeps descendants from taking the sockets.
///
/// Fails on a malformed environment, on a descriptor that is closed or not a listening
/// TCP or Unix stream socket, and on a second call ([`ListenError::AlreadyTaken`]).
pub fn take() -> Result<Vec<Inherited>, ListenError> {
    let plan = plan_from_env()?;
    if plan.is_empty() {
        return Ok(Vec::new());
    }
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(ListenError::AlreadyTaken);
    }
    // Check every descriptor before owning any, so that a bad one closes nothing.
    let mut kinds = Vec::with_capacity(plan.len());
    for (fd, _) in &plan {
        // SAFETY: only borrowed for the duration of the checks; `fcntl_getfd` inside
        // `inspect` fails cleanly (EBADF) if the number is not an open descriptor.
        let borrowed = unsafe { BorrowedFd::borrow_raw(*fd) };
        let family = inspect(borrowed).map_err(|reason| ListenError::BadFd { fd: *fd, reason })?;
        kinds.push(family);
    }
    let mut out = Vec::with_capacity(plan.len());
    for ((fd, name), family) in plan.into_iter().zip(kinds) {
        // SAFETY: `inspect` showed `fd` is an open socket; the environment hands it to
        // this process, and `TAKEN` makes this the only place that takes ownership.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        rustix::io::fcntl_setfd(&owned, FdFlags::CLOEXEC).map_err(|e| ListenError::BadFd {
            fd,
            reason: format!("setting close-on-exec failed: {e}"),
        })?;
        let listener = if family == AddressFamily::INET || family == AddressFamily::INET6 {
            Listener::Tcp(TcpListener::from(owned))
        } else if family == AddressFamily::UNIX {
            Listener::Unix(UnixListener::from(owned))
        } else {
            return Err(ListenError::BadFd {
                fd,
                reason: format!("unsupported address family {family:?}"),
            });
        };
        tracing::debug!(fd, name = name.as_deref(), address = %listener.describe(), "inherited listener");
        out.push(Inherited { fd, name, listener });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn systemd_protocol() {
        let p = plan(Some("2"), Some("42"), Some("http:admin"), None, 42).unwrap();
        assert_eq!(p, vec![(3, Some("http".into())), (4, Some("admin".into()))]);
        // Meant for another process, or no pid at all: nothing.
        assert!(plan(Some("2"), Some("41"), None, None, 42)
            .unwrap()
            .is_empty());
        assert!(plan(Some("2"), None, None, None, 42).unwrap().is_empty());
        // No names: unnamed.
        assert_eq!(
            plan(Some("1"), Some("42"), None, None, 42).unwrap(),
            vec![(3, None)]
        );
    }

    #[test]
    fn einhorn_protocol_and_bad_values() {
        assert_eq!(
            plan(None, None, None, Some("3 7"), 1).unwrap(),
            vec![(3, None), (7, None)]
        );
        assert!(plan(None, None, None, None, 1).unwrap().is_empty());
        for (fds, pid, names, einhorn) in [
            (Some("x"), Some("1"), None, None),
            (Some("2"), Some("1"), Some("a"), None),
            (Some("1"), Some("-"), None, None),
            (Some("99999"), Some("1"), None, None),
            (None, None, None, Some("3 four")),
        ] {
            let err = plan(fds, pid, names, einhorn, 1).unwrap_err();
            assert!(matches!(err, ListenError::BadEnv { .. }), "{err}");
        }
    }

    #[test]
    fn a_regular_file_is_not_a_listener() {
        let file = tempfile::tempfile().unwrap();
        let err = inspect(file.as_fd()).unwrap_err();
        assert!(err.contains("not a socket"), "{err}");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(inspect(listener.as_fd()).unwrap(), AddressFamily::INET);
    }
}
