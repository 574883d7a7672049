//! Readiness and status messages to the supervisor's `NOTIFY_SOCKET` (`sd_notify(3)`).

use crate::protocol::{NOTIFY_SOCKET, READY};
use std::io;
use std::os::unix::net::UnixDatagram;

/// Why a `NOTIFY_SOCKET` message could not be sent.
#[derive(Debug, thiserror::Error)]
#[error("sending {state:?} to NOTIFY_SOCKET {socket:?} failed: {source}")]
pub struct NotifyError {
    /// The message.
    pub state: String,
    /// The socket address from the environment.
    pub socket: String,
    /// The cause.
    #[source]
    pub source: io::Error,
}

/// Sends `state` (for example `READY=1`, `STOPPING=1`, `STATUS=loading plugins`) to the
/// supervisor's `NOTIFY_SOCKET`. Returns `Ok(false)` when no notify socket is set (not
/// running under a supervisor), `Ok(true)` once sent.
///
/// Fails when the socket address is unusable or the datagram cannot be sent (the
/// supervisor is gone, or does not read it).
pub fn notify(state: &str) -> Result<bool, NotifyError> {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else {
        return Ok(false);
    };
    let fail = |source| NotifyError {
        state: state.to_owned(),
        socket: socket.to_string_lossy().into_owned(),
        source,
    };
    let sender = UnixDatagram::unbound().map_err(fail)?;
    let bytes = socket.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).map_err(fail)?;
        sender.send_to_addr(state.as_bytes(), &addr).map_err(fail)?;
    } else {
        sender.send_to(state.as_bytes(), &socket).map_err(fail)?;
    }
    Ok(true)
}

/// Tells the supervisor this process is ready to serve (`READY=1`): it will now drain
/// the previous process. Call it once the listeners are served and the plugins loaded.
/// Same results as [`notify()`].
pub fn notify_ready() -> Result<bool, NotifyError> {
    notify(READY)
}
