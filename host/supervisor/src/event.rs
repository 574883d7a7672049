//! What the helper threads (signals, notify sockets, admin connections) tell the event
//! loop; the loop is the only one that acts.

use crate::protocol::AdminCommand;
use std::sync::mpsc::{Receiver, Sender};

/// A message to the event loop.
pub(crate) enum Event {
    /// A signal arrived at the supervisor.
    Signal(i32),
    /// Child `serial` sent `READY=1`.
    Ready {
        /// The child's serial number.
        serial: u64,
    },
    /// An admin request; the answer line goes to `reply`.
    Admin {
        /// What is asked.
        command: AdminCommand,
        /// Where the answer goes.
        reply: Sender<String>,
        /// Says when the answer was written to the client (or the client is gone):
        /// a self-upgrade answers before it re-executes.
        written: Receiver<()>,
    },
}
