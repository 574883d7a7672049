//! Test provider: exports a `Stage` answering its version (1 or 2). Logs its hooks to
//! the `log` path of the load data. `import-consumer` makes a cycle.

use abi_stable::{sabi_trait::TD_Opaque, std_types::RString};
use hotswap_plugin_api::{export_plugin, Export, Import, Imports, Plugin, Result, Value, Vault};
use trine_api::{Stage, StageObj};

const VERSION: i64 = if cfg!(feature = "v2") { 2 } else { 1 };

#[derive(Default)]
struct Provider {
    log: hook_log::HookLog,
}

impl Provider {
    fn record(&self, hook: &str) {
        self.log.record("provider", hook);
    }
}

struct Answer;

/// What `panic-export-drop` exports instead of a `Stage` (plain data, dropped by the
/// glue's own `extern "C"` function rather than by an abi_stable vtable, which aborts
/// on a panic by design): it panics when it is dropped.
#[repr(C)]
#[derive(abi_stable::StableAbi)]
struct Fragile {
    version: i64,
}
hotswap_plugin_api::lendable!(Fragile { version });

impl Drop for Fragile {
    fn drop(&mut self) {
        panic!(
            "provider v{}: the export panicked as it was dropped",
            self.version
        );
    }
}

impl Stage for Answer {
    fn apply(&self, _x: i64) -> i64 {
        VERSION
    }
    fn describe(&self) -> RString {
        format!("provider v{VERSION}").into()
    }
}

impl Plugin for Provider {
    fn reloadable(&self) -> bool {
        !cfg!(feature = "not-reloadable")
    }
    fn export(&self) -> Option<Export> {
        if cfg!(feature = "panic-export-drop") {
            return Some(Export::new(Fragile { version: VERSION }));
        }
        Some(Export::new(StageObj::from_value(Answer, TD_Opaque)))
    }
    fn import(&self) -> Vec<Import> {
        if cfg!(feature = "import-consumer") {
            vec![Import::plugin("consumer")]
        } else {
            Vec::new()
        }
    }
    fn on_load(&mut self, data: &Value, _imports: &Imports) -> Result<()> {
        self.log = hook_log::HookLog::open(data);
        self.record("on_load");
        Ok(())
    }
    fn on_init(&mut self, _vault: &Vault) -> Result<()> {
        self.record("on_init");
        Ok(())
    }
    fn on_free(&mut self) {
        self.record("on_free");
    }
    fn invoke_func(&self, name: &str, _args: &[Value]) -> Result<Value> {
        Ok(Value::from(format!("provider:{name}")))
    }
}

export_plugin!(Provider);
