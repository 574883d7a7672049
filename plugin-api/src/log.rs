//! Plugin logs: `tracing` events emitted by plugin code reach the host's subscriber with
//! their own fields as fields, target `hotswap::plugin::<plugin name>`, and fields
//! `plugin`, `version` and `plugin_target`.
//!
//! Every cdylib carries its own copy of `tracing`, with its own (empty) global
//! dispatcher, so the plugin's events would vanish. When the host creates the plugin,
//! this module installs, in the plugin's copy, a global subscriber that forwards each
//! event across the ABI to the host (`HostVTable::log`), which re-emits it in the host's
//! `tracing` with the plugin's name and version attached.
//!
//! Only a global default is installed, never a scoped one: tracing-core then never
//! touches its thread-local state, whose destructor would make glibc keep this library
//! mapped while the calling thread lives.

use crate::vtable::HostHandle;
use std::fmt::Write;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

struct Bridge {
    host: HostHandle,
    max: tracing::level_filters::LevelFilter,
}

fn level_number(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// An event's message, and its other fields as a JSON object (`{"name": value, …}`)
/// with numbers, booleans and strings kept as such (anything else as its `Debug` text),
/// for the host to re-emit as fields of their own. Written by hand: a JSON crate in
/// every plugin for this is not worth its size.
#[derive(Default)]
struct Fields {
    message: String,
    json: String,
}

/// What starts the structured fields string; the host's `plugin_log.rs` reads it (an
/// older plugin sends `name=value` pairs, which never start with it).
const FIELDS_MARK: char = '\u{1e}';

impl Fields {
    fn key(&mut self, field: &Field) {
        if self.json.is_empty() {
            self.json.push(FIELDS_MARK);
            self.json.push('{');
        } else {
            self.json.push(',');
        }
        json_string(&mut self.json, field.name());
        self.json.push(':');
    }

    /// The fields string sent to the host: empty when the event has no other field.
    fn finish(mut self) -> (String, String) {
        if !self.json.is_empty() {
            self.json.push('}');
        }
        (self.message, self.json)
    }
}

/// Appends `s` as a JSON string.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Visit for Fields {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.json, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.json, "{value}");
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.key(field);
            let _ = write!(self.json, "{value:?}");
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        let _ = write!(self.json, "{value}");
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.key(field);
            json_string(&mut self.json, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.key(field);
            json_string(&mut self.json, &format!("{value:?}"));
        }
    }
}

impl Subscriber for Bridge {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.max >= *metadata.level()
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(self.max)
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        // Spans are not forwarded (yet): events carry the plugin and version instead.
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let (message, fields) = fields.finish();
        let meta = event.metadata();
        // SAFETY: the host's own context pointer and function, passed back unchanged.
        unsafe {
            (self.host.vtable.log)(
                self.host.ctx,
                level_number(meta.level()),
                meta.target().into(),
                message.as_str().into(),
                fields.as_str().into(),
            )
        }
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

/// Installs the bridge once per loaded file (the first instance's host handle).
#[cfg_attr(feature = "static", allow(dead_code))]
pub(crate) fn install(host: HostHandle) {
    // SAFETY: the host's own context pointer and function.
    let max = match unsafe { (host.vtable.max_log_level)(host.ctx) } {
        0 => tracing::level_filters::LevelFilter::OFF,
        1 => tracing::level_filters::LevelFilter::ERROR,
        2 => tracing::level_filters::LevelFilter::WARN,
        3 => tracing::level_filters::LevelFilter::INFO,
        4 => tracing::level_filters::LevelFilter::DEBUG,
        _ => tracing::level_filters::LevelFilter::TRACE,
    };
    // Fails only if already set (a second instance from the same file): keep the first.
    // tracing never frees what it allocates for a global default: in this library's own
    // memory, it goes with the library instead of staying on the heap (`forever`).
    let _ =
        crate::forever::capture(|| tracing::subscriber::set_global_default(Bridge { host, max }));
}
