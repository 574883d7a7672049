//! Shared by the integration tests: builds real plugins with the real `hotswap build`
//! (once per test process and feature set), and puts builds into plugin directories.
#![allow(dead_code)]

use hotswap_manifest::Manifest;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// One build of a plugin: its library and manifest, in a cache directory.
#[derive(Debug, Clone)]
pub struct Build {
    pub library: PathBuf,
    pub manifest_path: PathBuf,
    pub manifest: Manifest,
}

static BUILDS: OnceLock<Mutex<HashMap<String, Build>>> = OnceLock::new();

/// Builds the plugin crate at `crate_dir` (relative to the repo) with `features`, once
/// per test process. Every test plugin shares one cargo target directory, so only the
/// first build compiles dependencies.
pub fn build(crate_dir: &str, features: &[&str]) -> Build {
    build_with(crate_dir, features, &[])
}

/// Like [`build`], with extra arguments for `hotswap build` (e.g. `--sign <key>`).
pub fn build_with(crate_dir: &str, features: &[&str], args: &[&str]) -> Build {
    let key = format!("{crate_dir}[{}]{}", features.join(","), args.join(" "));
    let cache = BUILDS.get_or_init(Default::default);
    // Held across the build: cargo would serialize on its lock anyway.
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = cache.get(&key) {
        return b.clone();
    }
    let out = repo()
        .join("target/hotswap-test-builds")
        .join(std::process::id().to_string())
        .join(format!(
            "{}-{:x}",
            crate_dir.replace(['/', '[', ']', ','], "_"),
            {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut h);
                h.finish()
            }
        ));
    let _ = std::fs::remove_dir_all(&out);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hotswap"));
    cmd.arg("build")
        .args(args)
        .arg(repo().join(crate_dir))
        .arg(&out)
        .arg("--target-dir")
        .arg(repo().join("target/hotswap-test-plugins"));
    if !features.is_empty() {
        cmd.arg("--").arg("--features").arg(features.join(","));
    }
    let output = cmd.output().expect("run hotswap build");
    assert!(
        output.status.success(),
        "hotswap build {key} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest_path = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".manifest.json"))
        .expect("hotswap build wrote a manifest");
    let manifest = Manifest::read(&manifest_path).unwrap();
    let library = manifest_path.with_file_name(&manifest.file);
    let b = Build {
        library,
        manifest_path,
        manifest,
    };
    cache.insert(key, b.clone());
    b
}

/// Runs `f` while no other thread of this test process runs `hotswap build` through
/// [`build`] (they share one cargo target directory, whose uplifted library the last
/// build overwrites).
pub fn with_build_lock<R>(f: impl FnOnce() -> R) -> R {
    let cache = BUILDS.get_or_init(Default::default);
    let _held = cache.lock().unwrap_or_else(|e| e.into_inner());
    f()
}

/// Copies a build (library, manifest, and its signature if it was signed) into the
/// plugin directory `dir`.
pub fn install(b: &Build, dir: &Path) {
    std::fs::copy(&b.library, dir.join(&b.manifest.file)).unwrap();
    let signature = Manifest::signature_path(&b.manifest_path);
    if signature.exists() {
        std::fs::copy(&signature, dir.join(signature.file_name().unwrap())).unwrap();
    }
    std::fs::copy(
        &b.manifest_path,
        dir.join(b.manifest_path.file_name().unwrap()),
    )
    .unwrap();
}

/// Removes every build from the plugin directory `dir`.
pub fn clear(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
}

/// Installs `b` with a rewritten manifest (for forged and broken inputs).
pub fn install_with(b: &Build, dir: &Path, edit: impl FnOnce(&mut Manifest)) -> PathBuf {
    let mut m = b.manifest.clone();
    edit(&mut m);
    let lib = dir.join(&m.file);
    if !lib.exists() {
        std::fs::copy(&b.library, &lib).unwrap();
    }
    let path = dir.join(format!(
        "{}.manifest.json",
        m.file.trim_end_matches(std::env::consts::DLL_SUFFIX)
    ));
    m.write(&path).unwrap();
    path
}

/// A fresh plugin directory, mode 0755 whatever the umask (a strict host, the
/// default, refuses a directory its group can write).
pub fn plugin_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("hotswap-test-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Installs an arbitrary file as if `hotswap build` had made it, with a correct sha256.
pub fn install_raw(bytes: &[u8], name: &str, dir: &Path, time_ms: u64) {
    let file = format!("{name}-0.1.0-raw{}", std::env::consts::DLL_SUFFIX);
    std::fs::write(dir.join(&file), bytes).unwrap();
    let m = Manifest {
        format: hotswap_manifest::MANIFEST_FORMAT.into(),
        name: name.into(),
        version: "0.1.0".into(),
        file: file.clone(),
        git_commit: None,
        git_dirty: None,
        build_time: "2026-01-01T00:00:00.000Z".into(),
        build_time_ms: time_ms,
        build_id: "raw".into(),
        sha256: hotswap_manifest::sha256_hex(bytes),
        source_hash: String::new(),
        plugin_api_abi: [1, 0],
        rustc_version: String::new(),
        profile: "release".into(),
        target: String::new(),
        live_prefix: "live_".into(),
        live_functions: Vec::new(),
        panic: Default::default(),
    };
    m.write(&dir.join(format!("{name}-0.1.0-raw.manifest.json")))
        .unwrap();
}

/// Whether the command-line tool `name` (valgrind, gdb) can run here. Outside CI a
/// missing tool prints why the check that needs it is skipped and returns false; with
/// `CI=true` it fails the test instead (CI installs every tool, see `.ci/run`).
pub fn require_tool(name: &str) -> bool {
    if Command::new(name).arg("--version").output().is_ok() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{name} is not installed, and CI=true requires it: install {name} (`.ci/run` does)");
    }
    println!(
        "{name} is not installed: skipping the check that needs it (CI=true makes this a failure)"
    );
    false
}

/// What memcheck reports for a use of freed, unmapped or uninitialised memory, or a
/// crash: none of it may appear in a run's stderr.
pub const MEMCHECK_ERRORS: &[&str] = &[
    "Invalid read",
    "Invalid write",
    "Invalid free",
    "Jump to the invalid address",
    "uninitialised",
    "Process terminating with default action",
];

/// Fails `what` if valgrind's `stderr` reports any of [`MEMCHECK_ERRORS`].
pub fn assert_memcheck_clean(what: &str, stderr: &str) {
    for bad in MEMCHECK_ERRORS {
        assert!(
            !stderr.contains(bad),
            "{what}: valgrind found {bad:?}:\n{stderr}"
        );
    }
}

/// A plugin directory holding `crate_dir` built with `features`, and a manager that
/// loaded it.
pub fn loaded(
    crate_dir: &str,
    features: &[&str],
) -> (tempfile::TempDir, hotswap_host::PluginManager) {
    let dir = plugin_dir();
    install(&build(crate_dir, features), dir.path());
    let m = hotswap_host::PluginManager::new(dir.path()).unwrap();
    m.load_plugins(&hotswap_host::Value::Null).unwrap();
    (dir, m)
}
