//! hotswap-listen: the child side of socket passing. A program run by a supervisor
//! (`hotswap serve`, systemd socket activation, einhorn, socketmaster) picks up the
//! listening sockets handed to it and reports readiness through `NOTIFY_SOCKET`. It is
//! all a served program needs: it does not pull in the supervisor.
//!
//! ```no_run
//! use hotswap_listen::{self as listen, Listener};
//!
//! let sockets = listen::take()?;
//! let listener = match sockets.into_iter().next() {
//!     Some(inherited) => inherited.listener,
//!     None => Listener::Tcp(std::net::TcpListener::bind("127.0.0.1:8080")?),
//! };
//! // ... load plugins, start serving on `listener`, then:
//! listen::notify_ready()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The protocol is systemd's (`sd_listen_fds(3)`, `sd_notify(3)`): the sockets are file
//! descriptors 3, 4, … (`LISTEN_FDS` of them), meant for the process whose pid is
//! `LISTEN_PID`, named by the colon-separated `LISTEN_FDNAMES`. A process that finds
//! another pid in `LISTEN_PID` (a descendant that inherited the environment) takes
//! nothing. Without `LISTEN_FDS`, einhorn's `EINHORN_FDS` (space-separated descriptor
//! numbers, as socketmaster sets it) is read instead. The names are in [`protocol`].
#![warn(missing_docs)]

mod listener;
mod notify;
pub mod protocol;
mod take;

pub use listener::{Inherited, Listener};
pub use notify::{notify, notify_ready, NotifyError};
pub use protocol::LISTEN_FDS_START;
pub use take::{take, ListenError};
