//! trine's top: imports beta's `Stage` and serves `run(x)` and `describe` to the host.

use hotswap_plugin_api::{export_plugin, Error, Import, Imported, Imports, Plugin, Result, Value};
use trine_api::StageObj;

#[derive(Default)]
struct Gamma {
    beta: Option<Imported<StageObj>>,
}

impl Gamma {
    fn beta(&self) -> Result<&Imported<StageObj>> {
        self.beta
            .as_ref()
            .ok_or_else(|| Error::msg("beta is not bound"))
    }
}

impl Plugin for Gamma {
    fn import(&self) -> Vec<Import> {
        vec![Import::plugin("beta").of_type::<StageObj>()]
    }

    fn on_load(&mut self, _data: &Value, imports: &Imports) -> Result<()> {
        self.beta = Some(imports.get::<StageObj>("beta")?);
        Ok(())
    }

    fn invoke_func(&self, name: &str, args: &[Value]) -> Result<Value> {
        match name {
            "run" => {
                let x = args
                    .first()
                    .and_then(Value::as_int)
                    .ok_or_else(|| Error::msg("run takes an int"))?;
                Ok(Value::from(self.beta()?.apply(x)))
            }
            "describe" => Ok(Value::from(format!("gamma <- {}", self.beta()?.describe()))),
            _ => Err(Error::unknown_function(name)),
        }
    }
}

export_plugin!(Gamma);
