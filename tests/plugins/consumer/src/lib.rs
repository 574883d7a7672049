//! Test consumer: imports `provider`'s `Stage`. Features make each dependency error:
//! `wrong-type` (imports it as a u64), `requires-v2` (semver ^2), `import-missing`
//! (imports a plugin that does not exist), `not-reloadable`.

use hotswap_plugin_api::{
    export_plugin, Error, Import, Imported, Imports, Plugin, Result, Value, Vault,
};
use trine_api::StageObj;

#[derive(Default)]
struct Consumer {
    log: hook_log::HookLog,
    provider: Option<Imported<StageObj>>,
}

impl Consumer {
    fn record(&self, hook: &str) {
        self.log.record("consumer", hook);
    }
}

impl Plugin for Consumer {
    fn reloadable(&self) -> bool {
        !cfg!(feature = "not-reloadable")
    }
    fn import(&self) -> Vec<Import> {
        let mut provider = Import::plugin("provider");
        provider = if cfg!(feature = "wrong-type") {
            provider.of_type::<u64>()
        } else {
            provider.of_type::<StageObj>()
        };
        if cfg!(feature = "requires-v2") {
            provider = provider.version("^2");
        } else {
            provider = provider.version("^0.1");
        }
        let mut imports = vec![provider];
        if cfg!(feature = "import-missing") {
            imports.push(Import::plugin("ghost"));
        }
        imports
    }
    fn on_load(&mut self, data: &Value, imports: &Imports) -> Result<()> {
        self.log = hook_log::HookLog::open(data);
        self.provider = Some(imports.get::<StageObj>("provider")?);
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
        let provider = self
            .provider
            .as_ref()
            .ok_or_else(|| Error::msg("unbound"))?;
        match name {
            // Asks the provider twice, with some work between: a call that starts on a
            // generation must see that generation's provider from start to end.
            "chain" => {
                let first = provider.apply(0);
                let mut spin = 0u64;
                for i in 0..2000u64 {
                    spin = std::hint::black_box(spin.wrapping_add(i));
                }
                let second = provider.apply(0);
                Ok(Value::from(vec![first, second]))
            }
            _ => Ok(Value::from(format!("consumer:{name}"))),
        }
    }
}

export_plugin!(Consumer);
