//! `hello --serve`: the hello demo as a long-running host. Builds world v1 (unless
//! `--plugins DIR` names a directory of builds), loads it, opens the admin endpoint on a
//! unix socket, reloads on SIGHUP (and, with `--watch`, when the plugin directory
//! changes), and prints `world.greet()` once a second until Ctrl-C.
//!
//! ```sh
//! cargo run --release -p hotswap-demo -- hello --serve
//! # in another terminal (the demo prints the exact paths):
//! cargo run --release -p hotswap-cli -- build demo/hello/world target/hotswap-demo/hello-serve/plugins -- --features v2
//! cargo run --release -p hotswap-cli -- reload --admin target/hotswap-demo/hello-serve/admin.sock   # or kill -HUP <pid>
//! ```
//!
//! `--trusted-key FILE` (repeatable) loads only builds signed by those keys
//! (`hotswap keygen`, `hotswap build --sign`): the README's trust-model example.

use hotswap_host::admin::{Admin, AdminConfig};
use hotswap_host::{signals, watch, PluginManager, Trigger, TrustedKey, Value};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Whether the command line asks for the serving mode (`hello --serve`).
pub(crate) fn requested() -> bool {
    std::env::args().skip(2).any(|a| a == "--serve")
}

struct Options {
    plugins: Option<PathBuf>,
    admin: Option<PathBuf>,
    watch: bool,
    trusted_keys: Vec<TrustedKey>,
}

const USAGE: &str = "usage: hotswap-demo hello --serve [--plugins DIR] [--admin SOCKET] [--watch] [--trusted-key PUBLIC_KEY_FILE]...";

fn options() -> Result<Options, String> {
    let mut opts = Options {
        plugins: None,
        admin: None,
        watch: false,
        trusted_keys: Vec::new(),
    };
    let mut args = std::env::args().skip(2);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--serve" => {}
            "--watch" => opts.watch = true,
            "--plugins" => opts.plugins = Some(args.next().ok_or(USAGE)?.into()),
            "--admin" => opts.admin = Some(args.next().ok_or(USAGE)?.into()),
            "--trusted-key" => {
                let file = PathBuf::from(args.next().ok_or(USAGE)?);
                let key = TrustedKey::from_file(&file).map_err(|e| e.to_string())?;
                opts.trusted_keys.push(key);
            }
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        }
    }
    Ok(opts)
}

/// Runs the serving demo until SIGINT or SIGTERM.
pub(crate) fn run() -> Result<(), String> {
    let opts = options()?;
    let work = super::repo().join("target/hotswap-demo/hello-serve");
    let plugins = match opts.plugins {
        Some(dir) => dir,
        None => {
            let dir = work.join("plugins");
            // A fresh directory, so the demo starts on v1 whatever an earlier run built.
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            println!("== building world v1");
            super::hotswap_build(&super::repo().join("demo/hello/world"), &dir, &[])?;
            dir
        }
    };
    let socket = opts.admin.unwrap_or_else(|| work.join("admin.sock"));
    if let Some(parent) = socket.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }

    let manager = Arc::new(
        PluginManager::builder(&plugins)
            .trusted_keys(opts.trusted_keys)
            .call_metrics(true)
            .build()
            .map_err(|e| e.to_string())?,
    );
    let report = manager
        .load_plugins(&Value::Null)
        .map_err(|e| e.to_string())?;
    print!("{report}");
    let trigger = Trigger::new(manager.clone());
    let admin = Admin::start(trigger.clone(), AdminConfig::unix(&socket))
        .map_err(|e| hotswap_cli::error_chain(&e))?;
    let sighup = signals::reload_on_sighup(trigger.clone()).map_err(|e| e.to_string())?;
    let watcher = if opts.watch {
        Some(
            watch::reload_on_change(trigger.clone(), watch::DEFAULT_DEBOUNCE)
                .map_err(|e| hotswap_cli::error_chain(&e))?,
        )
    } else {
        None
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).map_err(|e| e.to_string())?;
    }

    let pid = std::process::id();
    let sock = socket.display();
    let dir = plugins.display();
    println!("== serving (pid {pid}); admin endpoint: {sock}");
    println!("try, in another terminal:");
    println!(
        "  cargo run --release -p hotswap-cli -- build demo/hello/world {dir} -- --features v2"
    );
    println!(
        "  cargo run --release -p hotswap-cli -- reload --admin {sock}    # or: kill -HUP {pid}"
    );
    println!("  cargo run --release -p hotswap-cli -- status --admin {sock}");
    if watcher.is_some() {
        println!("  (--watch: a build landing in {dir} reloads by itself)");
    }
    println!("Ctrl-C stops.");

    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            next += Duration::from_secs(1);
            let generation = manager.generation_id();
            match manager.invoke_func("world", "greet", &[]) {
                Ok(v) => println!("[generation {generation}] world.greet() -> {v}"),
                Err(e) => println!("[generation {generation}] world.greet() failed: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("== stopping");
    drop(watcher);
    drop(sighup);
    drop(admin);
    manager.collect(Duration::from_secs(2));
    Ok(())
}
