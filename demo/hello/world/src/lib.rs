//! The hello demo's plugin. One source, two versions: the `v2` feature changes the answer.

use hotswap_plugin_api::{export_plugin, Error, Imports, Plugin, Result, Value};

const VERSION: &str = if cfg!(feature = "v2") { "v2" } else { "v1" };

#[derive(Default)]
struct World {
    greeting: String,
}

impl Plugin for World {
    fn on_load(&mut self, data: &Value, _imports: &Imports) -> Result<()> {
        // The host may pass a custom greeting word in the load data.
        let word = data
            .get("greeting")
            .and_then(Value::as_str)
            .unwrap_or("hello");
        self.greeting = format!("{word} from {VERSION}");
        Ok(())
    }

    fn invoke_func(&self, name: &str, args: &[Value]) -> Result<Value> {
        match name {
            "greet" => Ok(Value::from(self.greeting.as_str())),
            "version" => Ok(Value::from(VERSION)),
            "echo" => Ok(Value::List(args.iter().cloned().collect())),
            _ => Err(Error::unknown_function(name)),
        }
    }
}

impl World {
    fn version_number(&self, _: ()) -> u32 {
        if cfg!(feature = "v2") {
            2
        } else {
            1
        }
    }
}

export_plugin!(World, typed { version_number: fn(()) -> u32 });
