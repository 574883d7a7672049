//! The batch API (issue #16): `PluginManager::pinned` runs a closure on one pinned
//! generation; every call made through its handle, and every nested call of the same
//! manager on that thread, stays on that generation while reloads publish new ones; the
//! pin ends with the closure, also when it panics.

mod common;

use common::{build, clear, install};
use hotswap_host::{CallError, Func, PluginManager, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

const PROBE: &str = "tests/plugins/probe";

fn probe_v1() -> (tempfile::TempDir, PluginManager) {
    common::loaded(PROBE, &[])
}

/// Puts the other build in the directory and reloads.
fn swap_to(m: &PluginManager, dir: &std::path::Path, v2: bool) {
    clear(dir);
    install(&build(PROBE, if v2 { &["v2"] } else { &[] }), dir);
    m.reload(&Value::Null).unwrap();
}

#[test]
fn a_batch_stays_on_its_generation_while_a_reload_publishes() {
    let (dir, m) = probe_v1();
    let version = m.func::<(), String>("probe", "version_text").unwrap();
    let add_one = m.func::<u64, u64>("probe", "add_one").unwrap();
    let (pinned_tx, pinned_rx) = mpsc::channel();
    let (m, version, add_one) = (&m, &version, &add_one);
    let (reloaded_tx, reloaded_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let batch = s.spawn(move || {
            m.pinned(|p| {
                let generation = p.generation().id();
                assert_eq!(p.call(version, ()).unwrap(), "v1");
                pinned_tx.send(()).unwrap();
                // The reload is published while this closure runs.
                reloaded_rx.recv().unwrap();
                assert_eq!(p.call(version, ()).unwrap(), "v1");
                assert_eq!(p.generation().id(), generation);
                let sum: u64 = (0..1000u64).map(|x| p.call(add_one, x).unwrap()).sum();
                assert_eq!(sum, (1..=1000u64).sum::<u64>());
                // Nested calls of the same manager reuse the pinned generation: a plain
                // typed call, a call by name, another `pinned`.
                assert_eq!(version.call(()).unwrap(), "v1");
                assert_eq!(
                    m.invoke_func("probe", "version", &[]).unwrap(),
                    Value::from("v1")
                );
                m.pinned(|inner| {
                    assert_eq!(inner.generation().id(), generation);
                    assert_eq!(inner.call(version, ()).unwrap(), "v1");
                });
                generation
            })
        });
        pinned_rx.recv().unwrap();
        swap_to(m, dir.path(), true);
        reloaded_tx.send(()).unwrap();
        let pinned_generation = batch.join().unwrap();
        assert!(m.generation_id() > pinned_generation);
    });
    // The closure is over: the next batch (and call) runs on version 2, and version 1
    // is unloaded, so the pin was released.
    assert_eq!(m.pinned(|p| p.call(version, ()).unwrap()), "v2");
    assert!(m.collect(Duration::from_secs(10)), "version 1 unloaded");
}

#[test]
fn batches_on_many_threads_each_see_one_version_during_reloads() {
    let (dir, m) = probe_v1();
    let version = m.func::<(), String>("probe", "version_text").unwrap();
    let add_one = m.func::<u64, u64>("probe", "add_one").unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                let mut batches = 0u64;
                // At least a few batches per thread, and on until the reloads are done.
                while batches < 20 || !stop.load(Ordering::Relaxed) {
                    m.pinned(|p| {
                        let first = p.call(&version, ()).unwrap();
                        for x in 0..200u64 {
                            assert_eq!(p.call(&add_one, x).unwrap(), x + 1);
                            if x % 50 == 0 {
                                assert_eq!(
                                    p.call(&version, ()).unwrap(),
                                    first,
                                    "one version a batch"
                                );
                            }
                        }
                    });
                    batches += 1;
                }
            });
        }
        for i in 0..20 {
            swap_to(&m, dir.path(), i % 2 == 0);
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(
        m.collect(Duration::from_secs(20)),
        "every retired version unloaded"
    );
}

#[test]
fn handles_made_inside_a_batch_and_handles_of_another_manager_are_answered_safely() {
    let (_dir, m) = probe_v1();
    let (_other_dir, other) = probe_v1();
    let theirs = other.func::<u64, u64>("probe", "add_one").unwrap();
    let answers = m.pinned(|p| {
        // A handle of another manager runs on that manager's own generation.
        assert_eq!(p.call(&theirs, 1).unwrap(), 2);
        // A handle made after the pin: the pinned generation's table predates it, so
        // the call is refused (not run through a slot that does not exist).
        let late: Func<(&str, u32), String> = m.func("probe", "repeat").unwrap();
        let refused = p.call(&late, ("ab", 2));
        assert!(
            matches!(refused, Err(CallError::UnknownPlugin(_))),
            "{refused:?}"
        );
        late
    });
    // After the batch, the same handle works.
    assert_eq!(answers.call(("ab", 2)).unwrap(), "abab");
    assert_eq!(m.pinned(|p| p.call(&answers, ("c", 3)).unwrap()), "ccc");
}

#[test]
fn a_panic_in_a_batch_releases_the_pin() {
    let (dir, m) = probe_v1();
    let version = m.func::<(), String>("probe", "version_text").unwrap();
    for _ in 0..3 {
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            m.pinned(|p| {
                assert_eq!(p.call(&version, ()).unwrap(), "v1");
                panic!("the caller's own panic");
            })
        }));
        assert!(caught.is_err());
    }
    swap_to(&m, dir.path(), true);
    assert!(
        m.collect(Duration::from_secs(10)),
        "version 1 unloaded: no pin left behind"
    );
    assert_eq!(m.pinned(|p| p.call(&version, ()).unwrap()), "v2");
}
