//! The vault: a DataBag that outlives its writers, a host Extension made per
//! generation, live functions that run the current code, live data that survives a
//! reload (or fails with a named error when its type changed shape).

mod common;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RStr, RString};
use common::{build, clear, install, plugin_dir};
use hotswap_host::{maps, CallError, LiveData, PluginManager, Value};
use livex_api::{HostExt, HostExtObj};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const JOBS: &str = "demo/livex/jobs";

type Queue = Arc<Mutex<Vec<(u64, String, String)>>>;

/// The host's extension in these tests.
struct Ext {
    tag: u64,
    queue: Queue,
}

impl HostExt for Ext {
    fn generation_tag(&self) -> u64 {
        self.tag
    }
    fn schedule(&self, delay_ms: u64, func: RStr<'_>, payload: RStr<'_>) {
        self.queue
            .lock()
            .unwrap()
            .push((delay_ms, func.to_string(), payload.to_string()));
    }
    fn greet(&self, who: RStr<'_>) -> RString {
        format!("hello {who} from extension #{}", self.tag).into()
    }
}

fn manager(dir: &Path, made: Arc<AtomicU64>, queue: Queue) -> PluginManager {
    PluginManager::builder(dir)
        .extension_newer(move || {
            let tag = made.fetch_add(1, Ordering::SeqCst) + 1;
            HostExtObj::from_value(
                Ext {
                    tag,
                    queue: queue.clone(),
                },
                TD_Opaque,
            )
        })
        .call_metrics(true)
        .build()
        .unwrap()
}

fn serving(features: &[&str]) -> (tempfile::TempDir, PluginManager, Arc<AtomicU64>, Queue) {
    let dir = plugin_dir();
    install(&build(JOBS, features), dir.path());
    let made = Arc::new(AtomicU64::new(0));
    let queue = Queue::default();
    let m = manager(dir.path(), made.clone(), queue.clone());
    m.load_plugins(&Value::Null).unwrap();
    (dir, m, made, queue)
}

fn swap_to(m: &PluginManager, dir: &Path, features: &[&str]) {
    clear(dir);
    install(&build(JOBS, features), dir);
    m.reload(&Value::Null).unwrap();
}

fn text(v: Result<Value, CallError>) -> String {
    String::try_from(v.unwrap()).unwrap()
}

#[test]
fn a_databag_value_written_by_v1_is_read_by_v2_after_v1_is_unloaded() {
    let (dir, m, _, _) = serving(&[]);
    m.invoke_func(
        "jobs",
        "bag_set",
        &[Value::from("motto"), Value::from("written by v1")],
    )
    .unwrap();
    assert_eq!(m.vault().get("motto"), Some(Value::from("written by v1")));
    swap_to(&m, dir.path(), &["v2"]);
    assert!(m.collect(Duration::from_secs(10)));
    assert_eq!(
        maps::mapped_under(m.private_dir()).len(),
        1,
        "v1 is unloaded"
    );
    assert_eq!(m.vault().get("motto"), Some(Value::from("written by v1")));
    assert_eq!(
        text(m.invoke_func("jobs", "bag_get", &[Value::from("motto")])),
        "written by v1"
    );
    // The host writes too, and removing works both ways.
    m.vault().set("n", 5);
    assert_eq!(
        m.invoke_func("jobs", "bag_get", &[Value::from("n")])
            .unwrap(),
        Value::from(5)
    );
    m.invoke_func("jobs", "bag_set", &[Value::from("n"), Value::Null])
        .unwrap();
    assert_eq!(m.vault().get("n"), None);
    assert_eq!(m.vault().keys(), vec!["motto".to_owned()]);
}

#[test]
fn live_data_made_by_v1_runs_on_v2s_live_function_after_a_reload() {
    let (dir, m, _, _) = serving(&[]);
    let job = m
        .invoke_func(
            "jobs",
            "make_mail",
            &[Value::from("ann@example.org"), Value::from("hi")],
        )
        .unwrap();
    let data = LiveData::from_value(&job).unwrap();
    assert_eq!(data.type_name, "Live_Mail");
    assert_eq!(
        text(m.call_live("live_send_mail", std::slice::from_ref(&job))),
        "v1 sent \"hi\" to ann@example.org"
    );
    swap_to(&m, dir.path(), &["v2"]);
    assert!(m.collect(Duration::from_secs(10)));
    // The job's data was made by v1, which is gone; v2's code runs on it.
    assert_eq!(
        text(m.call_live("live_send_mail", std::slice::from_ref(&job))),
        "v2 sent \"hi\" to ann@example.org"
    );
    // Plugins call live functions by name too.
    assert_eq!(
        text(m.invoke_func("jobs", "call_live", &[Value::from("live_send_mail"), job])),
        "v2 sent \"hi\" to ann@example.org"
    );
    // Registered by attribute (`#[live]`), not by prefix:
    assert_eq!(text(m.call_live("whoami", &[])), "jobs v2");
    m.with_generation(|g| {
        assert_eq!(
            g.live_functions(),
            vec!["live_send_mail".to_owned(), "whoami".to_owned()]
        );
        assert_eq!(
            g.live_types(),
            vec![("Live_Mail".to_owned(), "jobs".to_owned())]
        );
    });
    assert_eq!(
        m.call_live("nope", &[]),
        Err(CallError::UnknownLive("nope".into()))
    );
    // Live calls are counted on the version that served them (v1's kept after its
    // unload), the one a plugin made through the host included; "nope" reached none.
    let live: u64 = m
        .call_metrics()
        .iter()
        .filter(|c| c.plugin == "jobs")
        .map(|c| c.live_calls)
        .sum();
    assert_eq!(live, 4);
}

#[test]
fn a_live_type_that_changed_shape_gives_a_named_error_or_migrates() {
    let (dir, m, _, _) = serving(&[]);
    let job = m
        .invoke_func(
            "jobs",
            "make_mail",
            &[Value::from("bo@example.org"), Value::from("old")],
        )
        .unwrap();
    swap_to(&m, dir.path(), &["new-shape"]);
    let e = m
        .call_live("live_send_mail", std::slice::from_ref(&job))
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("live data of type Live_Mail does not fit the current Live_Mail")
            && msg.contains("priority"),
        "{msg}"
    );
    swap_to(&m, dir.path(), &["migrate"]);
    assert_eq!(
        text(m.call_live("live_send_mail", &[job])),
        "v3 sent \"old\" to bo@example.org"
    );
}

#[test]
fn the_extension_factory_runs_once_per_generation_and_every_plugin_sees_the_new_one() {
    let (dir, m, made, queue) = serving(&[]);
    assert_eq!(made.load(Ordering::SeqCst), 1);
    assert_eq!(
        m.invoke_func("jobs", "ext_tag", &[]).unwrap(),
        Value::from(1)
    );
    assert_eq!(
        text(m.invoke_func("jobs", "ext_greet", &[Value::from("ann")])),
        "v1: hello ann from extension #1"
    );
    // An unchanged plugin, carried over, still sees the new generation's extension.
    let report = m.reload(&Value::Null).unwrap();
    assert_eq!(
        report.plugin("jobs").unwrap().outcome,
        hotswap_host::Outcome::Unchanged
    );
    assert_eq!(made.load(Ordering::SeqCst), 2);
    assert_eq!(
        m.invoke_func("jobs", "ext_tag", &[]).unwrap(),
        Value::from(2)
    );
    swap_to(&m, dir.path(), &["v2"]);
    assert_eq!(made.load(Ordering::SeqCst), 3);
    assert_eq!(
        text(m.invoke_func("jobs", "ext_greet", &[Value::from("bo")])),
        "v2: hello bo from extension #3"
    );
    m.with_generation(|g| assert!(g.extension::<HostExtObj>().is_some()));
    // Scheduling through the extension: the job fires on whatever version is current.
    m.invoke_func(
        "jobs",
        "schedule_mail",
        &[
            Value::from("cy@example.org"),
            Value::from("later"),
            Value::from(10),
        ],
    )
    .unwrap();
    let (delay, func, payload) = queue.lock().unwrap().pop().unwrap();
    assert_eq!((delay, func.as_str()), (10, "live_send_mail"));
    assert!(payload.starts_with("Live_Mail:"));
}

#[test]
fn hotswap_build_finds_live_functions_and_the_host_refuses_an_unregistered_one() {
    let jobs = build(JOBS, &[]);
    assert_eq!(
        jobs.manifest.live_functions,
        vec!["live_send_mail".to_owned()]
    );
    let dir = plugin_dir();
    common::install_with(&jobs, dir.path(), |m| {
        m.live_functions.push("live_forgotten".into())
    });
    let m = PluginManager::new(dir.path()).unwrap();
    let e = m.load_plugins(&Value::Null).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e.as_load().map(|l| &l.kind), Some(hotswap_host::LoadErrorKind::LiveNotRegistered { function, .. }) if function == "live_forgotten"),
        "{msg}"
    );
    assert!(
        msg.contains("export_plugin!(…, live { live_forgotten })"),
        "{msg}"
    );
}
