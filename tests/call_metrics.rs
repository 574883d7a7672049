//! Call metrics: every call counted per plugin version (typed, batched, by name), failures
//! and panics, the sampled latency histogram, kept across reloads and unloads, on
//! `/metrics` with plugin-labelled reload counts; off when the builder says so.

mod common;

use common::{build, clear, install, plugin_dir};
use hotswap_host::{CallError, CallMetrics, PluginManager, Source, Trigger, Value};
use std::sync::{Arc, Barrier};
use std::time::Duration;

const PROBE: &str = "tests/plugins/probe";
const THREADS: usize = 4;
const CALLS: u64 = 5_000;
const BATCH: u64 = 1_000;

fn probe(m: &PluginManager) -> CallMetrics {
    let all = m.call_metrics();
    assert_eq!(all.len(), 1, "one plugin version: {all:?}");
    all.into_iter().next().unwrap()
}

/// Calls from `THREADS` threads at once, each `CALLS` typed calls and one by name.
fn calls_from_threads(m: &Arc<PluginManager>) {
    let add_one = m.func::<u64, u64>("probe", "add_one").unwrap();
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (m, f, start) = (m.clone(), add_one.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                for x in 0..CALLS {
                    assert_eq!(f.call(x).unwrap(), x + 1);
                }
                m.invoke_func("probe", "add", &[Value::from(1i64), Value::from(2i64)])
                    .unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn every_call_is_counted_per_version_with_failures_panics_and_latency() {
    let dir = plugin_dir();
    install(&build(PROBE, &[]), dir.path());
    let m = Arc::new(
        PluginManager::builder(dir.path())
            .call_metrics(true)
            .call_latency_sampling(1)
            .build()
            .unwrap(),
    );
    m.load_plugins(&Value::Null).unwrap();
    assert_eq!(probe(&m).typed_calls, 0);

    calls_from_threads(&m);
    // Two panics (one typed, one by name), one error: failures, never aborts.
    let explode = m.func::<(&str,), String>("probe", "explode").unwrap();
    assert!(matches!(
        explode.call(("boom",)),
        Err(CallError::Panicked { .. })
    ));
    assert!(matches!(
        m.invoke_func("probe", "panic", &[]),
        Err(CallError::Panicked { .. })
    ));
    assert!(matches!(
        m.invoke_func("probe", "fail", &[]),
        Err(CallError::Failed { .. })
    ));
    // Calls that reach no version are not a version's.
    assert!(m.invoke_func("nope", "add", &[]).is_err());
    // A batch: counted (once it ends, all at once), not timed.
    let add_one = m.func::<u64, u64>("probe", "add_one").unwrap();
    let version = m.func::<(), u32>("probe", "version_number").unwrap();
    let batched = m.pinned(|p| {
        for x in 0..BATCH {
            assert_eq!(p.call(&add_one, x).unwrap(), x + 1);
            if x % 100 == 0 {
                p.call(&version, ()).unwrap();
            }
        }
        probe(&m).typed_calls
    });
    assert!(batched <= THREADS as u64 * CALLS + 1 + BATCH);

    let p = probe(&m);
    assert_eq!((p.plugin.as_str(), p.version.as_str()), ("probe", "0.1.0"));
    let timed_typed = THREADS as u64 * CALLS + 1;
    let typed = timed_typed + BATCH + BATCH / 100;
    let by_name = THREADS as u64 + 2;
    assert_eq!((p.typed_calls, p.by_name_calls), (typed, by_name));
    assert_eq!((p.async_calls, p.live_calls), (0, 0));
    assert_eq!((p.failures, p.panics), (3, 2));
    // Sampling 1: every synchronous call timed, each in one bucket.
    assert_eq!(p.latency.count, timed_typed + by_name);
    assert!(p.latency.buckets.windows(2).all(|w| w[0].1 <= w[1].1));
    assert!(p.latency.buckets.last().unwrap().1 <= p.latency.count);
    assert!(p.latency.sum_seconds > 0.0);

    // Reload to v2 (same crate version): v1's counts outlive its unload, v2's add up.
    clear(dir.path());
    install(&build(PROBE, &["v2"]), dir.path());
    m.reload(&Value::Null).unwrap();
    assert!(m.collect(Duration::from_secs(30)), "v1 unloaded");
    assert_eq!(m.status().versions.len(), 1, "only v2 in memory");
    assert_eq!(probe(&m).typed_calls, typed, "v1's calls kept after unload");
    calls_from_threads(&m);
    let p = probe(&m);
    assert_eq!(p.typed_calls, typed + THREADS as u64 * CALLS);
    assert_eq!(p.by_name_calls, by_name + THREADS as u64);
    assert_eq!((p.failures, p.panics), (3, 2));
}

/// A manager over a fresh directory with probe v1, counting calls.
fn counting() -> (tempfile::TempDir, Arc<PluginManager>) {
    let dir = plugin_dir();
    install(&build(PROBE, &[]), dir.path());
    let m = PluginManager::builder(dir.path())
        .call_metrics(true)
        .build()
        .unwrap();
    m.load_plugins(&Value::Null).unwrap();
    (dir, Arc::new(m))
}

#[test]
fn the_default_sampling_times_some_calls_and_counts_every_call() {
    let (_dir, m) = counting();
    calls_from_threads(&m);
    let p = probe(&m);
    assert_eq!(p.typed_calls, THREADS as u64 * CALLS);
    // One call in 1024 per thread and version, the first included.
    assert!(p.latency.count >= 1, "{p:?}");
    assert!(
        p.latency.count <= (THREADS as u64 * CALLS).div_ceil(1024) + 2 * THREADS as u64,
        "{p:?}"
    );
}

#[test]
fn metrics_off_by_default_count_nothing_and_serve_no_call_series() {
    let (_dir, m) = common::loaded(PROBE, &[]);
    let m = Arc::new(m);
    calls_from_threads(&m);
    assert!(m.call_metrics().is_empty());
    // The reload metrics by plugin do not depend on it.
    let text = hotswap_host::metrics::render(&Trigger::new(m.clone()));
    assert!(!text.contains("hotswap_calls_total"), "{text}");
    assert!(!text.contains("hotswap_call_duration_seconds"), "{text}");
}

#[test]
fn metrics_label_calls_by_version_and_reloads_by_plugin() {
    let (dir, m) = counting();
    let trigger = Trigger::new(m.clone());
    calls_from_threads(&m);
    let _ = m.invoke_func("probe", "panic", &[]);

    // A reload that loads v2, one that changes nothing, one that fails in probe's hook.
    clear(dir.path());
    install(&build(PROBE, &["v2"]), dir.path());
    trigger.reload(Source::Api).unwrap();
    trigger.reload(Source::Api).unwrap();
    clear(dir.path());
    install(&build(PROBE, &[]), dir.path());
    m.vault().set("probe.fail", "on_load:error");
    trigger.reload(Source::Api).unwrap_err();

    let text = hotswap_host::metrics::render(&trigger);
    let series = |s: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(s)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no series {s} in\n{text}"))
    };
    let l = r#"plugin="probe",version="0.1.0""#;
    assert_eq!(
        series(&format!("hotswap_calls_total{{{l},kind=\"typed\"}}")),
        (THREADS as u64 * CALLS) as f64
    );
    assert_eq!(
        series(&format!("hotswap_calls_total{{{l},kind=\"by_name\"}}")),
        (THREADS + 1) as f64
    );
    assert_eq!(series(&format!("hotswap_call_panics_total{{{l}}}")), 1.0);
    assert_eq!(series(&format!("hotswap_call_failures_total{{{l}}}")), 1.0);
    let count = series(&format!("hotswap_call_duration_seconds_count{{{l}}}"));
    assert!(count >= 1.0);
    assert_eq!(
        series(&format!(
            "hotswap_call_duration_seconds_bucket{{{l},le=\"+Inf\"}}"
        )),
        count
    );
    assert_eq!(
        series(r#"hotswap_plugin_reloads_total{plugin="probe",outcome="loaded"}"#),
        1.0
    );
    assert_eq!(
        series(r#"hotswap_plugin_reloads_total{plugin="probe",outcome="unchanged"}"#),
        1.0
    );
    assert_eq!(
        series(r#"hotswap_plugin_reloads_total{plugin="probe",outcome="failure"}"#),
        1.0
    );
}
