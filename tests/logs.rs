//! Plugin logs: a `tracing` event emitted inside a plugin reaches the host's subscriber
//! with the plugin's name and version, and logging does not pin the plugin in memory.

mod common;

use common::{build, clear, install, plugin_dir};
use hotswap_host::{maps, PluginManager, Value};
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

#[test]
fn a_plugin_log_event_arrives_with_its_plugin_and_version() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
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
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("probe v1 says hello"))
        .unwrap_or_else(|| panic!("the plugin's event reached the host:\n{text}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("plugin=\"probe\"") || line.contains("plugin=probe"),
        "{line}"
    );
    assert!(
        line.contains("version=\"0.1.0\"") || line.contains("version=0.1.0"),
        "{line}"
    );
    assert!(line.contains("answer=42"), "{line}");
    assert!(text.contains("from a thread"));
    assert!(
        !text.contains("too verbose"),
        "the host's level filter applies"
    );

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
