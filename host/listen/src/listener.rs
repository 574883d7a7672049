//! The inherited socket itself: a TCP or Unix listener, whichever the descriptor is.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixListener;

/// A listening socket inherited from the supervisor.
#[derive(Debug)]
pub enum Listener {
    /// An IPv4 or IPv6 stream socket.
    Tcp(TcpListener),
    /// A Unix-domain stream socket.
    Unix(UnixListener),
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.as_fd(),
        }
    }
}

impl Listener {
    /// Switches the socket between blocking and non-blocking `accept`. The flag lives on
    /// the open file description, shared with every process holding the socket; a
    /// non-blocking accept is also what a server that drains must use.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(nonblocking),
            Listener::Unix(l) => l.set_nonblocking(nonblocking),
        }
    }

    /// The local address, for log lines: `127.0.0.1:8080`, `[::1]:80`, `/run/app.sock`.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|e| format!("tcp (address unknown: {e})"), |a| a.to_string()),
            Listener::Unix(l) => match l.local_addr() {
                Ok(a) => match a.as_pathname() {
                    Some(p) => p.display().to_string(),
                    None => "unix (unnamed)".into(),
                },
                Err(e) => format!("unix (address unknown: {e})"),
            },
        }
    }
}

/// One inherited socket: where it was, what it was called, and the listener.
#[derive(Debug)]
pub struct Inherited {
    /// The descriptor number it arrived on (3, 4, …).
    pub fd: RawFd,
    /// Its name from `LISTEN_FDNAMES`, if the supervisor gave names.
    pub name: Option<String>,
    /// The socket, now owned by this process (and close-on-exec).
    pub listener: Listener,
}
