//! What `hotswap serve` runs, and how: the command, its sockets, its deadlines.

use crate::backoff::Backoff;
use crate::error::ServeError;
use crate::sockets::ListenSpec;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// The longest duration a setting may have: a year (see `validate`).
const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

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
    /// shutdown, and is the grace a new child that missed `ready_timeout` gets between
    /// SIGTERM and SIGKILL.
    pub drain_timeout: Duration,
    /// How long an upgrade's new children must stay up after they are ready before the
    /// old ones drain (zero: each old child drains as soon as its replacement is ready).
    /// During it, old and new children serve side by side; a new child that exits fails
    /// the upgrade and the old ones keep serving.
    pub probation: Duration,
    /// A shell command (`/bin/sh -c`) that must succeed before each upgrade.
    pub pre_upgrade: Option<String>,
    /// How long the pre-upgrade command may run before it is killed and the upgrade
    /// fails.
    pub pre_upgrade_timeout: Duration,
    /// Run children as this user (name or uid; the supervisor must be root).
    pub user: Option<String>,
    /// Recycle a worker whose resident memory exceeds this many MiB.
    pub max_rss_mib: Option<u64>,
    /// Recycle a worker that used more than this share of one CPU (percent; above 100
    /// for several threads) over `cpu_window`.
    pub max_cpu_percent: Option<u64>,
    /// The window over which `max_cpu_percent` is measured.
    pub cpu_window: Duration,
    /// Path of the admin socket (created with mode 0600).
    pub admin: Option<PathBuf>,
    /// Respawn delays of crashed workers.
    pub backoff: Backoff,
}

impl Config {
    /// A configuration for `command` with the defaults: one worker, no sockets yet,
    /// 30 s to get ready, 30 s to drain, no probation, 300 s for a pre-upgrade command,
    /// a 10 s CPU window.
    pub fn new(command: Vec<OsString>) -> Config {
        Config {
            listen: Vec::new(),
            command,
            workers: 1,
            ready_timeout: Duration::from_secs(30),
            start_delay: None,
            drain_timeout: Duration::from_secs(30),
            probation: Duration::ZERO,
            pre_upgrade: None,
            pre_upgrade_timeout: Duration::from_secs(300),
            user: None,
            max_rss_mib: None,
            max_cpu_percent: None,
            cpu_window: Duration::from_secs(10),
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
        if self.cpu_window.is_zero() {
            return bad("the CPU window must be above zero");
        }
        if self.max_cpu_percent == Some(0) {
            return bad("--max-cpu must be above zero");
        }
        if self.start_delay.is_some_and(|d| d >= self.ready_timeout) {
            return bad("the start delay must be shorter than the ready timeout");
        }
        // Each becomes a deadline (`Instant + Duration`), which a duration of centuries
        // would overflow: a panic of the supervisor, whose children then lose it.
        let durations = [
            ("the ready timeout", Some(self.ready_timeout)),
            ("the start delay", self.start_delay),
            ("the drain timeout", Some(self.drain_timeout)),
            ("the probation", Some(self.probation)),
            ("the pre-upgrade timeout", Some(self.pre_upgrade_timeout)),
            ("the CPU window", Some(self.cpu_window)),
            (
                "the respawn back-off's first delay",
                Some(self.backoff.initial),
            ),
            (
                "the respawn back-off's longest delay",
                Some(self.backoff.max),
            ),
            (
                "the respawn back-off's reset",
                Some(self.backoff.reset_after),
            ),
        ];
        for (what, d) in durations {
            if d.is_some_and(|d| d > MAX_DURATION) {
                return Err(ServeError::Config(format!(
                    "{what} must be at most a year ({} s)",
                    MAX_DURATION.as_secs()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_of_centuries_is_refused_in_one_line_not_a_panic_later() {
        let mut c = Config::new(vec!["true".into()]);
        assert!(c.validate().is_ok());
        c.drain_timeout = Duration::MAX;
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("the drain timeout must be at most a year"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        c.drain_timeout = MAX_DURATION;
        assert!(c.validate().is_ok());
        c.probation = Duration::from_secs(u64::MAX);
        assert!(c.validate().is_err());
    }
}
