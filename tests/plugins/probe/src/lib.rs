//! Test plugin. Cargo features pick the version (`v2`) and a lifecycle step that fails.
//! When the load data has a `log` path, every hook appends `<version>:<hook>` to it, so
//! tests can assert which hooks ran and in what order.
//!
//! A failure can also be chosen at run time, with no rebuild: every hook reads the
//! host's DataBag key `FAIL_KEY` (`probe.fail`) and fails when its value is
//! `"<hook>:<kind>"`. Hooks: `new` (the `Default` impl), `reloadable`, `export`,
//! `import`, `on_load`, `on_init`, `on_free`, `drop` (the instance's `Drop`); kinds:
//! `panic`, and `error` for the hooks that return a `Result` (`on_load`, `on_init`).
//! Before failing, a hook that has a log writes `<version>:fail <hook>:<kind>` to it.
//! Kind `hang` makes any of those hooks loop until the DataBag key
//! `RELEASE_KEY` (`probe.release`) is set: a hook that overruns its deadline.
//!
//! `on_load` writes its version to the DataBag key `probe.loaded_by` before anything
//! else (a write the host must discard if the reload fails).

use hotswap_plugin_api::{
    export_plugin, Error, Export, Import, Imports, Plugin, Result, Value, Vault,
};
use probe_api::{PricingError, Quote, QuoteOpts, Receipt, Shop};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const VERSION: &str = if cfg!(feature = "v2") { "v2" } else { "v1" };

/// The DataBag key that picks a failure at run time.
const FAIL_KEY: &str = "probe.fail";

/// The DataBag key that lets a hanging hook return.
const RELEASE_KEY: &str = "probe.release";

/// How a hook fails when [`FAIL_KEY`] names it.
#[derive(PartialEq)]
enum Fail {
    Panic,
    Error,
    Hang,
}

/// Loops until the host sets [`RELEASE_KEY`].
fn hang() {
    while hotswap_plugin_api::vault()
        .ok()
        .and_then(|v| v.get(RELEASE_KEY))
        .is_none()
    {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The failure [`FAIL_KEY`] asks of `hook`, and the key's whole value (for messages).
/// Reads the DataBag through `vault()`, which works from `Default::default()` on: the
/// host handle is set before the instance is made.
fn asked(hook: &str) -> Option<(Fail, String)> {
    let value = hotswap_plugin_api::vault().ok()?.get(FAIL_KEY)?;
    let asked = value.as_str()?;
    let kind = match asked.split_once(':')? {
        (h, "panic") if h == hook => Fail::Panic,
        (h, "error") if h == hook => Fail::Error,
        (h, "hang") if h == hook => Fail::Hang,
        _ => return None,
    };
    Some((kind, asked.to_owned()))
}

struct Probe {
    log: hook_log::HookLog,
}

/// A panic payload whose own drop panics (safe code: `panic_any(Bomb)`): wherever the
/// plugin catches a panic, it must drop the payload under `catch_unwind` too, or the
/// second panic unwinds out of an `extern "C"` entry point and aborts the host.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("probe {VERSION}: the payload exploded as it was dropped");
    }
}

impl Default for Probe {
    fn default() -> Self {
        if cfg!(feature = "panic-new") {
            panic!("probe {VERSION} panicked in new");
        }
        // `new` cannot return an error: only a panic is asked of it.
        match asked("new") {
            Some((Fail::Panic, asked)) => {
                panic!("probe {VERSION} panicked in new ({FAIL_KEY} = {asked})")
            }
            Some((Fail::Hang, _)) => hang(),
            _ => {}
        }
        Probe {
            log: hook_log::HookLog::default(),
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // `Drop` cannot return an error: only a panic is asked of it.
        self.panic_if_asked("drop");
    }
}

impl Probe {
    /// Fails as [`FAIL_KEY`] asks of `hook`: a panic, or an `Err` for the caller to return.
    fn fail_if_asked(&self, hook: &str) -> Result<()> {
        match asked(hook) {
            None => Ok(()),
            Some((Fail::Hang, _)) => {
                hang();
                Ok(())
            }
            Some((kind, asked)) => {
                self.record(&format!("fail {asked}"));
                if kind == Fail::Panic {
                    panic!("probe {VERSION} panicked in {hook} ({FAIL_KEY} = {asked})");
                }
                Err(Error::msg(format!(
                    "probe {VERSION} failed in {hook} ({FAIL_KEY} = {asked})"
                )))
            }
        }
    }

    /// For hooks that cannot return an error: panics when asked to; an `error` asked of
    /// such a hook is ignored.
    fn panic_if_asked(&self, hook: &str) {
        if let Some((Fail::Panic | Fail::Hang, _)) = asked(hook) {
            let _ = self.fail_if_asked(hook);
        }
    }

    fn record(&self, hook: &str) {
        self.log.record(VERSION, hook);
    }

    fn add_one(&self, x: u64) -> u64 {
        x + 1
    }

    /// Allocation-heavy work, as a request handler does it: formats 16 keys into
    /// strings, indexes them in a `HashMap`, joins them, and drops it all (about 40
    /// allocations and as many frees). The benchmark's `alloc/*` lines.
    fn churn(&self, x: u64) -> u64 {
        let keys: Vec<String> = (0..16).map(|i| format!("key-{i}-{x}")).collect();
        let index: std::collections::HashMap<&str, usize> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect();
        let joined = keys.join(",");
        (joined.len() + index.len()) as u64
    }

    fn version_number(&self, _: ()) -> u32 {
        if cfg!(feature = "v2") {
            2
        } else {
            1
        }
    }

    fn divide(&self, pair: hotswap_plugin_api::abi_stable::std_types::Tuple2<i64, i64>) -> i64 {
        pair.0 / pair.1 // panics on division by zero: tests use that
    }
}

fn wait_for(path: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

impl Plugin for Probe {
    fn reloadable(&self) -> bool {
        self.panic_if_asked("reloadable");
        !cfg!(feature = "not-reloadable")
    }

    fn export(&self) -> Option<Export> {
        self.panic_if_asked("export");
        None
    }

    fn import(&self) -> Vec<Import> {
        if cfg!(feature = "panic-import") {
            panic!("probe {VERSION} panicked in import");
        }
        self.panic_if_asked("import");
        Vec::new()
    }

    fn on_load(&mut self, data: &Value, _imports: &Imports) -> Result<()> {
        hotswap_plugin_api::vault()?.set("probe.loaded_by", VERSION)?;
        self.log = hook_log::HookLog::open(data);
        self.record("on_load");
        if cfg!(feature = "log-load") {
            tracing::warn!("probe {VERSION} on_load event");
        }
        if cfg!(feature = "fail-load") {
            return Err(Error::msg(format!("probe {VERSION} refuses to load")));
        }
        if cfg!(feature = "panic-load") {
            panic!("probe {VERSION} panicked in on_load");
        }
        self.fail_if_asked("on_load")
    }

    fn on_init(&mut self, vault: &Vault) -> Result<()> {
        self.record(&format!("on_init@{}", vault.generation()));
        if cfg!(feature = "fail-init") {
            return Err(Error::msg(format!("probe {VERSION} refuses to init")));
        }
        if cfg!(feature = "panic-init") {
            panic!("probe {VERSION} panicked in on_init");
        }
        self.fail_if_asked("on_init")
    }

    fn on_free(&mut self) {
        self.record("on_free");
        self.panic_if_asked("on_free");
    }

    fn invoke_func(&self, name: &str, args: &[Value]) -> Result<Value> {
        match name {
            "version" => Ok(Value::from(VERSION)),
            "add" => {
                let mut sum = 0i64;
                for a in args {
                    sum += a
                        .as_int()
                        .ok_or_else(|| Error::msg(format!("add takes ints, got {}", a.kind())))?;
                }
                Ok(Value::from(sum))
            }
            "long_string" => Ok(Value::from(format!("{VERSION}:").repeat(1000))),
            "wait_for_file" => {
                let path = args
                    .first()
                    .and_then(Value::as_str)
                    .ok_or_else(|| Error::msg("wait_for_file takes a path"))?;
                // Says that this call is running (inside this version) before it waits,
                // so a test knows without guessing how long a thread takes to get here.
                let _ = std::fs::write(Path::new(path).with_extension("entered"), VERSION);
                if !wait_for(Path::new(path), Duration::from_secs(60)) {
                    return Err(Error::msg(format!("{path} never appeared")));
                }
                Ok(Value::from(VERSION))
            }
            "spawn_wait_for_file" => {
                let path = PathBuf::from(
                    args.first()
                        .and_then(Value::as_str)
                        .ok_or_else(|| Error::msg("spawn_wait_for_file takes a path"))?,
                );
                let done = path.with_extension("done");
                hotswap_plugin_api::spawn("probe-waiter", move || {
                    wait_for(&path, Duration::from_secs(60));
                    let _ = std::fs::write(&done, VERSION);
                })?;
                Ok(Value::Null)
            }
            "log" => {
                let word = args.first().and_then(Value::as_str).unwrap_or("hi");
                tracing::warn!(
                    answer = 42,
                    ratio = 0.5,
                    ok = true,
                    word,
                    detail = ?("a", 1),
                    "probe {VERSION} says {word}"
                );
                tracing::debug!("probe {VERSION} detail");
                tracing::trace!("too verbose for most hosts");
                Ok(Value::Null)
            }
            "panic" => panic!("probe {VERSION} panicked on request"),
            "bomb" => std::panic::panic_any(Bomb),
            // A value nested `depth` lists deep: stored in the DataBag (`deep_store`) or
            // answered (`deep_answer`); the host copies values by recursion.
            "deep_store" | "deep_answer" => {
                let depth = args.first().and_then(Value::as_int).unwrap_or(0);
                let mut v = Value::Null;
                for i in 0..depth {
                    v = Value::List(vec![Value::from(i), v].into());
                }
                if name == "deep_answer" {
                    return Ok(v);
                }
                hotswap_plugin_api::vault()?.set("probe.deep", v)?;
                Ok(Value::Null)
            }
            "fail" => Err(Error::msg(format!("probe {VERSION} failed on request"))),
            _ => Err(Error::unknown_function(name)),
        }
    }
}

/// Typed functions with ordinary signatures (`tests/typed.rs`, the benchmark's
/// `typed-str/*` line).
impl Probe {
    /// Quotes `qty` of `sku`: borrowed `&str` and `&T` arguments, a `Pod` by value, the
    /// plugin's own error type. Version 2 quotes 10 cents more per unit.
    fn quote(&self, sku: &str, qty: u32, opts: &QuoteOpts) -> Result<Quote, PricingError> {
        if qty == 0 {
            return Err(PricingError::ZeroQuantity);
        }
        let unit = match sku {
            "apple" => 50,
            "pear" => 70,
            _ => return Err(PricingError::UnknownSku),
        } + if cfg!(feature = "v2") { 10 } else { 0 };
        let gross = unit * u64::from(qty);
        Ok(Quote {
            cents: gross - gross * u64::from(opts.discount_pct) / 100,
            qty,
            version: if cfg!(feature = "v2") { 2 } else { 1 },
        })
    }

    /// `"<version>:<sku> x<qty> <currency>"`: an owned `String` result.
    fn label(&self, sku: &str, qty: u32, opts: &QuoteOpts) -> String {
        format!("{VERSION}:{sku} x{qty} {}", opts.currency)
    }

    /// `s` repeated `times` times: the benchmark's `(&str, u32) -> String` line. Built
    /// with the very loop of [`probe_raw_repeat`] (one allocation of the whole length,
    /// then `times` copies of `s`), so that the two lines differ only by the call, not by
    /// the work: std's `str::repeat` (doubling copies, its `Vec` reloaded through memory)
    /// costs about as much again as the boundary (see the README's benchmark section).
    fn repeat(&self, s: &str, times: u32) -> String {
        let mut out = String::with_capacity(s.len().saturating_mul(times as usize));
        for _ in 0..times {
            out.push_str(s);
        }
        out
    }

    /// A struct with owned fields (`typed_result!`).
    fn receipt(&self, sku: &str, qty: u32) -> Receipt {
        Receipt {
            text: format!("{VERSION}: {qty} x {sku}").into(),
            lines: (1..=qty).map(|i| format!("{sku} #{i}").into()).collect(),
            cents: u64::from(qty) * 50,
        }
    }

    /// Four `Pod` arguments.
    fn sum4(&self, a: u64, b: u64, c: u32, d: u8) -> u64 {
        a + b + u64::from(c) + u64::from(d)
    }

    /// A borrowed `&[u8]` in, a `Vec<u8>` out.
    fn reversed(&self, bytes: &[u8]) -> Vec<u8> {
        bytes.iter().rev().copied().collect()
    }

    /// `Option<String>` and a `Vec` of strings.
    fn words(&self, text: &str) -> Option<Vec<String>> {
        let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
        (!words.is_empty()).then_some(words)
    }

    /// No argument.
    fn version_text(&self) -> String {
        VERSION.to_owned()
    }

    /// Panics whenever called with `"boom"`; with `"bomb"`, with a [`Bomb`] as the
    /// panic's payload, which panics again when it is dropped.
    fn explode(&self, why: &str) -> String {
        if why == "boom" {
            panic!("probe {VERSION} exploded: {why}");
        }
        if why == "bomb" {
            std::panic::panic_any(Bomb);
        }
        why.to_owned()
    }
}

export_plugin!(Probe, typed {
    add_one: fn(u64) -> u64,
    churn: fn(u64) -> u64,
    version_number: fn(()) -> u32,
    divide: fn(hotswap_plugin_api::abi_stable::std_types::Tuple2<i64, i64>) -> i64,
    quote: fn(&str, u32, &QuoteOpts) -> Result<Quote, PricingError>,
    label: fn(&str, u32, &QuoteOpts) -> String,
    repeat: fn(&str, u32) -> String,
    sum4: fn(u64, u64, u32, u8) -> u64,
    receipt: fn(&str, u32) -> Receipt,
    reversed: fn(&[u8]) -> Vec<u8>,
    words: fn(&str) -> Option<Vec<String>>,
    version_text: fn() -> String,
    explode: fn(&str) -> String,
    early_text: fn() -> String,
    early_words: fn() -> Vec<String>,
}, interfaces { Shop });

/// A string a static constructor made when the library was loaded, before the host's
/// first call (so from the plugin's early arena, not the host's allocator).
static EARLY: std::sync::atomic::AtomicPtr<String> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// Likewise, a vector of strings (its buffer and every element's in the arena).
static EARLY_WORDS: std::sync::atomic::AtomicPtr<Vec<String>> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

extern "C" fn early_init() {
    let text = Box::new(String::from("made before the host attached"));
    EARLY.store(Box::into_raw(text), std::sync::atomic::Ordering::Release);
    let words = Box::new(vec![String::from("early"), String::from("words")]);
    EARLY_WORDS.store(Box::into_raw(words), std::sync::atomic::Ordering::Release);
}

/// Runs `early_init` when the library is loaded (life before the host's first call).
#[used]
#[link_section = ".init_array"]
static EARLY_INIT: extern "C" fn() = early_init;

impl Probe {
    /// The constructor's string, moved out and handed to the host the first time; then
    /// "gone". The arena block cannot be the host's: it is copied.
    fn early_text(&self) -> String {
        let p = EARLY.swap(std::ptr::null_mut(), std::sync::atomic::Ordering::AcqRel);
        if p.is_null() {
            return "gone".into();
        }
        // SAFETY: `p` came from `Box::into_raw` in `early_init` and was taken once.
        *unsafe { Box::from_raw(p) }
    }

    /// As `early_text`, for the vector; then an empty one.
    fn early_words(&self) -> Vec<String> {
        let p = EARLY_WORDS.swap(std::ptr::null_mut(), std::sync::atomic::Ordering::AcqRel);
        if p.is_null() {
            return Vec::new();
        }
        // SAFETY: as in `early_text`.
        *unsafe { Box::from_raw(p) }
    }
}

impl Shop for Probe {
    fn quote(&self, sku: &str, qty: u32, opts: &QuoteOpts) -> Result<Quote, PricingError> {
        Probe::quote(self, sku, qty, opts)
    }
    fn version(&self) -> u32 {
        if cfg!(feature = "v2") {
            2
        } else {
            1
        }
    }
    fn add(&self, x: u64) -> u64 {
        x + u64::from(Shop::version(self))
    }
    fn describe(&self, sku: &str) -> String {
        format!("{sku} from probe {VERSION}")
    }
    fn reversed(&self, bytes: &[u8]) -> Vec<u8> {
        bytes.iter().rev().copied().collect()
    }
    fn explode(&self, message: &str) {
        panic!("{message}")
    }
}

/// A raw `extern "C"` function, found with dlsym: the benchmarks' baseline. Plugin
/// authors never write these; `export_plugin!`'s typed functions are the real path.
#[no_mangle]
pub extern "C" fn probe_raw_add_one(x: u64) -> u64 {
    x + 1
}

/// The raw baseline of `repeat`: writes `s` (`len` bytes at `s`) `times` times into the
/// caller's buffer `out` of `cap` bytes; returns the length written, or `usize::MAX`
/// (nothing written) when it does not fit.
///
/// # Safety
/// `s` must be valid for reads of `len` bytes and `out` for writes of `cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn probe_raw_repeat(
    s: *const u8,
    len: usize,
    times: u32,
    out: *mut u8,
    cap: usize,
) -> usize {
    let total = len.saturating_mul(times as usize);
    if total > cap {
        return usize::MAX;
    }
    for i in 0..times as usize {
        // SAFETY: the caller's contract above; `total <= cap`, so every copy is in bounds.
        unsafe { std::ptr::copy_nonoverlapping(s, out.add(i * len), len) };
    }
    total
}
