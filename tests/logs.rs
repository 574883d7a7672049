//! Plugin logs: a `tracing` event emitted inside a plugin reaches the host's subscriber
//! with the plugin's name and version, and logging does not pin the plugin in memory.

mod common;

use common::{build, clear, install, plugin_dir};
use hotswap_host::{maps, PluginManager, Value};
use serde_json::Value as Json;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A JSON subscriber writing to a buffer, filtered as `RUST_LOG=<filter>` would.
fn json_subscriber(filter: &str) -> (Buffer, impl tracing::Subscriber + Send + Sync) {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(move || writer.clone())
        .finish();
    (buffer, subscriber)
}

/// The JSON lines written so far.
fn lines(buffer: &Buffer) -> Vec<Json> {
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn with_message<'a>(lines: &'a [Json], message: &str) -> Option<&'a Json> {
    lines
        .iter()
        .find(|l| l["fields"]["message"].as_str() == Some(message))
}

#[test]
fn a_plugin_log_event_arrives_with_its_fields_target_plugin_and_version() {
    // One plugin selected by its target, the rest at info.
    let (buffer, subscriber) = json_subscriber("info,hotswap::plugin::probe=debug");
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let dir = plugin_dir();
    install(&build("tests/plugins/probe", &[]), dir.path());
    let m = PluginManager::new(dir.path()).unwrap();
    m.load_plugins(&Value::Null).unwrap();
    // From another thread too: the bridge is process-wide in the plugin.
    m.invoke_func("probe", "log", &[Value::from("hello")])
        .unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            m.invoke_func("probe", "log", &[Value::from("from a thread")])
                .unwrap()
        });
    });
    let all = lines(&buffer);
    let line = with_message(&all, "probe v1 says hello")
        .unwrap_or_else(|| panic!("the plugin's event did not reach the host: {all:#?}"));
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["target"], "hotswap::plugin::probe", "{line}");
    let fields = &line["fields"];
    // Real fields, typed as the plugin recorded them.
    assert_eq!(fields["answer"], 42, "{line}");
    assert_eq!(fields["ratio"], 0.5, "{line}");
    assert_eq!(fields["ok"], true, "{line}");
    assert_eq!(fields["word"], "hello", "{line}");
    assert_eq!(fields["detail"], "(\"a\", 1)", "{line}");
    assert_eq!(fields["plugin"], "probe", "{line}");
    assert_eq!(fields["version"], "0.1.0", "{line}");
    assert_eq!(fields["plugin_target"], "probe", "{line}");
    assert!(fields.get("fields").is_none(), "flattened: {line}");
    assert!(with_message(&all, "probe v1 says from a thread").is_some());
    // The per-plugin directive lets the debug event through; trace stays filtered.
    let debug = with_message(&all, "probe v1 detail").expect("the plugin's debug event");
    assert_eq!(debug["level"], "DEBUG");
    assert!(
        with_message(&all, "too verbose for most hosts").is_none(),
        "the host's level filter applies"
    );

    // A directive for another plugin does not select this one.
    let (other, subscriber) = json_subscriber("info,hotswap::plugin::other=trace");
    tracing::subscriber::with_default(subscriber, || {
        m.invoke_func("probe", "log", &[Value::from("again")])
            .unwrap();
    });
    let all = lines(&other);
    assert!(
        with_message(&all, "probe v1 says again").is_some(),
        "{all:#?}"
    );
    assert!(with_message(&all, "probe v1 detail").is_none(), "{all:#?}");

    // Logging registered no thread-local destructor: v1 still unloads.
    clear(dir.path());
    install(&build("tests/plugins/probe", &["v2"]), dir.path());
    m.reload(&Value::Null).unwrap();
    assert!(m.collect(Duration::from_secs(10)));
    assert_eq!(
        maps::mapped_under(m.private_dir()).len(),
        1,
        "the logging v1 was unmapped"
    );
}
