//! A plugin's `std::env::set_var` and `remove_var` (safe in edition 2021, which plugins
//! use) while host threads read the environment with `std::env::vars_os`. The plugin's
//! std has its own environment lock; without the host's `setenv`/`unsetenv` behind the
//! plugin's (`hotswap_plugin_api::interpose`), its writes reallocated glibc's `environ`
//! under the host's readers: a SIGSEGV in the host's `vars_os`. Now every write is the
//! host's own `set_var` under its lock, and the plugin's `env::var` reads the host's
//! `var_os`: the values the plugin set are the host's, and its reads see the host's.
//!
//! Run in a child process (this test binary re-run with `HOTSWAP_ENV_CHILD` set), so a
//! crash is a failure that shows the child's signal and stderr. Counted in rounds and
//! reads, never time.

mod common;

use hotswap_host::Func;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const AWAITER: &str = "tests/plugins/awaiter";
/// Set in the child process.
const CHILD: &str = "HOTSWAP_ENV_CHILD";
/// Variables the plugin sets per round (and removes half of again).
const VARS: u64 = 300;
const READERS: usize = 4;
/// Rounds of the plugin's writes at least, and reads by the host's threads at least,
/// done while the other side runs.
const ROUNDS: u64 = 20;
const READS: u64 = 500;

#[test]
fn plugin_env_writes_while_host_threads_read_the_environment() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let exe = std::env::current_exe().unwrap();
    let name = common::test_name(
        module_path!(),
        "plugin_env_writes_while_host_threads_read_the_environment",
    );
    let out = Command::new(exe)
        .args(["--exact", &name, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child {} (a signal is the crash this test is about); stdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("env child: done"),
        "the child ran the scenario: {stdout}"
    );
}

fn child() {
    let (_dir, m) = common::loaded(AWAITER, &[]);
    let set_env: Func<u64, u64> = m.func("awaiter", "set_env").unwrap();
    // Set before the readers and the writer start.
    std::env::set_var("HOTSWAP_ENV_FROM_HOST", "host");
    let stop = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let rounds = std::thread::scope(|s| {
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        let vars = std::env::vars_os().count();
                        assert!(vars > 0);
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let writer = s.spawn(|| {
            let mut rounds = 0;
            // Bounded, so that readers that died cannot keep it going.
            while (rounds < ROUNDS || reads.load(Ordering::Relaxed) < READS) && rounds < 100_000 {
                assert_eq!(set_env.call(VARS).unwrap(), VARS + 1, "the plugin's reads");
                rounds += 1;
            }
            stop.store(true, Ordering::Relaxed);
            rounds
        });
        let rounds = writer.join().unwrap();
        for r in readers {
            r.join().unwrap();
        }
        rounds
    });
    let reads = reads.load(Ordering::Relaxed);
    assert!(
        rounds >= ROUNDS && reads >= READS,
        "{rounds} rounds, {reads} reads"
    );
    // What the plugin set and removed is the host's environment.
    for i in 0..VARS {
        let expected = (i % 2 == 0).then(|| format!("v{i}"));
        assert_eq!(
            std::env::var(format!("HOTSWAP_ENV_{i}")).ok(),
            expected,
            "HOTSWAP_ENV_{i}"
        );
    }
    println!(
        "env child: done ({rounds} rounds of {VARS} writes, {reads} reads of the environment)"
    );
}
