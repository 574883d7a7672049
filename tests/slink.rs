//! Static linking (`hotswap build --static-linking`): plugins compiled into the host
//! binary go through the same checks and lifecycle as loaded files, refuse to be swapped,
//! and end up in one binary a debugger can stop in.
//!
//! The first tests link `world` and `counter` into this very test binary (they are
//! dev-dependencies, with `hotswap-plugin-api`'s `static` feature). The last one runs the
//! real `hotswap build --static-linking` into a copy of `demo/slink/host`, builds that
//! copy with cargo, runs it, and breaks in plugin code with gdb.

mod common;

use common::repo;
use hotswap_host::{Error, LoadErrorKind, Outcome, PluginManager, StaticPlugin, Step, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn linked() -> Vec<StaticPlugin> {
    vec![
        StaticPlugin::new(&world::HOTSWAP_PLUGIN_HEADER),
        StaticPlugin::new(&counter::HOTSWAP_PLUGIN_HEADER).live_functions("live_", &["live_total"]),
    ]
}

/// One manager with static plugins loaded at a time in a process (they share one
/// handle to it): the tests that load them take turns.
static ONE_STATIC_MANAGER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_static_manager() -> std::sync::MutexGuard<'static, ()> {
    ONE_STATIC_MANAGER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn static_plugins_run_the_whole_lifecycle_and_refuse_to_be_swapped() {
    let _turn = one_static_manager();
    let dir = common::plugin_dir();
    let m = PluginManager::builder(dir.path())
        .static_plugins(linked())
        .build()
        .unwrap();
    assert!(m.is_static());
    let report = m
        .load_plugins(&Value::map([("greeting", "howdy")]))
        .unwrap();
    for name in ["world", "counter"] {
        let line = report.plugin(name).unwrap();
        assert_eq!(
            (line.outcome, line.build_id.as_str()),
            (Outcome::Loaded, "static")
        );
    }
    // on_load got the load data; calls by name and typed handles work.
    let greet = m.invoke_func("world", "greet", &[]).unwrap();
    assert_eq!(greet.as_str(), Some("howdy from v1"));
    let typed = m.func::<(), u32>("world", "version_number").unwrap();
    assert_eq!(typed.call(()).unwrap(), 1);
    // on_init seeded the vault's DataBag; `add` uses it through `vault()`, and the live
    // function reads it back.
    assert_eq!(m.vault().get("counter.total"), Some(Value::from(0)));
    for n in [2, 3] {
        m.invoke_func("counter", "add", &[Value::from(n)]).unwrap();
    }
    assert_eq!(m.call_live("live_total", &[]).unwrap(), Value::from(5));
    // The "file" of a static version is the host binary itself; nothing to unmap.
    let exe = std::env::current_exe().unwrap();
    let status = m.status();
    assert_eq!(status.versions.len(), 2, "{status:?}");
    assert!(status.versions.iter().all(|v| v.file == exe), "{status:?}");

    let unsupported = |r: Result<_, Error>| match r {
        Err(Error::Unsupported(why)) => why,
        other => panic!("expected Error::Unsupported, got {other:?}"),
    };
    let why = unsupported(m.reload(&Value::Null));
    assert!(
        why.contains("linked into the host binary") && why.contains("cannot be swapped"),
        "{why}"
    );
    unsupported(m.reload_from(dir.path(), &Value::Null));
    unsupported(m.reload_with_callback(&Value::Null, |_, _| Ok(())));
    // Nothing changed: same generation, same instance.
    assert_eq!(m.generation_id(), 1);
    assert_eq!(m.call_live("live_total", &[]).unwrap(), Value::from(5));
    assert!(matches!(
        m.load_plugins(&Value::Null),
        Err(Error::AlreadyLoaded)
    ));
    // Inside a batch, whose pin may be older than the load, as well.
    assert!(matches!(
        m.pinned(|_| m.load_plugins(&Value::Null)),
        Err(Error::AlreadyLoaded)
    ));

    // A second manager cannot load static plugins while this one has them (its
    // plugins' `vault()` would reach this manager's DataBag): a clear error; once this
    // one is gone, it can.
    let second = PluginManager::builder(dir.path())
        .static_plugins(linked())
        .build()
        .unwrap();
    let why = unsupported(second.load_plugins(&Value::Null));
    assert!(why.contains("one such manager at a time"), "{why}");
    assert_eq!(second.generation_id(), 0);
    drop((m, typed));
    second.load_plugins(&Value::Null).unwrap();
    second
        .invoke_func("counter", "add", &[Value::from(4)])
        .unwrap();
    assert_eq!(second.call_live("live_total", &[]).unwrap(), Value::from(4));
}

#[test]
fn a_static_plugin_is_checked_like_a_loaded_file() {
    let _turn = one_static_manager();
    // The sources name a live function the plugin does not register.
    let m = PluginManager::builder(common::plugin_dir().path())
        .static_plugins([StaticPlugin::new(&counter::HOTSWAP_PLUGIN_HEADER)
            .live_functions("live_", &["live_total", "live_missing"])])
        .build()
        .unwrap();
    let e = match m.load_plugins(&Value::Null) {
        Err(Error::Load(e)) => e,
        other => panic!("expected a load error, got {other:?}"),
    };
    assert_eq!(e.step, Step::AbiCheck);
    assert!(
        matches!(&e.kind, LoadErrorKind::LiveNotRegistered { function, .. } if function == "live_missing"),
        "{e}"
    );
    assert_eq!(m.generation_id(), 0);
    // The whitelist applies to static plugins too.
    let m = PluginManager::builder(common::plugin_dir().path())
        .static_plugins(linked())
        .whitelist(["world"])
        .build()
        .unwrap();
    m.load_plugins(&Value::Null).unwrap();
    let names: Vec<String> = m.plugins().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["world"]);
}

/// Copies `demo/slink/host` into `dir`, as a crate of its own: the generated block and
/// module left out (the test generates them), relative path dependencies made absolute,
/// a `[workspace]` table, and the repository's Cargo.lock (no new versions to fetch).
fn copy_host(dir: &Path) -> PathBuf {
    let source = repo().join("demo/slink/host");
    let host = dir.join("host");
    std::fs::create_dir_all(host.join("src")).unwrap();
    std::fs::copy(source.join("src/main.rs"), host.join("src/main.rs")).unwrap();
    std::fs::copy(repo().join("Cargo.lock"), host.join("Cargo.lock")).unwrap();
    let toml = std::fs::read_to_string(source.join("Cargo.toml")).unwrap();
    let mut out = String::new();
    let mut in_block = false;
    for line in toml.lines() {
        if line.starts_with("# hotswap static plugins: begin") {
            in_block = true;
        }
        if !in_block {
            match line.split_once("path = \"") {
                Some((before, rest)) if !rest.starts_with('/') => {
                    let (rel, after) = rest.split_once('"').unwrap();
                    let abs = std::fs::canonicalize(source.join(rel)).unwrap();
                    out.push_str(&format!("{before}path = \"{}\"{after}\n", abs.display()));
                }
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        if line.starts_with("# hotswap static plugins: end") {
            in_block = false;
        }
    }
    out.push_str("\n[workspace]\n");
    std::fs::write(host.join("Cargo.toml"), out).unwrap();
    host
}

/// Runs `hotswap build --static-linking <plugin> <host>`; returns its stdout.
fn link(plugin: &str, host: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hotswap"))
        .args(["build", "--static-linking"])
        .arg(repo().join(plugin))
        .arg(host)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "hotswap build --static-linking {plugin} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The generated module without its per-plugin comment lines (they hold paths).
fn code_lines(module: &str) -> Vec<&str> {
    module
        .lines()
        .filter(|l| !l.trim_start().starts_with("// ") || l.starts_with("// @generated"))
        .collect()
}

/// Runs `cmd` to completion or `limit`, with stdout and stderr merged into one text.
fn run_with_limit(cmd: &mut Command, log: &Path, limit: Duration) -> (bool, String) {
    let file = std::fs::File::create(log).unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let start = Instant::now();
    let ok = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.success();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (ok, std::fs::read_to_string(log).unwrap_or_default())
}

#[test]
fn static_linking_makes_one_binary_a_debugger_can_break_in() {
    // Asked first, so that CI=true without gdb fails before the long build.
    let have_gdb = common::require_tool("gdb");
    let tmp = tempfile::Builder::new()
        .prefix("hotswap-slink-")
        .tempdir()
        .unwrap();
    let host = copy_host(tmp.path());

    // Generate, link a second plugin, then re-run: nothing changes the second time.
    let first = link("demo/hello/world", &host);
    assert!(
        first.contains("linked world 0.1.0") && first.contains("updated"),
        "{first}"
    );
    let second = link("demo/slink/counter", &host);
    assert!(second.contains("static plugins world, counter"), "{second}");
    let toml = std::fs::read_to_string(host.join("Cargo.toml")).unwrap();
    let module = std::fs::read_to_string(host.join("src/hotswap_static.rs")).unwrap();
    let again = link("demo/hello/world", &host);
    assert_eq!(again.matches("unchanged").count(), 2, "{again}");
    assert_eq!(
        std::fs::read_to_string(host.join("Cargo.toml")).unwrap(),
        toml
    );
    assert!(toml.contains("features = [\"static\"]"), "{toml}");
    // The checked-in module is what the command generates (paths aside).
    let checked_in =
        std::fs::read_to_string(repo().join("demo/slink/host/src/hotswap_static.rs")).unwrap();
    assert_eq!(code_lines(&module), code_lines(&checked_in));

    // One debug build, in the directory of the hosts built outside the workspace,
    // whose dependencies the generated host's build compiled (`common::hosts_target_dir`
    // says why not the run's own).
    let target = common::hosts_target_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let (built, log) = run_with_limit(
        Command::new(cargo)
            .arg("build")
            .arg("--manifest-path")
            .arg(host.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            // As the generated host's build in the same directory (tests/scaffold.rs).
            .env("CARGO_INCREMENTAL", "0"),
        &tmp.path().join("cargo.log"),
        Duration::from_secs(600),
    );
    assert!(built, "cargo build of the slink host failed:\n{log}");
    let exe = target.join("debug/slink-host");
    let out = Command::new(&exe).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("world.greet -> \"hello from v1\""),
        "{stdout}"
    );
    assert!(stdout.contains("live_total -> 6"), "{stdout}");
    assert!(
        stdout.contains("reload -> static plugins are linked into the host binary"),
        "{stdout}"
    );

    // gdb: break on a line of plugin code, run, and see it stop there.
    if !have_gdb {
        return;
    }
    let source = repo().join("demo/hello/world/src/lib.rs");
    let text = std::fs::read_to_string(&source).unwrap();
    let line = 1 + text
        .lines()
        .position(|l| l.contains("\"greet\" =>"))
        .expect("world answers greet");
    let location = format!("{}:{line}", source.display());
    let (_, gdb) = run_with_limit(
        Command::new("gdb")
            .env("DEBUGINFOD_URLS", "")
            .args(["-nx", "-batch", "-ex"])
            .arg(format!("break {location}"))
            .args(["-ex", "run", "-ex", "bt"])
            .arg(&exe),
        &tmp.path().join("gdb.log"),
        Duration::from_secs(120),
    );
    if gdb.contains("ptrace: Operation not permitted") {
        println!("gdb may not trace processes here (ptrace refused): skipping\n{gdb}");
        return;
    }
    let mut lines = gdb.lines();
    let hit = lines
        .find(|l| l.contains("hit Breakpoint 1,") || l.starts_with("Breakpoint 1, "))
        .unwrap_or_else(|| panic!("the breakpoint was not hit:\n{gdb}"));
    // In the plugin's function, at its file and line (DWARF names the file relative to
    // the plugin crate, or absolute: either ends so)...
    assert!(hit.contains("world::"), "{hit}");
    assert!(hit.ends_with(&format!("src/lib.rs:{line}")), "{hit}\n{gdb}");
    // ...and gdb found that file: it prints the very source line.
    let shown = lines.next().unwrap_or_default();
    assert!(
        shown.starts_with(&format!("{line}\t")) && shown.contains("\"greet\" =>"),
        "{shown}\n{gdb}"
    );
    // The backtrace runs from plugin code through the host library to the host's main.
    assert!(
        gdb.contains("hotswap_host::manager::PluginManager::invoke_func"),
        "{gdb}"
    );
    assert!(gdb.contains("slink_host::main"), "{gdb}");
    println!("gdb: {hit}");
}
