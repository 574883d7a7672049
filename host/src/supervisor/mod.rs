//! The process supervisor behind `hotswap serve`: zero-downtime hand-off between whole
//! processes, for what cannot be swapped in-process (the host binary itself, a plugin
//! that is not reloadable).
//!
//! It binds the listening sockets once and runs `workers` copies of a command that
//! inherit them (systemd's `LISTEN_FDS` protocol, see [`crate::listen`]). An upgrade
//! (SIGHUP, [`request`]`("upgrade")` on the admin socket, or `hotswap serve --upgrade`)
//! starts a new child per worker, waits for its `READY=1` (or `start_delay`), and only
//! then sends the old one SIGTERM to drain; a new child that fails is killed and the old
//! one keeps serving. The old and new children accept from the same socket, so no
//! connection is refused or reset during the hand-off.
//!
//! ```no_run
//! use hotswap_host::supervisor::{serve, Config};
//!
//! let mut config = Config::new(vec!["./my-host".into()]);
//! config.listen.push("tcp://127.0.0.1:8080".parse()?);
//! config.admin = Some("/run/my-host.admin".into());
//! serve(&config)?; // returns after SIGTERM/SIGINT/SIGQUIT, once the children are gone
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Signals: SIGHUP upgrades; SIGINT, SIGTERM and SIGQUIT are forwarded to every child
//! and the supervisor exits once they are gone (SIGKILL after `drain_timeout`); SIGUSR2
//! is passed through. A worker that crashes is respawned after an exponential backoff,
//! with a log line each time. Children get SIGTERM if the supervisor itself dies.

mod admin;
mod child;
mod notify;
mod sockets;
mod state;
mod upgrade;

pub use admin::{request, signal_upgrade, AdminError};
pub use child::{Backoff, UserError};
pub use sockets::{Family, ListenAddr, ListenSpec, SocketError, BACKLOG};

use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR2};
use std::ffi::OsString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
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

    fn validate(&self) -> Result<(), ServeError> {
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

/// Why the supervisor could not start (once running, it only logs).
#[derive(Debug, thiserror::Error)]
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

fn setup(what: &'static str) -> impl FnOnce(io::Error) -> ServeError {
    move |source| ServeError::Setup { what, source }
}

/// Runs the supervisor until SIGINT, SIGTERM or SIGQUIT and until its children are gone.
///
/// Installs handlers for SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGUSR2 and SIGCHLD for the
/// rest of the process's life, so call it from a program that does nothing else (the
/// `hotswap serve` command). Fails before starting anything on a bad configuration, a
/// socket that cannot be bound (a live Unix socket is never taken over), an unknown
/// `--user`, or a command that cannot be started.
pub fn serve(config: &Config) -> Result<(), ServeError> {
    config.validate()?;
    // First, before any other descriptor is opened (see `reserve_low_fds`).
    let _reserved = sockets::reserve_low_fds(config.listen.len())
        .map_err(setup("reserving low file descriptors"))?;
    let creds = match &config.user {
        Some(user) => {
            let creds = child::lookup_user(user)?;
            child::check_can_switch(&creds)?;
            Some(creds)
        }
        None => None,
    };
    let owner = creds.as_ref().map(|c| (c.uid, c.gid));
    let mut signals =
        signal_hook::iterator::Signals::new([SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGUSR2, SIGCHLD])
            .map_err(setup("installing signal handlers"))?;
    let signals_handle = signals.handle();

    let mut bound = Vec::with_capacity(config.listen.len());
    for (i, spec) in config.listen.iter().enumerate() {
        let socket = sockets::bind(spec, i)?;
        tracing::info!(
            name = %socket.name,
            fd_in_children = 3 + i,
            "listening on {}",
            socket.address
        );
        bound.push(socket);
    }
    let (events, rx) = mpsc::channel();
    let admin_stop = Arc::new(AtomicBool::new(false));
    let admin = match &config.admin {
        Some(path) => {
            let socket = sockets::bind_unix_socket(path, Some(0o600), "admin")?;
            let listener = UnixListener::from(
                socket
                    .fd
                    .try_clone()
                    .map_err(setup("duplicating the admin socket"))?,
            );
            admin::serve(listener, events.clone(), admin_stop.clone())
                .map_err(setup("starting the admin thread"))?;
            tracing::info!("admin socket at {}", path.display());
            Some(socket)
        }
        None => None,
    };
    let signal_events = events.clone();
    std::thread::Builder::new()
        .name("serve-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if signal_events.send(state::Event::Signal(sig)).is_err() {
                    break;
                }
            }
        })
        .map_err(setup("starting the signal thread"))?;

    let rundir = tempfile::Builder::new()
        .prefix("hotswap-serve-")
        .tempdir()
        .map_err(setup("creating the notify socket directory"))?;
    // Private, except that children running as another user must reach their notify
    // socket (the socket file itself is chowned to them); they cannot list the directory.
    let mode = if owner.is_some() { 0o711 } else { 0o700 };
    std::fs::set_permissions(rundir.path(), std::fs::Permissions::from_mode(mode))
        .map_err(setup("restricting the notify socket directory"))?;
    let launcher = child::Launcher::new(&config.command, &bound, creds).map_err(|source| {
        ServeError::Spawn {
            command: format!("{:?}", config.command),
            source,
        }
    })?;
    let listeners = bound
        .iter()
        .map(|s| (s.name.clone(), s.address.clone()))
        .collect();
    tracing::debug!(
        fds = ?bound.iter().map(|s| s.fd.as_raw_fd()).collect::<Vec<_>>(),
        "supervisor descriptors"
    );
    let mut supervisor = state::Supervisor::new(
        config,
        launcher,
        rundir.path().to_owned(),
        owner,
        listeners,
        events,
    );
    let result = supervisor.run(rx).map_err(|source| ServeError::Spawn {
        command: supervisor.launcher.describe(),
        source,
    });
    signals_handle.close();
    admin_stop.store(true, Ordering::Relaxed);
    if let Some(path) = &config.admin {
        admin::wake(path);
    }
    drop(admin);
    drop(bound);
    result
}
