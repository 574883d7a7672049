//! Async plugin functions (`export_plugin!(.., async { .. })`), awaited from a real
//! tokio runtime: futures started before a reload finish on the old version, which
//! stays in status until they complete (or are dropped) and then unloads (checked in
//! /proc/self/maps); no call fails during reloads; a panic in a poll is a `CallError`;
//! the host's timer and background futures work without a runtime; a non-async
//! function asked for as async is refused in one line; a future that completes at
//! once (run inside `call`) holds nothing of its version; a background task that runs
//! until `retired()` turns true lets every replaced version unload.
//!
//! Every wait here is on a condition (a DataBag gate the test opens, a future's
//! completion), never on time.

mod common;

use common::{build, clear, install, plugin_dir, Build};
use hotswap_host::{
    maps, AsyncFunc, CallError, Func, PluginManager, SignaturePart, Value, VersionState,
};
use probe_api::{Answer, Job};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

const AWAITER: &str = "tests/plugins/awaiter";

fn swap_to(dir: &Path, b: &Build) {
    clear(dir);
    install(b, dir);
}

fn job(id: u64, gate: &str, text: &str) -> Job {
    Job {
        id,
        gate: gate.into(),
        text: text.into(),
    }
}

fn loaded(b: &Build) -> (tempfile::TempDir, PluginManager) {
    let dir = plugin_dir();
    swap_to(dir.path(), b);
    let m = PluginManager::new(dir.path()).unwrap();
    m.load_plugins(&Value::Null).unwrap();
    (dir, m)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap()
}

/// The versions of `awaiter` in status: (id, draining?).
fn awaiter_versions(m: &PluginManager) -> Vec<(u64, VersionState)> {
    m.status()
        .versions
        .into_iter()
        .filter(|v| v.plugin == "awaiter")
        .map(|v| (v.id, v.state))
        .collect()
}

fn current_id(m: &PluginManager) -> u64 {
    m.with_generation(|g| g.find("awaiter").unwrap().id())
}

#[test]
fn futures_started_before_a_reload_finish_on_the_old_version_which_unloads_after() {
    let (v1, v2) = (build(AWAITER, &[]), build(AWAITER, &["v2"]));
    let (dir, m) = loaded(&v1);
    let handle: AsyncFunc<Job, Answer> = m.async_func("awaiter", "handle").unwrap();
    let rt = runtime();
    let old_id = current_id(&m);

    // Started (the plugin made each future) before the reload; they wait for a gate.
    let before: Vec<_> = (0..64)
        .map(|i| {
            let call = handle.call(job(i, "gate.old", &format!("job{i}")));
            assert_eq!(call.version_id(), Some(old_id));
            rt.spawn(call)
        })
        .collect();

    swap_to(dir.path(), &v2);
    m.reload(&Value::Null).unwrap();
    let new_id = current_id(&m);
    assert_ne!(new_id, old_id);
    let after: Vec<_> = (0..64)
        .map(|i| {
            let call = handle.call(job(100 + i, "gate.new", &format!("job{}", 100 + i)));
            assert_eq!(call.version_id(), Some(new_id));
            rt.spawn(call)
        })
        .collect();

    // The old version is drained by nothing but the pending futures: it stays.
    assert!(m.collect(Duration::from_secs(60)));
    let versions = awaiter_versions(&m);
    assert!(
        versions
            .iter()
            .any(|(id, s)| *id == old_id && matches!(s, VersionState::Draining { .. })),
        "the old version stays while its futures are pending: {versions:?}"
    );
    assert_eq!(maps::mapped_under(m.private_dir()).len(), 2);

    // Open the old gate: the old futures complete, on the old code.
    m.vault().set("gate.old", Value::Bool(true));
    for (i, t) in before.into_iter().enumerate() {
        let answer = rt.block_on(t).unwrap().expect("no call fails");
        assert_eq!(
            answer,
            Answer {
                id: i as u64,
                version: 1,
                text: format!("v1:job{i}").into()
            }
        );
    }
    // Nothing holds the old version any more: it is freed and its file unmapped.
    assert!(m.collect(Duration::from_secs(60)));
    let versions = awaiter_versions(&m);
    assert_eq!(
        versions.len(),
        1,
        "only the new version is left: {versions:?}"
    );
    assert_eq!(versions[0].0, new_id);
    assert_eq!(
        maps::mapped_under(m.private_dir()).len(),
        1,
        "the old version's file is unmapped"
    );

    m.vault().set("gate.new", Value::Bool(true));
    for (i, t) in after.into_iter().enumerate() {
        let answer = rt.block_on(t).unwrap().expect("no call fails");
        assert_eq!(answer.version, 2);
        assert_eq!(answer.id, 100 + i as u64);
        assert_eq!(answer.text.as_str(), format!("v2:job{}", 100 + i));
    }
}

/// Polls a future once with a waker that does nothing.
fn poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    Pin::new(f).poll(&mut Context::from_waker(&waker))
}

#[test]
fn a_dropped_pending_future_frees_its_version() {
    let (v1, v2) = (build(AWAITER, &[]), build(AWAITER, &["v2"]));
    let (dir, m) = loaded(&v1);
    let handle: AsyncFunc<Job, Answer> = m.async_func("awaiter", "handle").unwrap();
    let old_id = current_id(&m);
    // Pending: it waits for a gate nobody opens, and holds a timer entry (a waker made
    // in the plugin) after this poll.
    let mut call = handle.call(job(1, "gate.never", "x"));
    assert!(poll_once(&mut call).is_pending());
    assert!(poll_once(&mut call).is_pending());

    swap_to(dir.path(), &v2);
    m.reload(&Value::Null).unwrap();
    assert!(m.collect(Duration::from_secs(60)));
    assert!(awaiter_versions(&m).iter().any(|(id, _)| *id == old_id));

    drop(call);
    assert!(m.collect(Duration::from_secs(60)));
    let versions = awaiter_versions(&m);
    assert_eq!(
        versions.len(),
        1,
        "the dropped future freed it: {versions:?}"
    );
    assert_ne!(versions[0].0, old_id);
    assert_eq!(maps::mapped_under(m.private_dir()).len(), 1);
}

#[test]
fn a_future_ready_at_once_holds_nothing_of_its_version() {
    let (v1, v2) = (build(AWAITER, &[]), build(AWAITER, &["v2"]));
    let (dir, m) = loaded(&v1);
    let ready: AsyncFunc<u64, u64> = m.async_func("awaiter", "ready").unwrap();
    let old_id = current_id(&m);
    // Made, and run to completion inside `call`, on the old version; never polled yet.
    let calls: Vec<_> = (0..100).map(|i| ready.call(i)).collect();
    assert!(calls.iter().all(|c| c.version_id() == Some(old_id)));

    swap_to(dir.path(), &v2);
    m.reload(&Value::Null).unwrap();
    // Nothing holds the old version: it unloads with the futures still unawaited.
    assert!(m.collect(Duration::from_secs(60)));
    let versions = awaiter_versions(&m);
    assert_eq!(
        versions.len(),
        1,
        "only the new version is left: {versions:?}"
    );
    assert_ne!(versions[0].0, old_id);
    assert_eq!(maps::mapped_under(m.private_dir()).len(), 1);
    // Their outputs are the host's, read after the library that made them is gone.
    for (i, mut call) in calls.into_iter().enumerate() {
        match poll_once(&mut call) {
            Poll::Ready(Ok(n)) => assert_eq!(n, i as u64 + 1),
            other => panic!(
                "call {i}: {:?}",
                other.map(|r| r.map_err(|e| e.to_string()))
            ),
        }
        assert_eq!(call.version_id(), None, "its output was taken");
    }
}

#[test]
fn no_async_call_fails_during_reloads_and_each_runs_on_the_version_it_started_on() {
    let (v1, v2) = (build(AWAITER, &[]), build(AWAITER, &["v2"]));
    let (dir, m) = loaded(&v1);
    let m = Arc::new(m);
    let handle: AsyncFunc<Job, Answer> = m.async_func("awaiter", "handle").unwrap();
    let ready: AsyncFunc<u64, u64> = m.async_func("awaiter", "ready").unwrap();
    let rt = runtime();
    const TASKS: u64 = 8;
    const CALLS: u64 = 150;
    const RELOADS: u32 = 40;
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
    // The calls and the reloads overlap by construction, not by timing: the reloader
    // starts once calls have been made, and the tasks go on calling until it is done.
    let (calls, reloads) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU32::new(0)));
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (handle, ready) = (handle.clone(), ready.clone());
            let (calls, reloads) = (calls.clone(), reloads.clone());
            rt.spawn(async move {
                // (version id at start, version that answered) of every call.
                let mut seen = Vec::new();
                let mut i = 0;
                loop {
                    // The last call starts after the last reload (on the final version).
                    let last = i >= CALLS && reloads.load(SeqCst) == RELOADS;
                    let call = handle.call(job(t * 100_000 + i, "", "c"));
                    let started_on = call.version_id().expect("the call started");
                    let answer = call.await.expect("no call fails during a reload");
                    assert_eq!(answer.id, t * 100_000 + i);
                    assert_eq!(answer.text.as_str(), format!("v{}:c", answer.version));
                    seen.push((started_on, answer.version));
                    assert_eq!(ready.call(i).await.expect("no call fails"), i + 1);
                    calls.fetch_add(1, SeqCst);
                    i += 1;
                    if last {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                seen
            })
        })
        .collect();
    // Reload, alternating the builds, while the calls run.
    let reloader = {
        let (m, dir) = (m.clone(), dir.path().to_owned());
        let (calls, reloads) = (calls.clone(), reloads.clone());
        std::thread::spawn(move || {
            while calls.load(SeqCst) == 0 {
                std::thread::yield_now();
            }
            for n in 0..RELOADS {
                swap_to(&dir, if n.is_multiple_of(2) { &v2 } else { &v1 });
                m.reload(&Value::Null).expect("reload");
                reloads.fetch_add(1, SeqCst);
            }
        })
    };
    let mut by_version = std::collections::HashMap::new();
    for t in tasks {
        for (id, version) in rt.block_on(t).unwrap() {
            // A version id always answers with the same build: the one it started on.
            assert_eq!(*by_version.entry(id).or_insert(version), version);
        }
    }
    reloader.join().unwrap();
    // Calls ran before the first reload and after the last: on two versions at least.
    assert!(
        by_version.len() >= 2,
        "calls overlapped the reloads: {by_version:?}"
    );
    assert!(m.collect(Duration::from_secs(60)));
    assert_eq!(awaiter_versions(&m).len(), 1, "every old version unloaded");
    assert_eq!(maps::mapped_under(m.private_dir()).len(), 1);
}

#[test]
fn a_panic_in_a_poll_is_a_call_error() {
    let (_dir, m) = loaded(&build(AWAITER, &[]));
    let explode: AsyncFunc<u64, u64> = m.async_func("awaiter", "explode").unwrap();
    let rt = runtime();
    match rt.block_on(explode.call(7)) {
        Err(CallError::Panicked {
            plugin,
            function,
            message,
            ..
        }) => {
            assert_eq!((plugin.as_str(), function.as_str()), ("awaiter", "explode"));
            assert!(message.contains("exploded after a sleep: 7"), "{message}");
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
    // The plugin and the host carry on.
    assert_eq!(rt.block_on(explode.call(0)).unwrap(), 0);
}

/// Polls `f` to completion on this thread, with no runtime anywhere.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let mut f = std::pin::pin!(f);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn the_timer_and_background_futures_need_no_runtime_and_keep_their_version() {
    let (v1, v2) = (build(AWAITER, &[]), build(AWAITER, &["v2"]));
    let (dir, m) = loaded(&v1);
    // A sleep on the host's timer, awaited without tokio.
    let explode: AsyncFunc<u64, u64> = m.async_func("awaiter", "explode").unwrap();
    assert_eq!(block_on(explode.call(0)).unwrap(), 0);

    let background: AsyncFunc<Job, Result<u64, String>> =
        m.async_func("awaiter", "background").unwrap();
    let old_id = current_id(&m);
    assert_eq!(
        block_on(background.call(job(5, "bg.gate", "bg.done"))).unwrap(),
        Ok(5)
    );
    // The background future runs on a host thread, counted as a task of its version,
    // which it keeps loaded across a reload.
    swap_to(dir.path(), &v2);
    m.reload(&Value::Null).unwrap();
    assert!(m.collect(Duration::from_secs(60)));
    let versions = awaiter_versions(&m);
    assert!(
        versions
            .iter()
            .any(|(id, s)| *id == old_id && *s == VersionState::Draining { tasks: 1 }),
        "{versions:?}"
    );
    m.vault().set("bg.gate", Value::Bool(true));
    // The task writes its mark, ends, and lets the version go.
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    while awaiter_versions(&m).len() > 1 {
        assert!(m.collect(Duration::from_secs(60)));
        assert!(
            std::time::Instant::now() < give_up,
            "the background task never ended"
        );
        std::thread::yield_now();
    }
    assert_eq!(m.vault().get("bg.done"), Some(Value::Bool(true)));
    assert_eq!(maps::mapped_under(m.private_dir()).len(), 1);
}

/// The README's pattern for long-running background work: a `spawn_async` ticker
/// looping `while !retired()`. Each of 20 versions starts one; once a reload replaced
/// it, `retired()` turns true, the ticker ends and its version unloads (without the
/// host's `retired`, every one stayed `Draining { tasks: 1 }` for good: its `on_free`
/// runs only after its last task ended).
#[test]
fn tickers_end_once_their_version_is_retired_and_every_retired_version_unloads() {
    const RELOADS: u64 = 20;
    let (v1, v2) = (build(AWAITER, &[]), build(AWAITER, &["v2"]));
    let (dir, m) = loaded(&v1);
    let ticker: Func<u64, u64> = m.func("awaiter", "ticker").unwrap();
    let mut retired_ids = Vec::new();
    for i in 0..RELOADS {
        retired_ids.push(current_id(&m));
        assert_eq!(
            ticker.call(i).unwrap(),
            1,
            "a current version is not retired"
        );
        swap_to(dir.path(), if i % 2 == 0 { &v2 } else { &v1 });
        m.reload(&Value::Null).unwrap();
    }
    // The newest version starts one too: it must keep running, its version current.
    assert_eq!(ticker.call(RELOADS).unwrap(), 1);
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(m.collect(Duration::from_secs(60)));
        let versions = awaiter_versions(&m);
        if versions.len() == 1 {
            assert_eq!(versions[0].1, VersionState::Current, "{versions:?}");
            assert!(!retired_ids.contains(&versions[0].0), "{versions:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "retired versions never unloaded: {versions:?}"
        );
        std::thread::yield_now();
    }
    for i in 0..RELOADS {
        assert_eq!(
            m.vault().get(&format!("ticker.{i}.ended")),
            Some(Value::Bool(true)),
            "ticker {i} ended"
        );
    }
    assert_eq!(m.vault().get(&format!("ticker.{RELOADS}.ended")), None);
    assert_eq!(maps::mapped_under(m.private_dir()).len(), 1);
}

#[test]
fn a_task_started_by_a_version_whose_reload_failed_ends_and_the_version_unloads() {
    let (dir, m) = loaded(&build(AWAITER, &[]));
    let current = current_id(&m);
    let failing = build(AWAITER, &["ticker-then-fail"]);
    for round in 0..5 {
        swap_to(dir.path(), &failing);
        let e = m.reload(&Value::Null).unwrap_err();
        assert!(e.to_string().contains("on purpose"), "round {round}: {e}");
        assert_eq!(current_id(&m), current, "the old version keeps serving");
    }
    // Each failed version's ticker learns it was retired (it was never published), ends,
    // and lets the version be freed and unloaded.
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(m.collect(Duration::from_secs(60)));
        let versions = awaiter_versions(&m);
        if versions.len() == 1 {
            assert_eq!(versions[0], (current, VersionState::Current));
            break;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "failed versions never unloaded: {versions:?}"
        );
        std::thread::yield_now();
    }
    assert_eq!(maps::mapped_under(m.private_dir()).len(), 1);
}

#[test]
fn a_plugin_may_not_install_a_signal_handler_that_would_outlive_it() {
    let (v1, v2) = (build(AWAITER, &[]), build(AWAITER, &["v2"]));
    let (dir, m) = loaded(&v1);
    let register: Func<(), u64> = m.func("awaiter", "signal_handler").unwrap();
    // Before, each version's handler stayed installed after its library was unloaded
    // (and the next version's chained to it): the next SIGUSR1 ran unmapped code.
    for round in 0..4 {
        assert_eq!(register.call(()).unwrap(), 0, "round {round}: refused");
        swap_to(dir.path(), if round % 2 == 0 { &v2 } else { &v1 });
        m.reload(&Value::Null).unwrap();
        assert!(m.collect(Duration::from_secs(30)));
    }
    assert_eq!(register.call(()).unwrap(), 0);
    assert_eq!(maps::mapped_under(m.private_dir()).len(), 1);
}

#[test]
fn a_function_that_is_not_async_is_refused_in_one_line() {
    let (_dir, m) = loaded(&build(AWAITER, &[]));
    let e = m
        .async_func::<u64, u64>("awaiter", "plain")
        .err()
        .expect("a typed function is not async");
    match &e {
        CallError::Signature { mismatch, .. } => assert_eq!(mismatch.part, SignaturePart::Result),
        other => panic!("expected a signature mismatch, got {other:?}"),
    }
    let line = e.to_string();
    assert!(!line.contains('\n'), "{line}");
    assert!(line.contains("plain"), "{line}");
    // And an async one asked for as a typed function.
    let e = m.func::<u64, u64>("awaiter", "ready").err().unwrap();
    assert!(matches!(e, CallError::Signature { .. }), "{e}");
    // A wrong argument type.
    let e = m.async_func::<u32, u64>("awaiter", "ready").err().unwrap();
    match &e {
        CallError::Signature { mismatch, .. } => {
            assert_eq!(mismatch.part, SignaturePart::Argument)
        }
        other => panic!("expected a signature mismatch, got {other:?}"),
    }
}
