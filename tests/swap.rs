//! The swap: generations published under load, reloads as transactions, retirement
//! only when drained, real unloading verified in /proc/self/maps.

mod common;

use common::{build, clear, install, plugin_dir, Build};
use hotswap_host::{
    maps, CallError, Error, LoadErrorKind, Outcome, PluginManager, Step, Value, VersionState,
};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROBE: &str = "tests/plugins/probe";
const WORLD: &str = "demo/hello/world";

fn swap_to(dir: &Path, b: &Build) {
    clear(dir);
    install(b, dir);
}

fn hook_log(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|n| n.parse().unwrap_or(0)))
        })
        .unwrap_or(0)
}

/// How many reloads the stress test does; the membarrier-less re-run does fewer.
fn stress_reloads() -> u64 {
    std::env::var("HOTSWAP_STRESS_RELOADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

#[test]
fn no_call_fails_or_goes_back_during_1000_reloads() {
    let v1 = build(PROBE, &[]);
    let v2 = build(PROBE, &["v2"]);
    let dir = plugin_dir();
    swap_to(dir.path(), &v1);
    let m = PluginManager::new(dir.path()).unwrap();
    m.load_plugins(&Value::Null).unwrap();
    // Generation g serves v1 when g is odd, v2 when even: reloads alternate from v1.
    let expected = |g: u64| if g % 2 == 1 { 1u32 } else { 2u32 };
    let typed = m.func::<(), u32>("probe", "version_number").unwrap();
    let add = m.func::<u64, u64>("probe", "add_one").unwrap();
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    // Calls during which a reload was published (served by a generation older than the
    // current one when they returned): the test is only a test if there are some.
    let overlapped = AtomicU64::new(0);
    let threads = 2 * std::thread::available_parallelism().map_or(2, |n| n.get());
    let reloads = stress_reloads();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (m, typed, add, stop, calls, overlapped) =
                (&m, typed.clone(), add.clone(), &stop, &calls, &overlapped);
            s.spawn(move || {
                let mut last = 0u64;
                let mut n = 0u64;
                let mut overlaps = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let before = m.generation_id();
                    let (version, g) = if t % 2 == 0 {
                        typed.call_with_generation(()).expect("typed call failed during a reload")
                    } else {
                        m.with_generation(|g| {
                            let v = g.find("probe").unwrap().invoke("version", &[]).expect("invoke_func failed during a reload");
                            (if v.as_str() == Some("v1") { 1 } else { 2 }, g.id())
                        })
                    };
                    let after = m.generation_id();
                    assert!(before <= g && g <= after, "served by generation {g}, not current during the call ({before}..={after})");
                    assert_eq!(version, expected(g), "generation {g} answered with v{version}");
                    assert!(g >= last, "thread {t} went back from generation {last} to {g}");
                    overlaps += u64::from(g < after);
                    last = g;
                    assert_eq!(add.call(n).unwrap(), n + 1);
                    n += 1;
                }
                calls.fetch_add(n, Ordering::Relaxed);
                overlapped.fetch_add(overlaps, Ordering::Relaxed);
            });
        }
        let started = Instant::now();
        for i in 0..reloads {
            swap_to(dir.path(), if i % 2 == 0 { &v2 } else { &v1 });
            let report = m.reload(&Value::Null).expect("reload");
            assert_eq!(report.plugin("probe").unwrap().outcome, Outcome::Loaded);
        }
        println!("{reloads} reloads in {:?}", started.elapsed());
        stop.store(true, Ordering::Relaxed);
    });
    let last = expected(m.generation_id());
    for _ in 0..100 {
        assert_eq!(
            typed.call(()).unwrap(),
            last,
            "after the last reload every call sees the last version"
        );
    }
    assert_eq!(m.generation_id(), reloads + 1);
    assert!(
        m.collect(Duration::from_secs(30)),
        "the reaper drained every retired version"
    );
    let mapped = maps::mapped_under(m.private_dir());
    assert_eq!(
        mapped.len(),
        1,
        "only the current version is mapped: {mapped:?}"
    );
    let overlapped = overlapped.load(Ordering::Relaxed);
    println!(
        "{} calls on {threads} threads, 0 failed, {overlapped} overlapped a reload; reclamation: {}",
        calls.load(Ordering::Relaxed),
        m.status().reclamation
    );
    assert!(
        reloads == 0 || overlapped > 0,
        "no call overlapped any of the {reloads} reloads: the test checked nothing"
    );

    // The same under plain fences, in a child process (the mode is chosen once per process).
    if std::env::var_os("HOTSWAP_NO_MEMBARRIER").is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "no_call_fails_or_goes_back_during_1000_reloads",
                "--nocapture",
            ])
            .env("HOTSWAP_NO_MEMBARRIER", "1")
            .env("HOTSWAP_STRESS_RELOADS", "200")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "fence-mode stress failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("reclamation: fence (membarrier disabled"),
            "{text}"
        );
    }
}

/// A plugin directory serving probe v1, with its hook log kept outside the directory.
struct Served {
    dir: tempfile::TempDir,
    _scratch: tempfile::TempDir,
}

impl std::ops::Deref for Served {
    type Target = tempfile::TempDir;
    fn deref(&self) -> &tempfile::TempDir {
        &self.dir
    }
}

/// Serves probe v1 with a hook log; returns (dir, log path, manager).
fn probe_v1() -> (Served, std::path::PathBuf, PluginManager) {
    let dir = plugin_dir();
    let scratch = plugin_dir();
    let log = scratch.path().join("hooks.log");
    install(&build(PROBE, &[]), dir.path());
    let m = PluginManager::new(dir.path()).unwrap();
    m.load_plugins(&Value::map([("log", log.to_str().unwrap())]))
        .unwrap();
    let served = Served {
        dir,
        _scratch: scratch,
    };
    (served, log, m)
}

#[test]
fn a_failing_reload_leaves_the_old_generation_serving_and_frees_what_it_loaded() {
    for (features, step, panicked) in [
        (&["v2", "panic-new"][..], Step::New, true),
        (&["v2", "panic-import"][..], Step::Import, true),
        (&["v2", "fail-load"][..], Step::OnLoad, false),
        (&["v2", "panic-load"][..], Step::OnLoad, true),
        (&["v2", "fail-init"][..], Step::OnInit, false),
        (&["v2", "panic-init"][..], Step::OnInit, true),
    ] {
        let (dir, log, m) = probe_v1();
        let data = Value::map([("log", log.to_str().unwrap())]);
        let handle = m.func::<(), u32>("probe", "version_number").unwrap();
        swap_to(dir.path(), &build(PROBE, features));
        let e = match m.reload(&data) {
            Err(Error::Load(e)) => e,
            other => panic!("{features:?}: expected a load error, got {other:?}"),
        };
        assert_eq!(e.step, step, "{features:?}: {e}");
        assert_eq!(e.plugin.as_deref(), Some("probe"));
        assert!(e.to_string().contains(&format!("failed at {step}")), "{e}");
        assert_eq!(matches!(e.kind, LoadErrorKind::Panic(_)), panicked, "{e}");
        assert_eq!(m.generation_id(), 1);
        assert_eq!(
            m.invoke_func("probe", "version", &[]).unwrap().as_str(),
            Some("v1")
        );
        assert_eq!(handle.call(()).unwrap(), 1);
        assert!(m.collect(Duration::from_secs(10)));
        let hooks = hook_log(&log);
        if step >= Step::OnLoad {
            assert!(
                hooks.contains(&"v2:on_free".to_owned()),
                "on_free ran on the abandoned v2: {hooks:?}"
            );
        }
        assert!(
            !hooks.contains(&"v1:on_free".to_owned()),
            "v1 is untouched: {hooks:?}"
        );
        // Only v1 is still mapped; the abandoned version was unloaded.
        assert_eq!(maps::mapped_under(m.private_dir()).len(), 1);
    }
}

#[test]
fn a_vetoed_reload_changes_nothing() {
    let (dir, _log, m) = probe_v1();
    swap_to(dir.path(), &build(PROBE, &["v2"]));
    let e = m
        .reload_with_callback(&Value::Null, |new, old| {
            assert_eq!((new.id(), old.id()), (2, 1));
            let v = new.find("probe").unwrap().invoke("version", &[]).unwrap();
            Err(format!("new generation answers {v}, not today"))
        })
        .unwrap_err();
    let e = e.as_load().unwrap();
    assert_eq!(e.step, Step::Callback);
    assert!(e.to_string().contains("not today"), "{e}");
    assert_eq!(
        m.invoke_func("probe", "version", &[]).unwrap().as_str(),
        Some("v1")
    );
    // Accepted the next time.
    let report = m.reload_with_callback(&Value::Null, |_, _| Ok(())).unwrap();
    assert_eq!(report.generation, 2);
    assert_eq!(
        m.invoke_func("probe", "version", &[]).unwrap().as_str(),
        Some("v2")
    );
}

#[test]
fn a_handle_asked_for_inside_a_reload_callback_is_an_error_not_a_deadlock() {
    let (dir, _log, m) = probe_v1();
    swap_to(dir.path(), &build(PROBE, &["v2"]));
    // On another thread, so that a deadlock fails the test instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    let m = Arc::new(m);
    let m2 = m.clone();
    std::thread::spawn(move || {
        let report = m2.reload_with_callback(&Value::Null, |_, _| {
            let asked = m2.func::<(), u32>("probe", "version_number");
            tx.send(asked.map(|_| ())).unwrap();
            Ok(())
        });
        report.map(|r| r.generation)
    });
    let asked = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("func() inside the callback returned");
    let e = asked.unwrap_err();
    assert!(matches!(e, CallError::InReload { .. }), "{e:?}");
    assert!(
        e.to_string().contains("make it before or after the reload"),
        "{e}"
    );
    // The reload itself went on, and handles work again afterwards.
    let h = m.func::<(), u32>("probe", "version_number").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while h.call(()).unwrap() != 2 {
        assert!(Instant::now() < deadline, "the reload never published v2");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_reload_during_a_reload_is_refused_and_changes_nothing() {
    let (dir, _log, m) = probe_v1();
    swap_to(dir.path(), &build(PROBE, &["v2"]));
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let m = &m;
        let first = s.spawn(move || {
            m.reload_with_callback(&Value::Null, |_, _| {
                entered_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                Ok(())
            })
        });
        entered_rx.recv().unwrap();
        let second = m.reload(&Value::Null);
        assert!(matches!(second, Err(Error::ReloadInProgress)), "{second:?}");
        assert_eq!(
            second.unwrap_err().to_string(),
            "a reload is already in progress; try again when it finishes"
        );
        // Calls keep being served on v1 while the first reload is in flight.
        assert_eq!(
            m.invoke_func("probe", "version", &[]).unwrap().as_str(),
            Some("v1")
        );
        release_tx.send(()).unwrap();
        assert_eq!(first.join().unwrap().unwrap().generation, 2);
    });
    assert_eq!(
        m.invoke_func("probe", "version", &[]).unwrap().as_str(),
        Some("v2")
    );
}

#[test]
fn unchanged_and_non_reloadable_plugins_are_kept() {
    let dir = plugin_dir();
    install(&build(PROBE, &["not-reloadable"]), dir.path());
    install(&build(WORLD, &[]), dir.path());
    let m = PluginManager::new(dir.path()).unwrap();
    m.load_plugins(&Value::Null).unwrap();
    let world_id = m.find_plugin("world").unwrap().id;
    // A new probe build is ignored (v1 said it is not reloadable); world is unchanged.
    install(&build(PROBE, &["v2", "not-reloadable"]), dir.path());
    let report = m.reload(&Value::Null).unwrap();
    assert_eq!(
        report.plugin("probe").unwrap().outcome,
        Outcome::NotReloadable
    );
    assert_eq!(report.plugin("world").unwrap().outcome, Outcome::Unchanged);
    assert_eq!(m.find_plugin("world").unwrap().id, world_id);
    assert_eq!(
        m.invoke_func("probe", "version", &[]).unwrap().as_str(),
        Some("v1")
    );
}

#[test]
fn a_relative_plugin_directory_is_fixed_when_the_manager_is_made() {
    // Plugin code may change the process's working directory (`set_current_dir` is
    // safe): a relative directory must not follow it, or every later reload fails.
    let cwd = std::env::current_dir().unwrap();
    let m = PluginManager::new("relative-plugins").unwrap();
    assert_eq!(m.dir(), cwd.join("relative-plugins"));
    assert!(m.dir().is_absolute());
}

#[test]
fn reload_from_another_directory() {
    let (_dir, _log, m) = probe_v1();
    let next = plugin_dir();
    install(&build(PROBE, &["v2"]), next.path());
    m.reload_from(next.path(), &Value::Null).unwrap();
    assert_eq!(m.dir(), next.path());
    assert_eq!(
        m.invoke_func("probe", "version", &[]).unwrap().as_str(),
        Some("v2")
    );
}

#[test]
fn a_retired_version_is_freed_only_after_its_last_call_returns_then_unmapped() {
    let (dir, log, m) = probe_v1();
    let release = dir.path().join("release-v1");
    let v1_path = m.status().versions[0].clone();
    assert_eq!(v1_path.state, VersionState::Current);
    let private = maps::mapped_under(m.private_dir());
    assert_eq!(private.len(), 1);
    std::thread::scope(|s| {
        let blocked = s.spawn(|| {
            m.invoke_func(
                "probe",
                "wait_for_file",
                &[Value::from(release.to_str().unwrap())],
            )
        });
        // Wait until the call is inside v1 (it holds generation 1): it says so.
        let entered = release.with_extension("entered");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !entered.exists() {
            assert!(Instant::now() < deadline, "the blocked call never started");
            std::thread::yield_now();
        }
        swap_to(dir.path(), &build(PROBE, &["v2"]));
        let started = Instant::now();
        m.reload(&Value::Null).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the reload did not wait for the blocked call"
        );
        assert_eq!(
            m.invoke_func("probe", "version", &[]).unwrap().as_str(),
            Some("v2")
        );
        // v1 is draining: not freed, still mapped, on_free not run.
        assert!(
            !m.collect(Duration::from_millis(300)),
            "the reaper must wait for the blocked call"
        );
        let status = m.status();
        let v1 = status.versions.iter().find(|v| v.id == v1_path.id).unwrap();
        assert!(
            matches!(v1.state, VersionState::Draining { .. }),
            "{status:?}"
        );
        assert!(!hook_log(&log).contains(&"v1:on_free".to_owned()));
        assert_eq!(maps::is_mapped(Path::new(&private[0])), Some(true));
        std::fs::write(&release, b"go").unwrap();
        let answer = blocked.join().unwrap().unwrap();
        assert_eq!(
            answer.as_str(),
            Some("v1"),
            "the blocked call completed on v1"
        );
    });
    assert!(m.collect(Duration::from_secs(10)));
    let hooks = hook_log(&log);
    assert!(hooks.contains(&"v1:on_free".to_owned()), "{hooks:?}");
    assert_eq!(
        maps::is_mapped(Path::new(&private[0])),
        Some(false),
        "v1 was unmapped"
    );
    // Deleted, or renamed to one of the few spares a later load of the same file
    // reuses (host/src/spare.rs): its own path is gone either way.
    assert!(
        !Path::new(&private[0]).exists(),
        "its private copy was deleted or kept as a spare"
    );
    assert!(m.status().versions.iter().all(|v| v.id != v1_path.id));
}

#[test]
fn a_version_with_a_running_task_stays_loaded_until_the_task_ends() {
    let (dir, log, m) = probe_v1();
    let release = dir.path().join("release-task");
    m.invoke_func(
        "probe",
        "spawn_wait_for_file",
        &[Value::from(release.to_str().unwrap())],
    )
    .unwrap();
    swap_to(dir.path(), &build(PROBE, &["v2"]));
    m.reload(&Value::Null).unwrap();
    m.collect(Duration::from_secs(5));
    let status = m.status();
    assert_eq!(
        status.versions.len(),
        2,
        "v1 stays in memory while its task runs: {status:?}"
    );
    let v1_state = status
        .versions
        .iter()
        .find(|v| v.state != VersionState::Current)
        .map(|v| v.state.clone());
    assert_eq!(
        v1_state,
        Some(VersionState::Draining { tasks: 1 }),
        "v1 is draining, held by its one task: {status:?}"
    );
    assert!(!hook_log(&log).contains(&"v1:on_free".to_owned()));
    std::fs::write(&release, b"go").unwrap();
    let done = release.with_extension("done");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The task wrote its answer; its thread drops the version right after: wait for
    // that (a bounded loop on the state, not a sleep).
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.status().versions.len() > 1 && Instant::now() < deadline {
        m.collect(Duration::from_millis(100));
    }
    assert!(m.collect(Duration::from_secs(10)));
    assert_eq!(
        std::fs::read_to_string(done).unwrap(),
        "v1",
        "the task ran v1's code"
    );
    assert!(hook_log(&log).contains(&"v1:on_free".to_owned()));
    assert_eq!(maps::mapped_under(m.private_dir()).len(), 1);
}

#[test]
fn values_from_a_version_outlive_it_and_a_held_version_stays_loaded() {
    let (dir, log, m) = probe_v1();
    // A plugin-made string, copied into host memory when the call returned.
    let text = m.invoke_func("probe", "long_string", &[]).unwrap();
    // A handle on the version itself keeps it loaded, as exported objects will.
    let held = m.with_generation(|g| g.find("probe").unwrap().clone());
    let v1 = build(PROBE, &[]);
    let v2 = build(PROBE, &["v2"]);
    for i in 0..10 {
        swap_to(dir.path(), if i % 2 == 0 { &v2 } else { &v1 });
        m.reload(&Value::Null).unwrap();
    }
    m.collect(Duration::from_secs(5));
    assert_eq!(
        m.status().versions.len(),
        2,
        "v1 (held) and the current version"
    );
    assert_eq!(
        held.invoke("version", &[]).unwrap().as_str(),
        Some("v1"),
        "the held version still answers"
    );
    assert_eq!(held.name(), "probe");
    assert!(!hook_log(&log).contains(&"v1:on_free".to_owned()));
    drop(held);
    assert!(m.collect(Duration::from_secs(10)));
    assert!(hook_log(&log).contains(&"v1:on_free".to_owned()));
    assert_eq!(
        maps::mapped_under(m.private_dir()).len(),
        1,
        "only the current version is mapped"
    );
    // The string is still whole and ours to drop.
    assert_eq!(text.as_str().unwrap(), "v1:".repeat(1000));
    drop(text);
}

#[test]
fn a_thousand_reloads_leave_one_mapped_file() {
    let v1 = build(WORLD, &[]);
    let v2 = build(WORLD, &["v2"]);
    let dir = plugin_dir();
    swap_to(dir.path(), &v1);
    let m = PluginManager::new(dir.path()).unwrap();
    m.load_plugins(&Value::Null).unwrap();
    let rss_before = rss_kib();
    for i in 0..1000 {
        swap_to(dir.path(), if i % 2 == 0 { &v2 } else { &v1 });
        m.reload(&Value::Null).unwrap();
        if i % 100 == 0 {
            m.collect(Duration::from_secs(10));
        }
    }
    assert!(m.collect(Duration::from_secs(30)));
    let mapped = maps::mapped_under(m.private_dir());
    let status = m.status();
    let pinned: Vec<_> = status
        .versions
        .iter()
        .filter(|v| matches!(v.state, VersionState::Pinned { .. }))
        .collect();
    assert_eq!(
        mapped.len(),
        1 + pinned.len(),
        "mapped: {mapped:?}, status: {status:?}"
    );
    assert!(pinned.is_empty(), "no version stays pinned: {pinned:?}");
    assert_eq!(status.unloaded, 1000);
    // The copies of unloaded versions are deleted, but for the spares kept for a
    // reload of the same file (host/src/spare.rs): at most one per build's bytes.
    let private_files = std::fs::read_dir(m.private_dir()).unwrap().count();
    let footprint = m.footprint();
    assert_eq!(footprint.private_copies, 1);
    assert!(footprint.spare_copies <= 2, "{footprint:?}");
    assert_eq!(
        private_files,
        1 + footprint.spare_copies,
        "private copies are deleted on unload, but for the spares"
    );
    let rss_after = rss_kib();
    println!("RSS before {rss_before} KiB, after 1000 reloads {rss_after} KiB");
    // Reload i installs v2 for even i: the 1000th (i = 999) installed v1.
    assert_eq!(
        m.invoke_func("world", "greet", &[]).unwrap().as_str(),
        Some("hello from v1")
    );
}

#[test]
fn a_typed_handle_made_before_loading_resolves_on_load_and_across_reloads() {
    let dir = plugin_dir();
    let m = PluginManager::new(dir.path()).unwrap();
    let h = m.func::<(), u32>("probe", "version_number").unwrap();
    assert_eq!(h.call(()), Err(CallError::UnknownPlugin("probe".into())));
    install(&build(PROBE, &[]), dir.path());
    m.load_plugins(&Value::Null).unwrap();
    assert_eq!(h.call(()).unwrap(), 1);
    swap_to(dir.path(), &build(PROBE, &["v2"]));
    m.reload(&Value::Null).unwrap();
    assert_eq!(h.call(()).unwrap(), 2);
    // Asking again for a handle already made reuses its slot: no new generation.
    let generation = m.generation_id();
    for _ in 0..10 {
        let again = m.func::<(), u32>("probe", "version_number").unwrap();
        assert_eq!(again.call(()).unwrap(), 2);
    }
    assert_eq!(m.generation_id(), generation);
    // Handles survive their manager's clones and keep working from other threads.
    let h2 = h.clone();
    assert_eq!(
        std::thread::spawn(move || h2.call(()).unwrap())
            .join()
            .unwrap(),
        2
    );
    let _ = Arc::new(h);
}

#[test]
fn free_delay_holds_on_free_back_after_the_version_is_drained() {
    let dir = plugin_dir();
    let scratch = plugin_dir();
    let log = scratch.path().join("hooks.log");
    install(&build(PROBE, &[]), dir.path());
    let m = PluginManager::builder(dir.path())
        .free_delay(Duration::from_millis(800))
        .build()
        .unwrap();
    m.load_plugins(&Value::map([("log", log.to_str().unwrap())]))
        .unwrap();
    swap_to(dir.path(), &build(PROBE, &["v2"]));
    let reloaded = Instant::now();
    m.reload(&Value::Null).unwrap();
    // Drained at once (no call runs), but on_free waits for the delay: it is not in the
    // log yet, and when it first is, the delay has passed (seen no sooner than it ran,
    // so a slow test thread can only make this later, never fail it).
    let freed = || hook_log(&log).contains(&"v1:on_free".to_owned());
    assert!(!freed(), "on_free ran at once, before the free delay");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !freed() {
        assert!(Instant::now() < deadline, "on_free never ran");
        std::thread::yield_now();
    }
    assert!(
        reloaded.elapsed() >= Duration::from_millis(800),
        "on_free ran {:?} after the reload, before the free delay (800 ms)",
        reloaded.elapsed()
    );
    assert!(m.collect(Duration::from_secs(10)));
    assert_eq!(maps::mapped_under(m.private_dir()).len(), 1);
}

/// Old versions held past their generation (here by handles on them) count against
/// `Builder::max_unloading`: at the limit a reload waits its hook deadline for them to
/// unload, then is refused in one line and changes nothing; released, they unload and
/// the next reload works. (Reloading faster than versions unload used to pile them up
/// until std in a plugin ran out of pthread keys and aborted the host.)
#[test]
fn a_reload_is_refused_while_too_many_old_versions_wait_to_unload() {
    let (v1, v2) = (build(WORLD, &[]), build(WORLD, &["v2"]));
    let dir = plugin_dir();
    swap_to(dir.path(), &v1);
    let m = PluginManager::builder(dir.path())
        .max_unloading(3)
        .hook_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    m.load_plugins(&Value::Null).unwrap();
    let greet = || m.invoke_func("world", "greet", &[]).unwrap();
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(m.with_generation(|g| g.find("world").unwrap().clone()));
        swap_to(dir.path(), if i % 2 == 0 { &v2 } else { &v1 });
        m.reload(&Value::Null).unwrap();
    }
    // Three old versions held, the limit: refused, and v2 (the third reload's) serves.
    held.push(m.with_generation(|g| g.find("world").unwrap().clone()));
    swap_to(dir.path(), &v1);
    let e = m.reload(&Value::Null).expect_err("refused at the limit");
    assert!(
        matches!(
            e,
            Error::TooManyUnloading {
                waiting: 3,
                limit: 3,
                ..
            }
        ),
        "{e}"
    );
    let line = e.to_string();
    assert!(
        line.starts_with("cannot reload: 3 old versions are still waiting to unload")
            && !line.contains('\n'),
        "{line}"
    );
    assert_eq!(greet().as_str(), Some("hello from v2"));
    assert_eq!(m.status().versions.len(), 4, "three held, one current");

    // Released, they unload while the next reload waits for them.
    held.clear();
    m.reload(&Value::Null).unwrap();
    assert_eq!(greet().as_str(), Some("hello from v1"));
    assert!(m.collect(Duration::from_secs(10)));
    assert_eq!(m.status().versions.len(), 1);
}

/// A reload at the limit waits for the reaper instead of adding to the pile: with a
/// free delay (the reaper holds each old version that long) and a limit of one, every
/// reload succeeds, and no more than one old version is ever in memory beside the
/// current one.
#[test]
fn reloads_faster_than_the_reaper_wait_for_it_at_the_limit() {
    let (v1, v2) = (build(WORLD, &[]), build(WORLD, &["v2"]));
    let dir = plugin_dir();
    swap_to(dir.path(), &v1);
    let m = PluginManager::builder(dir.path())
        .max_unloading(1)
        .free_delay(Duration::from_millis(50))
        .build()
        .unwrap();
    m.load_plugins(&Value::Null).unwrap();
    for i in 0..10 {
        swap_to(dir.path(), if i % 2 == 0 { &v2 } else { &v1 });
        m.reload(&Value::Null).unwrap();
        let expected = if i % 2 == 0 {
            "hello from v2"
        } else {
            "hello from v1"
        };
        let answer = m.invoke_func("world", "greet", &[]).unwrap();
        assert_eq!(answer.as_str(), Some(expected));
        let versions = m.status().versions.len();
        assert!(versions <= 2, "reload {i}: {versions} versions in memory");
    }
}
