//! trine's provider: exports a `Stage` that multiplies (by 2 in v1, by 3 in v2).

use abi_stable::{sabi_trait::TD_Opaque, std_types::RString};
use hotswap_plugin_api::{export_plugin, Export, Plugin};
use trine_api::{Stage, StageObj};

const VERSION: &str = if cfg!(feature = "v2") { "v2" } else { "v1" };
const FACTOR: i64 = if cfg!(feature = "v2") { 3 } else { 2 };

#[derive(Default)]
struct Alpha;

struct Multiply;

impl Stage for Multiply {
    fn apply(&self, x: i64) -> i64 {
        x * FACTOR
    }
    fn describe(&self) -> RString {
        format!("alpha {VERSION} (x{FACTOR})").into()
    }
}

impl Plugin for Alpha {
    fn export(&self) -> Option<Export> {
        Some(Export::new(StageObj::from_value(Multiply, TD_Opaque)))
    }
}

export_plugin!(Alpha);
