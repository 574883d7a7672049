//! Readiness: each child gets its own `NOTIFY_SOCKET`, a datagram socket in the
//! supervisor's private directory, and reports `READY=1` there (systemd's `sd_notify`
//! protocol). One socket per child means a message needs no sender check: whatever
//! process of that child's tree sends `READY=1` speaks for it. A small thread waits on
//! it until the message, the child's deadline, or cancellation, then removes the socket.

use crate::event::Event;
use hotswap_listen::protocol::READY;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the waiting thread looks at its cancellation flag.
const SLICE: Duration = Duration::from_millis(100);

/// A bound notify socket, before its child exists.
pub(crate) struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    /// Binds the socket at `path`, owned by `owner` (uid, gid) when children run as
    /// another user (so they may send to it).
    pub(crate) fn bind(path: &Path, owner: Option<(u32, u32)>) -> io::Result<NotifySocket> {
        let _ = std::fs::remove_file(path);
        let socket = UnixDatagram::bind(path)?;
        if let Some((uid, gid)) = owner {
            rustix::fs::chown(
                path,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )?;
        }
        Ok(NotifySocket {
            socket,
            path: path.to_owned(),
        })
    }

    /// The path, for `NOTIFY_SOCKET`.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Starts waiting for `READY=1` from child `serial` (pid `pid`) until `deadline`;
    /// sends [`Event::Ready`] on `events` when it comes.
    pub(crate) fn wait(
        self,
        serial: u64,
        pid: u32,
        deadline: Instant,
        events: Sender<Event>,
    ) -> io::Result<NotifyWaiter> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name(format!("notify-{pid}"))
            .spawn(move || {
                if self.listen(pid, deadline, &flag) {
                    let _ = events.send(Event::Ready { serial });
                }
                let _ = std::fs::remove_file(&self.path);
            })?;
        Ok(NotifyWaiter { stop })
    }

    /// True once `READY=1` arrived; false on deadline, cancellation or error.
    fn listen(&self, pid: u32, deadline: Instant, stop: &AtomicBool) -> bool {
        if let Err(e) = self.socket.set_read_timeout(Some(SLICE)) {
            tracing::warn!(pid, error = %e, "notify socket unusable");
            return false;
        }
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    for line in text.lines() {
                        if line == READY {
                            return true;
                        }
                        tracing::debug!(pid, message = line, "notify message");
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    tracing::warn!(pid, error = %e, "reading the notify socket failed");
                    return false;
                }
            }
        }
        false
    }
}

/// Cancels the waiting thread when dropped (the child became ready another way, failed,
/// or exited).
pub(crate) struct NotifyWaiter {
    stop: Arc<AtomicBool>,
}

impl Drop for NotifyWaiter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
