//! The names both sides of the hand-off agree on: the environment variables a supervisor
//! sets for its child (systemd's `sd_listen_fds(3)` and `sd_notify(3)`, einhorn's
//! `EINHORN_FDS`), the first descriptor, and the readiness message. The supervisor
//! (`hotswap-supervisor`) writes them, [`take`](crate::take) and
//! [`notify`](crate::notify()) read them.

use std::os::fd::RawFd;

/// The first inherited descriptor (`SD_LISTEN_FDS_START`): sockets are 3, 4, ….
pub const LISTEN_FDS_START: RawFd = 3;

/// How many sockets were passed, starting at [`LISTEN_FDS_START`].
pub const LISTEN_FDS: &str = "LISTEN_FDS";

/// The pid of the process the sockets are meant for (a descendant takes nothing).
pub const LISTEN_PID: &str = "LISTEN_PID";

/// The sockets' names, colon-separated, in descriptor order.
pub const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";

/// einhorn's (and socketmaster's) list: space-separated descriptor numbers.
pub const EINHORN_FDS: &str = "EINHORN_FDS";

/// The datagram socket readiness messages go to (a path, or `@name` for an abstract one).
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// `hotswap serve`'s own: the file holding the last `hotswap serve --message` text;
/// SIGUSR1 says a new one is there (written whole, by rename, before the signal).
pub const MESSAGE_FILE: &str = "HOTSWAP_MESSAGE_FILE";

/// The message that says the process is ready to serve.
pub const READY: &str = "READY=1";
