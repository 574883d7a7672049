//! What `hotswap serve` runs, and how: the command, its sockets, its deadlines.

use crate::backoff::Backoff;
use crate::error::ServeError;
use crate::sockets::ListenSpec;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// What `hotswap serve` runs, and how.
#[derive(Debug, Clone)]
pub struct Config {
    /// Sockets to bind and pass on, in order (the children see them as fd 3, 4, …).
    pub listen: Vec<ListenSpec>,
    /// The program and its arguments; looked up in `PATH` at every start.
    pub command: Vec<OsString>,
    /// How many copies of the command serve at once (upgraded one at a time).
    pub workers: usize,
    /// How long a new child has to send `READY=1` before it is killed.
    pub ready_timeout: Duration,
    /// For programs that cannot report: consider a child ready this long after it
    /// started (if it has not reported earlier). Must be below `ready_timeout`.
    pub start_delay: Option<Duration>,
    /// How long an old child may drain after SIGTERM before SIGKILL; also bounds the
    /// shutdown.
    pub drain_timeout: Duration,
    /// A shell command (`/bin/sh -c`) that must succeed before each upgrade.
    pub pre_upgrade: Option<String>,
    /// How long the pre-upgrade command may run before it is killed and the upgrade
    /// fails.
    pub pre_upgrade_timeout: Duration,
    /// Run children as this user (name or uid; the supervisor must be root).
    pub user: Option<String>,
    /// Recycle a worker whose resident memory exceeds this many MiB.
    pub max_rss_mib: Option<u64>,
    /// Path of the admin socket (created with mode 0600).
    pub admin: Option<PathBuf>,
    /// Respawn delays of crashed workers.
    pub backoff: Backoff,
}

impl Config {
    /// A configuration for `command` with the defaults: one worker, no sockets yet,
    /// 30 s to get ready, 30 s to drain, 300 s for a pre-upgrade command.
    pub fn new(command: Vec<OsString>) -> Config {
        Config {
            listen: Vec::new(),
            command,
            workers: 1,
            ready_timeout: Duration::from_secs(30),
            start_delay: None,
            drain_timeout: Duration::from_secs(30),
            pre_upgrade: None,
            pre_upgrade_timeout: Duration::from_secs(300),
            user: None,
            max_rss_mib: None,
            admin: None,
            backoff: Backoff::default(),
        }
    }

    /// Checks that the settings fit together; fails with [`ServeError::Config`].
    pub(crate) fn validate(&self) -> Result<(), ServeError> {
        let bad = |s: &str| Err(ServeError::Config(s.to_owned()));
        if self.command.is_empty() {
            return bad("no command to run");
        }
        if self.workers == 0 || self.workers > 1024 {
            return bad("workers must be between 1 and 1024");
        }
        if self.ready_timeout.is_zero() {
            return bad("the ready timeout must be above zero");
        }
        if self.start_delay.is_some_and(|d| d >= self.ready_timeout) {
            return bad("the start delay must be shorter than the ready timeout");
        }
        Ok(())
    }
}
