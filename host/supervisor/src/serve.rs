//! Starting the supervisor: bind the sockets, install the signal handlers, start the
//! helper threads, then hand over to the event loop until it exits.

use crate::config::Config;
use crate::error::ServeError;
use crate::event::Event;
use crate::state::Supervisor;
use crate::{admin, child, handoff, sockets, user};
use hotswap_listen::LISTEN_FDS_START;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR2};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

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
            let creds = user::lookup_user(user)?;
            user::check_can_switch(&creds)?;
            Some(creds)
        }
        None => None,
    };
    let owner = creds.as_ref().map(|c| (c.uid, c.gid));
    // Who could replace what we run (again at every upgrade: the file may change).
    crate::trust::warn_about(config, owner.map(|(uid, _)| uid));
    let mut signals =
        signal_hook::iterator::Signals::new([SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGUSR2, SIGCHLD])
            .map_err(setup("installing signal handlers"))?;
    let signals_handle = signals.handle();

    // Started by a self-upgrade: the sockets and children are already there.
    let handoff = handoff::from_env()?;
    let mut bound = Vec::with_capacity(config.listen.len());
    if let Some(h) = &handoff {
        if h.sockets.len() != config.listen.len() {
            return Err(ServeError::Config(format!(
                "a self-upgrade handed over {} sockets for {} --listen",
                h.sockets.len(),
                config.listen.len()
            )));
        }
        for v in &h.sockets {
            bound.push(sockets::BoundSocket::adopt(v).map_err(ServeError::Config)?);
        }
    }
    for (i, spec) in config.listen.iter().enumerate() {
        if handoff.is_some() {
            break;
        }
        let socket = sockets::bind(spec, i)?;
        tracing::info!(
            name = %socket.name,
            fd_in_children = LISTEN_FDS_START as usize + i,
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
                if signal_events.send(Event::Signal(sig)).is_err() {
                    break;
                }
            }
        })
        .map_err(setup("starting the signal thread"))?;

    let rundir = match &handoff {
        Some(h) => handoff::RunDir::Adopted(h.rundir.clone()),
        None => handoff::RunDir::Created(
            tempfile::Builder::new()
                .prefix("hotswap-serve-")
                .tempdir()
                .map_err(setup("creating the notify socket directory"))?,
        ),
    };
    // Private, except that children running as another user must reach their notify
    // socket (the socket file itself is chowned to them); they cannot list the directory.
    let mode = if owner.is_some() { 0o711 } else { 0o700 };
    std::fs::set_permissions(rundir.path(), std::fs::Permissions::from_mode(mode))
        .map_err(setup("restricting the notify socket directory"))?;
    let message_file = rundir.path().join("message");
    let launcher =
        child::Launcher::new(&config.command, &bound, creds, &message_file).map_err(|source| {
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
    let mut supervisor = Supervisor::new(
        config,
        launcher,
        rundir.path().to_owned(),
        owner,
        listeners,
        &mut bound,
        events,
    );
    if let Some(h) = &handoff {
        supervisor.adopt(h);
    }
    let result = supervisor.run(rx).map_err(|source| ServeError::Spawn {
        command: supervisor.launcher.describe(),
        source,
    });
    drop(supervisor);
    signals_handle.close();
    admin_stop.store(true, Ordering::Relaxed);
    if let Some(path) = &config.admin {
        admin::wake(path);
    }
    drop(admin);
    drop(bound);
    result
}
