//! Dependencies between plugins: ordering, every resolution error, rebinding, and a
//! dependency chain under reload load.

mod common;

use common::{build, clear, install, plugin_dir, Build};
use hotswap_host::{Error, LoadErrorKind, Outcome, PluginManager, Step, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const PROVIDER: &str = "tests/plugins/provider";
const CONSUMER: &str = "tests/plugins/consumer";

fn load_err(dir: &Path) -> hotswap_host::LoadError {
    let m = PluginManager::new(dir).unwrap();
    match m.load_plugins(&Value::Null) {
        Err(Error::Load(e)) => {
            println!("refused as: {e}");
            assert_eq!(m.generation_id(), 0, "nothing was published");
            *e
        }
        other => panic!("expected a load error, got {other:?}"),
    }
}

fn pair(provider: &[&str], consumer: &[&str]) -> tempfile::TempDir {
    let dir = plugin_dir();
    install(&build(PROVIDER, provider), dir.path());
    install(&build(CONSUMER, consumer), dir.path());
    dir
}

#[test]
fn an_unknown_dependency_is_named() {
    let e = load_err(pair(&[], &["import-missing"]).path());
    assert_eq!(e.step, Step::Import);
    assert!(
        matches!(&e.kind, LoadErrorKind::UnknownDependency { plugin, missing } if plugin == "consumer" && missing == "ghost"),
        "{e}"
    );
}

#[test]
fn a_cycle_is_printed() {
    let e = load_err(pair(&["import-consumer"], &[]).path());
    match &e.kind {
        LoadErrorKind::Cycle(cycle) => assert_eq!(cycle, "consumer -> provider -> consumer"),
        other => panic!("expected a cycle, got {other:?}"),
    }
    assert!(e
        .to_string()
        .contains("cyclic dependency: consumer -> provider -> consumer"));
}

#[test]
fn a_provider_version_outside_the_requirement_is_refused() {
    let e = load_err(pair(&[], &["requires-v2"]).path());
    assert!(
        matches!(&e.kind, LoadErrorKind::DependencyVersion { provider, required, found, .. }
            if provider == "provider" && required == "^2" && found == "0.1.0"),
        "{e}"
    );
}

#[test]
fn an_export_of_another_type_is_refused_by_the_layout_checker() {
    let e = load_err(pair(&[], &["wrong-type"]).path());
    assert!(
        matches!(&e.kind, LoadErrorKind::ExportType { plugin, provider, .. } if plugin == "consumer" && provider == "provider"),
        "{e}"
    );
    // One line; abi_stable's report only in the alternate form.
    let LoadErrorKind::ExportType { detail, .. } = &e.kind else {
        unreachable!()
    };
    assert_eq!(e.to_string().lines().count(), 1, "{e}");
    assert!(detail.lines().count() > 1, "{detail}");
    assert!(format!("{e:#}").contains(detail.as_str()), "{e:#}");
}

#[test]
fn a_non_reloadable_plugin_may_not_import_a_reloadable_one() {
    let e = load_err(pair(&[], &["not-reloadable"]).path());
    assert!(
        matches!(e.kind, LoadErrorKind::NotReloadableImport { .. }),
        "{e}"
    );
    // Both non-reloadable is fine.
    let dir = pair(&["not-reloadable"], &["not-reloadable"]);
    let m = PluginManager::new(dir.path()).unwrap();
    m.load_plugins(&Value::Null).unwrap();
}

fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn providers_load_and_init_first_and_are_freed_last() {
    let dir = pair(&[], &[]);
    let scratch = plugin_dir();
    let log = scratch.path().join("hooks.log");
    let data = Value::map([("log", log.to_str().unwrap())]);
    let m = PluginManager::new(dir.path()).unwrap();
    m.load_plugins(&data).unwrap();
    assert_eq!(
        log_lines(&log),
        [
            "provider:on_load",
            "consumer:on_load",
            "provider:on_init",
            "consumer:on_init"
        ]
    );
    let names: Vec<_> = m.plugins().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["provider", "consumer"]);
    let each: Vec<_> = m
        .invoke_each("x", &[])
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(each, ["provider", "consumer"]);
    let back: Vec<_> = m
        .invoke_each_backward("x", &[])
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(back, ["consumer", "provider"]);
    // Retire both (the directory empties), then check on_free order: dependents first.
    clear(dir.path());
    m.reload(&data).unwrap();
    assert!(m.collect(Duration::from_secs(10)));
    let lines = log_lines(&log);
    assert_eq!(
        &lines[4..],
        ["consumer:on_free", "provider:on_free"],
        "{lines:?}"
    );
}

#[test]
fn an_export_that_panics_as_it_is_dropped_is_freed_and_the_host_carries_on() {
    let dir = plugin_dir();
    install(&build(PROVIDER, &["panic-export-drop"]), dir.path());
    let m = PluginManager::new(dir.path()).unwrap();
    m.load_plugins(&Value::Null).unwrap();
    // Each reload frees the old pair, and so drops the old provider's export: before,
    // its panic unwound out of an `extern "C"` function and aborted the host.
    let (v1, v2) = (
        build(PROVIDER, &["panic-export-drop"]),
        build(PROVIDER, &["panic-export-drop", "v2"]),
    );
    for round in 0..10 {
        install(if round % 2 == 0 { &v2 } else { &v1 }, dir.path());
        m.reload(&Value::Null).unwrap();
        let answer = m.invoke_func("provider", "x", &[]).unwrap();
        assert_eq!(answer, Value::from("provider:x"));
        assert!(m.collect(Duration::from_secs(10)), "round {round}");
    }
    assert_eq!(hotswap_host::maps::mapped_under(m.private_dir()).len(), 1);
}

fn chain(m: &PluginManager) -> (i64, i64, u64) {
    m.with_generation(|g| {
        let v = g.find("consumer").unwrap().invoke("chain", &[]).unwrap();
        let pair: Vec<Value> = v.try_into().unwrap();
        (pair[0].as_int().unwrap(), pair[1].as_int().unwrap(), g.id())
    })
}

#[test]
fn a_kept_dependent_is_rebound_to_the_new_provider() {
    let dir = pair(&[], &[]);
    let m = PluginManager::new(dir.path()).unwrap();
    m.load_plugins(&Value::Null).unwrap();
    assert_eq!(chain(&m).0, 1);
    let consumer_before = m.find_plugin("consumer").unwrap();
    install(&build(PROVIDER, &["v2"]), dir.path());
    let report = m.reload(&Value::Null).unwrap();
    assert_eq!(report.plugin("provider").unwrap().outcome, Outcome::Loaded);
    assert_eq!(report.plugin("consumer").unwrap().outcome, Outcome::Rebound);
    let consumer_after = m.find_plugin("consumer").unwrap();
    assert_eq!(consumer_after.sha256, consumer_before.sha256, "same file");
    assert_ne!(consumer_after.id, consumer_before.id, "fresh instance");
    assert_eq!(
        chain(&m).0,
        2,
        "the unchanged consumer now calls the new provider"
    );
    // The old pair is freed once drained: only two files stay mapped.
    assert!(m.collect(Duration::from_secs(10)));
    assert_eq!(hotswap_host::maps::mapped_under(m.private_dir()).len(), 2);
}

#[test]
fn a_call_on_generation_n_uses_ns_provider_from_start_to_end() {
    let v1 = build(PROVIDER, &[]);
    let v2 = build(PROVIDER, &["v2"]);
    let consumer = build(CONSUMER, &[]);
    let dir = plugin_dir();
    let set = |p: &Build| {
        clear(dir.path());
        install(p, dir.path());
        install(&consumer, dir.path());
    };
    set(&v1);
    let m = PluginManager::new(dir.path()).unwrap();
    m.load_plugins(&Value::Null).unwrap();
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut last = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (first, second, g) = chain(&m);
                    assert_eq!(first, second, "the provider changed during one call");
                    let expected = if g % 2 == 1 { 1 } else { 2 };
                    assert_eq!(first, expected, "generation {g} used provider v{first}");
                    assert!(g >= last);
                    last = g;
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for i in 0..200 {
            set(if i % 2 == 0 { &v2 } else { &v1 });
            let report = m.reload(&Value::Null).unwrap();
            assert_eq!(report.plugin("consumer").unwrap().outcome, Outcome::Rebound);
        }
        stop.store(true, Ordering::Relaxed);
    });
    println!(
        "{} chained calls during 200 reloads, 0 failed",
        calls.load(Ordering::Relaxed)
    );
    assert!(m.collect(Duration::from_secs(20)));
    assert_eq!(hotswap_host::maps::mapped_under(m.private_dir()).len(), 2);
}
