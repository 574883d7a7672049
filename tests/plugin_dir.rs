//! Nothing in the plugin directory can block a scan or a load, or reach outside it:
//! FIFOs, sockets, directories, devices and symbolic links, named as a manifest or as
//! the file a manifest describes, and `file` fields that are not plain file names. Each
//! reload fails promptly with a named error and the old generation keeps serving.
//!
//! A reload runs on its own thread and the test waits for its answer with a generous
//! deadline: a watchdog that turns a hang (the bug) into a failure, not synchronisation.

mod common;

use common::{build, install, plugin_dir};
use hotswap_host::{LoadError, LoadErrorKind, PluginManager, Step, Value};
use hotswap_manifest::safe_fs::{BadFileName, FileError};
use hotswap_manifest::Manifest;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Duration;

const WORLD: &str = "demo/hello/world";

/// How long a reload may take before the test calls it hung.
const WATCHDOG: Duration = Duration::from_secs(60);

fn greet(m: &PluginManager) -> String {
    String::try_from(m.invoke_func("world", "greet", &[]).unwrap()).unwrap()
}

/// A manager serving world v1 from a fresh directory.
fn serving_v1() -> (tempfile::TempDir, Arc<PluginManager>) {
    let dir = plugin_dir();
    install(&build(WORLD, &[]), dir.path());
    let m = PluginManager::new(dir.path()).unwrap();
    m.load_plugins(&Value::Null).unwrap();
    assert_eq!(greet(&m), "hello from v1");
    (dir, Arc::new(m))
}

/// Reloads `m` on another thread and returns its result, failing the test if the
/// reload does not answer within [`WATCHDOG`].
fn reload_watched(m: &Arc<PluginManager>) -> Result<(), hotswap_host::Error> {
    let (tx, rx) = mpsc::channel();
    let m = Arc::clone(m);
    std::thread::spawn(move || {
        let _ = tx.send(m.reload(&Value::Null).map(|_| ()));
    });
    rx.recv_timeout(WATCHDOG)
        .expect("the reload blocked on something in the plugin directory")
}

/// Puts something bad into v1's directory, reloads, and checks that the reload fails
/// and that v1 still serves, unchanged.
fn refused(edit: impl FnOnce(&Path)) -> LoadError {
    let (dir, m) = serving_v1();
    let before = m.generation_id();
    edit(dir.path());
    let e = match reload_watched(&m).expect_err("the reload must fail") {
        hotswap_host::Error::Load(e) => *e,
        other => panic!("expected a load error, got {other:?}"),
    };
    println!("refused as: {e}");
    assert_eq!(greet(&m), "hello from v1", "the old generation serves");
    assert_eq!(m.generation_id(), before, "nothing was published");
    e
}

/// A manifest of world (v2, newest) that names `file`, written as `evil.manifest.json`.
fn manifest_naming(dir: &Path, file: &str) {
    let mut m: Manifest = build(WORLD, &["v2"]).manifest;
    m.file = file.to_owned();
    m.build_time_ms = u64::MAX;
    m.write(&dir.join("evil.manifest.json")).unwrap();
}

fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .expect("mkfifo");
}

#[test]
fn a_fifo_named_as_a_manifest_fails_the_scan_at_once() {
    let (dir, m) = serving_v1();
    let fifo = dir.path().join("x.manifest.json");
    mkfifo(&fifo);
    let e = match reload_watched(&m).unwrap_err() {
        hotswap_host::Error::Load(e) => *e,
        other => panic!("expected a load error, got {other:?}"),
    };
    assert_eq!(e.step, Step::Scan);
    assert!(
        matches!(&e.kind, LoadErrorKind::File(FileError::Fifo { path }) if *path == fifo),
        "{e}"
    );
    assert!(e.to_string().contains("FIFO"), "{e}");
    assert_eq!(greet(&m), "hello from v1");
    // Gone again, the directory reloads.
    std::fs::remove_file(&fifo).unwrap();
    reload_watched(&m).expect("a clean directory reloads");
    assert_eq!(greet(&m), "hello from v1");
}

#[test]
fn a_socket_named_as_a_manifest_is_refused() {
    let mut listener = None;
    let e = refused(|dir| {
        let l = std::os::unix::net::UnixListener::bind(dir.join("s.manifest.json")).unwrap();
        listener = Some(l);
    });
    assert_eq!(e.step, Step::Scan);
    assert!(
        matches!(e.kind, LoadErrorKind::File(FileError::Socket { .. })),
        "{e}"
    );
}

#[test]
fn a_directory_named_as_a_manifest_is_refused() {
    let e = refused(|dir| std::fs::create_dir(dir.join("d.manifest.json")).unwrap());
    assert_eq!(e.step, Step::Scan);
    assert!(
        matches!(e.kind, LoadErrorKind::File(FileError::Directory { .. })),
        "{e}"
    );
}

#[test]
fn a_symlinked_manifest_is_refused_even_to_a_good_build() {
    let v2 = build(WORLD, &["v2"]);
    let e = refused(|dir| {
        std::fs::copy(&v2.library, dir.join(&v2.manifest.file)).unwrap();
        std::os::unix::fs::symlink(&v2.manifest_path, dir.join("v2.manifest.json")).unwrap();
    });
    assert_eq!(e.step, Step::Scan);
    assert!(
        matches!(e.kind, LoadErrorKind::File(FileError::Symlink { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("symbolic link"), "{e}");
}

#[test]
fn a_manifest_naming_a_fifo_is_refused_at_once() {
    let e = refused(|dir| {
        mkfifo(&dir.join("pipe.so"));
        manifest_naming(dir, "pipe.so");
    });
    assert_eq!(e.step, Step::Copy);
    assert_eq!(e.plugin.as_deref(), Some("world"));
    assert!(
        matches!(e.kind, LoadErrorKind::File(FileError::Fifo { .. })),
        "{e}"
    );
}

#[test]
fn a_manifest_naming_a_directory_is_refused() {
    let e = refused(|dir| {
        std::fs::create_dir(dir.join("lib.so")).unwrap();
        manifest_naming(dir, "lib.so");
    });
    assert_eq!(e.step, Step::Copy);
    assert!(
        matches!(e.kind, LoadErrorKind::File(FileError::Directory { .. })),
        "{e}"
    );
}

#[test]
fn a_manifest_naming_a_symlink_to_a_device_is_refused() {
    let e = refused(|dir| {
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero.so")).unwrap();
        manifest_naming(dir, "zero.so");
    });
    assert_eq!(e.step, Step::Copy);
    assert!(
        matches!(e.kind, LoadErrorKind::File(FileError::Symlink { .. })),
        "{e}"
    );
}

#[test]
fn a_manifest_naming_a_symlink_to_a_good_library_outside_is_refused() {
    let v2 = build(WORLD, &["v2"]);
    let e = refused(|dir| {
        std::os::unix::fs::symlink(&v2.library, dir.join("outside.so")).unwrap();
        manifest_naming(dir, "outside.so");
    });
    assert_eq!(e.step, Step::Copy);
    assert!(
        matches!(e.kind, LoadErrorKind::File(FileError::Symlink { .. })),
        "{e}"
    );
}

#[test]
fn a_manifest_whose_file_is_not_a_plain_name_is_refused_before_reading() {
    for (file, reason) in [
        ("/dev/zero", BadFileName::Absolute),
        ("../x.so", BadFileName::Separator),
        ("sub/x.so", BadFileName::Separator),
        ("", BadFileName::Empty),
        ("..", BadFileName::Dots),
        ("x\0.so", BadFileName::Nul),
    ] {
        let e = refused(|dir| {
            if file == "sub/x.so" {
                // Even when the file exists and is a good library.
                std::fs::create_dir(dir.join("sub")).unwrap();
                std::fs::copy(build(WORLD, &["v2"]).library, dir.join(file)).unwrap();
            }
            manifest_naming(dir, file);
        });
        assert_eq!(e.step, Step::Scan, "{file:?}");
        assert!(
            matches!(&e.kind, LoadErrorKind::FileName { file: f, reason: r, .. } if f == file && *r == reason),
            "{file:?}: {e}"
        );
        assert!(e.to_string().contains("not a plain file name"), "{e}");
    }
}
