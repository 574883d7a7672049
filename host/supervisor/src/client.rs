//! The client side of the admin socket, for `hotswap serve --upgrade` and `--status`:
//! send a command, read the answer; or, without a socket, signal the supervisor.

use crate::protocol::{AdminCommand, ERROR, OK};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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

/// Sends `command` to the admin socket at `path` and returns the text after `ok`.
/// Waits for the answer up to `timeout` (`None`: as long as it takes).
///
/// Fails when the socket cannot be reached, the supervisor answers `error …`
/// ([`AdminError::Refused`]), or the answer is malformed.
pub fn request(
    path: &Path,
    command: AdminCommand,
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
    if let Some(text) = answer.strip_prefix(OK) {
        Ok(text.trim_start().to_owned())
    } else if let Some(text) = answer.strip_prefix(ERROR) {
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
