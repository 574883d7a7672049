//! What a call into a hot-swappable plugin costs, against a raw `extern "C"` call
//! measured in the same run; and how long a reload takes.
//!
//! Reproduce with
//!
//! ```text
//! cargo bench -p hotswap-host --bench calls
//! ```
//!
//! It first builds the probe plugin (`tests/plugins/probe`) twice with the real builder
//! (`hotswap build`: features "" and "v2", into `<repo>/target/hotswap-test-plugins`, the
//! same target directory the tests use), then loads it with a `PluginManager` from a
//! temporary plugin directory. Builds are never timed. Then, with criterion, each line
//! timed on threads the benchmark starts (one, or one per core), running the same loop
//! (`black_box` on every argument and result), so only the call differs between lines:
//!
//! - `raw`: a `probe_raw_add_one` function pointer found with `dlsym` (`libloading`) in
//!   a separate copy of the library, called directly: the floor the ratios divide by.
//! - `typed/1-thread`: `Func<u64, u64>::call` on a handle from
//!   `manager.func::<u64, u64>("probe", "add_one")`, the fast path, held by value as a
//!   caller holds it (as `raw` holds its function pointer).
//! - `typed/counted`: the same call on a second manager built with
//!   `Builder::call_metrics(true)` (off by default): what counting calls costs is this
//!   line over `typed/1-thread` (printed as "call metrics cost").
//! - `typed/batch`: the same handle, every call of a sample's loop made under one pin
//!   (`manager.pinned(|p| for .. { p.call(&func, x) })`, the batch API).
//! - `raw/all-cores`, `typed/all-cores`: the same calls made by every core at once
//!   (`available_parallelism` threads started together on a barrier, each making the
//!   same number of calls); the time per call is the slowest thread's.
//! - `interface`: `Shop::add(u64) -> u64` (`x + 1`, as `raw`) through the handle of a
//!   trait interface, `manager.interface::<dyn Shop>("probe")` (`probe_api::Shop`,
//!   declared with `#[interface]`), paired with and divided by `raw`.
//! - `invoke_func`: `manager.invoke_func("probe", "add", &[1, 2])`, the dynamic by-name
//!   path with stable `Value`s.
//! - `raw-str`, `typed-str`: a function of ordinary signature, `(&str, u32) -> String`
//!   (a 16-byte string in, repeated twice: 32 bytes out), as a typed handle
//!   `manager.func::<(&str, u32), String>("probe", "repeat")` (the plugin builds its
//!   `String` with the loop of `probe_raw_repeat`, one allocation and two copies, on its
//!   Rust heap, which is the host's, and the host's `String` adopts the buffer), against
//!   `probe_raw_repeat`, a `dlsym`'d `extern "C"` function that copies the same bytes
//!   into a buffer the host allocated; the result is dropped by the caller in both.
//!   `typed-str` is paired with and divided by `raw-str`.
//! - `alloc/uncounted`, `alloc/counted`: the cost of the per-version heap accounting on
//!   a plugin's own allocation path. `probe.churn` (about 40 allocations and frees per
//!   call) through a typed handle, on a third build of the probe made with the
//!   `no-heap-stats` feature (loaded by a second manager), and on the normal build. The
//!   ratio of `alloc/counted` is against `alloc/uncounted`, each sample paired with one
//!   of the uncounted build just before it.
//!
//! - `raw-async`, `async`: an async function that completes at once (`x + 1`), awaited
//!   on a current-thread tokio runtime, the loop of calls inside one `block_on`: through
//!   `manager.async_func::<u64, u64>("awaiter", "ready")` (tests/plugins/awaiter; pins
//!   the generation to start the call, the future holds the version until it is done),
//!   against the same async-ffi future made by `awaiter_raw_ready`, a `dlsym`'d
//!   `extern "C"` function of a copy of the library that is never unloaded. `async` is
//!   paired with and divided by `raw-async`.
//!
//! And with a plain loop (criterion is a poor fit for tail latency):
//!
//! - `reload`: `manager.reload(&Value::Null)` alternating between the two builds, so every
//!   reload loads, initializes and publishes a new version; p50 and p99 over
//!   [`RELOADS`] reloads. `manager.collect` runs between reloads, outside the timing,
//!   so retired versions are unloaded. After the first load of each file the host knows
//!   it as checked and does not hash and parse it again.
//! - `reload, new file`: the same, with each library written afresh (`fs::copy` over
//!   it) before its reload, as a new build would be: hashed and parsed in full.
//!
//! And without a clock, in a copy of this benchmark run under valgrind's callgrind
//! (`--toggle-collect` on one function per line, totals from `callgrind_annotate`):
//!
//! - instructions per call of `raw`, `typed/1-thread`, `typed/counted`, `typed/batch`,
//!   `invoke_func`, `raw-str`, `typed-str`, `raw-async` and `async`, each over
//!   [`COUNTED_CALLS`] calls of the very loop the timed lines run (whose own few
//!   instructions every line includes), `typed-str` against `raw-str` and `async`
//!   against `raw-async`: a figure other load on the machine does not move. Without
//!   valgrind the table says so and the rest runs as usual.
//!
//! `HOTSWAP_BENCH_ONLY=instructions` runs only the count, `HOTSWAP_BENCH_ONLY=reloads`
//! only the reload timings, `HOTSWAP_BENCH_ONLY=<line>[,<line>...]` (`typed-str`,
//! `typed/1-thread,typed/counted`, ...) the count, those lines and their baselines, and
//! the reloads (for working on some of them). `HOTSWAP_BENCH_RELOADS=N`
//! times N reloads of each kind instead of [`RELOADS`]; the resident set (`VmRSS`) is
//! printed after the first [`RSS_AFTER`] reloads and after the last of the known-file
//! run, so `HOTSWAP_BENCH_ONLY=reloads HOTSWAP_BENCH_RELOADS=10000` shows what 10,000
//! reloads leave in memory.
//!
//! `cargo test --benches` runs it in criterion's test mode: every benchmark once, four
//! reloads, and numbers that mean nothing.
//!
//! The summary table at the end gives each line in ns per call and as a ratio against
//! `raw` (the all-cores typed line against `raw/all-cores`): the median of the very
//! samples criterion took in this run (recorded in-process, so the table never reads
//! criterion's files; it equals criterion's `median` estimate); the paired ratio (each
//! sample of `typed/*` and `invoke_func` is taken right after a raw sample of as many
//! calls on as many threads, and the median of those per-sample ratios is what a shared
//! machine whose speed drifts over seconds disturbs least); and the best sample, which
//! other load on the machine disturbs least; then the reload percentiles,
//! the 1-minute load average before and after, and the reclamation mode the host runs with
//! (`membarrier`, or `fence (why)` when the kernel refused it).

use criterion::Criterion;
use hotswap_build::{build, BuildOptions, BuildOutput};
use hotswap_host::{AsyncFunc, Func, Interface, Outcome, PluginManager, Value};
use probe_api::Shop;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Samples criterion takes per benchmark (set on the group, so command-line options
/// cannot change it and the table knows which recorded samples are the measured ones).
const SAMPLE_SIZE: usize = 20;
/// Reloads timed for the reload percentiles (`HOTSWAP_BENCH_RELOADS` overrides it, for
/// a long run that shows whether memory grows per reload).
const RELOADS: usize = 200;
/// Reloads after which the resident set is taken as the baseline of its growth.
const RSS_AFTER: usize = 10;
/// Reloads run first and not counted.
const WARMUP_RELOADS: usize = 6;

/// Lines of the table, in order.
const RAW: &str = "raw";
const TYPED: &str = "typed/1-thread";
const RAW_ALL: &str = "raw/all-cores";
const TYPED_ALL: &str = "typed/all-cores";
const INVOKE: &str = "invoke_func";
const RAW_STR: &str = "raw-str";
const TYPED_STR: &str = "typed-str";
const INTERFACE: &str = "interface";
const ALLOC_UNCOUNTED: &str = "alloc/uncounted";
const ALLOC_COUNTED: &str = "alloc/counted";
const RAW_ASYNC: &str = "raw-async";
const ASYNC: &str = "async";
const BATCH: &str = "typed/batch";
const TYPED_COUNTED: &str = "typed/counted";

type RawFn = unsafe extern "C" fn(u64) -> u64;
type RawAsyncFn = unsafe extern "C" fn(u64) -> async_ffi::FfiFuture<u64>;
type RawRepeatFn = unsafe extern "C" fn(*const u8, usize, u32, *mut u8, usize) -> usize;

/// The string argument of the `*-str` lines: 16 bytes.
const STR_ARG: &str = "0123456789abcdef";

/// One build of the probe plugin, packaged by the builder into its own directory.
struct Build {
    library: PathBuf,
    manifest: PathBuf,
}

impl Build {
    fn of(out: BuildOutput) -> Build {
        Build {
            library: out.library,
            manifest: out.manifest_path,
        }
    }

    fn file_name(path: &Path) -> &std::ffi::OsStr {
        path.file_name().expect("built files have names")
    }

    /// Copies the library into `dir` under its own name.
    fn copy_library(&self, dir: &Path) -> PathBuf {
        let to = dir.join(Self::file_name(&self.library));
        std::fs::copy(&self.library, &to).expect("copy plugin library");
        to
    }

    /// Copies the manifest into `dir` (after the library, as the builder does).
    fn copy_manifest(&self, dir: &Path) -> PathBuf {
        let to = dir.join(Self::file_name(&self.manifest));
        std::fs::copy(&self.manifest, &to).expect("copy plugin manifest");
        to
    }
}

fn build_probe(root: &Path, features: &str, out: &Path) -> Build {
    build_plugin(root, "tests/plugins/probe", features, out)
}

fn build_plugin(root: &Path, crate_dir: &str, features: &str, out: &Path) -> Build {
    let mut opts = BuildOptions::new(root.join(crate_dir), out);
    opts.target_dir = Some(root.join("target/hotswap-test-plugins"));
    if !features.is_empty() {
        opts.cargo_args = vec!["--features".to_owned(), features.to_owned()];
    }
    let built = build(&opts)
        .unwrap_or_else(|e| panic!("building {crate_dir} (features {features:?}) failed: {e}"));
    Build::of(built)
}

/// One way of making the call that the lines of the table compare. Each `call` is
/// `#[inline(always)]`, so every timing loop has its call path inlined the same way and
/// lines differ only by the path, not by the compiler's inlining choice for the harness.
trait Call: Sync {
    fn call(&self, x: u64) -> u64;

    /// `calls` calls (`black_box` on every argument and result); a line that batches
    /// its calls overrides it.
    #[inline(always)]
    fn run(&self, calls: u64) {
        for i in 0..calls {
            black_box(self.call(black_box(i)));
        }
    }
}

/// The baseline: a `dlsym`'d `extern "C"` function pointer.
struct Raw(RawFn);

impl Call for Raw {
    #[inline(always)]
    fn call(&self, x: u64) -> u64 {
        // SAFETY: `probe_raw_add_one` is a plain `extern "C" fn(u64) -> u64` of a library
        // that stays loaded while the benchmark runs.
        unsafe { (self.0)(x) }
    }
}

/// The fast path: a typed handle, held by value as a caller would hold it.
struct Typed(Func<u64, u64>);

impl Call for Typed {
    #[inline(always)]
    fn call(&self, x: u64) -> u64 {
        self.0.call(x).expect("typed call")
    }
}

/// The batch API: the same typed handle, every call of a loop under one pin
/// (`PluginManager::pinned`).
struct Batch<'a> {
    manager: &'a PluginManager,
    func: Func<u64, u64>,
}

impl Call for Batch<'_> {
    #[inline(always)]
    fn call(&self, x: u64) -> u64 {
        self.manager
            .pinned(|p| p.call(&self.func, x))
            .expect("typed call")
    }

    #[inline(always)]
    fn run(&self, calls: u64) {
        self.manager.pinned(|p| {
            for i in 0..calls {
                black_box(p.call(&self.func, black_box(i)).expect("typed call"));
            }
        })
    }
}

/// The `raw-str` baseline: `probe_raw_repeat` writing the string twice into a buffer
/// the host allocates, which becomes the caller's `String`.
struct RawStr(RawRepeatFn);

impl Call for RawStr {
    #[inline(always)]
    fn call(&self, _: u64) -> u64 {
        let s = black_box(STR_ARG);
        let times = black_box(2u32);
        let mut out = Vec::<u8>::with_capacity(s.len() * times as usize);
        // SAFETY: `probe_raw_repeat` has this signature; `s` is valid for its length and
        // `out` for writes of its capacity; the library stays loaded while the
        // benchmark runs.
        let n = unsafe { (self.0)(s.as_ptr(), s.len(), times, out.as_mut_ptr(), out.capacity()) };
        assert!(n <= out.capacity(), "probe_raw_repeat fits");
        // SAFETY: it wrote `n` bytes.
        unsafe { out.set_len(n) };
        // SAFETY: copies of a `&str`, whole, are UTF-8.
        let text = unsafe { String::from_utf8_unchecked(out) };
        black_box(text).len() as u64
    }
}

/// The `typed-str` line: a typed handle of ordinary signature.
struct TypedStr(Func<(&'static str, u32), String>);

impl Call for TypedStr {
    #[inline(always)]
    fn call(&self, _: u64) -> u64 {
        let text = self
            .0
            .call((black_box(STR_ARG), black_box(2u32)))
            .expect("typed call");
        black_box(text).len() as u64
    }
}

/// A method of a trait interface, through its handle.
struct Iface(Interface<dyn Shop>);

impl Call for Iface {
    #[inline(always)]
    fn call(&self, x: u64) -> u64 {
        self.0.add(x).expect("interface call")
    }
}

/// The dynamic path: by plugin and function name, with stable values.
struct Dynamic<'a> {
    manager: &'a PluginManager,
    args: &'a [Value],
}

impl Call for Dynamic<'_> {
    #[inline(always)]
    fn call(&self, _: u64) -> u64 {
        let sum = self
            .manager
            .invoke_func("probe", black_box("add"), black_box(self.args));
        // The result is a host-owned `Value`, dropped here as a caller would.
        sum.expect("invoke_func").as_int().unwrap_or(0) as u64
    }
}

/// `calls` awaited calls of `f`, timed inside one `block_on` of a current-thread runtime.
fn timed_async<F: std::future::Future<Output = u64>>(
    rt: &tokio::runtime::Runtime,
    calls: u64,
    f: impl Fn(u64) -> F,
) -> Duration {
    rt.block_on(async {
        // One untimed call: a thread's first call registers it with the host.
        black_box(f(black_box(0)).await);
        let start = Instant::now();
        for i in 0..calls {
            black_box(f(black_box(i)).await);
        }
        start.elapsed()
    })
}

/// The loop of [`timed_async`], untimed (for the instruction counts).
#[inline(always)]
fn awaited<F: std::future::Future<Output = u64>>(
    rt: &tokio::runtime::Runtime,
    calls: u64,
    f: impl Fn(u64) -> F,
) {
    rt.block_on(async {
        for i in 0..calls {
            black_box(f(black_box(i)).await);
        }
    })
}

/// Calls each counted line makes under callgrind.
const COUNTED_CALLS: u64 = 100_000;

/// Set (to the plugin directory) in the copy of this benchmark that runs under
/// callgrind: it then only makes the counted calls.
const COUNT_DIR_ENV: &str = "HOTSWAP_BENCH_COUNT_DIR";
/// The raw library's path, for that copy.
const COUNT_RAW_ENV: &str = "HOTSWAP_BENCH_COUNT_RAW";
/// The awaiter plugin's directory, and its raw copy's path, for that copy.
const COUNT_AWAITER_ENV: &str = "HOTSWAP_BENCH_COUNT_AWAITER";
const COUNT_RAW_AWAITER_ENV: &str = "HOTSWAP_BENCH_COUNT_RAW_AWAITER";
/// `instructions`: only count instructions (no timings); `reloads`: only time reloads
/// (no calls timed or counted); the name of a line (`typed-str`): time that line and
/// its baseline only, then the reloads. For working on one of them; unset for the full
/// run.
const ONLY_ENV: &str = "HOTSWAP_BENCH_ONLY";

// One function per counted line, never inlined, so callgrind collects only inside them
// (`--toggle-collect`) and its annotator gives each one's total, callees included. Each
// runs the very loop the timed lines run (`Call::run`), whose few instructions of its
// own every line includes.
#[inline(never)]
fn count_raw(f: &Raw) {
    f.run(COUNTED_CALLS)
}
#[inline(never)]
fn count_typed(f: &Typed) {
    f.run(COUNTED_CALLS)
}
#[inline(never)]
fn count_typed_counted(f: &Typed) {
    // `black_box`: the same code as `count_typed` would be folded into one function.
    f.run(black_box(COUNTED_CALLS))
}
#[inline(never)]
fn count_batch(f: &Batch) {
    f.run(COUNTED_CALLS)
}
#[inline(never)]
fn count_invoke(f: &Dynamic) {
    f.run(COUNTED_CALLS)
}
#[inline(never)]
fn count_raw_str(f: &RawStr) {
    f.run(COUNTED_CALLS)
}
#[inline(never)]
fn count_typed_str(f: &TypedStr) {
    f.run(COUNTED_CALLS)
}
#[inline(never)]
fn count_raw_async(rt: &tokio::runtime::Runtime, f: RawAsyncFn) {
    // SAFETY: `awaiter_raw_ready` returns a future its library, loaded until the end of
    // `count_child`, polls and drops.
    awaited(rt, COUNTED_CALLS, |x| unsafe { f(x) })
}
#[inline(never)]
fn count_async(rt: &tokio::runtime::Runtime, f: &AsyncFunc<u64, u64>) {
    awaited(rt, COUNTED_CALLS, |x| {
        let call = f.call(x);
        async move { call.await.expect("async call") }
    })
}

/// The counted lines and the function that makes each one's calls.
const COUNTED: [(&str, &str); 9] = [
    (RAW, "count_raw"),
    (TYPED, "count_typed"),
    (TYPED_COUNTED, "count_typed_counted"),
    (BATCH, "count_batch"),
    (INVOKE, "count_invoke"),
    (RAW_STR, "count_raw_str"),
    (TYPED_STR, "count_typed_str"),
    (RAW_ASYNC, "count_raw_async"),
    (ASYNC, "count_async"),
];

/// The baseline a line's ratio is against.
fn baseline_of(line: &str) -> &'static str {
    match line {
        TYPED_STR => RAW_STR,
        ASYNC => RAW_ASYNC,
        TYPED_ALL => RAW_ALL,
        ALLOC_COUNTED => ALLOC_UNCOUNTED,
        _ => RAW,
    }
}

/// The copy under callgrind: loads the plugin directory `dir` and makes each counted
/// line's calls once (after one uncounted call each: a thread's first call registers it).
fn count_child(dir: &Path, raw_path: &Path, awaiter_dir: &Path, raw_awaiter_path: &Path) {
    let manager = PluginManager::new(dir).expect("plugin manager");
    manager
        .load_plugins(&Value::Null)
        .expect("load the probe plugin");
    let func = manager
        .func::<u64, u64>("probe", "add_one")
        .expect("typed handle on probe.add_one");
    // SAFETY: as in `main`: our own test library, and `probe_raw_add_one` has this type.
    let raw_lib = unsafe { libloading::Library::new(raw_path) }.expect("dlopen probe");
    // SAFETY: as above.
    let raw_fn: RawFn =
        *unsafe { raw_lib.get::<RawFn>(b"probe_raw_add_one\0") }.expect("dlsym probe_raw_add_one");
    let raw = Raw(raw_fn);
    let typed = Typed(func.clone());
    let batch = Batch {
        manager: &manager,
        func,
    };
    let counting_manager = counting(dir);
    let typed_counted = Typed(
        counting_manager
            .func::<u64, u64>("probe", "add_one")
            .expect("typed handle on probe.add_one"),
    );
    let args = [Value::from(1i64), Value::from(2i64)];
    let dynamic = Dynamic {
        manager: &manager,
        args: &args,
    };
    assert_eq!(
        raw.call(1) + typed.call(1) + typed_counted.call(1) + batch.call(1) + dynamic.call(0),
        11
    );
    // SAFETY: as above; `probe_raw_repeat` has this type.
    let raw_repeat: RawRepeatFn = *unsafe { raw_lib.get::<RawRepeatFn>(b"probe_raw_repeat\0") }
        .expect("dlsym probe_raw_repeat");
    let raw_str = RawStr(raw_repeat);
    let typed_str = TypedStr(
        manager
            .func::<(&str, u32), String>("probe", "repeat")
            .expect("typed handle on probe.repeat"),
    );
    assert_eq!(raw_str.call(0) + typed_str.call(0), 64);
    let awaiter_manager = PluginManager::new(awaiter_dir).expect("plugin manager");
    awaiter_manager
        .load_plugins(&Value::Null)
        .expect("load the awaiter plugin");
    let ready: AsyncFunc<u64, u64> = awaiter_manager
        .async_func("awaiter", "ready")
        .expect("async handle on awaiter.ready");
    // SAFETY: as for the probe: our own test library.
    let raw_awaiter =
        unsafe { libloading::Library::new(raw_awaiter_path) }.expect("dlopen awaiter");
    // SAFETY: the awaiter plugin defines `awaiter_raw_ready` with this signature.
    let raw_ready: RawAsyncFn = *unsafe { raw_awaiter.get::<RawAsyncFn>(b"awaiter_raw_ready\0") }
        .expect("dlsym awaiter_raw_ready");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("current-thread runtime");
    awaited(&rt, 1, |x| {
        let call = ready.call(x);
        // SAFETY: as in `count_raw_async`.
        let raw = unsafe { raw_ready(x) };
        async move { call.await.expect("async call") + raw.await }
    });
    count_raw(&raw);
    count_typed(&typed);
    count_typed_counted(&typed_counted);
    count_batch(&batch);
    count_invoke(&dynamic);
    count_raw_str(&raw_str);
    count_typed_str(&typed_str);
    count_raw_async(&rt, raw_ready);
    count_async(&rt, &ready);
    println!("reclamation: {}", manager.status().reclamation);
    drop(raw_lib);
    drop(raw_awaiter);
}

/// A second manager on the plugin directory `dir` (its own private copy), counting
/// calls (`Builder::call_metrics(true)`): the `typed/counted` line's.
fn counting(dir: &Path) -> PluginManager {
    let m = PluginManager::builder(dir)
        .call_metrics(true)
        .build()
        .expect("plugin manager");
    m.load_plugins(&Value::Null).expect("load the probe plugin");
    m
}

/// Instructions per call by line, and the reclamation mode they were counted in; or why
/// there are none.
type Counted = Result<(Vec<(&'static str, f64)>, String), String>;

/// Instructions per call of each counted line, counted by callgrind (valgrind) in a
/// copy of this benchmark (`count_child`) on `dir`; and the reclamation mode that copy
/// ran in. `Err` says why there are none (no valgrind, a failed run).
fn count_instructions(
    dir: &Path,
    raw_path: &Path,
    awaiter_dir: &Path,
    raw_awaiter_path: &Path,
    out: &Path,
) -> Counted {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let out_file = out.join("callgrind.out");
    let run = std::process::Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--collect-atstart=no")
        .arg("--toggle-collect=*count_*")
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(&exe)
        .env(COUNT_DIR_ENV, dir)
        .env(COUNT_RAW_ENV, raw_path)
        .env(COUNT_AWAITER_ENV, awaiter_dir)
        .env(COUNT_RAW_AWAITER_ENV, raw_awaiter_path)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("valgrind not run ({e})"))?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    if !run.status.success() {
        return Err(format!(
            "valgrind failed ({}): {}",
            run.status,
            String::from_utf8_lossy(&run.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    if let Some(keep) = std::env::var_os("HOTSWAP_BENCH_KEEP_CALLGRIND") {
        let _ = std::fs::copy(&out_file, keep);
    }
    let mode = stdout
        .lines()
        .find_map(|l| l.strip_prefix("reclamation: "))
        .unwrap_or("unknown")
        .to_owned();
    // Each counted function's inclusive total, from callgrind's own annotator.
    let annotate = std::process::Command::new("callgrind_annotate")
        .args(["--inclusive=yes", "--threshold=100"])
        .arg(&out_file)
        .output()
        .map_err(|e| format!("callgrind_annotate not run ({e})"))?;
    let report = String::from_utf8_lossy(&annotate.stdout);
    let mut lines = Vec::new();
    for (line, function) in COUNTED {
        let needle = format!(":calls::{function} [");
        let total: u64 = report
            .lines()
            .find(|l| l.contains(&needle))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.replace(',', "").parse().ok())
            .ok_or_else(|| format!("callgrind_annotate lists no {function}"))?;
        lines.push((line, total as f64 / COUNTED_CALLS as f64));
    }
    Ok((lines, mode))
}

/// The instruction counts' table (or why there is none).
fn print_instructions(counted: &Counted) {
    match counted {
        Ok((lines, mode)) => {
            let of = |line: &str| {
                lines
                    .iter()
                    .find(|(l, _)| *l == line)
                    .map_or(f64::NAN, |(_, n)| *n)
            };
            println!();
            println!(
                "instructions per call (callgrind, {COUNTED_CALLS} calls a line, the loop's \
                 own instructions included; ratios against raw, typed-str against raw-str, \
                 async against raw-async; reclamation: {mode})"
            );
            for (line, n) in lines {
                println!("{line:<18} {n:>8.1} {:>8.2}x", n / of(baseline_of(line)));
            }
        }
        Err(why) => println!("instructions per call: not counted: {why}"),
    }
}

/// `calls` calls, timed.
#[inline(always)]
fn timed(calls: u64, f: &impl Call) -> Duration {
    let start = Instant::now();
    f.run(calls);
    start.elapsed()
}

/// Each of `threads` new threads makes `calls` calls, all at once (they start together
/// on a barrier); returns the slowest thread's time. The one-thread lines use this too,
/// with one thread, so every line runs the same code on the same kind of thread and
/// only the thread count differs.
fn on_threads(threads: usize, calls: u64, f: &impl Call) -> Duration {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    // One untimed call: a thread's first call registers it with the host.
                    black_box(f.call(black_box(0)));
                    barrier.wait();
                    timed(calls, f)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("benchmark thread panicked"))
            .max()
            .expect("at least one thread")
    })
}

/// ns per call of every sample criterion took, by line; and for paired lines, the ns
/// per call of the baseline run just before each of those samples.
#[derive(Default)]
struct Samples {
    lines: RefCell<BTreeMap<&'static str, Vec<f64>>>,
    baselines: RefCell<BTreeMap<&'static str, Vec<f64>>>,
}

fn per_call(calls: u64, elapsed: Duration) -> f64 {
    elapsed.as_nanos() as f64 / calls.max(1) as f64
}

/// The measured samples (criterion runs the warm-up first, then exactly SAMPLE_SIZE
/// samples, so those are the last recorded).
fn measured(recorded: &[f64]) -> &[f64] {
    &recorded[recorded.len().saturating_sub(SAMPLE_SIZE)..]
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

impl Samples {
    fn record(&self, line: &'static str, calls: u64, elapsed: Duration) -> Duration {
        let ns = per_call(calls, elapsed);
        self.lines.borrow_mut().entry(line).or_default().push(ns);
        elapsed
    }

    /// Times `baseline` and then `line`, the same number of calls on the same number of
    /// threads, and records both; returns the time of `line`, for criterion.
    fn record_paired(
        &self,
        line: &'static str,
        calls: u64,
        threads: usize,
        baseline: &impl Call,
        f: &impl Call,
    ) -> Duration {
        let base = on_threads(threads, calls, baseline);
        let elapsed = on_threads(threads, calls, f);
        let ns = per_call(calls, base);
        self.baselines
            .borrow_mut()
            .entry(line)
            .or_default()
            .push(ns);
        self.record(line, calls, elapsed)
    }

    /// [`record_paired`](Self::record_paired) for lines timed by closures (the async
    /// ones, which run inside a runtime).
    fn record_paired_with(
        &self,
        line: &'static str,
        calls: u64,
        baseline: impl Fn(u64) -> Duration,
        f: impl Fn(u64) -> Duration,
    ) -> Duration {
        let base = baseline(calls);
        let elapsed = f(calls);
        let ns = per_call(calls, base);
        self.baselines
            .borrow_mut()
            .entry(line)
            .or_default()
            .push(ns);
        self.record(line, calls, elapsed)
    }

    /// Median and minimum ns per call over the measured samples.
    fn stats(&self, line: &str) -> Option<(f64, f64)> {
        let all = self.lines.borrow();
        let measured = measured(all.get(line)?);
        let best = measured.iter().copied().min_by(f64::total_cmp)?;
        Some((median(measured.to_vec())?, best))
    }

    /// The median, over the measured samples, of each sample's time against the
    /// baseline timed just before it: drifts in the machine's speed (other tenants,
    /// frequency) between one line and the next cancel out.
    fn paired_ratio(&self, line: &str) -> Option<f64> {
        let (lines, baselines) = (self.lines.borrow(), self.baselines.borrow());
        let ratios = measured(lines.get(line)?)
            .iter()
            .zip(measured(baselines.get(line)?))
            .map(|(t, b)| t / b)
            .collect();
        median(ratios)
    }
}

/// The 1-minute load average (Linux), to tell a quiet machine from a busy one.
fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next().map(str::to_owned)
}

/// This process's resident set in KiB (Linux: `VmRSS` of `/proc/self/status`).
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Nearest-rank percentile of sorted durations.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    if let (Some(dir), Some(raw), Some(awaiter), Some(raw_awaiter)) = (
        std::env::var_os(COUNT_DIR_ENV),
        std::env::var_os(COUNT_RAW_ENV),
        std::env::var_os(COUNT_AWAITER_ENV),
        std::env::var_os(COUNT_RAW_AWAITER_ENV),
    ) {
        count_child(
            Path::new(&dir),
            Path::new(&raw),
            Path::new(&awaiter),
            Path::new(&raw_awaiter),
        );
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root");
    let work = tempfile::tempdir().expect("temporary directory");
    let (plugins, staged, raw_dir) = (
        work.path().join("plugins"),
        work.path().join("staged"),
        work.path().join("raw"),
    );
    for d in [&plugins, &staged, &raw_dir] {
        std::fs::create_dir(d).expect("create benchmark directory");
    }

    eprintln!("building the probe plugin (v1 and v2; not timed) ...");
    let v1 = build_probe(&root, "", &staged.join("v1"));
    let v2 = build_probe(&root, "v2", &staged.join("v2"));
    let uncounted_build = build_probe(&root, "no-heap-stats", &staged.join("uncounted"));
    eprintln!("building the awaiter plugin (not timed) ...");
    let awaiter = build_plugin(&root, "tests/plugins/awaiter", "", &staged.join("awaiter"));
    let awaiter_dir = work.path().join("awaiter");
    std::fs::create_dir(&awaiter_dir).expect("create benchmark directory");
    awaiter.copy_library(&awaiter_dir);
    awaiter.copy_manifest(&awaiter_dir);

    // Instructions per call, counted by callgrind in a copy of this benchmark that loads
    // v1 from a directory of its own.
    let count_dir = work.path().join("count");
    let count_out = work.path().join("callgrind");
    for d in [&count_dir, &count_out] {
        std::fs::create_dir(d).expect("create benchmark directory");
    }
    v1.copy_library(&count_dir);
    v1.copy_manifest(&count_dir);
    let count_raw_path = v1.copy_library(&raw_dir);
    let count_awaiter_dir = work.path().join("count-awaiter");
    std::fs::create_dir(&count_awaiter_dir).expect("create benchmark directory");
    awaiter.copy_library(&count_awaiter_dir);
    awaiter.copy_manifest(&count_awaiter_dir);
    let count_raw_awaiter_path = awaiter.copy_library(&count_out);
    let only = std::env::var(ONLY_ENV).ok();
    let instructions = if only.as_deref() == Some("reloads") {
        Err(format!("{ONLY_ENV}=reloads"))
    } else {
        eprintln!("counting instructions per call under callgrind ...");
        count_instructions(
            &count_dir,
            &count_raw_path,
            &count_awaiter_dir,
            &count_raw_awaiter_path,
            &count_out,
        )
    };
    if only.as_deref() == Some("instructions") {
        print_instructions(&instructions);
        return;
    }

    // Both libraries sit in the plugin directory; which manifest is there says which
    // build is the newest (the only) one.
    v1.copy_library(&plugins);
    v2.copy_library(&plugins);
    let mut manifest_in_dir = v1.copy_manifest(&plugins);

    let manager = PluginManager::new(&plugins).expect("plugin manager");
    manager
        .load_plugins(&Value::Null)
        .expect("load the probe plugin");
    let func = manager
        .func::<u64, u64>("probe", "add_one")
        .expect("typed handle on probe.add_one");
    assert_eq!(func.call(41).expect("typed call"), 42);

    // The raw baseline: a separate copy, so the manager's private copy is untouched.
    let raw_path = v1.copy_library(&raw_dir);
    // SAFETY: the probe plugin is our own test library; loading it runs no code that
    // makes assumptions about its loader.
    let raw_lib = unsafe { libloading::Library::new(&raw_path) }.expect("dlopen probe");
    // SAFETY: the probe plugin defines `probe_raw_add_one` as this signature.
    let raw_fn: RawFn =
        *unsafe { raw_lib.get::<RawFn>(b"probe_raw_add_one\0") }.expect("dlsym probe_raw_add_one");
    let raw = Raw(raw_fn);
    assert_eq!(raw.call(41), 42);
    let typed = Typed(func.clone());
    let counting_manager = counting(&plugins);
    let typed_counted = Typed(
        counting_manager
            .func::<u64, u64>("probe", "add_one")
            .expect("typed handle on probe.add_one"),
    );
    assert_eq!(typed_counted.call(41), 42);
    // SAFETY: the probe plugin defines `probe_raw_repeat` as this signature.
    let raw_repeat: RawRepeatFn = *unsafe { raw_lib.get::<RawRepeatFn>(b"probe_raw_repeat\0") }
        .expect("dlsym probe_raw_repeat");
    let raw_str = RawStr(raw_repeat);
    let typed_str = TypedStr(
        manager
            .func::<(&str, u32), String>("probe", "repeat")
            .expect("typed handle on probe.repeat"),
    );
    assert_eq!(raw_str.call(0), 32);
    assert_eq!(typed_str.call(0), 32);
    let iface = Iface(
        manager
            .interface::<dyn Shop>("probe")
            .expect("interface handle on probe's Shop"),
    );
    assert_eq!(iface.call(41), 42);
    let args = [Value::from(1i64), Value::from(2i64)];
    let dynamic = Dynamic {
        manager: &manager,
        args: &args,
    };
    assert_eq!(dynamic.call(0), 3);
    let batch = Batch {
        manager: &manager,
        func: func.clone(),
    };
    assert_eq!(batch.call(41), 42);

    // The same plugin without the heap accounting, in a manager of its own.
    let uncounted_dir = work.path().join("uncounted");
    std::fs::create_dir(&uncounted_dir).expect("create benchmark directory");
    uncounted_build.copy_library(&uncounted_dir);
    uncounted_build.copy_manifest(&uncounted_dir);
    let uncounted_manager = PluginManager::new(&uncounted_dir).expect("plugin manager");
    uncounted_manager
        .load_plugins(&Value::Null)
        .expect("load the uncounted probe");
    let churn = |m: &PluginManager| {
        Typed(
            m.func::<u64, u64>("probe", "churn")
                .expect("typed handle on probe.churn"),
        )
    };
    let (counted, uncounted) = (churn(&manager), churn(&uncounted_manager));
    assert_eq!(counted.call(7), uncounted.call(7));
    let heap = |m: &PluginManager| m.status().versions[0].heap;
    assert!(heap(&manager).is_some(), "the normal build counts its heap");
    assert!(
        heap(&uncounted_manager).is_none(),
        "the no-heap-stats build does not"
    );

    // Async calls: the awaiter plugin in a manager of its own, and its raw baseline from
    // a copy that stays loaded (never unloaded) until the end.
    let awaiter_manager = PluginManager::new(&awaiter_dir).expect("plugin manager");
    awaiter_manager
        .load_plugins(&Value::Null)
        .expect("load the awaiter plugin");
    let ready: AsyncFunc<u64, u64> = awaiter_manager
        .async_func("awaiter", "ready")
        .expect("async handle on awaiter.ready");
    let raw_awaiter_dir = work.path().join("raw-awaiter");
    std::fs::create_dir(&raw_awaiter_dir).expect("create benchmark directory");
    let raw_awaiter_path = awaiter.copy_library(&raw_awaiter_dir);
    // SAFETY: the awaiter plugin is our own test library; loading it runs no code that
    // makes assumptions about its loader.
    let raw_awaiter =
        unsafe { libloading::Library::new(&raw_awaiter_path) }.expect("dlopen awaiter");
    // SAFETY: the awaiter plugin defines `awaiter_raw_ready` with this signature.
    let raw_ready: RawAsyncFn = *unsafe { raw_awaiter.get::<RawAsyncFn>(b"awaiter_raw_ready\0") }
        .expect("dlsym awaiter_raw_ready");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("current-thread runtime");
    // SAFETY (both closures): `awaiter_raw_ready` returns a future its library, which
    // stays loaded until the end of `main`, polls and drops.
    let raw_async = |calls| timed_async(&rt, calls, |x| unsafe { raw_ready(x) });
    let typed_async = |calls| {
        timed_async(&rt, calls, |x| {
            let call = ready.call(x);
            async move { call.await.expect("async call") }
        })
    };
    assert_eq!(
        rt.block_on(async {
            (
                unsafe { raw_ready(41) }.await,
                ready.call(41).await.unwrap(),
            )
        }),
        (42, 42)
    );

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load_before = load_average();
    let samples = Samples::default();

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(SAMPLE_SIZE)
        .nresamples(20_000)
        .configure_from_args();
    // Some lines and their baselines (`HOTSWAP_BENCH_ONLY=typed-str,async`), or every line.
    let wanted = |line: &str| match only.as_deref() {
        None => true,
        Some(some) => some
            .split(',')
            .any(|one| one == line || baseline_of(one) == line),
    };
    if only.as_deref() != Some("reloads") {
        let mut group = criterion.benchmark_group("calls");
        group
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(2))
            .sample_size(SAMPLE_SIZE);
        // Each line criterion times, if `HOTSWAP_BENCH_ONLY` leaves it in.
        let mut line = |name: &'static str, run: &dyn Fn(u64) -> Duration| {
            if wanted(name) {
                group.bench_function(name, |b| b.iter_custom(run));
            }
        };
        line(RAW, &|n| samples.record(RAW, n, on_threads(1, n, &raw)));
        line(TYPED, &|n| samples.record_paired(TYPED, n, 1, &raw, &typed));
        line(TYPED_COUNTED, &|n| {
            samples.record_paired(TYPED_COUNTED, n, 1, &raw, &typed_counted)
        });
        line(BATCH, &|n| samples.record_paired(BATCH, n, 1, &raw, &batch));
        line(RAW_ALL, &|n| {
            samples.record(RAW_ALL, n, on_threads(threads, n, &raw))
        });
        line(TYPED_ALL, &|n| {
            samples.record_paired(TYPED_ALL, n, threads, &raw, &typed)
        });
        line(INTERFACE, &|n| {
            samples.record_paired(INTERFACE, n, 1, &raw, &iface)
        });
        line(INVOKE, &|n| {
            samples.record_paired(INVOKE, n, 1, &raw, &dynamic)
        });
        line(RAW_STR, &|n| {
            samples.record(RAW_STR, n, on_threads(1, n, &raw_str))
        });
        line(TYPED_STR, &|n| {
            samples.record_paired(TYPED_STR, n, 1, &raw_str, &typed_str)
        });
        line(ALLOC_UNCOUNTED, &|n| {
            samples.record(ALLOC_UNCOUNTED, n, on_threads(1, n, &uncounted))
        });
        line(ALLOC_COUNTED, &|n| {
            samples.record_paired(ALLOC_COUNTED, n, 1, &uncounted, &counted)
        });
        line(RAW_ASYNC, &|n| samples.record(RAW_ASYNC, n, raw_async(n)));
        line(ASYNC, &|n| {
            samples.record_paired_with(ASYNC, n, raw_async, typed_async)
        });
        group.finish();
    }

    // Reload latency: swap which manifest is in the directory, then time the reload.
    // `cargo bench` passes --bench; without it (`cargo test --benches`), or with --test,
    // criterion only checks that each benchmark runs once, and so do the reloads here.
    let cli_args: Vec<String> = std::env::args().collect();
    let measuring =
        cli_args.iter().any(|a| a == "--bench") && !cli_args.iter().any(|a| a == "--test");
    let reloads_wanted = std::env::var("HOTSWAP_BENCH_RELOADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(RELOADS);
    let (warmup_reloads, timed_reloads) = if measuring {
        (WARMUP_RELOADS, reloads_wanted.max(RSS_AFTER + 1))
    } else {
        (0, 4)
    };
    let mut not_collected = 0;
    // The resident set after the first RSS_AFTER reloads of the known files, and after
    // the last of them.
    let mut rss = (None, None);
    let mut next_is_v2 = true;
    // Two runs: the same two files alternating (after the first load of each, the host
    // knows them as checked and skips hashing and parsing them again), then each
    // reload's library written afresh first, as a new build would be (checked in full).
    let mut timed = |fresh: bool| {
        eprintln!(
            "timing {timed_reloads} reloads (+{warmup_reloads} untimed), {} ...",
            if fresh {
                "each library written afresh"
            } else {
                "files known"
            }
        );
        let mut reloads = Vec::with_capacity(timed_reloads);
        for i in 0..warmup_reloads + timed_reloads {
            std::fs::remove_file(&manifest_in_dir).expect("remove manifest");
            let next = if next_is_v2 { &v2 } else { &v1 };
            if fresh {
                next.copy_library(&plugins);
            }
            manifest_in_dir = next.copy_manifest(&plugins);
            next_is_v2 = !next_is_v2;

            let start = Instant::now();
            let report = manager.reload(&Value::Null).expect("reload");
            let took = start.elapsed();

            assert!(
                report.plugins.iter().any(|p| p.outcome == Outcome::Loaded),
                "every reload loads a new build: {report}"
            );
            if i >= warmup_reloads {
                reloads.push(took);
            }
            if !manager.collect(Duration::from_secs(5)) {
                not_collected += 1;
            }
            if !fresh && i + 1 == RSS_AFTER {
                rss.0 = resident_kib();
            }
        }
        if !fresh {
            rss.1 = resident_kib();
        }
        reloads.sort();
        reloads
    };
    let reloads = timed(false);
    let fresh_reloads = timed(true);
    assert_eq!(func.call(1).expect("typed call after reloads"), 2);
    let status = manager.status();

    // The table.
    let row = |line: &str, base: &str| match (samples.stats(line), samples.stats(base)) {
        (Some((t, best)), Some((b, b_best))) => {
            let paired = samples
                .paired_ratio(line)
                .map_or("-".to_owned(), |r| format!("{r:.2}x"));
            println!(
                "{line:<18} {t:>8.2} ns {:>8.2}x {paired:>9}   {best:>8.2} ns {:>8.2}x",
                t / b,
                best / b_best
            )
        }
        _ => println!("{line:<18} (not run: filtered out)"),
    };
    println!();
    if !measuring {
        println!("test mode (no --bench): every number below is one sample, not a measurement");
    }
    println!(
        "hotswap call benchmark (ratios against a raw extern \"C\" call measured in this run)"
    );
    println!(
        "{:<18} {:>11} {:>9} {:>9}   {:>11} {:>9}",
        "", "median", "vs raw", "paired", "best", "vs raw"
    );
    row(RAW, RAW);
    row(TYPED, RAW);
    row(TYPED_COUNTED, RAW);
    row(BATCH, RAW);
    row(RAW_ALL, RAW);
    row(TYPED_ALL, RAW_ALL);
    row(INTERFACE, RAW);
    row(INVOKE, RAW);
    row(RAW_STR, RAW);
    row(TYPED_STR, RAW_STR);
    row(ALLOC_UNCOUNTED, RAW);
    row(ALLOC_COUNTED, ALLOC_UNCOUNTED);
    row(RAW_ASYNC, RAW);
    row(ASYNC, RAW_ASYNC);
    if let (Some((on, _)), Some((off, _)), Some(p_on), Some(p_off)) = (
        samples.stats(TYPED_COUNTED),
        samples.stats(TYPED),
        samples.paired_ratio(TYPED_COUNTED),
        samples.paired_ratio(TYPED),
    ) {
        println!(
            "{:<24} {:>8.2}x medians, {:.2}x paired ratios (typed/counted over typed/1-thread)",
            "call metrics cost",
            on / off,
            p_on / p_off
        );
    }
    println!(
        "{:<24} {:>8.2} ms / {:.2} ms",
        "reload p50 / p99",
        ms(percentile(&reloads, 50.0)),
        ms(percentile(&reloads, 99.0)),
    );
    println!(
        "{:<24} {:>8.2} ms / {:.2} ms",
        "reload min / max",
        ms(reloads[0]),
        ms(reloads[reloads.len() - 1]),
    );
    println!(
        "{:<24} {:>8.2} ms / {:.2} ms",
        "reload, new file p50/p99",
        ms(percentile(&fresh_reloads, 50.0)),
        ms(percentile(&fresh_reloads, 99.0)),
    );
    if let (Some(early), Some(late)) = rss {
        println!(
            "{:<24} {early} KiB after {RSS_AFTER} reloads, {late} KiB after {} ({:+} KiB)",
            "resident set",
            warmup_reloads + timed_reloads,
            late as i64 - early as i64
        );
    }
    println!();
    println!(
        "ns/call: median (and best) of the {SAMPLE_SIZE} samples criterion measured in \
         this run, recorded in-process; all-cores: {threads} threads calling at once, the \
         slowest thread's time per call; typed/all-cores is against raw/all-cores, \
         raw/all-cores against raw, typed-str against raw-str, alloc/counted against alloc/uncounted (the heap \
         accounting's cost on the plugin's allocation path), async against raw-async (both awaited in one \
         block_on of a current-thread runtime). paired: each sample of the line follows a sample of its baseline (raw; raw-str for typed-str; alloc/uncounted for alloc/counted; raw-async for async) \
         of the same calls on the same threads, and this is the median of their ratios, \
         which drifts in the machine's speed between lines do not move. Other load on \
         the machine inflates the medians (the all-cores ones most); the best samples \
         are the least disturbed."
    );
    println!(
        "reload: {timed_reloads} reloads alternating v1/v2 of the probe plugin, builds excluded, \
         files already checked once; new file: the same with each library written afresh \
         before its reload (hashed and parsed in full); collect() between reloads, untimed{}.",
        if not_collected > 0 {
            format!(" ({not_collected} collects timed out after 5 s)")
        } else {
            String::new()
        }
    );
    println!(
        "reclamation: {}; generation {}, {} reloads, {} versions unloaded, {} in memory.",
        status.reclamation,
        status.generation,
        status.reloads,
        status.unloaded,
        status.versions.len()
    );
    print_instructions(&instructions);
    if let (Some(before), Some(after)) = (load_before, load_average()) {
        println!("load average (1 min) on {threads} cores: {before} before, {after} after.");
    }
    drop(raw_lib);
    drop(raw_awaiter);
}
