//! Test plugin. Cargo features pick the version (`v2`) and a lifecycle step that fails.
//! When the load data has a `log` path, every hook appends `<version>:<hook>` to it, so
//! tests can assert which hooks ran and in what order.

use hotswap_plugin_api::{export_plugin, Error, Import, Imports, Plugin, Result, Value, Vault};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const VERSION: &str = if cfg!(feature = "v2") { "v2" } else { "v1" };

struct Probe {
    log: Option<PathBuf>,
}

impl Default for Probe {
    fn default() -> Self {
        if cfg!(feature = "panic-new") {
            panic!("probe {VERSION} panicked in new");
        }
        Probe { log: None }
    }
}

impl Probe {
    fn record(&self, hook: &str) {
        if let Some(path) = &self.log {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("open hook log");
            writeln!(f, "{VERSION}:{hook}").expect("write hook log");
        }
    }

    fn add_one(&self, x: u64) -> u64 {
        x + 1
    }

    fn version_number(&self, _: ()) -> u32 {
        if cfg!(feature = "v2") {
            2
        } else {
            1
        }
    }

    fn divide(&self, pair: hotswap_plugin_api::abi_stable::std_types::Tuple2<i64, i64>) -> i64 {
        pair.0 / pair.1 // panics on division by zero: tests use that
    }
}

fn wait_for(path: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

impl Plugin for Probe {
    fn reloadable(&self) -> bool {
        !cfg!(feature = "not-reloadable")
    }

    fn import(&self) -> Vec<Import> {
        if cfg!(feature = "panic-import") {
            panic!("probe {VERSION} panicked in import");
        }
        Vec::new()
    }

    fn on_load(&mut self, data: &Value, _imports: &Imports) -> Result<()> {
        self.log = data.get("log").and_then(Value::as_str).map(PathBuf::from);
        self.record("on_load");
        if cfg!(feature = "fail-load") {
            return Err(Error::msg(format!("probe {VERSION} refuses to load")));
        }
        if cfg!(feature = "panic-load") {
            panic!("probe {VERSION} panicked in on_load");
        }
        Ok(())
    }

    fn on_init(&mut self, vault: &Vault) -> Result<()> {
        self.record(&format!("on_init@{}", vault.generation()));
        if cfg!(feature = "fail-init") {
            return Err(Error::msg(format!("probe {VERSION} refuses to init")));
        }
        if cfg!(feature = "panic-init") {
            panic!("probe {VERSION} panicked in on_init");
        }
        Ok(())
    }

    fn on_free(&mut self) {
        self.record("on_free");
    }

    fn invoke_func(&self, name: &str, args: &[Value]) -> Result<Value> {
        match name {
            "version" => Ok(Value::from(VERSION)),
            "add" => {
                let mut sum = 0i64;
                for a in args {
                    sum += a
                        .as_int()
                        .ok_or_else(|| Error::msg(format!("add takes ints, got {}", a.kind())))?;
                }
                Ok(Value::from(sum))
            }
            "long_string" => Ok(Value::from(format!("{VERSION}:").repeat(1000))),
            "wait_for_file" => {
                let path = args
                    .first()
                    .and_then(Value::as_str)
                    .ok_or_else(|| Error::msg("wait_for_file takes a path"))?;
                if !wait_for(Path::new(path), Duration::from_secs(60)) {
                    return Err(Error::msg(format!("{path} never appeared")));
                }
                Ok(Value::from(VERSION))
            }
            "spawn_wait_for_file" => {
                let path = PathBuf::from(
                    args.first()
                        .and_then(Value::as_str)
                        .ok_or_else(|| Error::msg("spawn_wait_for_file takes a path"))?,
                );
                let done = path.with_extension("done");
                hotswap_plugin_api::spawn("probe-waiter", move || {
                    wait_for(&path, Duration::from_secs(60));
                    let _ = std::fs::write(&done, VERSION);
                })?;
                Ok(Value::Null)
            }
            "log" => {
                let word = args.first().and_then(Value::as_str).unwrap_or("hi");
                tracing::warn!(answer = 42, "probe {VERSION} says {word}");
                tracing::trace!("too verbose for most hosts");
                Ok(Value::Null)
            }
            "panic" => panic!("probe {VERSION} panicked on request"),
            "fail" => Err(Error::msg(format!("probe {VERSION} failed on request"))),
            _ => Err(Error::unknown_function(name)),
        }
    }
}

export_plugin!(Probe, typed {
    add_one: fn(u64) -> u64,
    version_number: fn(()) -> u32,
    divide: fn(hotswap_plugin_api::abi_stable::std_types::Tuple2<i64, i64>) -> i64,
});

/// A raw `extern "C"` function, found with dlsym: the benchmarks' baseline. Plugin
/// authors never write these; `export_plugin!`'s typed functions are the real path.
#[no_mangle]
pub extern "C" fn probe_raw_add_one(x: u64) -> u64 {
    x + 1
}
