//! The greeter plugin: one typed function, `greet`, that the host calls. Two versions
//! from one source: the cargo feature `v2` changes the answer, so a reload shows.

use hotswap_plugin_api::{export_plugin, Plugin};

#[derive(Default)]
struct Greeter;

// Every lifecycle hook (`on_load`, `on_init`, `on_free`, ...) has a default.
impl Plugin for Greeter {}

impl Greeter {
    /// Answers one request. `&str` is lent by the host for the call only; the `String`
    /// is copied into the host before the call returns.
    fn greet(&self, name: &str) -> String {
        // Plugin logs reach the host's subscriber, tagged with plugin and version.
        tracing::debug!(name, "greeting");
        if cfg!(feature = "v2") {
            format!("Hi there, {name}! (v2)")
        } else {
            format!("Hello, {name}! (v1)")
        }
    }
}

export_plugin!(Greeter, typed { greet: fn(&str) -> String });
