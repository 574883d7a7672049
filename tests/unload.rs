//! Unloading is sound: versions loaded, layout-checked and unloaded a thousand times
//! under valgrind's memcheck, with no invalid read or write.
//!
//! Why: abi_stable's layout checker keeps process-wide maps whose entries point at type
//! layouts inside the checked library (DESIGN, "a known hazard"). The host checks every
//! library against a throwaway `CheckingGlobals`, so nothing of an unloaded library is
//! ever read again; this test is the proof. Each cycle unloads the old version before
//! the next load, so a new version is often mapped at the address the old one had:
//! exactly when a stale entry would be read.

// A module of `tests/memcheck.rs`, which declares `common` once for both.
use super::common;

use common::{build_optimised, install, plugin_dir};
use hotswap_host::{maps, PluginManager, Value};
use std::process::Command;
use std::time::Duration;

const PROBE: &str = "tests/plugins/probe";

/// Every how many cycles the churn loads a library written afresh (read, hashed and
/// parsed in full) instead of one the host already checked.
const FRESH_EVERY: usize = 250;

/// The work valgrind watches: `cycles` reloads alternating two builds, each followed by
/// a full collect, with every layout checked again at every load (the plugin's vtable
/// and each typed handle's: `Builder::recheck_layouts`).
///
/// The plugin directory is a symbolic link switched between `dir_a` and `dir_b`, whose
/// files stay as they are. Why: a library written afresh is hashed at its load, and
/// sha256 in software (valgrind's CPU has no SHA extensions) was nine tenths of this
/// run's instructions while proving nothing about unloading; a file the host already
/// checked is not hashed again (its identity includes the inode's ctime, so a link or a
/// rename would make it new). Everything else of a load and an unload runs at every
/// cycle, and every [`FRESH_EVERY`]th cycle loads fresh copies, so the fresh-file path
/// runs under memcheck too.
fn churn(dir_a: &str, dir_b: &str, cycles: usize) {
    let root = plugin_dir();
    let dir = root.path().join("plugins");
    let point = |at: &std::path::Path| {
        let next = root.path().join("next");
        std::os::unix::fs::symlink(at, &next).unwrap();
        std::fs::rename(&next, &dir).unwrap();
    };
    point(std::path::Path::new(dir_a));
    let m = PluginManager::builder(&dir)
        .recheck_layouts(true)
        .build()
        .unwrap();
    let handle = m.func::<u64, u64>("probe", "add_one").unwrap();
    // A value made by the first version, kept while every later version comes and goes:
    // the host copied it out of the plugin, so using it after the unload is sound.
    let mut kept: Option<Value> = None;
    // Typed results the plugin's code made, handed over to the host (a `String` adopted
    // without a copy, a `Vec<String>` rebuilt), kept past every unload likewise.
    let repeat = m.func::<(&str, u32), String>("probe", "repeat").unwrap();
    let words = m
        .func::<(&str,), Option<Vec<String>>>("probe", "words")
        .unwrap();
    let early = m.func::<(), String>("probe", "early_text").unwrap();
    let early_words = m.func::<(), Vec<String>>("probe", "early_words").unwrap();
    let mut kept_typed: Option<(String, Vec<String>)> = None;
    for i in 0..cycles {
        let from = if i % 2 == 0 { dir_a } else { dir_b };
        if i % FRESH_EVERY < 2 {
            let fresh = root.path().join(format!("fresh-{i}"));
            std::fs::create_dir(&fresh).unwrap();
            for e in std::fs::read_dir(from).unwrap() {
                let p = e.unwrap().path();
                std::fs::copy(&p, fresh.join(p.file_name().unwrap())).unwrap();
            }
            point(&fresh);
        } else {
            point(std::path::Path::new(from));
        }
        if i == 0 {
            m.load_plugins(&Value::Null).unwrap();
        } else {
            m.reload(&Value::Null).unwrap();
        }
        assert_eq!(handle.call(i as u64).unwrap(), i as u64 + 1);
        let text = m.invoke_func("probe", "long_string", &[]).unwrap();
        assert!(text
            .as_str()
            .unwrap()
            .starts_with(if i % 2 == 0 { "v1:" } else { "v2:" }));
        kept.get_or_insert(text);
        // A string from the plugin's early arena (made by a static constructor): copied.
        assert!(early.call(()).unwrap().starts_with("made before"));
        assert_eq!(early_words.call(()).unwrap(), ["early", "words"]);
        let r = repeat.call(("ab", 500)).unwrap();
        let w = words.call(("one two three",)).unwrap().unwrap();
        assert_eq!((r.len(), w.len()), (1000, 3));
        kept_typed.get_or_insert((r, w));
        assert!(m.collect(Duration::from_secs(60)));
        assert_eq!(
            maps::mapped_under(m.private_dir()).len(),
            1,
            "cycle {i}: the old version is unmapped"
        );
    }
    assert_eq!(kept.take().unwrap().as_str().unwrap(), "v1:".repeat(1000));
    let (r, mut w) = kept_typed.take().unwrap();
    assert_eq!(r, "ab".repeat(500));
    // The host's own allocator frees and grows what the plugin's code allocated.
    w.push(r);
    w[0].push_str(" more");
    assert_eq!(w[0], "one more");
    println!(
        "churned {cycles} versions; reclamation: {}",
        m.status().reclamation
    );
}

#[test]
fn a_thousand_loads_checks_and_unloads_have_no_invalid_memory_access() {
    if let Ok(spec) = std::env::var("HOTSWAP_CHURN") {
        // We are the child, running under valgrind.
        let mut parts = spec.split('|');
        let (a, b, n) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        churn(a, b, n.parse().unwrap());
        return;
    }
    let (a, b) = (plugin_dir(), plugin_dir());
    install(&build_optimised(PROBE, &[]), a.path());
    install(&build_optimised(PROBE, &["v2"]), b.path());
    let cycles = std::env::var("HOTSWAP_CHURN_CYCLES").unwrap_or_else(|_| "1000".into());
    if !common::require_tool("valgrind") {
        println!("running the churn without valgrind (install valgrind for the memory check)");
        churn(
            &a.path().display().to_string(),
            &b.path().display().to_string(),
            50,
        );
        return;
    }
    // Two processes of half the cycles each, run at once: the same thousand loads and
    // unloads, in half the wall time on two cores (valgrind runs a process's threads one
    // at a time, so one process would leave a core idle for most of this run).
    let total: usize = cycles.parse().expect("HOTSWAP_CHURN_CYCLES is a number");
    let halves = [total / 2, total - total / 2];
    let children: Vec<_> = halves
        .iter()
        .map(|n| {
            let spec = format!("{}|{}|{n}", a.path().display(), b.path().display());
            // `--undef-value-errors=no`: what this run proves is about addresses (no
            // read, write or jump into an unloaded library or a freed block), which
            // memcheck checks either way; tracking which bytes are defined too made it
            // 2.4 times as long (every cycle maps new plugin code, which valgrind
            // translates again). `tests/hooks.rs`'s run under memcheck, over the same
            // load and unload path, keeps it on.
            Command::new("valgrind")
                .args([
                    "--tool=memcheck",
                    "--error-exitcode=99",
                    "--leak-check=no",
                    "--undef-value-errors=no",
                    "-q",
                ])
                .arg(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    &common::test_name(
                        module_path!(),
                        "a_thousand_loads_checks_and_unloads_have_no_invalid_memory_access",
                    ),
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("HOTSWAP_CHURN", &spec)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (child, n) in children.into_iter().zip(halves) {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("{stdout}");
        common::assert_memcheck_clean("the churn", &stderr);
        assert!(
            out.status.success(),
            "valgrind run failed ({:?}):\n{stderr}",
            out.status
        );
        assert!(
            stdout.contains(&format!("churned {n} versions")),
            "{stdout}"
        );
    }
}
