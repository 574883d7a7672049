//! Every hook fails, many times, in one process: one `PluginManager`, and for every
//! (hook, kind) pair the probe plugin is asked at run time (the DataBag key
//! `probe.fail`, no rebuild) to fail, 20 times in a row. After each failed reload the
//! old generation still answers, and the reaper really unloads the failed version
//! before the next attempt. `on_free` and `Drop` failures do not fail a reload: for
//! them, 20 successful reloads each retire a version whose `on_free`/`Drop` panics.
//!
//! Why: a failure in one hook must not leave a plugin-made value to be dropped after
//! its library is closed (found when `reloadable` or `export` fails: the `import`
//! hook's list outlived the version, SIGSEGV once the reaper had closed the library).
//! The reaper's free delay is zero by default, which makes such a race most likely;
//! the runs repeat every failure so that a one-in-many interleaving shows up.
//!
//! Both tests re-run this binary in a child process (so that a crash is reported with
//! the step it happened at): one plain, one under valgrind's memcheck (no invalid
//! read, write or jump). Knobs, for chasing the race by hand:
//! - `HOTSWAP_HOOKS_REPS` / `HOTSWAP_HOOKS_VALGRIND_REPS`: repetitions per pair
//!   (20 / 20);
//! - `HOTSWAP_HOOKS_FREE_DELAY_MS`: the reaper's free delay (`Builder::free_delay`,
//!   default 0);
//! - `HOTSWAP_HOOKS_ONLY=export:panic,drop:panic`: only these pairs (default: all);
//! - `HOTSWAP_HOOKS_ONE_CPU=0`: do not pin the child to one CPU. Pinned (the default),
//!   the reaper, woken when a failed load drops its version, preempts the reloading
//!   thread at once: the loader race showed at the first `reloadable` (or `export`)
//!   failure in every pinned run, and in about half the unpinned ones (where it depends
//!   on which CPUs the two threads land on). valgrind runs one thread at a time;
//!   pinned and with `--fair-sched=yes`, the woken reaper gets the turn first (caught in
//!   every pinned run, in 1 of 6 unpinned).

// A module of `tests/memcheck.rs`, which declares `common` once for both.
use super::common;

use common::{build_optimised, clear, install, plugin_dir, require_tool};
use hotswap_host::{maps, Error, LoadErrorKind, Outcome, PluginManager, Step, Value};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const PROBE: &str = "tests/plugins/probe";
const PROVIDER: &str = "tests/plugins/provider";
/// The DataBag key the probe's hooks read (see `tests/plugins/probe`).
const KEY: &str = "probe.fail";
/// The child role: `<probe v1 dir>|<probe v2 dir>|<provider dir>|<repetitions>`.
const CHILD: &str = "HOTSWAP_HOOKS";
/// Set for the plain child: pin it to one CPU (see the knobs above).
const PIN: &str = "HOTSWAP_HOOKS_PIN";

/// Every failure that fails a reload, and the step the error must name. `new`,
/// `reloadable`, `export` and `import` cannot return an error: only panics.
const FAILING: &[(&str, &str, Step)] = &[
    ("new", "panic", Step::New),
    ("reloadable", "panic", Step::Reloadable),
    ("export", "panic", Step::Export),
    ("import", "panic", Step::Import),
    ("on_load", "panic", Step::OnLoad),
    ("on_load", "error", Step::OnLoad),
    ("on_init", "panic", Step::OnInit),
    ("on_init", "error", Step::OnInit),
];

/// Failures that run on the reaper, after a successful reload retired the version.
const RETIRING: &[&str] = &["on_free", "drop"];

/// How the children run under valgrind. `allregs-at-mem-access`: a fault's report must
/// show the fault itself. The test binary's std has a SIGSEGV handler (stack overflow
/// detection) that, for any other address, restores the default action and returns, so
/// the faulting instruction runs again and kills the process. By default memcheck keeps
/// only the stack, frame and instruction pointers exact at a memory access; the other
/// registers of the signal frame may be stale, so the instruction runs again on stale
/// values and reads through garbage before it dies: the one true fault (`usage` of
/// the live probe read its table's address as 0, then read at 0x8) came with invalid
/// reads "after" and "inside" host blocks that had nothing to do with it, and a
/// SIGSEGV megabytes away. With every register exact the report ends at the first
/// fault (`a_fault_under_valgrind_is_reported_where_it_happened` checks it). It costs
/// no measurable time here.
const MEMCHECK: &[&str] = &[
    "--tool=memcheck",
    "--error-exitcode=99",
    "--leak-check=no",
    "--track-origins=no",
    "--fair-sched=yes",
    "--vex-iropt-register-updates=allregs-at-mem-access",
    "-q",
];

/// Set for the child of `a_fault_under_valgrind_is_reported_where_it_happened`.
#[cfg(target_arch = "x86_64")]
const FAULT: &str = "HOTSWAP_HOOKS_FAULT";

/// Replaces the plugin directory's probe build with the one staged in `from`.
fn put_probe(dir: &Path, from: &Path, provider: &Path) {
    clear(dir);
    for staged in [from, provider] {
        for e in std::fs::read_dir(staged).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
}

fn count(log: &Path, line: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == line)
        .count()
}

/// Pins the calling thread (and the threads and processes it starts from now on) to
/// the first CPU it may run on. Not `sched_getcpu`: rustix reads the vDSO for it, which
/// valgrind does not map the way rustix expects.
fn pin_to_one_cpu() {
    let allowed = rustix::thread::sched_getaffinity(None).expect("sched_getaffinity");
    let cpu = (0..rustix::thread::CpuSet::MAX_CPU)
        .find(|&c| allowed.is_set(c))
        .expect("some CPU is allowed");
    let mut one = rustix::thread::CpuSet::new();
    one.set(cpu);
    rustix::thread::sched_setaffinity(None, &one).expect("pin to one CPU");
    println!("pinned to CPU {cpu}");
}

/// Whether the children run on one CPU (`HOTSWAP_HOOKS_ONE_CPU=0`: no).
fn one_cpu() -> bool {
    std::env::var("HOTSWAP_HOOKS_ONE_CPU").map_or(true, |v| v != "0")
}

/// The work: what the child process runs, plain or under valgrind.
fn every_hook_fails(v1: &Path, v2: &Path, provider: &Path, reps: usize) {
    if std::env::var_os(PIN).is_some() {
        // This thread only; the manager's reaper, started below, inherits it.
        pin_to_one_cpu();
    }
    let delay = std::env::var("HOTSWAP_HOOKS_FREE_DELAY_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let started = Instant::now();
    let dir = plugin_dir();
    let scratch = plugin_dir();
    let log = scratch.path().join("hooks.log");
    let data = Value::map([("log", log.to_str().unwrap())]);
    let m = PluginManager::builder(dir.path())
        .free_delay(Duration::from_millis(delay))
        .build()
        .unwrap();
    // Start from an empty directory, then install a healthy probe v1 and the provider:
    // the old generation every failed reload falls back to.
    m.load_plugins(&Value::Null).unwrap();
    assert!(m.plugins().is_empty());
    put_probe(dir.path(), v1, provider);
    let report = m.reload(&data).unwrap();
    for name in ["probe", "provider"] {
        assert_eq!(report.plugin(name).unwrap().outcome, Outcome::Loaded);
    }
    let version = m.func::<(), u32>("probe", "version_number").unwrap();
    let add = m.func::<u64, u64>("probe", "add_one").unwrap();
    let old_generation_answers = |what: &str, expected: u32| {
        assert_eq!(version.call(()).unwrap(), expected, "{what}");
        assert_eq!(add.call(41).unwrap(), 42, "{what}");
        assert_eq!(
            m.invoke_func("probe", "version", &[]).unwrap().as_str(),
            Some(if expected == 1 { "v1" } else { "v2" }),
            "{what}"
        );
        let text = m.invoke_func("probe", "long_string", &[]).unwrap();
        assert_eq!(text.as_str().unwrap().len(), 3000, "{what}");
        assert_eq!(
            m.invoke_func("provider", "ping", &[]).unwrap().as_str(),
            Some("provider:ping"),
            "{what}"
        );
    };
    // Only the current probe and the provider are mapped, and listed; the live v1's
    // read-only pages, if watched, are as they were at each step.
    let only_current_mapped = |what: &str, v1: Option<&Unchanging>| {
        assert!(
            m.collect(Duration::from_secs(120)),
            "{what}: the reaper drained"
        );
        if let Some(v1) = v1 {
            v1.check(&format!("{what}, after the reaper drained"));
        }
        let mapped = maps::mapped_under(m.private_dir());
        assert_eq!(
            mapped.len(),
            2,
            "{what}: only the current versions are mapped: {mapped:?}"
        );
        // `status` calls the live versions' heap functions, through their GOTs.
        let status = m.status();
        assert_eq!(status.versions.len(), 2, "{what}: {:?}", status.versions);
    };
    only_current_mapped("after the first load", None);
    let v1_pages = Unchanging::of(
        maps::mapped_under(m.private_dir())
            .iter()
            .find(|p| p.contains("-probe-"))
            .expect("probe v1 is mapped"),
    );

    // The failing builds are probe v2 (another sha256, so every reload loads it anew).
    put_probe(dir.path(), v2, provider);
    let only = std::env::var("HOTSWAP_HOOKS_ONLY").ok();
    let chosen = |asked: &str| {
        only.as_ref()
            .is_none_or(|o| o.split(',').any(|p| p == asked))
    };
    for &(hook, kind, step) in FAILING {
        let asked = format!("{hook}:{kind}");
        if !chosen(&asked) {
            continue;
        }
        println!("{asked}: {reps} failing reloads...");
        m.vault().set(KEY, asked.as_str());
        let generation = m.generation_id();
        for i in 0..reps {
            let what = format!("{asked}, attempt {}/{reps}", i + 1);
            println!("{what}");
            let unloaded = m.status().unloaded;
            let e = match m.reload(&data) {
                Err(Error::Load(e)) => e,
                other => panic!("{what}: expected a load error, got {other:?}"),
            };
            assert_eq!(e.step, step, "{what}: {e}");
            assert_eq!(e.plugin.as_deref(), Some("probe"), "{what}: {e}");
            assert!(
                e.to_string().contains(&format!("failed at {step}")),
                "{what}: {e}"
            );
            let message = match (&e.kind, kind) {
                (LoadErrorKind::Panic(msg), "panic") => msg,
                (LoadErrorKind::Hook(msg), "error") => msg,
                _ => panic!("{what}: expected a {kind}, got {e}"),
            };
            let verb = if kind == "panic" {
                "panicked"
            } else {
                "failed"
            };
            assert!(
                message.starts_with(&format!("probe v2 {verb} in {hook} ({KEY} = {asked})")),
                "{what}: the plugin's message: {message}"
            );
            // Nothing changed: the old generation serves, its functions answer.
            assert_eq!(m.generation_id(), generation, "{what}");
            v1_pages.check(&format!("{what}, after the reload"));
            old_generation_answers(&what, 1);
            // The failed version's file was closed and unmapped (also after a failure in
            // `new`, which made no instance).
            only_current_mapped(&what, Some(&v1_pages));
            assert_eq!(m.status().unloaded, unloaded + 1, "{what}");
        }
        m.vault().remove(KEY);
        println!("{asked}: {reps} failed reloads, the old generation served throughout");
    }
    // Cleared: the failing build now loads.
    m.reload(&data).unwrap();
    old_generation_answers("probe v2 once nothing is asked to fail", 2);
    only_current_mapped("probe v2 loaded", None);

    // on_free and Drop run once a successful reload retired the version: 20 reloads,
    // alternating the two builds, each retiring a version whose hook panics.
    let mut current = 2;
    for &hook in RETIRING {
        let asked = format!("{hook}:panic");
        if !chosen(&asked) {
            continue;
        }
        println!("{asked}: {reps} retiring reloads...");
        m.vault().set(KEY, asked.as_str());
        for i in 0..reps {
            let what = format!("{asked}, reload {}/{reps}", i + 1);
            println!("{what}");
            let retired = format!("v{current}:fail {asked}");
            let failed_before = count(&log, &retired);
            let unloaded = m.status().unloaded;
            let next = 3 - current;
            put_probe(dir.path(), if next == 1 { v1 } else { v2 }, provider);
            let report = m.reload(&data).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(
                report.plugin("probe").unwrap().outcome,
                Outcome::Loaded,
                "{what}"
            );
            assert_eq!(
                report.plugin("provider").unwrap().outcome,
                Outcome::Unchanged,
                "{what}"
            );
            current = next;
            old_generation_answers(&what, current);
            only_current_mapped(&what, None);
            // The retired version's hook did run, and panicked, and it was unloaded.
            assert_eq!(
                count(&log, &retired),
                failed_before + 1,
                "{what}: {retired}"
            );
            assert_eq!(m.status().unloaded, unloaded + 1, "{what}");
        }
        m.vault().remove(KEY);
        println!("{asked}: {reps} retired versions panicked in {hook} and were unloaded");
    }
    println!(
        "every hook failed {reps} times in one process in {:?}; reclamation: {}",
        started.elapsed(),
        m.status().reclamation
    );
}

/// The read-only mappings of a loaded library (its headers and read-only data, and its
/// relocated RELRO pages: GOT, vtables), as they were when watched: nothing may change
/// them while it stays loaded. Why: once under valgrind, `status()` found the live
/// probe v1's GOT slot of its heap counters reading 0 (its relocated page as the file
/// has it) after a failed v2 was closed; checked at every step, a change is caught at
/// the step that made it, with the maps as they were then, in plain runs too.
struct Unchanging {
    path: String,
    /// Start address and contents of each read-only mapping of `path`.
    regions: Vec<(u64, Vec<u8>)>,
}

impl Unchanging {
    fn of(path: &str) -> Unchanging {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let regions: Vec<_> = maps
            .lines()
            .filter(|l| l.ends_with(path))
            .filter_map(|l| {
                let mut fields = l.split_whitespace();
                let (range, perms) = (fields.next()?, fields.next()?);
                let (start, end) = range.split_once('-')?;
                let start = u64::from_str_radix(start, 16).ok()?;
                let end = u64::from_str_radix(end, 16).ok()?;
                (perms == "r--p").then(|| (start, read_own_memory(start, end - start)))
            })
            .collect();
        assert!(regions.len() >= 2, "headers and RELRO of {path}:\n{maps}");
        Unchanging {
            path: path.to_owned(),
            regions,
        }
    }

    /// Panics, naming `what`, the first changed byte and the maps, if a page changed.
    fn check(&self, what: &str) {
        for (start, was) in &self.regions {
            let now = read_own_memory(*start, was.len() as u64);
            // A slice comparison first (a memcmp): the byte loop below, in this
            // unoptimised test build, was four fifths of the valgrind run.
            if now == *was {
                continue;
            }
            if let Some(at) = now.iter().zip(was).position(|(a, b)| a != b) {
                let word = |b: &[u8]| {
                    let i = at & !7;
                    u64::from_le_bytes(b[i..i + 8].try_into().unwrap())
                };
                panic!(
                    "{what}: a read-only page of the live {} changed: the word at {:#x} was \
                     {:#x}, is {:#x}; maps now:\n{}",
                    self.path,
                    *start as usize + (at & !7),
                    word(was),
                    word(&now),
                    std::fs::read_to_string("/proc/self/maps").unwrap_or_default()
                );
            }
        }
    }
}

/// `len` bytes of this process's memory at `at`, through `/proc/self/mem` (no pointer:
/// an unmapped page is an error, not a crash).
fn read_own_memory(at: u64, len: u64) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::File::open("/proc/self/mem").unwrap();
    let mut bytes = vec![0; len as usize];
    mem.read_exact_at(&mut bytes, at)
        .unwrap_or_else(|e| panic!("read {len} bytes at {at:#x} of /proc/self/mem: {e}"));
    bytes
}

/// Stages the three builds in directories of their own; returns the child's spec.
fn stage(reps: usize) -> (Vec<tempfile::TempDir>, String) {
    let dirs = vec![plugin_dir(), plugin_dir(), plugin_dir()];
    // Optimised: the same builds run under valgrind (`common::build_optimised`).
    install(&build_optimised(PROBE, &[]), dirs[0].path());
    install(&build_optimised(PROBE, &["v2"]), dirs[1].path());
    install(&build_optimised(PROVIDER, &[]), dirs[2].path());
    let spec = format!(
        "{}|{}|{}|{reps}",
        dirs[0].path().display(),
        dirs[1].path().display(),
        dirs[2].path().display()
    );
    (dirs, spec)
}

/// Runs the work when this process is the child; returns whether it was.
fn as_child() -> bool {
    let Ok(spec) = std::env::var(CHILD) else {
        return false;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let [v1, v2, provider, reps] = parts[..] else {
        panic!("{CHILD}={spec}: expected four fields");
    };
    every_hook_fails(
        Path::new(v1),
        Path::new(v2),
        Path::new(provider),
        reps.parse().unwrap(),
    );
    true
}

fn reps(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Checks the child's exit, naming a crash's signal and where the child got to.
fn check_child(out: &std::process::Output, reps: usize, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    if let Some(signal) = out.status.signal() {
        panic!(
            "{what}: the child was killed by signal {signal}{} (a plugin-made value used \
             after its library was closed?); its last steps:\n{stdout}\n{stderr}",
            if signal == 11 { " (SIGSEGV)" } else { "" }
        );
    }
    assert!(
        out.status.success(),
        "{what}: the child failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(&format!("every hook failed {reps} times in one process")),
        "{what}: {stdout}"
    );
    stdout
}

#[test]
fn every_hook_fails_20_times_in_one_process() {
    if as_child() {
        return;
    }
    let reps = reps("HOTSWAP_HOOKS_REPS", 20);
    let (_dirs, spec) = stage(reps);
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "--exact",
            &common::test_name(module_path!(), "every_hook_fails_20_times_in_one_process"),
            "--nocapture",
        ])
        .env(CHILD, &spec);
    if one_cpu() {
        child.env(PIN, "1");
    }
    let out = child.output().unwrap();
    check_child(&out, reps, "plain run");
    println!("plain run: {:?}", started.elapsed());
}

/// This binary re-run under memcheck ([`MEMCHECK`]) on its test `name` of this module alone.
fn under_valgrind(name: &str) -> Command {
    let mut child = Command::new("valgrind");
    child
        .args(MEMCHECK)
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &common::test_name(module_path!(), name),
            "--nocapture",
            "--test-threads=1",
        ]);
    child
}

#[test]
fn every_hook_fails_under_valgrind_with_no_invalid_memory_access() {
    if as_child() {
        return;
    }
    if !require_tool("valgrind") {
        return;
    }
    let reps = reps("HOTSWAP_HOOKS_VALGRIND_REPS", 20);
    let (_dirs, spec) = stage(reps);
    if one_cpu() {
        // valgrind runs one thread at a time, whatever the CPUs; on one CPU the reaper,
        // woken inside the failed load's futex call, gets the turn first more often.
        // This test thread only (valgrind inherits it); it ends with the test.
        pin_to_one_cpu();
    }
    let started = Instant::now();
    let out = under_valgrind("every_hook_fails_under_valgrind_with_no_invalid_memory_access")
        .env(CHILD, &spec)
        .env_remove(PIN)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    common::assert_memcheck_clean(
        &format!(
            "valgrind run (stdout: {})",
            String::from_utf8_lossy(&out.stdout)
        ),
        &stderr,
    );
    check_child(&out, reps, "valgrind run");
    println!("valgrind run: {:?}", started.elapsed());
}

/// Stands for the GOT slot `hotswap_plugin_api::heap::usage` reads its counters'
/// address from: here it holds 0, as that slot read in the failure described at
/// [`MEMCHECK`].
#[cfg(target_arch = "x86_64")]
static TABLE: std::sync::atomic::AtomicPtr<u64> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// What `usage` did when its slot read 0: load the table's address into a register
/// once, then sum its words from offset 8 in a loop. Faults at 0x8 (on purpose).
#[cfg(target_arch = "x86_64")]
fn sum_through_a_null_table() -> u64 {
    let slot = TABLE.as_ptr();
    let sum: u64;
    // SAFETY: reads `slot` (a live static) and then address 8, which is never mapped:
    // the process dies of that SIGSEGV on purpose (the child of the test below), and
    // nothing of it is observed by Rust code.
    unsafe {
        std::arch::asm!(
            "mov {t}, qword ptr [{slot}]",
            "xor {i:e}, {i:e}",
            "xor {s:e}, {s:e}",
            "2:",
            "add {s}, qword ptr [{t} + {i} + 8]",
            "add {i}, 64",
            "cmp {i}, 8192",
            "jne 2b",
            slot = in(reg) slot,
            t = out(reg) _,
            i = out(reg) _,
            s = out(reg) sum,
            options(nostack, readonly),
        );
    }
    sum
}

/// A fault under this file's valgrind options is reported at the faulting address,
/// and only there: the process dies at 0x8 with one invalid read, not after reading on
/// through stale registers (see [`MEMCHECK`]).
#[cfg(target_arch = "x86_64")]
#[test]
fn a_fault_under_valgrind_is_reported_where_it_happened() {
    if std::env::var_os(FAULT).is_some() {
        println!("sum: {}", sum_through_a_null_table());
        return;
    }
    if !require_tool("valgrind") {
        return;
    }
    let out = under_valgrind("a_fault_under_valgrind_is_reported_where_it_happened")
        .env(FAULT, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the child survived: {stderr}");
    assert_eq!(
        stderr.matches("Invalid read").count(),
        1,
        "one fault, one report: {stderr}"
    );
    assert!(
        stderr.contains("Address 0x8 is not stack'd")
            && stderr.contains("Access not within mapped region at address 0x8"),
        "reported, and died, at the faulting address: {stderr}"
    );
}
