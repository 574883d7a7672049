//! The foundation: real plugins built by `hotswap build`, loaded with dlopen, called
//! across threads; and every bad input refused with a typed error while the host keeps
//! serving what it had.

mod common;

use common::{build, install, install_raw, install_with, plugin_dir};
use hotswap_host::{CallError, Error, LoadErrorKind, Outcome, PluginManager, Step, Value};
use std::io::Write;

const WORLD: &str = "demo/hello/world";
const PROBE: &str = "tests/plugins/probe";

fn load_error(e: Error) -> hotswap_host::LoadError {
    match e {
        Error::Load(e) => *e,
        other => panic!("expected a load error, got {other:?}"),
    }
}

/// A manager serving world v1 from a fresh directory.
fn serving_v1() -> (tempfile::TempDir, PluginManager) {
    let dir = plugin_dir();
    install(&build(WORLD, &[]), dir.path());
    let m = PluginManager::new(dir.path()).unwrap();
    m.load_plugins(&Value::Null).unwrap();
    assert_eq!(greet(&m), "hello from v1");
    (dir, m)
}

fn greet(m: &PluginManager) -> String {
    String::try_from(m.invoke_func("world", "greet", &[]).unwrap()).unwrap()
}

#[test]
fn loads_a_built_plugin_and_calls_it_from_many_threads() {
    let dir = plugin_dir();
    install(&build(WORLD, &[]), dir.path());
    let m = PluginManager::builder(dir.path()).build().unwrap();
    let report = m
        .load_plugins(&Value::map([("greeting", "howdy")]))
        .unwrap();
    assert_eq!(report.plugin("world").unwrap().outcome, Outcome::Loaded);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..200 {
                    let v = m.invoke_func("world", "greet", &[]).unwrap();
                    assert_eq!(v.as_str(), Some("howdy from v1"));
                }
            });
        }
    });
    // Arguments and results of every kind cross the boundary and come back host-owned.
    let args = vec![
        Value::Null,
        Value::from(true),
        Value::from(-7),
        Value::from(2.5),
        Value::from("text"),
        Value::from(&b"\x00\x01"[..]),
        Value::from(vec![1, 2]),
        Value::map([("k", "v")]),
    ];
    let echoed = m.invoke_func("world", "echo", &args).unwrap();
    assert_eq!(echoed, Value::from(args));
    let info = m.find_plugin("world").unwrap();
    assert_eq!(
        (info.name.as_str(), info.version.as_str()),
        ("world", "0.1.0")
    );
    assert_eq!(m.plugins(), vec![info]);
    let each = m.invoke_each("version", &[]);
    assert_eq!(each.len(), 1);
    assert_eq!(each[0].1.as_ref().unwrap().as_str(), Some("v1"));
    assert_eq!(m.invoke_each_backward("version", &[]).len(), 1);
    let typed = m.func::<(), u32>("world", "version_number").unwrap();
    assert_eq!(typed.call(()).unwrap(), 1);
}

#[test]
fn the_newest_build_in_a_directory_is_loaded() {
    let dir = plugin_dir();
    let v1 = build(WORLD, &[]);
    let v2 = build(WORLD, &["v2"]);
    assert!(v2.manifest.build_time_ms > v1.manifest.build_time_ms);
    install(&v2, dir.path());
    install(&v1, dir.path());
    let m = PluginManager::new(dir.path()).unwrap();
    m.load_plugins(&Value::Null).unwrap();
    assert_eq!(greet(&m), "hello from v2");
}

#[test]
fn unknown_plugins_and_functions_are_call_errors() {
    let (_dir, m) = serving_v1();
    assert_eq!(
        m.invoke_func("nope", "greet", &[]).unwrap_err(),
        CallError::UnknownPlugin("nope".into())
    );
    let e = m.invoke_func("world", "nope", &[]).unwrap_err();
    assert!(
        matches!(&e, CallError::Failed { message, .. } if message.contains("unknown function")),
        "{e}"
    );
    assert!(matches!(
        m.func::<(), u32>("world", "nope"),
        Err(CallError::UnknownFunction { .. })
    ));
    // The layout checker, not the name, decides whether a signature matches; the
    // message is one line naming both types, abi_stable's report only in `{:#}`.
    let e = m.func::<(), u64>("world", "version_number").err().unwrap();
    assert!(matches!(&e, CallError::Signature { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "world::version_number: the plugin returns u32, the host asked for u64"
    );
    let e = m.func::<u64, u32>("world", "version_number").err().unwrap();
    assert_eq!(
        e.to_string(),
        "world::version_number: the plugin takes (), the host asked for u64"
    );
    let CallError::Signature { mismatch, .. } = &e else {
        panic!("{e:?}")
    };
    let detail = &mismatch.detail;
    assert!(!detail.is_empty());
    let full = format!("{e:#}");
    assert!(
        full.lines().count() > 1 && full.contains(detail.as_str()),
        "{full}"
    );
    assert_eq!(greet(&m), "hello from v1");
}

#[test]
fn a_panic_in_a_call_comes_back_as_an_error_and_the_host_survives() {
    let dir = plugin_dir();
    install(&build(PROBE, &[]), dir.path());
    let m = PluginManager::new(dir.path()).unwrap();
    m.load_plugins(&Value::Null).unwrap();
    let e = m.invoke_func("probe", "panic", &[]).unwrap_err();
    match &e {
        CallError::Panicked {
            plugin,
            version,
            function,
            message,
        } => {
            assert_eq!(
                (plugin.as_str(), version.as_str(), function.as_str()),
                ("probe", "0.1.0", "panic")
            );
            // The message, and where in the plugin's source the panic happened.
            assert!(
                message.starts_with("probe v1 panicked on request (at "),
                "{message}"
            );
            assert!(message.contains("probe/src/lib.rs:"), "{message}");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    let e = m.invoke_func("probe", "fail", &[]).unwrap_err();
    assert!(
        matches!(&e, CallError::Failed { message, .. } if message == "probe v1 failed on request")
    );
    let divide = m
        .func::<hotswap_plugin_api::abi_stable::std_types::Tuple2<i64, i64>, i64>("probe", "divide")
        .unwrap();
    let e = divide
        .call(hotswap_plugin_api::abi_stable::std_types::Tuple2(1, 0))
        .unwrap_err();
    assert!(
        matches!(&e, CallError::Panicked { message, .. } if message.contains("divide by zero")),
        "{e}"
    );
    assert_eq!(
        divide
            .call(hotswap_plugin_api::abi_stable::std_types::Tuple2(9, 3))
            .unwrap(),
        3
    );
    assert_eq!(
        m.invoke_func("probe", "version", &[]).unwrap().as_str(),
        Some("v1")
    );
}

/// Puts a bad build beside v1, reloads, and checks the error and that v1 still serves.
fn refused(edit: impl FnOnce(&std::path::Path)) -> hotswap_host::LoadError {
    let (dir, m) = serving_v1();
    let before = m.generation_id();
    edit(dir.path());
    let e = load_error(m.reload(&Value::Null).unwrap_err());
    assert_eq!(
        greet(&m),
        "hello from v1",
        "the old generation keeps serving"
    );
    assert_eq!(m.generation_id(), before, "nothing was published");
    // The refused file's private copy (written while it was hashed) is gone again:
    // only v1's is left.
    assert_eq!(m.footprint().private_copies, 1, "{:?}", m.footprint());
    println!("refused as: {e}");
    e
}

#[test]
fn a_file_that_is_not_elf_is_refused() {
    let e = refused(|dir| install_raw(b"just some text, not a library", "world", dir, u64::MAX));
    assert_eq!(e.step, Step::Validate);
    assert!(matches!(e.kind, LoadErrorKind::InvalidFile(_)));
}

#[test]
fn a_shared_library_that_is_not_a_plugin_is_refused() {
    // Any real shared object without our header: the C library this test links.
    let libc = std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5).map(str::to_owned))
        .find(|p| p.contains("libc.so"))
        .expect("libc is mapped");
    let bytes = std::fs::read(libc).unwrap();
    let e = refused(|dir| install_raw(&bytes, "world", dir, u64::MAX));
    assert_eq!(e.step, Step::AbiCheck);
    assert!(matches!(e.kind, LoadErrorKind::NotAPlugin), "{e}");
    assert_eq!(e.plugin.as_deref(), Some("world"));
}

#[test]
fn a_truncated_plugin_is_refused_before_dlopen() {
    let v2 = build(WORLD, &["v2"]);
    let bytes = std::fs::read(&v2.library).unwrap();
    let e = refused(|dir| install_raw(&bytes[..bytes.len() / 2], "world", dir, u64::MAX));
    assert_eq!(e.step, Step::Validate);
    assert!(
        e.to_string().contains("truncated") || e.to_string().contains("past the end"),
        "{e}"
    );
}

#[test]
fn a_manifest_whose_sha256_does_not_match_is_refused() {
    let v2 = build(WORLD, &["v2"]);
    let e = refused(|dir| {
        install_with(&v2, dir, |m| m.sha256 = "0".repeat(64));
    });
    assert_eq!(e.step, Step::Copy);
    assert!(matches!(e.kind, LoadErrorKind::Checksum { .. }), "{e}");
}

#[test]
fn a_corrupt_manifest_is_refused() {
    let e = refused(|dir| std::fs::write(dir.join("junk.manifest.json"), b"{ not json").unwrap());
    assert_eq!(e.step, Step::Scan);
    assert!(matches!(e.kind, LoadErrorKind::Manifest(_)), "{e}");
}

#[test]
fn two_builds_claiming_one_plugin_at_the_same_time_are_refused() {
    let v1 = build(WORLD, &[]);
    let v2 = build(WORLD, &["v2"]);
    let e = refused(|dir| {
        install_with(&v2, dir, |m| m.build_time_ms = u64::MAX);
        install_with(&v1, dir, |m| {
            m.build_time_ms = u64::MAX;
            m.file = format!("copy-{}", m.file);
        });
    });
    assert!(matches!(e.kind, LoadErrorKind::Duplicate { .. }), "{e}");
}

#[test]
fn a_library_whose_name_differs_from_its_manifest_is_refused() {
    let probe = build(PROBE, &[]);
    let e = refused(|dir| {
        install_with(&probe, dir, |m| {
            m.name = "world".into();
            m.build_time_ms = u64::MAX;
        });
    });
    assert!(matches!(e.kind, LoadErrorKind::NameMismatch { .. }), "{e}");
}

#[test]
fn a_plugin_built_against_another_plugin_api_abi_is_refused() {
    let old = build("tests/plugins/forged", &["old-abi"]);
    assert_eq!(
        old.manifest.plugin_api_abi,
        [0, 7],
        "hotswap build read the forged header"
    );
    let e = refused(|dir| {
        install_with(&old, dir, |m| {
            m.name = "world".into();
            m.build_time_ms = u64::MAX;
        });
    });
    assert_eq!(e.step, Step::AbiCheck);
    assert!(
        matches!(
            e.kind,
            LoadErrorKind::AbiVersion {
                found_major: 0,
                found_minor: 7,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_plugin_whose_entry_points_have_another_layout_is_refused() {
    let bad = build("tests/plugins/forged", &["bad-layout"]);
    let e = refused(|dir| {
        install_with(&bad, dir, |m| {
            m.name = "world".into();
            m.build_time_ms = u64::MAX;
        });
    });
    assert_eq!(e.step, Step::LayoutCheck);
    let detail = match &e.kind {
        LoadErrorKind::Layout(mismatch) => mismatch.detail.clone(),
        _ => panic!("{e}"),
    };
    // One line that names both plugin-api versions; abi_stable's report (thousands of
    // lines) only in the alternate form.
    let line = e.to_string();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains(&format!(
            "built against hotswap-plugin-api 0.0.1-forged, this host has {}",
            hotswap_plugin_api::header::API_VERSION
        )),
        "{line}"
    );
    assert!(detail.lines().count() > 1, "{detail}");
    let full = format!("{e:#}");
    assert!(full.starts_with(&line) && full.contains(&detail), "{full}");
    // Through Error too (what reload returns).
    let via_error = hotswap_host::Error::from(e);
    assert_eq!(via_error.to_string(), line);
    assert!(format!("{via_error:#}").contains(&detail));
}

#[test]
fn a_panic_in_a_lifecycle_hook_fails_the_load_and_loads_nothing() {
    for (features, step) in [
        (&["panic-new"][..], Step::New),
        (&["panic-import"][..], Step::Import),
        (&["panic-load"][..], Step::OnLoad),
        (&["fail-load"][..], Step::OnLoad),
        (&["panic-init"][..], Step::OnInit),
        (&["fail-init"][..], Step::OnInit),
    ] {
        let dir = plugin_dir();
        install(&build(PROBE, features), dir.path());
        let m = PluginManager::new(dir.path()).unwrap();
        let e = load_error(m.load_plugins(&Value::Null).unwrap_err());
        assert_eq!(e.step, step, "{features:?}: {e}");
        assert_eq!(e.plugin.as_deref(), Some("probe"));
        assert_eq!(e.version.as_deref(), Some("0.1.0"));
        let text = e.to_string();
        assert!(
            text.contains("probe v1"),
            "the plugin's own message is kept: {text}"
        );
        if features[0].starts_with("panic") {
            assert!(matches!(e.kind, LoadErrorKind::Panic(_)), "{text}");
        } else {
            assert!(matches!(e.kind, LoadErrorKind::Hook(_)), "{text}");
        }
        assert_eq!(m.generation_id(), 0);
        assert!(matches!(
            m.invoke_func("probe", "version", &[]),
            Err(CallError::UnknownPlugin(_))
        ));
    }
}

#[test]
fn a_directory_that_does_not_exist_is_a_clear_error() {
    let m = PluginManager::new("/nonexistent/plugins").unwrap();
    let e = m.load_plugins(&Value::Null).unwrap_err();
    assert!(matches!(e, Error::Dir { .. }));
    assert!(e.to_string().contains("/nonexistent/plugins"));
}

#[test]
fn load_plugins_twice_is_refused() {
    let (_dir, m) = serving_v1();
    assert!(matches!(
        m.load_plugins(&Value::Null),
        Err(Error::AlreadyLoaded)
    ));
}

#[test]
fn whitelist_limits_what_is_loaded() {
    let dir = plugin_dir();
    install(&build(WORLD, &[]), dir.path());
    install(&build(PROBE, &[]), dir.path());
    let m = PluginManager::builder(dir.path())
        .whitelist(["probe"])
        .build()
        .unwrap();
    m.load_plugins(&Value::Null).unwrap();
    let names: Vec<_> = m.plugins().into_iter().map(|p| p.name).collect();
    assert_eq!(names, vec!["probe".to_owned()]);
}

/// A file the host has loaded and checked once is checked again, in full, once it is
/// written to: going back to it after it changed in place is refused (checksum), and
/// the version serving keeps serving.
#[test]
fn a_file_changed_in_place_after_it_was_loaded_is_checked_again() {
    let v1 = build(WORLD, &[]);
    let v2 = build(WORLD, &["v2"]);
    let dir = plugin_dir();
    install(&v1, dir.path());
    let m = PluginManager::new(dir.path()).unwrap();
    m.load_plugins(&Value::Null).unwrap();
    // v2, then back to v1: the second load of v1's file is the remembered one.
    install(&v2, dir.path());
    m.reload(&Value::Null).unwrap();
    assert_eq!(greet(&m), "hello from v2");
    let v2_manifest = dir.path().join(v2.manifest_path.file_name().unwrap());
    std::fs::remove_file(&v2_manifest).unwrap();
    m.reload(&Value::Null).unwrap();
    assert_eq!(greet(&m), "hello from v1");
    // Forward to v2 again, then v1's file grows by a byte where it lies (same inode),
    // its manifest untouched: going back must check it again and refuse it.
    install(&v2, dir.path());
    m.reload(&Value::Null).unwrap();
    assert_eq!(greet(&m), "hello from v2");
    let v1_library = dir.path().join(&v1.manifest.file);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&v1_library)
        .unwrap()
        .write_all(b"\0")
        .unwrap();
    std::fs::remove_file(&v2_manifest).unwrap();
    let e = load_error(m.reload(&Value::Null).unwrap_err());
    assert!(matches!(e.kind, LoadErrorKind::Checksum { .. }), "{e}");
    assert_eq!(
        greet(&m),
        "hello from v2",
        "the version serving keeps serving"
    );
}
