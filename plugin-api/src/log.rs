//! Plugin logs: `tracing` events emitted by plugin code reach the host's subscriber with
//! fields `plugin` and `version`.
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

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
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
        let meta = event.metadata();
        // SAFETY: the host's own context pointer and function, passed back unchanged.
        unsafe {
            (self.host.vtable.log)(
                self.host.ctx,
                level_number(meta.level()),
                meta.target().into(),
                fields.message.as_str().into(),
                fields.rest.trim_start().into(),
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
