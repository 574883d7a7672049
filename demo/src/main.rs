//! The hotswap demos. `cargo run --release -p hotswap-demo -- hello` builds the `world`
//! plugin twice with the real `hotswap build`, serves calls on four threads, swaps v1
//! for v2 while they run, and prints what the callers saw.

use hotswap_host::{PluginManager, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // No colour codes in a file or the journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let demo = std::env::args().nth(1).unwrap_or_else(|| "hello".into());
    let result = match demo.as_str() {
        "hello" if serve::requested() => serve::run(),
        "hello" => hello(),
        "trine" => trine::run(),
        "livex" => livex::livex(),
        "extension" => livex::extension(),
        "http-load" => http_load::run(),
        other => Err(format!(
            "unknown demo {other:?}; available: hello, trine, livex, extension, http-load"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

mod http_load;
mod livex;
mod serve;
mod trine;

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Runs `hotswap build <plugin> <out> [-- cargo args]` through the CLI's own entry point.
pub(crate) fn hotswap_build(plugin: &Path, out: &Path, cargo_args: &[&str]) -> Result<(), String> {
    let mut args: Vec<String> = vec!["hotswap".into(), "build".into()];
    args.push(plugin.display().to_string());
    args.push(out.display().to_string());
    if !cargo_args.is_empty() {
        args.push("--".into());
        args.extend(cargo_args.iter().map(|s| s.to_string()));
    }
    println!("$ {}", args.join(" "));
    match hotswap_cli::run(args) {
        0 => Ok(()),
        code => Err(format!("hotswap build exited with {code}")),
    }
}

fn hello() -> Result<(), String> {
    let work = repo().join("target/hotswap-demo/hello");
    let plugins = work.join("plugins");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&plugins).map_err(|e| e.to_string())?;
    let world = repo().join("demo/hello/world");

    println!("== 1. build world v1");
    hotswap_build(&world, &plugins, &[])?;

    println!("== 2. start the host and load the plugins");
    let manager = PluginManager::new(&plugins).map_err(|e| e.to_string())?;
    let report = manager
        .load_plugins(&Value::Null)
        .map_err(|e| e.to_string())?;
    print!("{report}");
    let first = manager
        .invoke_func("world", "greet", &[])
        .map_err(|e| e.to_string())?;
    println!("world.greet() -> {first}");

    println!("== 3. four threads call world.greet() nonstop while we build v2 and reload");
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let failures = AtomicU64::new(0);
    let seen_v2 = AtomicU64::new(0);
    let outcome = std::thread::scope(|s| -> Result<Value, String> {
        for _ in 0..4 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    match manager.invoke_func("world", "greet", &[]) {
                        Ok(v) if v.as_str() == Some("hello from v2") => {
                            seen_v2.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            eprintln!("call failed: {e}");
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let result = (|| {
            hotswap_build(&world, &plugins, &["--features", "v2"])?;
            let report = manager.reload(&Value::Null).map_err(|e| e.to_string())?;
            print!("{report}");
            std::thread::sleep(Duration::from_millis(200));
            manager
                .invoke_func("world", "greet", &[])
                .map_err(|e| e.to_string())
        })();
        stop.store(true, Ordering::Relaxed);
        result
    })?;
    println!("world.greet() -> {outcome}");
    println!(
        "callers made {} calls during the swap, {} answered by v2, {} failed",
        calls.load(Ordering::Relaxed),
        seen_v2.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed)
    );

    println!("== 4. v1 is drained, freed, and unmapped on the reaper thread");
    manager.collect(Duration::from_secs(5));
    let status = manager.status();
    for v in &status.versions {
        println!(
            "  in memory: {} {} build {} ({:?})",
            v.plugin, v.version, v.build_id, v.state
        );
    }
    println!(
        "  generation {}, {} version(s) unloaded and verified unmapped, reclamation: {}",
        status.generation, status.unloaded, status.reclamation
    );
    println!("\nbefore: {first}\nafter:  {outcome}");
    if failures.load(Ordering::Relaxed) > 0 {
        return Err("some calls failed during the reload".into());
    }
    Ok(())
}
