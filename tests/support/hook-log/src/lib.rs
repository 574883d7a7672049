//! The hook log of the test plugins (`tests/plugins/probe`, `provider`, `consumer`):
//! when the load data has a `log` path, each hook a plugin runs appends
//! `<who>:<hook>` to that file, and the tests read the order back.

use hotswap_plugin_api::Value;
use std::io::Write;
use std::path::PathBuf;

/// Where one plugin instance logs its hooks; logs nothing until [`HookLog::open`] found
/// a path.
#[derive(Debug, Default)]
pub struct HookLog {
    path: Option<PathBuf>,
}

impl HookLog {
    /// The log named by the `log` key of `data` (the load data `on_load` receives);
    /// one that logs nothing if there is none.
    pub fn open(data: &Value) -> HookLog {
        HookLog {
            path: data.get("log").and_then(Value::as_str).map(PathBuf::from),
        }
    }

    /// Appends `<who>:<hook>`, as one write, so lines of concurrent writers stay whole.
    ///
    /// # Panics
    /// If the log cannot be opened or written: a test that asked for a log must not
    /// pass without it.
    pub fn record(&self, who: &str, hook: &str) {
        let Some(path) = &self.path else {
            return;
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open hook log {}: {e}", path.display()));
        f.write_all(format!("{who}:{hook}\n").as_bytes())
            .unwrap_or_else(|e| panic!("write hook log {}: {e}", path.display()));
    }
}
