//! trine's middle: imports alpha's `Stage`, exports its own that adds 10 to alpha's.
//!
//! Exports are collected before imports are bound (Go hotswap's order: Export, Import,
//! OnLoad), so the exported stage shares a cell with the instance, filled in `on_load`.

use abi_stable::{sabi_trait::TD_Opaque, std_types::RString};
use hotswap_plugin_api::{export_plugin, Export, Import, Imported, Imports, Plugin, Result, Value};
use std::sync::{Arc, OnceLock};
use trine_api::{Stage, StageObj};

type AlphaCell = Arc<OnceLock<Imported<StageObj>>>;

#[derive(Default)]
struct Beta {
    alpha: AlphaCell,
}

struct AddTen {
    alpha: AlphaCell,
}

impl Stage for AddTen {
    fn apply(&self, x: i64) -> i64 {
        // Bound before any dependent's on_load can call us; never panic across the ABI.
        self.alpha.get().map_or(i64::MIN, |a| a.apply(x) + 10)
    }
    fn describe(&self) -> RString {
        match self.alpha.get() {
            Some(a) => format!("beta (+10) <- {}", a.describe()).into(),
            None => "beta (unbound)".into(),
        }
    }
}

impl Plugin for Beta {
    fn export(&self) -> Option<Export> {
        let stage = AddTen {
            alpha: self.alpha.clone(),
        };
        Some(Export::new(StageObj::from_value(stage, TD_Opaque)))
    }

    fn import(&self) -> Vec<Import> {
        vec![Import::plugin("alpha")
            .version("^0.1")
            .of_type::<StageObj>()]
    }

    fn on_load(&mut self, _data: &Value, imports: &Imports) -> Result<()> {
        let alpha = imports.get::<StageObj>("alpha")?;
        let _ = self.alpha.set(alpha);
        Ok(())
    }
}

export_plugin!(Beta);
