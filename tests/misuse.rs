//! Misuse of the host's safe API by host code: the largest durations, a subscriber
//! that panics or calls back into the manager, callbacks that panic, handles asked for
//! from inside a reload, static plugins in two managers. Each gets a clear outcome;
//! none is undefined behaviour, an abort, a dead host thread or a wedged reload.

mod common;

use common::{build, clear, install, plugin_dir};
use hotswap_host::{
    signals, CallError, Error, LoadErrorKind, PluginManager, Source, Trigger, Value, VersionState,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

const PROBE: &str = "tests/plugins/probe";

/// A subscriber of the tests' own: `on_event` runs on every event (`None` for the
/// rest of the `Subscriber` methods, which do nothing).
struct OnEvent<F>(F);

impl<F: Fn(&tracing::Event<'_>) + Send + Sync + 'static> tracing::Subscriber for OnEvent<F> {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        (self.0)(e)
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn subscriber(f: impl Fn(&tracing::Event<'_>) + Send + Sync + 'static) -> tracing::Dispatch {
    tracing::Dispatch::new(OnEvent(f))
}

fn is_plugin_event(e: &tracing::Event<'_>) -> bool {
    e.metadata().target().starts_with("hotswap::plugin")
}

/// The manager a subscriber calls back into, set once the manager exists.
type Slot = Arc<Mutex<Weak<PluginManager>>>;

fn upgrade(slot: &Slot) -> Option<Arc<PluginManager>> {
    slot.lock().unwrap().upgrade()
}

/// Waits (polling, with a deadline) until `done`; panics with `what` at the deadline.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "not within 60 s: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Swaps the probe in `dir` for a build with `features`.
fn put(dir: &std::path::Path, features: &[&str]) {
    clear(dir);
    install(&build(PROBE, features), dir);
}

#[test]
fn the_largest_durations_and_sampling_rates_are_accepted() {
    let dir = plugin_dir();
    install(&build(PROBE, &[]), dir.path());
    // "Never" for every duration, and a sampling rate beyond 2^31.
    let m = PluginManager::builder(dir.path())
        .hook_timeout(Duration::MAX)
        .free_delay(Duration::MAX)
        .call_metrics(true)
        .call_latency_sampling(u32::MAX)
        .build()
        .unwrap();
    m.load_plugins(&Value::Null).unwrap();
    let add = m.func::<u64, u64>("probe", "add_one").unwrap();
    for i in 0..100 {
        assert_eq!(add.call(i).unwrap(), i + 1);
    }
    let v1 = m.find_plugin("probe").unwrap().id;
    put(dir.path(), &["v2"]);
    m.reload_with_timeout(&Value::Null, Duration::MAX).unwrap();
    assert_eq!(
        m.invoke_func("probe", "version", &[]).unwrap(),
        Value::from("v2")
    );
    // v1 waits for a free delay that never ends: still drained, not freed, and the
    // reaper alive (it answers `collect`, with "not idle").
    assert!(!m.collect(Duration::from_millis(200)));
    let status = m.status();
    let old = status.versions.iter().find(|v| v.id == v1).unwrap();
    assert!(
        matches!(old.state, VersionState::Draining { .. }),
        "{:?}",
        old.state
    );
    put(dir.path(), &[]);
    m.reload(&Value::Null).unwrap();
    assert_eq!(add.call(1).unwrap(), 2);
}

#[test]
fn a_subscriber_that_panics_on_the_reapers_events_unloads_everything_all_the_same() {
    let dir = plugin_dir();
    install(&build(PROBE, &[]), dir.path());
    let panics = Arc::new(AtomicUsize::new(0));
    let seen = panics.clone();
    let m = PluginManager::builder(dir.path())
        .logger(subscriber(move |_| {
            let reaper = std::thread::current()
                .name()
                .is_some_and(|n| n == "hotswap-reaper" || n == "hotswap-free");
            if reaper {
                seen.fetch_add(1, Ordering::SeqCst);
                panic!("a subscriber bug, on the reaper's events");
            }
        }))
        .build()
        .unwrap();
    m.load_plugins(&Value::Null).unwrap();
    for (round, features) in [&["v2"][..], &[], &["v2"]].into_iter().enumerate() {
        let before = m.find_plugin("probe").unwrap().id;
        put(dir.path(), features);
        m.reload(&Value::Null).unwrap();
        assert!(m.collect(Duration::from_secs(60)), "round {round}");
        let status = m.status();
        let old = status.versions.iter().find(|v| v.id == before);
        assert!(old.is_none(), "round {round}: {old:?}");
        assert_eq!(
            hotswap_host::maps::mapped_under(m.private_dir()).len(),
            1,
            "round {round}: the old version is unmapped"
        );
    }
    assert!(
        panics.load(Ordering::SeqCst) >= 3,
        "the subscriber did panic"
    );
}

#[test]
fn a_subscriber_that_panics_or_reloads_on_a_plugins_event_is_no_abort() {
    let dir = plugin_dir();
    install(&build(PROBE, &[]), dir.path());
    let slot: Slot = Default::default();
    let (in_sub, reloads) = (slot.clone(), Arc::new(AtomicUsize::new(0)));
    let tried = reloads.clone();
    let dispatch = subscriber(move |e| {
        if !is_plugin_event(e) {
            return;
        }
        // Inside the plugin's call, inside the `extern "C"` log callback: a reload of
        // the same manager, then a panic. (The reload is inside this thread's own
        // dispatch, where `tracing` cannot set the manager's logger: it may panic too,
        // which is this subscriber's panic, caught at the callback likewise.)
        if let Some(m) = upgrade(&in_sub) {
            tried.fetch_add(1, Ordering::SeqCst);
            let _ = m.reload(&Value::Null);
        }
        panic!("a subscriber bug, on a plugin's event");
    });
    let m = Arc::new(
        PluginManager::builder(dir.path())
            .logger(dispatch.clone())
            .build()
            .unwrap(),
    );
    *slot.lock().unwrap() = Arc::downgrade(&m);
    m.load_plugins(&Value::Null).unwrap();
    // The caller's own thread dispatches to the same subscriber, as a host that makes
    // it its default would.
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..20 {
            let r = m.invoke_func("probe", "log", &[Value::from(format!("event {i}"))]);
            assert!(r.is_ok(), "{r:?}");
        }
    });
    // Each call logs more than one event.
    assert!(reloads.load(Ordering::SeqCst) >= 20);
    assert_eq!(
        m.func::<u64, u64>("probe", "add_one")
            .unwrap()
            .call(1)
            .unwrap(),
        2
    );
}

#[test]
fn a_reload_callback_or_extension_factory_that_panics_fails_the_reload_in_one_line() {
    let dir = plugin_dir();
    install(&build(PROBE, &[]), dir.path());
    let (callback, factory) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (c, f) = (callback.clone(), factory.clone());
    let m = PluginManager::builder(dir.path())
        .reload_callback(move |_, _| {
            if c.load(Ordering::SeqCst) {
                panic!("a callback bug");
            }
            Ok(())
        })
        .extension_newer(move || {
            if f.load(Ordering::SeqCst) {
                panic!("a factory bug");
            }
            7u64
        })
        .build()
        .unwrap();
    m.load_plugins(&Value::Null).unwrap();
    put(dir.path(), &["v2"]);
    for (flag, what, text) in [
        (&callback, "the reload callback", "a callback bug"),
        (&factory, "the extension factory", "a factory bug"),
    ] {
        flag.store(true, Ordering::SeqCst);
        let e = match m.reload(&Value::Null) {
            Err(Error::Load(e)) => e,
            other => panic!("{what}: expected a load error, got {other:?}"),
        };
        assert!(
            matches!(&e.kind, LoadErrorKind::CallbackPanic { what: w, message } if *w == what && message == text),
            "{e}"
        );
        let line = e.to_string();
        assert!(line.contains(&format!("{what} panicked: {text}")), "{line}");
        assert!(!line.contains('\n'), "{line}");
        // The old generation serves, untouched.
        assert_eq!(
            m.invoke_func("probe", "version", &[]).unwrap(),
            Value::from("v1")
        );
        flag.store(false, Ordering::SeqCst);
    }
    m.reload(&Value::Null).unwrap();
    assert_eq!(
        m.invoke_func("probe", "version", &[]).unwrap(),
        Value::from("v2")
    );
}

#[test]
fn a_reload_that_panics_under_sighup_is_a_failure_and_the_next_sighup_reloads() {
    let dir = plugin_dir();
    install(&build(PROBE, &[]), dir.path());
    // The manager's logger panics once, on the reload's first event: the panic leaves
    // `reload` (host code on the SIGHUP thread).
    let armed = Arc::new(AtomicBool::new(false));
    let fire = armed.clone();
    let m = Arc::new(
        PluginManager::builder(dir.path())
            .logger(subscriber(move |_| {
                if std::thread::current().name() == Some("hotswap-sighup")
                    && fire.swap(false, Ordering::SeqCst)
                {
                    panic!("a subscriber bug, once");
                }
            }))
            .build()
            .unwrap(),
    );
    m.load_plugins(&Value::Null).unwrap();
    let trigger = Trigger::new(m.clone());
    let _sighup = signals::reload_on_sighup(trigger.clone()).unwrap();
    put(dir.path(), &["v2"]);
    armed.store(true, Ordering::SeqCst);
    let hup = || {
        let me = rustix::process::getpid();
        rustix::process::kill_process(me, rustix::process::Signal::HUP).unwrap();
    };
    hup();
    wait_for("the first SIGHUP's reload", || {
        trigger.stats().duration_count == 1
    });
    let last = trigger.stats().last.unwrap();
    assert!(
        last.error
            .as_deref()
            .is_some_and(|e| e.contains("panicked")),
        "{last:?}"
    );
    assert_eq!(last.source, Source::Signal);
    assert_eq!(
        m.invoke_func("probe", "version", &[]).unwrap(),
        Value::from("v1")
    );
    // The SIGHUP thread lives on.
    hup();
    wait_for("the second SIGHUP's reload", || {
        trigger.stats().duration_count == 2
    });
    assert_eq!(
        m.invoke_func("probe", "version", &[]).unwrap(),
        Value::from("v2")
    );
}

#[test]
fn a_handle_asked_for_from_a_hooks_event_is_refused_at_once_not_a_hook_timeout() {
    let dir = plugin_dir();
    install(&build(PROBE, &[]), dir.path());
    let slot: Slot = Default::default();
    let answers: Arc<Mutex<Vec<String>>> = Default::default();
    let (in_sub, out) = (slot.clone(), answers.clone());
    let m = Arc::new(
        PluginManager::builder(dir.path())
            // Long enough that a wait for the reload lock would fail the test's reload.
            .hook_timeout(Duration::from_secs(300))
            .logger(subscriber(move |e| {
                if !is_plugin_event(e) {
                    return;
                }
                if let Some(m) = upgrade(&in_sub) {
                    let thread = std::thread::current().name().unwrap_or("").to_owned();
                    let r = m.func::<u64, u64>("probe", "add_one").map(|_| ());
                    out.lock().unwrap().push(format!("{thread}: {r:?}"));
                }
            }))
            .build()
            .unwrap(),
    );
    *slot.lock().unwrap() = Arc::downgrade(&m);
    m.load_plugins(&Value::Null).unwrap();
    put(dir.path(), &["v2", "log-load"]);
    let started = Instant::now();
    m.reload(&Value::Null).unwrap();
    assert!(started.elapsed() < Duration::from_secs(300));
    let answers = answers.lock().unwrap().clone();
    // The event came from on_load, on the reload's hook thread, under the manager's
    // logger; the handle it asked for would need the reload's own lock.
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(answers[0].contains("InReload"), "{answers:?}");
    assert_eq!(
        m.func::<u64, u64>("probe", "add_one")
            .unwrap()
            .call(2)
            .unwrap(),
        3
    );
}

#[test]
fn failed_lookups_are_not_kept() {
    let (_dir, m) = common::loaded(PROBE, &[]);
    let before = m.footprint().typed_symbols;
    for i in 0..2000 {
        let name = format!("missing_{i}");
        assert!(matches!(
            m.func::<u64, u64>("probe", &name),
            Err(CallError::UnknownFunction { .. })
        ));
        assert!(matches!(
            m.func::<u64, u64>(&name, "add_one"),
            Err(CallError::UnknownPlugin(_))
        ));
    }
    assert_eq!(m.footprint().typed_symbols, before);
    // A handle that resolves is kept, once.
    m.func::<u64, u64>("probe", "add_one").unwrap();
    m.func::<u64, u64>("probe", "add_one").unwrap();
    assert_eq!(m.footprint().typed_symbols, before + 1);
}

#[test]
fn inside_a_batch_load_plugins_twice_is_refused_and_collect_does_not_wait_for_itself() {
    let dir = plugin_dir();
    install(&build(PROBE, &[]), dir.path());
    let m = PluginManager::new(dir.path()).unwrap();
    let v2 = build(PROBE, &["v2"]);
    m.pinned(|_| {
        m.load_plugins(&Value::Null).unwrap();
        assert!(matches!(
            m.load_plugins(&Value::Null),
            Err(Error::AlreadyLoaded)
        ));
        clear(dir.path());
        install(&v2, dir.path());
        m.reload(&Value::Null).unwrap();
    });
    m.pinned(|_| {
        put(dir.path(), &[]);
        m.reload(&Value::Null).unwrap();
        // This thread pins the generation just replaced: it cannot be freed before
        // the batch ends, so `collect` says so at once, even with no deadline.
        assert!(!m.collect(Duration::MAX));
    });
    assert!(m.collect(Duration::from_secs(60)));
}
