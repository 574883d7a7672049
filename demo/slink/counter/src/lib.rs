//! The slink demo's second plugin. Linked into one binary next to `world`, it shows that
//! two statically linked plugins do not collide, and that the vault and live functions
//! work as they do for loaded files: `add` keeps a running total in the vault's DataBag
//! (seeded by `on_init`), and the live function `live_total` reads it back.

use hotswap_plugin_api::{export_plugin, vault, Error, Plugin, Result, Value, Vault};

/// The DataBag key of the running total.
const TOTAL: &str = "counter.total";

#[derive(Default)]
struct Counter;

impl Plugin for Counter {
    fn on_init(&mut self, vault: &Vault) -> Result<()> {
        if vault.get(TOTAL).is_none() {
            vault.set(TOTAL, 0i64)?;
        }
        Ok(())
    }

    fn invoke_func(&self, name: &str, args: &[Value]) -> Result<Value> {
        match name {
            "add" => {
                let n = args.first().and_then(Value::as_int).unwrap_or(1);
                let vault = vault()?;
                let total = vault.get(TOTAL).and_then(|v| v.as_int()).unwrap_or(0) + n;
                vault.set(TOTAL, total)?;
                Ok(Value::from(total))
            }
            _ => Err(Error::unknown_function(name)),
        }
    }
}

impl Counter {
    /// A live function: called by name on whichever version is current.
    fn live_total(&self, _args: &[Value]) -> Result<Value> {
        Ok(vault()?.get(TOTAL).unwrap_or(Value::from(0i64)))
    }
}

export_plugin!(Counter, live { live_total });
