//! Ordinary crates unload (issue #13): plugins that use what every real plugin uses —
//! a `thread_local!` with a destructor, `rand::rng()`, `println!`, `thread::current()`,
//! a tokio runtime, a raw thread, a `LazyLock` — are reloaded under calls from a pool of
//! long-lived host threads, and every retired version is unmapped once each thread has
//! passed one call boundary, with nothing ever running in unmapped code (DESIGN, "Per-thread
//! state of plugin code").
//!
//! Each scenario runs in a child process (this test binary re-run with `ORDINARY_SCENARIO`
//! naming it), so a crash is a failure that shows the child's signal and stderr. The parent
//! builds the two versions (`<features>` and `<features>,v2`) with `common::build` and
//! hands their directories to the child. The child:
//!
//! 1. loads v1, makes a typed handle on `call`, starts four caller threads (`caller-0..3`)
//!    calling it in a loop, and reloads alternately v2 and v1 from their directories:
//!    0 failed calls, every answer from the version of the generation that served it, and
//!    the answers switch between the versions;
//! 2. stops reloading, collects, lets each caller make one more call, collects again: at
//!    most 2 private copies mapped (the current one and at most one retired);
//! 3. lets the callers exit, collects: exactly 1 mapped, and no version `Pinned`.

// A module of `tests/memcheck.rs` (the long tests whose children run under valgrind),
// which declares `common` once for all of them.
use super::common;

use common::{build, install, plugin_dir};
use hotswap_host::{maps, Outcome, PluginManager, Status, Value, VersionState};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Set in the child when it runs under valgrind.
const VALGRIND_ENV: &str = "ORDINARY_UNDER_VALGRIND";
const ORDINARY: &str = "tests/plugins/ordinary";
/// Names the scenario a child process runs.
const SCENARIO: &str = "ORDINARY_SCENARIO";
/// The directories holding the v1 and the v2 build, for the child.
const V1_DIR: &str = "ORDINARY_V1_DIR";
const V2_DIR: &str = "ORDINARY_V2_DIR";
/// Where the `tls` plugin's destructors append `dropped <version> <thread>`.
const DROP_LOG: &str = "ORDINARY_DROP_LOG";

/// What a scenario does and expects.
#[derive(Clone, Copy)]
struct Params {
    reloads: u64,
    callers: usize,
    /// The plugin's `tls` destructors log to `ORDINARY_DROP_LOG`: check them.
    drop_log: bool,
    expect: Expect,
    /// Run the child under valgrind's memcheck.
    valgrind: bool,
    /// Threads each version starts (named `plug-…`): once the callers exited and
    /// everything retired was collected, only the current version's still run.
    threads: usize,
    /// Heap bytes each version's code leaves allocated for good (`Some(at least)`):
    /// `status()` must show them on the current version and sum them over the unloaded
    /// ones. `None`: not checked.
    leaks: Option<i64>,
}

#[derive(Clone, Copy, PartialEq)]
enum Expect {
    /// Retired versions are unmapped once every caller passed one call boundary.
    Unloaded,
    /// Every version's own thread never exits: the retired versions stay mapped (and
    /// listed by `status()`), and nothing crashes.
    ThreadsRunForever,
}

const GENERAL: Params = Params {
    reloads: 200,
    callers: 4,
    drop_log: false,
    expect: Expect::Unloaded,
    valgrind: false,
    threads: 0,
    leaks: None,
};

#[test]
fn thread_local_with_a_destructor() {
    scenario(
        "thread_local_with_a_destructor",
        &["tls"],
        Params {
            drop_log: true,
            ..GENERAL
        },
    );
}

#[test]
fn rand_thread_rng() {
    scenario("rand_thread_rng", &["rand"], GENERAL);
}

/// rand 0.8 registers `pthread_atfork` handlers (once per version, at its first
/// `thread_rng()`), and the plugin forks while old versions unload: glibc runs each
/// handler with its lock released, so a `dlclose` (which unregisters the version's and
/// unmaps them) racing a fork crashed the host (SIGSEGV, or glibc's "array index not
/// less than array length" abort). The host keeps a plugin's handlers and forgets a
/// version's before it closes its library.
#[test]
fn rand08_thread_rng_and_fork() {
    scenario(
        "rand08_thread_rng_and_fork",
        &["rand08", "fork"],
        Params {
            reloads: 600,
            ..GENERAL
        },
    );
}

/// A backtrace formatted in the plugin: std's symbolizer maps the object files it
/// reads (the version's own copy included) and keeps the maps in a static, so after
/// `dlclose` a read-only mapping of the file stays. Its code is gone: the version is
/// unloaded (not "pinned"), and what the symbolizer cached counts as its leak.
#[test]
fn a_backtrace_formatted_by_a_version_leaves_data_not_code() {
    let (v1, v2) = (plugin_dir(), plugin_dir());
    install(&build(ORDINARY, &["backtrace"]), v1.path());
    install(&build(ORDINARY, &["backtrace", "v2"]), v2.path());
    let m = PluginManager::new(v1.path()).unwrap();
    m.load_plugins(&Value::Null).unwrap();
    let old = m.status().versions[0].id;
    m.reload_from(v2.path(), &Value::Null).unwrap();
    assert!(m.collect(Duration::from_secs(60)));
    let status = m.status();
    assert!(
        status.versions.iter().all(|v| v.id != old),
        "the old version is unloaded, not pinned: {status:#?}"
    );
    assert_eq!(status.unloaded, 1, "{status:#?}");
    let current = m.find_plugin("ordinary").unwrap();
    for path in maps::mapped_under(m.private_dir()) {
        let how = maps::how_mapped(std::path::Path::new(&path)).unwrap();
        assert!(
            how == maps::Mapped::DataOnly || path.contains(&format!("/{}-", current.id)),
            "{path}: {how:?}"
        );
    }
}

#[test]
fn println_on_every_call() {
    scenario("println_on_every_call", &["println"], GENERAL);
}

#[test]
fn thread_current_and_park() {
    scenario("thread_current_and_park", &["current"], GENERAL);
}

/// More reloads than a process has pthread keys (1,024): one key per version must not
/// be leaked, and the callers then exit cleanly.
#[test]
fn thread_current_over_2000_reloads() {
    scenario(
        "thread_current_over_2000_reloads",
        &["current"],
        Params {
            reloads: 2000,
            ..GENERAL
        },
    );
}

#[test]
fn tokio_runtime() {
    scenario(
        "tokio_runtime",
        &["tokio"],
        Params {
            threads: 2,
            ..GENERAL
        },
    );
}

/// The compiled regex stays allocated in each version's static (statics are never
/// dropped): the host reports it, per version and summed at unload.
#[test]
fn lazy_lock_regex() {
    scenario(
        "lazy_lock_regex",
        &["lazy"],
        Params {
            leaks: Some(4_000),
            ..GENERAL
        },
    );
}

/// A buffer leaked in `on_load` (`Box::leak`): each version's 100,000 bytes are in its
/// heap figure while it is loaded and in the unloaded sum after.
#[test]
fn leaked_buffer() {
    scenario(
        "leaked_buffer",
        &["leak"],
        Params {
            reloads: 50,
            leaks: Some(100_000),
            ..GENERAL
        },
    );
}

/// Each version's thread leaves when `on_free` drops its channel's sender (nobody joins
/// it): the host must not unmap the code while that thread is still on its way out.
#[test]
fn raw_thread_that_exits_in_on_free() {
    scenario(
        "raw_thread_that_exits_in_on_free",
        &["raw-thread"],
        Params {
            threads: 1,
            ..GENERAL
        },
    );
}

/// Each version's thread never exits: its version must stay mapped (and say so in
/// `status()`), and nothing may crash.
#[test]
fn raw_thread_that_runs_forever() {
    scenario(
        "raw_thread_that_runs_forever",
        &["raw-thread-forever"],
        Params {
            reloads: 20,
            expect: Expect::ThreadsRunForever,
            threads: 1,
            ..GENERAL
        },
    );
}

/// Under valgrind's memcheck: 30 reloads on 2 callers that then exit, with no invalid
/// read or write and no jump into unmapped code.
const UNDER_VALGRIND: Params = Params {
    reloads: 30,
    callers: 2,
    drop_log: false,
    expect: Expect::Unloaded,
    valgrind: true,
    threads: 0,
    leaks: None,
};

/// `thread::current()`: each version's std registers a pthread key destructor on the
/// callers, which runs when they exit.
#[test]
fn timer_wakes_plugin_code_that_keeps_a_thread_local() {
    scenario(
        "timer_wakes_plugin_code_that_keeps_a_thread_local",
        &["timer-waker"],
        GENERAL,
    );
}

#[test]
fn thread_current_under_valgrind() {
    scenario(
        "thread_current_under_valgrind",
        &["current"],
        UNDER_VALGRIND,
    );
}

/// Plugin wakers on the host's timer thread, their thread-locals destroyed there.
#[test]
fn timer_wakes_under_valgrind() {
    scenario(
        "timer_wakes_under_valgrind",
        &["timer-waker"],
        UNDER_VALGRIND,
    );
}

/// A thread-local destructor on each caller, per version.
#[test]
fn thread_local_under_valgrind() {
    scenario(
        "thread_local_under_valgrind",
        &["tls"],
        Params {
            drop_log: true,
            ..UNDER_VALGRIND
        },
    );
}

/// In the parent: builds the two versions and runs the scenario in a child process.
/// In the child (`ORDINARY_SCENARIO` is `name`): runs it.
fn scenario(name: &str, features: &[&str], p: Params) {
    if let Ok(which) = std::env::var(SCENARIO) {
        assert_eq!(which, name, "run with --exact");
        exercise(name, p);
        return;
    }
    let mut wrapper: Vec<String> = Vec::new();
    if p.valgrind {
        if !common::require_tool("valgrind") {
            return;
        }
        wrapper = [
            "valgrind",
            "--tool=memcheck",
            "--error-exitcode=99",
            "--leak-check=no",
            "--errors-for-leak-kinds=none",
            "--track-origins=no",
            // Wake the reloading and hook threads in turn while the callers spin.
            "--fair-sched=yes",
            "-q",
        ]
        .map(String::from)
        .to_vec();
    }
    let (v1, v2) = (plugin_dir(), plugin_dir());
    let mut with_v2: Vec<&str> = features.to_vec();
    with_v2.push("v2");
    install(&build(ORDINARY, features), v1.path());
    install(&build(ORDINARY, &with_v2), v2.path());
    let scratch = plugin_dir();
    let drop_log = scratch.path().join("drops.log");

    let exe = std::env::current_exe().unwrap();
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let test = common::test_name(module_path!(), name);
    cmd.args(["--exact", &test, "--nocapture", "--test-threads=1"])
        .env(SCENARIO, name)
        .env(V1_DIR, v1.path())
        .env(V2_DIR, v2.path())
        .env(DROP_LOG, &drop_log)
        .env(VALGRIND_ENV, if p.valgrind { "1" } else { "0" })
        // The `println` plugin prints on every call; the child reports on stderr.
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start the child");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let limit = Duration::from_secs(if p.valgrind { 600 } else { 240 });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let stderr = reader.join().unwrap();
    let Some(status) = status else {
        panic!(
            "{name}: the child did not finish within {limit:?}; killed it. Its stderr:\n{stderr}"
        );
    };
    println!("{name}: child {status} in {elapsed:.1?}; its stderr:\n{stderr}");
    if p.valgrind {
        common::assert_memcheck_clean(&format!("{name} (child {status})"), &stderr);
    }
    assert!(
        status.success(),
        "{name}: the child failed: {}\n{stderr}",
        describe(status)
    );
    assert!(
        stderr.contains(&format!("ORDINARY {name}: done")),
        "{name}: the child did not run the scenario:\n{stderr}"
    );
}

/// An exit status in words: the signal that killed the child, or its exit code.
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (_, Some(sig)) => {
            let what = match sig {
                6 => "SIGABRT",
                7 => "SIGBUS",
                11 => "SIGSEGV",
                4 => "SIGILL",
                9 => "SIGKILL",
                _ => "signal",
            };
            let core = if status.core_dumped() {
                ", core dumped"
            } else {
                ""
            };
            format!("killed by {what} ({sig}){core}")
        }
        (Some(99), None) => "exit code 99 (valgrind found errors)".into(),
        (Some(code), None) => format!("exit code {code}"),
        (None, None) => format!("{status:?}"),
    }
}

/// Where the child's log events go, for the leak scenarios.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What one caller thread saw.
#[derive(Debug, Default)]
struct Caller {
    calls: u64,
    failed: u64,
    /// Answers not from the version of the generation that served the call.
    wrong: u64,
    /// First few failures and wrong answers, for the report.
    errors: Vec<String>,
    /// Calls answered by v1 and by v2.
    by_version: [u64; 2],
    /// Times the answering version changed between two calls of this thread.
    switches: u64,
    /// Distinct generations (so distinct loaded copies) this thread called.
    generations: u64,
    /// The version that answered the one call after the reloads stopped.
    last_call: Option<u64>,
}

/// The child's side: the whole scenario, then every assertion at once (a failed
/// assertion while the callers wait on a barrier would hang the child instead).
fn exercise(name: &str, p: Params) {
    let v1 = PathBuf::from(std::env::var_os(V1_DIR).expect("v1 dir"));
    let v2 = PathBuf::from(std::env::var_os(V2_DIR).expect("v2 dir"));
    let drop_log = std::env::var_os(DROP_LOG).map(PathBuf::from);
    if let Some(log) = &drop_log {
        let _ = std::fs::remove_file(log);
    }
    // The leak scenarios check the event each unload logs (this child's own subscriber).
    let log = LogBuffer::default();
    if p.leaks.is_some() {
        let writer = log.clone();
        tracing::subscriber::set_global_default(
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish(),
        )
        .unwrap();
    }
    let started = Instant::now();
    let m = std::sync::Arc::new(PluginManager::new(&v1).unwrap());
    m.load_plugins(&Value::Null).unwrap();
    let f = m.func::<u64, u64>("ordinary", "call").unwrap();
    // Generation `base` serves v1; each reload publishes the next, alternating v2, v1.
    let base = m.generation_id();
    let expected = move |g: u64| 1 + (g - base) % 2;
    let last_version = expected(base + p.reloads);
    let mapped = || maps::mapped_under(m.private_dir());

    let stop = AtomicBool::new(false);
    // Steps, each passed by the callers and this thread together: (1) the loops ended;
    // (2) collected, make one more call; (3) made it; (4) checked, exit.
    let step = Barrier::new(p.callers + 1);
    let mut problems: Vec<String> = Vec::new();
    let mut reload_errors = 0u64;
    let (collected, mapped_alive, status_alive, callers) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..p.callers)
            .map(|t| {
                let (f, stop, step) = (f.clone(), &stop, &step);
                std::thread::Builder::new()
                    .name(format!("caller-{t}"))
                    .spawn_scoped(s, move || {
                        let mut c = Caller::default();
                        let (mut last_g, mut last_v) = (0u64, 0u64);
                        let mut call = |c: &mut Caller, n: u64| -> Option<u64> {
                            c.calls += 1;
                            match f.call_with_generation(n) {
                                Ok((answer, g)) => {
                                    let v = answer % 10;
                                    if answer / 10 != n || v != expected(g) {
                                        c.wrong += 1;
                                        if c.errors.len() < 5 {
                                            c.errors.push(format!(
                                                "call({n}) answered {answer} on generation {g} (v{})",
                                                expected(g)
                                            ));
                                        }
                                    }
                                    if (1..=2).contains(&v) {
                                        c.by_version[v as usize - 1] += 1;
                                    }
                                    if last_v != 0 && v != last_v {
                                        c.switches += 1;
                                    }
                                    if g != last_g {
                                        c.generations += 1;
                                    }
                                    (last_g, last_v) = (g, v);
                                    Some(v)
                                }
                                Err(e) => {
                                    c.failed += 1;
                                    if c.errors.len() < 5 {
                                        c.errors.push(format!("call({n}) failed: {e}"));
                                    }
                                    None
                                }
                            }
                        };
                        let mut n = 0u64;
                        // valgrind runs one thread at a time: a caller that never
                        // yields starves the reload for whole time slices.
                        let yielding = std::env::var(VALGRIND_ENV).as_deref() == Ok("1");
                        while !stop.load(Ordering::Relaxed) {
                            call(&mut c, n);
                            n += 1;
                            if yielding {
                                std::thread::yield_now();
                            }
                        }
                        step.wait();
                        step.wait();
                        c.last_call = call(&mut c, n);
                        step.wait();
                        step.wait();
                        c
                    })
                    .unwrap()
            })
            .collect();
        for i in 0..p.reloads {
            if p.reloads >= 1000 && i % 100 == 0 {
                eprintln!("ORDINARY {name}: {i} reloads in {:.1?}", started.elapsed());
            }
            let dir = if i % 2 == 0 { &v2 } else { &v1 };
            match m.reload_from(dir, &Value::Null) {
                Ok(report) => {
                    let outcome = report.plugin("ordinary").map(|r| r.outcome);
                    if outcome != Some(Outcome::Loaded) {
                        problems.push(format!("reload {i}: ordinary was not loaded: {outcome:?}"));
                    }
                }
                Err(e) => {
                    reload_errors += 1;
                    problems.push(format!("reload {i} failed: {e}"));
                    break;
                }
            }
        }
        // Progress on stderr as it happens: a crash shows where it struck.
        eprintln!(
            "ORDINARY {name}: {} reloads in {:.1?}",
            p.reloads - reload_errors,
            started.elapsed()
        );
        stop.store(true, Ordering::Relaxed);
        step.wait();
        let c1 = m.collect(Duration::from_secs(30));
        step.wait();
        step.wait();
        let c2 = m.collect(Duration::from_secs(30));
        let mapped_alive = mapped();
        let status_alive = m.status();
        eprintln!(
            "ORDINARY {name}: every caller made one more call; {} mapped; letting the callers exit",
            mapped_alive.len()
        );
        step.wait();
        let callers: Vec<Caller> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        eprintln!("ORDINARY {name}: the callers exited");
        ((c1, c2), mapped_alive, status_alive, callers)
    });
    // The callers have exited: whatever they registered has run or been retired.
    let c3 = m.collect(Duration::from_secs(30));
    let mapped_exited = mapped();
    let status_exited = m.status();
    let threads = plugin_threads();

    let calls: u64 = callers.iter().map(|c| c.calls).sum();
    let failed: u64 = callers.iter().map(|c| c.failed).sum();
    let wrong: u64 = callers.iter().map(|c| c.wrong).sum();
    let switches: u64 = callers.iter().map(|c| c.switches).sum();
    eprintln!(
        "ORDINARY {name}: {calls} calls on {} threads, {failed} failed, {wrong} wrong, {switches} version switches; \
         mapped: {} with the callers alive, {} after they exited; pinned: {} alive, {} after exit; \
         collect: {collected:?}, {c3}; threads the plugin started still running: {threads}",
        p.callers,
        mapped_alive.len(),
        mapped_exited.len(),
        pinned(&status_alive),
        pinned(&status_exited),
    );

    for (t, c) in callers.iter().enumerate() {
        if c.failed > 0 || c.wrong > 0 {
            problems.push(format!(
                "caller-{t}: {} failed and {} wrong of {} calls: {:?}",
                c.failed, c.wrong, c.calls, c.errors
            ));
        }
        if c.by_version.contains(&0) {
            problems.push(format!(
                "caller-{t} never saw one of the versions: {:?} calls by v1, v2",
                c.by_version
            ));
        }
        if c.last_call != Some(last_version) {
            problems.push(format!(
                "caller-{t}: the call after the reloads answered {:?}, not v{last_version}",
                c.last_call
            ));
        }
    }
    if switches < p.reloads / 10 {
        problems.push(format!(
            "the callers saw the answer switch versions only {switches} times over {} reloads",
            p.reloads
        ));
    }
    if !(collected.0 && collected.1 && c3) {
        problems.push(format!(
            "collect timed out: {collected:?} with the callers alive, {c3} after exit"
        ));
    }

    match p.expect {
        Expect::Unloaded => {
            if mapped_alive.len() > 2 {
                problems.push(format!(
                    "{} private copies mapped after every caller passed a call boundary (at most 2: current + one retired); status:\n{}",
                    mapped_alive.len(),
                    states(&status_alive)
                ));
            }
            if mapped_exited.len() != 1 {
                problems.push(format!(
                    "{} private copies mapped after the callers exited (exactly 1: the current); status:\n{}",
                    mapped_exited.len(),
                    states(&status_exited)
                ));
            }
            if threads != p.threads {
                problems.push(format!(
                    "{threads} threads the plugin started still run, not {} (the current version's)",
                    p.threads
                ));
            }
            if pinned(&status_exited) > 0 {
                problems.push(format!(
                    "versions pinned after the callers exited:\n{}",
                    states(&status_exited)
                ));
            }
        }
        Expect::ThreadsRunForever => {
            let all = p.reloads as usize + 1;
            eprintln!(
                "ORDINARY {name}: status with every version's thread still running:\n{}",
                states(&status_exited)
            );
            if mapped_exited.len() != all || mapped_alive.len() != all {
                problems.push(format!(
                    "{} then {} private copies mapped: all {all} versions must stay mapped while their threads run; status:\n{}",
                    mapped_alive.len(),
                    mapped_exited.len(),
                    states(&status_exited)
                ));
            }
            if threads != all * p.threads {
                problems.push(format!(
                    "{threads} threads the plugin started still run, not {} (every version's)",
                    all * p.threads
                ));
            }
            if status_exited.versions.len() != all {
                problems.push(format!(
                    "status lists {} versions, not all {all} (their threads still run); status:\n{}",
                    status_exited.versions.len(),
                    states(&status_exited)
                ));
            }
        }
    }

    let current_heap = status_exited
        .versions
        .iter()
        .find(|v| v.state == VersionState::Current)
        .and_then(|v| v.heap);
    eprintln!(
        "ORDINARY {name}: heap of the current version: {current_heap:?}; left by the {} unloaded: {:?} ({} bytes each on average)",
        status_exited.unloaded,
        status_exited.unloaded_heap,
        status_exited.unloaded_heap.bytes / status_exited.unloaded.max(1) as i64
    );
    match (current_heap, p.leaks) {
        (None, _) => problems.push("the current version's heap is not measured".into()),
        (Some(h), Some(min)) => {
            if h.bytes < min {
                problems.push(format!(
                    "the current version holds {} heap bytes, not at least the {min} it leaked",
                    h.bytes
                ));
            }
            let unloaded = status_exited.unloaded as i64;
            if unloaded < p.reloads as i64 || status_exited.unloaded_heap.bytes < unloaded * min {
                problems.push(format!(
                    "{unloaded} versions unloaded, leaving {:?}: not at least {min} bytes each",
                    status_exited.unloaded_heap
                ));
            }
        }
        (Some(_), None) => {}
    }
    if let Some(min) = p.leaks {
        let metrics = hotswap_host::metrics::render(&hotswap_host::Trigger::new(m.clone()));
        let gauge = metrics
            .lines()
            .find(|l| l.starts_with("hotswap_version_heap_bytes{plugin=\"ordinary\""))
            .and_then(|l| l.rsplit(' ').next()?.parse::<i64>().ok());
        let total = format!(
            "hotswap_unloaded_heap_bytes_total {}",
            status_exited.unloaded_heap.bytes
        );
        if gauge.is_none_or(|b| b < min) || !metrics.contains(&total) {
            problems.push(format!(
                "/metrics: want the current version's heap gauge (at least {min}) and `{total}`:\n{metrics}"
            ));
        }
        let text = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
        let reports: Vec<i64> = text
            .lines()
            .filter(|l| l.contains("plugin=ordinary") || l.contains("plugin=\"ordinary\""))
            .filter_map(|l| {
                l.split("leaked_bytes=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        let logged: i64 = reports.iter().sum();
        if (reports.len() as u64) < p.reloads || logged != status_exited.unloaded_heap.bytes {
            problems.push(format!(
                "{} unload events with leaked_bytes (want {}), {logged} bytes in all (status: {}): {:?}; log:\n{}",
                reports.len(),
                p.reloads,
                status_exited.unloaded_heap.bytes,
                &reports[..reports.len().min(10)],
                text.lines().take(10).collect::<Vec<_>>().join("\n")
            ));
        }
    }

    if p.drop_log {
        let log = std::fs::read_to_string(drop_log.as_ref().unwrap()).unwrap_or_default();
        // thread name -> (drops of v1, drops of v2)
        let mut drops: BTreeMap<String, [u64; 2]> = BTreeMap::new();
        for line in log.lines() {
            let mut w = line.split_whitespace();
            let (Some("dropped"), Some(v), Some(thread)) = (w.next(), w.next(), w.next()) else {
                problems.push(format!("drop log: bad line {line:?}"));
                continue;
            };
            let slot = &mut drops.entry(thread.to_owned()).or_default()[usize::from(v == "v2")];
            *slot += 1;
        }
        eprintln!("ORDINARY {name}: thread-local destructors run (v1, v2) by thread: {drops:?}");
        for (t, c) in callers.iter().enumerate() {
            let ran = drops
                .get(&format!("caller-{t}"))
                .copied()
                .unwrap_or_default();
            if ran[0] + ran[1] != c.generations || ran.contains(&0) {
                problems.push(format!(
                    "caller-{t} called {} versions, but the destructors of {} v1 and {} v2 caches ran on it",
                    c.generations, ran[0], ran[1]
                ));
            }
        }
    }

    assert!(
        problems.is_empty(),
        "{name}: {} problems:\n- {}",
        problems.len(),
        problems.join("\n- ")
    );
    eprintln!(
        "ORDINARY {name}: done in {:.1?}; reclamation: {}",
        started.elapsed(),
        status_exited.reclamation
    );
}

/// Threads of this process whose name starts with `plug-` (the plugin names its own so).
fn plugin_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|name| name.starts_with("plug-"))
                .count()
        })
        .unwrap_or(0)
}

fn pinned(s: &Status) -> usize {
    s.versions
        .iter()
        .filter(|v| matches!(v.state, VersionState::Pinned { .. }))
        .count()
}

/// The listed versions by state, and the first few (a reason is said once).
fn states(s: &Status) -> String {
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    let mut reasons: Vec<&str> = Vec::new();
    let mut lines = Vec::new();
    for v in &s.versions {
        let state = match &v.state {
            VersionState::Current => "current".to_owned(),
            VersionState::Draining { tasks } => format!("draining ({tasks} tasks)"),
            VersionState::Pinned { reason } => {
                if !reasons.contains(&reason.as_str()) {
                    reasons.push(reason);
                }
                "pinned".to_owned()
            }
            VersionState::Stuck { step, .. } => format!("stuck in {step}"),
            VersionState::Closing {
                thread_locals,
                threads,
            } => format!("closing ({thread_locals} thread-locals, {threads} threads)"),
            other => format!("{other:?}"),
        };
        *by_state
            .entry(match v.state {
                VersionState::Current => "current",
                VersionState::Draining { .. } => "draining",
                VersionState::Pinned { .. } => "pinned",
                VersionState::Stuck { .. } => "stuck",
                VersionState::Closing { .. } => "closing",
                _ => "other",
            })
            .or_default() += 1;
        if lines.len() < 4 {
            lines.push(format!("  #{} {} {state}", v.id, v.build_id));
        }
    }
    if s.versions.len() > lines.len() {
        lines.push(format!("  … and {} more", s.versions.len() - lines.len()));
    }
    for r in reasons {
        lines.push(format!("  pinned because: {r}"));
    }
    format!(
        "  generation {}, {} unloaded so far, listed by state: {by_state:?}\n{}",
        s.generation,
        s.unloaded,
        lines.join("\n")
    )
}
