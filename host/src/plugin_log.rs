//! Plugin log events re-emitted in the host's `tracing` with real fields.
//!
//! A plugin's bridge (`hotswap-plugin-api`'s `log.rs`) sends each event's fields as one
//! string: [`FIELDS_MARK`] then a JSON object of name → number, bool or string (an
//! older plugin sends `name=value` pairs, kept whole as a field `fields`). The host
//! re-emits the event with target `hotswap::plugin::<plugin name>` (so
//! `RUST_LOG=hotswap::plugin::pricing=debug` selects one plugin), fields `plugin`,
//! `version`, `plugin_target` (the plugin's own target) and the plugin's fields as
//! fields of their own, typed, so a JSON log pipeline can query them.
//!
//! `tracing` wants a `'static` callsite per set of field names. Those are made here on
//! first use, leaked, and cached by (level, plugin, field names), as `tracing-log` does
//! for `log` records but with real names. A plugin could vary its field names without
//! end, so the cache is bounded: at most [`MAX_CALLSITES`] callsites, [`MAX_FIELDS`]
//! fields of at most [`MAX_NAME`] bytes; an event beyond them is emitted on a fixed
//! callsite (target `hotswap::plugin`, its fields flattened into `fields`), never lost,
//! and host memory stays bounded whatever plugins send.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use tracing::callsite::{Callsite, Identifier};
use tracing::field::{Field, FieldSet, Value};
use tracing::metadata::Kind;
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata};

/// What starts a fields string in the structured form (ASCII record separator: never
/// the start of the older `name=value` form).
pub const FIELDS_MARK: char = '\u{1e}';

/// Most callsites made for plugin events, over the whole process.
pub(crate) const MAX_CALLSITES: usize = 1024;
/// Most plugin fields per event on a callsite of its own.
pub(crate) const MAX_FIELDS: usize = 32;
/// Longest field name on a callsite of its own, in bytes.
pub(crate) const MAX_NAME: usize = 64;

/// The fields every re-emitted event has, in this order.
const FIXED: [&str; 4] = ["message", "plugin", "version", "plugin_target"];
const SLOTS: usize = FIXED.len() + MAX_FIELDS;

/// One field value as the plugin sent it.
#[derive(Debug, Clone, PartialEq)]
enum FieldValue {
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Str(String),
}

impl FieldValue {
    fn as_value(&self) -> &dyn Value {
        match self {
            FieldValue::I64(v) => v,
            FieldValue::U64(v) => v,
            FieldValue::F64(v) => v,
            FieldValue::Bool(v) => v,
            FieldValue::Str(v) => v,
        }
    }
}

/// Reads a plugin's fields string: the structured form, or the older flat one as a
/// single field `fields`.
fn parse(fields: &str) -> Vec<(String, FieldValue)> {
    let Some(json) = fields.strip_prefix(FIELDS_MARK) else {
        return if fields.is_empty() {
            Vec::new()
        } else {
            vec![("fields".into(), FieldValue::Str(fields.into()))]
        };
    };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str(json) else {
        return vec![("fields".into(), FieldValue::Str(json.into()))];
    };
    map.into_iter()
        .map(|(name, v)| {
            let v = match v {
                serde_json::Value::Bool(b) => FieldValue::Bool(b),
                serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) => FieldValue::I64(i),
                    (_, Some(u), _) => FieldValue::U64(u),
                    (_, _, Some(f)) => FieldValue::F64(f),
                    _ => FieldValue::Str(n.to_string()),
                },
                serde_json::Value::String(s) => FieldValue::Str(s),
                other => FieldValue::Str(other.to_string()),
            };
            // A plugin field named like a fixed one would be shadowed: rename it.
            let name = if FIXED.contains(&name.as_str()) {
                format!("field.{name}")
            } else {
                name
            };
            (name, v)
        })
        .collect()
}

/// A callsite made at run time for one (level, plugin, field names).
struct DynCallsite {
    meta: OnceLock<Metadata<'static>>,
    /// 0 never, 1 sometimes, 2 always, as the dispatchers last said.
    interest: AtomicU8,
}

impl Callsite for DynCallsite {
    fn set_interest(&self, interest: Interest) {
        let n = if interest.is_never() {
            0
        } else if interest.is_always() {
            2
        } else {
            1
        };
        self.interest.store(n, Ordering::Relaxed);
    }

    fn metadata(&self) -> &Metadata<'_> {
        // Set before the callsite is registered or used (`make`).
        self.meta
            .get()
            .expect("plugin log callsite without metadata")
    }
}

type Key = (u8, String, Vec<String>);

#[derive(Default)]
struct Cache {
    sites: HashMap<Key, &'static DynCallsite>,
    /// Leaked strings (targets, field names), shared by the callsites that use them.
    strings: HashSet<&'static str>,
}

impl Cache {
    fn intern(&mut self, s: &str) -> &'static str {
        if let Some(&kept) = self.strings.get(s) {
            return kept;
        }
        let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
        self.strings.insert(leaked);
        leaked
    }
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

fn level_of(level: u8) -> Level {
    match level {
        1 => Level::ERROR,
        2 => Level::WARN,
        3 => Level::INFO,
        4 => Level::DEBUG,
        _ => Level::TRACE,
    }
}

/// The callsite for this event's shape, made on first use; `None` when the shape is
/// beyond the bounds or the cache is full.
fn callsite(level: u8, plugin: &str, names: &[&str]) -> Option<&'static DynCallsite> {
    if names.len() > MAX_FIELDS || names.iter().any(|n| n.is_empty() || n.len() > MAX_NAME) {
        return None;
    }
    let key: Key = (
        level.clamp(1, 5),
        plugin.to_owned(),
        names.iter().map(|n| (*n).to_owned()).collect(),
    );
    let mut cache = cache().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(site) = cache.sites.get(&key) {
        return Some(site);
    }
    if cache.sites.len() >= MAX_CALLSITES {
        static FULL: AtomicBool = AtomicBool::new(false);
        if !FULL.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "hotswap::plugin",
                max = MAX_CALLSITES,
                "too many distinct plugin log event shapes; further ones are logged with their fields flattened"
            );
        }
        return None;
    }
    let target = cache.intern(&format!("hotswap::plugin::{plugin}"));
    let mut all: Vec<&'static str> = FIXED.to_vec();
    for n in names {
        let n = cache.intern(n);
        all.push(n);
    }
    let all: &'static [&'static str] = Box::leak(all.into_boxed_slice());
    let site: &'static DynCallsite = Box::leak(Box::new(DynCallsite {
        meta: OnceLock::new(),
        interest: AtomicU8::new(1),
    }));
    let meta = Metadata::new(
        "plugin event",
        target,
        level_of(key.0),
        None,
        None,
        None,
        FieldSet::new(all, Identifier(site)),
        Kind::EVENT,
    );
    if site.meta.set(meta).is_err() {
        unreachable!("a fresh callsite's metadata is set once");
    }
    tracing::callsite::register(site);
    cache.sites.insert(key, site);
    Some(site)
}

/// Re-emits one plugin event (level 1 = error … 5 = trace) in the host's `tracing`.
pub(crate) fn emit(
    level: u8,
    plugin: &str,
    version: &str,
    plugin_target: &str,
    message: &str,
    fields: &str,
) {
    let parsed = parse(fields);
    let mut names: Vec<&str> = Vec::with_capacity(parsed.len());
    let mut values: Vec<&FieldValue> = Vec::with_capacity(parsed.len());
    for (n, v) in &parsed {
        // A repeated name keeps its first value (a callsite has each name once).
        if !names.contains(&n.as_str()) {
            names.push(n);
            values.push(v);
        }
    }
    let Some(site) = callsite(level, plugin, &names) else {
        return fallback(level, plugin, version, plugin_target, message, &parsed);
    };
    let meta: &'static Metadata<'static> = match site.meta.get() {
        Some(m) => m,
        None => return,
    };
    if *meta.level() > tracing::level_filters::LevelFilter::current() {
        return;
    }
    match site.interest.load(Ordering::Relaxed) {
        0 => return,
        2 => {}
        _ => {
            if !tracing::dispatcher::get_default(|d| d.enabled(meta)) {
                return;
            }
        }
    }
    let set = meta.fields();
    let slots: Vec<Field> = set.iter().collect();
    let fixed: [&dyn Value; 4] = [&message, &plugin, &version, &plugin_target];
    let mut pairs: [(&Field, Option<&dyn Value>); SLOTS] = [(&slots[0], None); SLOTS];
    for (i, v) in fixed.into_iter().enumerate() {
        pairs[i] = (&slots[i], Some(v));
    }
    for (i, v) in values.iter().enumerate() {
        pairs[FIXED.len() + i] = (&slots[FIXED.len() + i], Some(v.as_value()));
    }
    Event::dispatch(meta, &set.value_set(&pairs));
}

/// An event beyond the cache's bounds: one fixed callsite per level, fields flattened.
fn fallback(
    level: u8,
    plugin: &str,
    version: &str,
    plugin_target: &str,
    message: &str,
    parsed: &[(String, FieldValue)],
) {
    use std::fmt::Write;
    let mut fields = String::new();
    for (n, v) in parsed {
        let _ = match v {
            FieldValue::Str(s) => write!(fields, " {n}={s:?}"),
            FieldValue::I64(x) => write!(fields, " {n}={x}"),
            FieldValue::U64(x) => write!(fields, " {n}={x}"),
            FieldValue::F64(x) => write!(fields, " {n}={x}"),
            FieldValue::Bool(x) => write!(fields, " {n}={x}"),
        };
    }
    let fields = fields.trim_start();
    macro_rules! emit {
        ($level:expr) => {
            tracing::event!(target: "hotswap::plugin", $level, plugin, version, plugin_target, fields, "{message}")
        };
    }
    match level {
        1 => emit!(Level::ERROR),
        2 => emit!(Level::WARN),
        3 => emit!(Level::INFO),
        4 => emit!(Level::DEBUG),
        _ => emit!(Level::TRACE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use tracing::span::{Attributes, Id, Record};
    use tracing::Subscriber;

    #[test]
    fn fields_strings_parse() {
        let v = parse("\u{1e}{\"a\":1,\"b\":-2,\"c\":1.5,\"d\":true,\"e\":\"x\",\"plugin\":\"p\",\"u\":18446744073709551615}");
        assert!(v.contains(&("a".into(), FieldValue::I64(1))));
        assert!(v.contains(&("b".into(), FieldValue::I64(-2))));
        assert!(v.contains(&("c".into(), FieldValue::F64(1.5))));
        assert!(v.contains(&("d".into(), FieldValue::Bool(true))));
        assert!(v.contains(&("e".into(), FieldValue::Str("x".into()))));
        assert!(v.contains(&("field.plugin".into(), FieldValue::Str("p".into()))));
        assert!(v.contains(&("u".into(), FieldValue::U64(u64::MAX))));
        assert_eq!(
            parse("answer=42"),
            vec![("fields".into(), FieldValue::Str("answer=42".into()))]
        );
        assert!(parse("").is_empty());
    }

    /// Counts events and remembers their targets.
    #[derive(Default)]
    struct Count {
        events: AtomicUsize,
        targets: Mutex<HashSet<String>>,
    }

    struct Counting(Arc<Count>);

    impl Subscriber for Counting {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            // Plugin events only, not the host's own warning about the full cache.
            if event.metadata().fields().field("plugin").is_none() {
                return;
            }
            self.0.events.fetch_add(1, Ordering::Relaxed);
            let mut t = self.0.targets.lock().unwrap();
            t.insert(event.metadata().target().to_owned());
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    #[test]
    fn hostile_field_names_cannot_grow_the_cache_without_bound() {
        let count = Arc::new(Count::default());
        let dispatch = tracing::Dispatch::new(Counting(count.clone()));
        tracing::dispatcher::with_default(&dispatch, || {
            let n = MAX_CALLSITES + 500;
            for i in 0..n {
                let fields = format!("\u{1e}{{\"f{i}\":{i}}}");
                emit(2, "hostile", "1.0.0", "hostile", "varying names", &fields);
            }
            // Beyond the bounds in other ways too.
            let long = format!("\u{1e}{{\"{}\":1}}", "x".repeat(MAX_NAME + 1));
            emit(2, "hostile", "1.0.0", "hostile", "long name", &long);
            let many: Vec<String> = (0..=MAX_FIELDS).map(|i| format!("\"m{i}\":1")).collect();
            emit(
                2,
                "hostile",
                "1.0.0",
                "hostile",
                "many",
                &format!("\u{1e}{{{}}}", many.join(",")),
            );
            assert_eq!(
                count.events.load(Ordering::Relaxed),
                n + 2,
                "no event is lost"
            );
        });
        assert!(cache().lock().unwrap().sites.len() <= MAX_CALLSITES);
        let targets = count.targets.lock().unwrap();
        assert!(targets.contains("hotswap::plugin::hostile"));
        assert!(
            targets.contains("hotswap::plugin"),
            "the overflow uses the fixed callsite"
        );
    }
}
