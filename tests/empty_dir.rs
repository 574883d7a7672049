//! No silent empty load: a plugin directory with no plugin, or with a library that has
//! no manifest (built by `cargo build`, never packaged), is named in a warning that says
//! how to package it; `Builder::require_plugins(true)` makes a scan that finds no plugin
//! an error, and a reload refused that way leaves the old generation serving.

mod common;

use common::{build, clear, install, plugin_dir};
use hotswap_host::{Error, PluginManager, Value};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

const WORLD: &str = "demo/hello/world";

/// What the manager logged, as text.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// The WARN lines.
    fn warnings(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains("WARN"))
            .map(str::to_owned)
            .collect()
    }
}

/// A manager over `dir` whose events go to the returned buffer.
fn manager(dir: &Path, require: bool) -> (PluginManager, Buffer) {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let m = PluginManager::builder(dir)
        .logger(tracing::Dispatch::new(subscriber))
        .require_plugins(require)
        .build()
        .unwrap();
    (m, buffer)
}

/// A library `cargo build` would leave: any bytes, named as a shared object.
fn bare_library(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}{}", std::env::consts::DLL_SUFFIX));
    std::fs::write(&path, b"\x7fELF not packaged").unwrap();
    path
}

#[test]
fn an_empty_directory_loads_nothing_with_a_warning() {
    let dir = plugin_dir();
    let (m, log) = manager(dir.path(), false);
    let report = m.load_plugins(&Value::Null).unwrap();
    assert!(report.plugins.is_empty());
    let warnings = log.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("no plugin to load in"), "{warnings:?}");
    assert!(
        warnings[0].contains(&dir.path().display().to_string()),
        "{warnings:?}"
    );
    assert!(warnings[0].contains("hotswap build"), "{warnings:?}");
}

#[test]
fn a_bare_library_is_named_with_how_to_package_it() {
    let dir = plugin_dir();
    let bare = bare_library(dir.path(), "libworld");
    let (m, log) = manager(dir.path(), false);
    assert!(m.load_plugins(&Value::Null).unwrap().plugins.is_empty());
    let warnings = log.warnings();
    let line = warnings
        .iter()
        .find(|l| l.contains(&bare.display().to_string()))
        .unwrap_or_else(|| panic!("a warning names {}: {warnings:?}", bare.display()));
    assert!(line.contains("no manifest"), "{line}");
    assert!(line.contains("hotswap build"), "{line}");
    // And the empty load itself is said too.
    assert!(
        warnings.iter().any(|l| l.contains("no plugin to load")),
        "{warnings:?}"
    );
}

#[test]
fn require_plugins_refuses_an_empty_directory() {
    let dir = plugin_dir();
    let (m, _log) = manager(dir.path(), true);
    let err = m.load_plugins(&Value::Null).unwrap_err();
    match &err {
        Error::NoPlugins { dir: d, bare, .. } => {
            assert_eq!(d, dir.path());
            assert!(bare.is_empty());
        }
        e => panic!("expected NoPlugins, got {e:?}"),
    }
    let text = err.to_string();
    assert!(!text.contains('\n'), "one line: {text}");
    assert!(text.contains("no plugin to load in"), "{text}");
    assert!(text.contains("hotswap build"), "{text}");
    // Nothing was published: a later load may still succeed.
    assert_eq!(m.generation_id(), 0);
    install(&build(WORLD, &[]), dir.path());
    assert_eq!(m.load_plugins(&Value::Null).unwrap().plugins.len(), 1);
}

#[test]
fn require_plugins_names_the_bare_libraries_in_its_error() {
    let dir = plugin_dir();
    let a = bare_library(dir.path(), "liba");
    let b = bare_library(dir.path(), "libb");
    let (m, _log) = manager(dir.path(), true);
    let err = m.load_plugins(&Value::Null).unwrap_err();
    let Error::NoPlugins { bare, .. } = &err else {
        panic!("expected NoPlugins, got {err:?}");
    };
    assert_eq!(bare, &vec![a, b]);
    let text = err.to_string();
    assert!(text.contains("liba.so, libb.so have no manifest"), "{text}");
    assert!(text.contains("hotswap build"), "{text}");
}

#[test]
fn a_bare_library_beside_a_plugin_is_only_a_warning_even_when_required() {
    let dir = plugin_dir();
    let world = build(WORLD, &[]);
    install(&world, dir.path());
    // The same library once more under another name, without a manifest.
    let bare = dir
        .path()
        .join(format!("libworld{}", std::env::consts::DLL_SUFFIX));
    std::fs::copy(&world.library, &bare).unwrap();
    let (m, log) = manager(dir.path(), true);
    let report = m.load_plugins(&Value::Null).unwrap();
    assert_eq!(report.plugins.len(), 1);
    let warnings = log.warnings();
    assert!(
        warnings
            .iter()
            .any(|l| l.contains(&bare.display().to_string()) && l.contains("hotswap build")),
        "{warnings:?}"
    );
    // The packaged build is not called bare, and the load is not called empty.
    assert!(
        !warnings.iter().any(|l| l.contains(&world.manifest.file)),
        "{warnings:?}"
    );
    assert!(
        !warnings.iter().any(|l| l.contains("no plugin to load")),
        "{warnings:?}"
    );
}

#[test]
fn a_required_reload_of_an_emptied_directory_keeps_the_old_generation() {
    let dir = plugin_dir();
    install(&build(WORLD, &[]), dir.path());
    let (m, _log) = manager(dir.path(), true);
    m.load_plugins(&Value::Null).unwrap();
    let generation = m.generation_id();
    clear(dir.path());
    let err = m.reload(&Value::Null).unwrap_err();
    assert!(matches!(err, Error::NoPlugins { .. }), "{err:?}");
    assert_eq!(m.generation_id(), generation);
    let greeting = String::try_from(m.invoke_func("world", "greet", &[]).unwrap()).unwrap();
    assert!(greeting.contains("v1"), "{greeting}");
}

#[test]
fn an_unrequired_reload_of_an_emptied_directory_warns() {
    let dir = plugin_dir();
    install(&build(WORLD, &[]), dir.path());
    let (m, log) = manager(dir.path(), false);
    m.load_plugins(&Value::Null).unwrap();
    assert!(log.warnings().is_empty(), "{:?}", log.warnings());
    clear(dir.path());
    m.reload(&Value::Null).unwrap();
    assert!(
        log.warnings()
            .iter()
            .any(|l| l.contains("no plugin to load")),
        "{:?}",
        log.warnings()
    );
}
