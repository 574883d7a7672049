//! The supervisor's admin endpoint: a Unix socket (mode 0600) speaking one line each
//! way. The client sends `upgrade` or `status`; the supervisor answers `ok <text>` or
//! `error <text>` and closes. `upgrade` answers once the upgrade finished (or failed);
//! `status` answers with a JSON object.
//!
//! ```text
//! $ printf 'status\n' | socat - UNIX-CONNECT:/run/app.admin
//! ok {"supervisor_pid":…,"children":[…],…}
//! ```

use super::state::Event;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::Duration;

/// The longest request line accepted.
const MAX_REQUEST: u64 = 256;

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A request to the supervisor's event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminCommand {
    /// Start an upgrade and answer when it is over.
    Upgrade,
    /// Answer with the status.
    Status,
}

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The admin socket could not be reached or the exchange broke off.
    #[error("talking to the supervisor's admin socket {path} failed: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The supervisor answered with an error.
    #[error("the supervisor refused: {0}")]
    Refused(String),
    /// The answer was not `ok …` or `error …`.
    #[error("unexpected answer from the supervisor: {0:?}")]
    Garbled(String),
    /// Signalling the supervisor process failed.
    #[error("sending SIGHUP to supervisor pid {pid} failed: {source}")]
    Signal {
        /// The pid.
        pid: u32,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Serves the admin socket on a thread until `stop` is set (and a connection wakes the
/// accept).
pub(crate) fn serve(
    listener: UnixListener,
    events: Sender<Event>,
    stop: Arc<AtomicBool>,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("serve-admin".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let events = events.clone();
                let spawned = std::thread::Builder::new()
                    .name("serve-admin-conn".into())
                    .spawn(move || {
                        if let Err(e) = handle(conn, &events) {
                            tracing::debug!(error = %e, "admin connection failed");
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "cannot start an admin connection thread");
                }
            }
        })?;
    Ok(())
}

/// Wakes the accept loop so that it sees `stop` (best effort).
pub(crate) fn wake(path: &Path) {
    let _ = UnixStream::connect(path);
}

fn handle(conn: UnixStream, events: &Sender<Event>) -> io::Result<()> {
    conn.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new((&conn).take(MAX_REQUEST)).read_line(&mut line)?;
    let command = match line.trim() {
        "upgrade" => AdminCommand::Upgrade,
        "status" => AdminCommand::Status,
        other => {
            let other: String = other.chars().take(40).collect();
            return writeln!(
                &conn,
                "error unknown command {other:?} (expected upgrade or status)"
            );
        }
    };
    let (reply, answer) = mpsc::channel();
    if events.send(Event::Admin { command, reply }).is_err() {
        return writeln!(&conn, "error the supervisor is exiting");
    }
    let text = answer
        .recv()
        .unwrap_or_else(|_| "error the supervisor is exiting".into());
    writeln!(&conn, "{text}")
}

/// Sends `command` to the admin socket at `path` and returns the text after `ok`.
/// Waits for the answer up to `timeout` (`None`: as long as it takes).
///
/// Fails when the socket cannot be reached, the supervisor answers `error …`
/// ([`AdminError::Refused`]), or the answer is malformed.
pub fn request(
    path: &Path,
    command: &str,
    timeout: Option<Duration>,
) -> Result<String, AdminError> {
    let io_err = |source| AdminError::Io {
        path: path.to_owned(),
        source,
    };
    let mut conn = UnixStream::connect(path).map_err(io_err)?;
    conn.set_read_timeout(timeout).map_err(io_err)?;
    writeln!(conn, "{command}").map_err(io_err)?;
    let mut answer = String::new();
    BufReader::new(&conn)
        .take(1 << 20)
        .read_line(&mut answer)
        .map_err(io_err)?;
    let answer = answer.trim_end();
    if let Some(text) = answer.strip_prefix("ok") {
        Ok(text.trim_start().to_owned())
    } else if let Some(text) = answer.strip_prefix("error") {
        Err(AdminError::Refused(text.trim_start().to_owned()))
    } else {
        Err(AdminError::Garbled(answer.to_owned()))
    }
}

/// Asks the supervisor with pid `pid` for an upgrade by sending it SIGHUP. There is no
/// answer: the supervisor logs the outcome.
pub fn signal_upgrade(pid: u32) -> Result<(), AdminError> {
    let fail = |source| AdminError::Signal { pid, source };
    let target = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| fail(io::Error::new(io::ErrorKind::InvalidInput, "invalid pid")))?;
    rustix::process::kill_process(target, rustix::process::Signal::HUP).map_err(|e| fail(e.into()))
}
