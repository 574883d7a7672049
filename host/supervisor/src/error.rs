//! Why the supervisor could not start.

use crate::sockets::SocketError;
use crate::user::UserError;
use std::io;

/// Why the supervisor could not start (once running, it only logs).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A listening or admin socket could not be set up.
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// `--user` cannot be honoured.
    #[error(transparent)]
    User(#[from] UserError),
    /// A setup step failed.
    #[error("{what} failed: {source}")]
    Setup {
        /// The step.
        what: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The command could not be started.
    #[error("cannot start {command}: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}
