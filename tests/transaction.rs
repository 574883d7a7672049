//! A reload is a transaction that never wedges (DESIGN invariants 2 and 6): a hook that
//! never returns fails its reload with a named timeout and the next reload works; the
//! stuck version is never published and never unloaded while its hook runs; DataBag
//! writes of a failed reload's hooks are discarded, those of a published one committed.

mod common;

use common::{build, clear, install, plugin_dir};
use hotswap_host::{maps, LoadErrorKind, PluginManager, Step, Value, VersionState};
use std::time::Duration;

const PROBE: &str = "tests/plugins/probe";

/// Every hook that runs during a reload, with the step its timeout must name.
const HOOKS: &[(&str, Step)] = &[
    ("new", Step::New),
    ("reloadable", Step::Reloadable),
    ("export", Step::Export),
    ("import", Step::Import),
    ("on_load", Step::OnLoad),
    ("on_init", Step::OnInit),
];

/// Far longer than any of the probe's hooks takes when it does not hang, even on a busy
/// machine; a hanging hook never returns until released, so the outcome does not depend
/// on the machine's speed.
const DEADLINE: Duration = Duration::from_secs(2);

#[test]
fn a_hook_that_never_returns_fails_its_reload_and_the_next_reload_works() {
    let (v1, v2) = (build(PROBE, &[]), build(PROBE, &["v2"]));
    // One host per hook, side by side: each waits out its deadline at the same time.
    std::thread::scope(|s| {
        for &(hook, step) in HOOKS {
            let (v1, v2) = (&v1, &v2);
            s.spawn(move || hang_in(hook, step, v1, v2));
        }
    });
}

/// A host on `v1` reloads to `v2` built to hang in `hook`: the reload fails naming
/// `step`, `v1` serves, the stuck version shows; the next reload (of `v2` not asked to
/// hang) works while the hook still runs, and once released the stuck version unloads.
fn hang_in(hook: &str, step: Step, v1: &common::Build, v2: &common::Build) {
    let dir = plugin_dir();
    install(v1, dir.path());
    let m = std::sync::Arc::new(
        PluginManager::builder(dir.path())
            .hook_timeout(DEADLINE)
            .build()
            .unwrap(),
    );
    m.load_plugins(&Value::Null).unwrap();
    let trigger = hotswap_host::Trigger::new(m.clone());
    let version = m.func::<(), u32>("probe", "version_number").unwrap();
    let what = format!("{hook}:hang");
    let timeouts = m.status().hook_timeouts;
    // The next build hangs in `hook`.
    m.vault().set("probe.fail", what.as_str());
    clear(dir.path());
    install(v2, dir.path());
    let e = m.reload(&Value::Null).expect_err(&what);
    let e = e
        .as_load()
        .unwrap_or_else(|| panic!("{what}: a load error, got {e}"));
    assert_eq!(e.step, step, "{what}: {e}");
    assert_eq!(e.plugin.as_deref(), Some("probe"), "{what}");
    assert_eq!(e.version.as_deref(), Some("0.1.0"), "{what}");
    assert!(
        matches!(e.kind, LoadErrorKind::HookTimeout { limit, .. } if limit == DEADLINE),
        "{what}: {e}"
    );
    assert!(e.to_string().contains("did not return within"), "{e}");
    // The old generation serves; the stuck version shows, and is counted.
    assert_eq!(version.call(()).unwrap(), 1, "{what}");
    let status = m.status();
    assert_eq!(status.hook_timeouts, timeouts + 1, "{what}");
    let stuck: Vec<_> = status
        .versions
        .iter()
        .filter_map(|v| match &v.state {
            VersionState::Stuck { step, .. } => Some(step.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(stuck, vec![step.to_string()], "{what}: {status:?}");
    let metrics = hotswap_host::metrics::render(&trigger);
    assert!(
        metrics.contains(&format!("hotswap_hook_timeouts_total {}", timeouts + 1)),
        "{metrics}"
    );
    // The reload lock was released: the same build, no longer asked to hang, loads
    // while the stuck hook still runs (the stuck version stays mapped meanwhile).
    m.vault().remove("probe.fail");
    m.reload(&Value::Null)
        .unwrap_or_else(|e| panic!("{what}: the next reload: {e:#}"));
    assert_eq!(version.call(()).unwrap(), 2, "{what}");
    m.collect(Duration::from_secs(10));
    let mapped = maps::mapped_under(m.private_dir()).len();
    assert!(
        mapped >= 2,
        "{what}: the stuck version is still mapped ({mapped})"
    );
    // Released, the stuck hook returns; its version is freed and unloaded.
    m.vault().set("probe.release", true);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while m.status().versions.len() > 1 && std::time::Instant::now() < deadline {
        m.collect(Duration::from_millis(200));
    }
    let status = m.status();
    assert_eq!(status.versions.len(), 1, "{what}: {status:?}");
    assert_eq!(maps::mapped_under(m.private_dir()).len(), 1, "{what}");
}

#[test]
fn a_failed_reload_discards_its_databag_writes_and_a_published_one_commits_them() {
    let (v1, v2) = (build(PROBE, &[]), build(PROBE, &["v2"]));
    let dir = plugin_dir();
    install(&v1, dir.path());
    let m = PluginManager::new(dir.path()).unwrap();
    m.load_plugins(&Value::Null).unwrap();
    let loaded_by = || {
        m.vault()
            .get("probe.loaded_by")
            .and_then(|v| v.as_str().map(str::to_owned))
    };
    assert_eq!(
        loaded_by().as_deref(),
        Some("v1"),
        "the first load committed"
    );
    for fail in ["on_load:error", "on_init:error", "on_init:panic"] {
        // v2's on_load writes "v2", then the reload fails: the write is discarded.
        m.vault().set("probe.fail", fail);
        m.vault().set("host.during", fail);
        clear(dir.path());
        install(&v2, dir.path());
        m.reload(&Value::Null).expect_err(fail);
        assert_eq!(loaded_by().as_deref(), Some("v1"), "{fail}: discarded");
        // The host's own writes are untouched.
        assert_eq!(
            m.vault()
                .get("host.during")
                .and_then(|v| v.as_str().map(str::to_owned)),
            Some(fail.to_owned())
        );
    }
    m.vault().remove("probe.fail");
    m.reload(&Value::Null).unwrap();
    assert_eq!(
        loaded_by().as_deref(),
        Some("v2"),
        "committed with the swap"
    );
}
