//! A hotswap host: loads the plugins of a directory, answers every line of stdin with the
//! `greeter` plugin's `greet`, and reloads the plugins live on SIGHUP and through its
//! admin endpoint (`hotswap reload --admin <socket>`) while it keeps answering. SIGINT,
//! SIGTERM or the end of stdin stop it.
//!
//! Usage: `<host> [PLUGIN_DIR] [ADMIN_SOCKET]` (defaults: `plugins`, `admin.sock`).

use hotswap_host::admin::{Admin, AdminConfig};
use hotswap_host::{signals, PluginManager, Trigger, Value};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// What the serving loop waits for.
enum Event {
    /// A request: one line of stdin.
    Line(String),
    /// Time to stop, and why.
    Stop(&'static str),
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Logs go to stderr (stdout carries the answers): the host's events and, through
    // the plugin API's bridge, the plugins' own, tagged with plugin and version.
    // RUST_LOG chooses the level (default: info).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args_os().skip(1);
    let plugins = args.next().map_or_else(|| "plugins".into(), PathBuf::from);
    let socket = args
        .next()
        .map_or_else(|| "admin.sock".into(), PathBuf::from);

    // 1. The manager loads the newest build of every plugin in the directory (what
    //    `hotswap build` packaged). An empty directory is an error, not a silent
    //    empty host.
    let manager = Arc::new(
        PluginManager::builder(&plugins)
            .require_plugins(true)
            // Calls per plugin version on `/metrics` (a typed call pays a little for it).
            .call_metrics(true)
            .build()?,
    );
    let report = manager.load_plugins(&Value::Null)?;
    tracing::info!("loaded: {report}");

    // 2. A typed handle, made once: it stays valid across reloads, and each call runs on
    //    the generation current when it starts (no lock, no lookup by name).
    let greet = manager.func::<(&str,), String>("greeter", "greet")?;

    // 3. Reload triggers. All go through one `Trigger`: one transactional reload at a
    //    time, outcomes counted for `/metrics`. A failed reload is logged and the
    //    current plugins keep serving.
    let trigger = Trigger::new(manager.clone());
    let sighup = signals::reload_on_sighup(trigger.clone())?;
    // `POST /reload`, `GET /status`, `GET /metrics` over a unix socket (mode 0600).
    let admin = Admin::start(trigger, AdminConfig::unix(&socket))?;

    // 4. Shutdown: SIGINT, SIGTERM or the end of stdin, whichever comes first.
    let (events, inbox) = mpsc::channel();
    let mut stop_signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let stop = events.clone();
    std::thread::spawn(move || {
        if let Some(signal) = stop_signals.forever().next() {
            let why = if signal == SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            let _ = stop.send(Event::Stop(why));
        }
    });
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if events.send(Event::Line(line)).is_err() {
                return;
            }
        }
        let _ = events.send(Event::Stop("end of input"));
    });

    println!(
        "ready: pid {}, plugins {}, admin endpoint {}",
        std::process::id(),
        plugins.display(),
        socket.display()
    );
    for event in inbox {
        match event {
            Event::Line(name) => match greet.call((name.trim(),)) {
                Ok(answer) => println!("{answer}"),
                Err(e) => println!("error: {e}"),
            },
            Event::Stop(why) => {
                tracing::info!("stopping: {why}");
                break;
            }
        }
    }

    // 5. Stop the triggers first (no reload starts any more), drop the handle, then give
    //    the reaper a moment to run the retired versions' `on_free` and unload them.
    drop(admin);
    drop(sighup);
    drop(greet);
    manager.collect(Duration::from_secs(2));
    Ok(())
}
