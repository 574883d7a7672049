//! Shared by the integration tests: builds real plugins with the real `hotswap build`
//! (cargo compiles each crate and feature set once per test *run*, whatever the number
//! of test processes; each process packages its own builds), and puts builds into
//! plugin directories.
#![allow(dead_code)]

use hotswap_manifest::Manifest;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
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

/// The cargo target directory every test plugin build shares (release, as `hotswap
/// build` builds by default): only the first build compiles the dependencies.
pub fn plugin_target_dir() -> PathBuf {
    repo().join("target/hotswap-test-plugins")
}

/// The cargo target directory this very test run compiled into (where the `hotswap`
/// binary is), dev profile. A nested `cargo build` of a host crate goes here to reuse
/// the dependencies the run already compiled (where features and profile agree): cargo
/// holds a target directory's lock only while it compiles, not while tests run.
pub fn workspace_target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_hotswap"))
        .parent()
        .and_then(Path::parent)
        .expect("the hotswap binary is in <target>/<profile>/")
        .to_owned()
}

/// The cargo target directory of the hosts the tests build outside this workspace (the
/// host `hotswap new` generates, the copy of the slink host), dev profile: they share
/// their registry dependencies with each other, not with the workspace (other profile
/// settings and features). Not the run's own directory: a crate with a `cdylib` target
/// (world, counter) gets an rlib without a hash in its name, so a build of it for a root
/// outside the workspace would overwrite the workspace's, and the next `cargo test`
/// fail to compile the tests that link it.
pub fn hosts_target_dir() -> PathBuf {
    repo().join("target/hotswap-test-hosts")
}

/// Builds the binary `bin` of the workspace package `package` (dev profile) into
/// [`workspace_target_dir`] and returns its path.
///
/// Why `-p slink-host` too: cargo reuses a dependency this run compiled only when its
/// features are the same, and the run's `cargo test --workspace` unified them over every
/// member, slink-host's `hotswap-plugin-api/static` included; selected alone, a package
/// would get plugin-api without it and recompile plugin-api and everything above it
/// (the `--bin` selection keeps slink-host's own binary out). The workspace's
/// dependency table states the other features some member's dev-dependencies add
/// (serde's `alloc`, tracing-subscriber's `json`) for the same reason.
pub fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    let target = workspace_target_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(repo())
        .args(["build", "-p", package, "-p", "slink-host", "--bin", bin])
        .arg("--target-dir")
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run cargo build");
    assert!(
        out.status.success(),
        "building {bin} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("debug").join(bin)
}

/// The name libtest gives the test function `name` of the module `module` (the caller's
/// `module_path!()`), for a child process that re-runs it with `--exact`: the bare name
/// when the file is a test binary of its own, `<file>::<name>` when it shares one
/// (`tests/memcheck.rs`).
pub fn test_name(module: &str, name: &str) -> String {
    match module.split_once("::") {
        Some((_crate, path)) => format!("{path}::{name}"),
        None => name.to_owned(),
    }
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
/// per test run (see [`build_with`]).
///
/// A release build (`hotswap build`'s default) whose own crate is compiled at
/// opt-level 0, its dependencies as release builds them: the tests check what the code
/// does, not how fast, and the crate compiles in half the time (about 75 plugin builds
/// a run). Where valgrind runs the plugin's code, see [`build_optimised`].
pub fn build(crate_dir: &str, features: &[&str]) -> Build {
    build_with(crate_dir, features, &[])
}

/// Like [`build`], the plugin's own crate optimised too, as a user's release build is:
/// for what runs under valgrind, which translates every version's code again at each
/// load (unoptimised code is more to translate: the unload churn took 75% longer).
pub fn build_optimised(crate_dir: &str, features: &[&str]) -> Build {
    build_opt(crate_dir, features, &[], true)
}

/// Like [`build`], with extra arguments for `hotswap build` (e.g. `--sign <key>`).
///
/// What cargo compiles is shared by every test process of a run: the first process
/// that asks for a crate and feature set runs the real `hotswap build`, and keeps the
/// library cargo made under `target/hotswap-test-builds/libs/<crate>-<key>` (the key a
/// hash of crate, features, the arguments but `--sign`'s, and [`sources_fingerprint`]);
/// every later process packages that library with the real `hotswap build --no-build`
/// (no cargo build, a second or less instead of a cargo run and often a rebuild of the
/// crate). So each process still makes its own builds, in the order it asks for them
/// (a later build is newer, which a host's scan goes by), signed with its own keys.
/// Within a process each build is made once. A library directory is written beside its
/// place and renamed into it, so one that exists is complete; making one takes the
/// cross-process [`with_build_lock`].
pub fn build_with(crate_dir: &str, features: &[&str], args: &[&str]) -> Build {
    build_opt(crate_dir, features, args, false)
}

fn build_opt(crate_dir: &str, features: &[&str], args: &[&str], optimised: bool) -> Build {
    let opt = if optimised { " optimised" } else { "" };
    let key = format!("{crate_dir}[{}]{}{opt}", features.join(","), args.join(" "));
    let builds = repo().join("target/hotswap-test-builds");
    let cache = BUILDS.get_or_init(|| {
        remove_dead_processes_builds(&builds);
        Default::default()
    });
    // Held across the build: cargo would serialize on its lock anyway.
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = cache.get(&key) {
        return b.clone();
    }
    let name = crate_dir.replace(['/', '[', ']', ','], "_");
    let out = builds
        .join(std::process::id().to_string())
        .join(format!("{name}-{:016x}", hash(&key)));
    let _ = std::fs::remove_dir_all(&out);
    // `--sign <key>` changes the packaging only, not what cargo builds.
    let mut cargo_args = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if *arg == "--sign" {
            rest.next();
        } else {
            cargo_args.push(*arg);
        }
    }
    let lib_key = format!(
        "{crate_dir}[{}]{}{opt}",
        features.join(","),
        cargo_args.join(" ")
    );
    let libs = builds.join("libs").join(format!(
        "{name}-{:016x}",
        hash(&(lib_key, sources_fingerprint()))
    ));
    let target = libs.join("target");
    if !target.is_dir() {
        let _locked = TargetLock::take();
        // Another process may have made it while this one waited for the lock.
        if !target.is_dir() {
            let stderr = hotswap_build(&key, crate_dir, features, args, optimised, &out, &[]);
            keep_library(&stderr, &libs);
            let b = read_build(&out).expect("hotswap build wrote a manifest");
            cache.insert(key, b.clone());
            return b;
        }
    }
    let target_arg = target.to_str().expect("utf-8 path");
    hotswap_build(
        &key,
        crate_dir,
        features,
        args,
        optimised,
        &out,
        &["--no-build", "--target-dir", target_arg],
    );
    let b = read_build(&out).expect("hotswap build wrote a manifest");
    cache.insert(key, b.clone());
    b
}

fn hash(value: &impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// Runs `hotswap build -v [extra] <args> <crate> <out> [-- [--config ..] --features ..]`,
/// into the shared [`plugin_target_dir`] unless `extra` names another; returns its
/// stderr. Unless `optimised`, the crate's own opt-level is 0 (see [`build`]).
fn hotswap_build(
    key: &str,
    crate_dir: &str,
    features: &[&str],
    args: &[&str],
    optimised: bool,
    out: &Path,
    extra: &[&str],
) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hotswap"));
    cmd.args(["build", "-v"]).args(extra).args(args);
    if !extra.contains(&"--target-dir") {
        cmd.arg("--target-dir").arg(plugin_target_dir());
    }
    cmd.arg(repo().join(crate_dir)).arg(out);
    let mut cargo = Vec::new();
    if !optimised {
        // A profile override of this package only: the dependencies' builds (and their
        // hashes) are the same as an optimised build's, so both share them.
        cargo.push("--config".to_owned());
        cargo.push(format!(
            "profile.release.package.{}.opt-level=0",
            package_name(crate_dir)
        ));
    }
    if !features.is_empty() {
        cargo.push("--features".to_owned());
        cargo.push(features.join(","));
    }
    if !cargo.is_empty() {
        cmd.arg("--").args(&cargo);
    }
    let output = cmd.output().expect("run hotswap build");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "hotswap build {key} failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&output.stdout),
    );
    stderr
}

/// Copies the library a `hotswap build -v` into [`plugin_target_dir`] packaged (named in
/// its log, `stderr`) to `libs/target/`, at the same place relative to the target
/// directory, where `hotswap build --no-build --target-dir libs/target` looks for it.
/// Called under the [`TargetLock`], before another build overwrites cargo's file.
fn keep_library(stderr: &str, libs: &Path) {
    let artifact = stderr
        .lines()
        .find_map(|l| l.strip_prefix("hotswap: plugin ABI "))
        .and_then(|l| l.split_once(" in "))
        .map(|(_, path)| PathBuf::from(path))
        .unwrap_or_else(|| panic!("hotswap build -v named no library:\n{stderr}"));
    let relative = artifact
        .strip_prefix(plugin_target_dir())
        .expect("the library is in the shared target directory");
    let partial = libs.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    let kept = partial.join("target").join(relative);
    std::fs::create_dir_all(kept.parent().unwrap()).unwrap();
    std::fs::copy(&artifact, &kept).unwrap();
    // Under the lock no other process writes `libs`; one that exists is complete.
    let _ = std::fs::remove_dir_all(libs);
    std::fs::rename(&partial, libs).unwrap();
}

/// The name of the package at `crate_dir` (its manifest's first `name = "..."` line).
fn package_name(crate_dir: &str) -> String {
    let toml = std::fs::read_to_string(repo().join(crate_dir).join("Cargo.toml")).unwrap();
    toml.lines()
        .find_map(|l| l.trim().strip_prefix("name = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no package name in {crate_dir}/Cargo.toml"))
        .to_owned()
}

/// The build in the output directory `out`, if it is there.
fn read_build(out: &Path) -> Option<Build> {
    let manifest_path = std::fs::read_dir(out)
        .ok()?
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".manifest.json"))?;
    let manifest = Manifest::read(&manifest_path).unwrap();
    let library = manifest_path.with_file_name(&manifest.file);
    Some(Build {
        library,
        manifest_path,
        manifest,
    })
}

/// A hash of what a plugin build reads that the cache key does not name: every file of
/// the repository outside `target/` and dot-directories but Markdown (path and bytes: a
/// plugin may depend on any crate here), the `hotswap` binary (size and modification time) and
/// RUSTFLAGS. Computed once per process; any change makes every plugin build again.
pub fn sources_fingerprint() -> u64 {
    static FINGERPRINT: OnceLock<u64> = OnceLock::new();
    *FINGERPRINT.get_or_init(|| {
        fn walk(dir: &Path, h: &mut impl Hasher) {
            let mut entries: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            for path in entries {
                let name = path.file_name().unwrap().to_string_lossy();
                // Text no build reads: editing the docs keeps the cache.
                if name.starts_with('.') || name == "target" || name.ends_with(".md") {
                    continue;
                }
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                if meta.is_dir() {
                    walk(&path, h);
                } else if meta.is_file() {
                    path.hash(h);
                    // A file removed while we walk is a change like any other.
                    std::fs::read(&path).unwrap_or_default().hash(h);
                }
            }
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        walk(&repo(), &mut h);
        let bin = std::fs::metadata(env!("CARGO_BIN_EXE_hotswap")).unwrap();
        (bin.len(), bin.modified().ok()).hash(&mut h);
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
        ] {
            std::env::var_os(var).hash(&mut h);
        }
        h.finish()
    })
}

/// An exclusive `flock` on `target/hotswap-test-plugins.lock`, held while anything
/// builds into [`plugin_target_dir`]: builds there share cargo's uplifted library file,
/// which the last build overwrites, and test processes may run side by side.
struct TargetLock(std::fs::File);

impl TargetLock {
    fn take() -> TargetLock {
        let path = repo().join("target/hotswap-test-plugins.lock");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap();
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).unwrap();
        TargetLock(file)
    }
}

/// Deletes the per-process build directories (`<builds>/<pid>`) of test processes that
/// are gone, which would otherwise pile up run after run. A directory whose pid runs
/// (this process, another test binary, or an unrelated process that reused the pid) is
/// kept.
fn remove_dead_processes_builds(builds: &Path) {
    let Ok(entries) = std::fs::read_dir(builds) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Runs `f` while no other thread or test process runs `hotswap build` through
/// [`build`] (they share one cargo target directory, whose uplifted library the last
/// build overwrites). Use it around any other build into [`plugin_target_dir`].
pub fn with_build_lock<R>(f: impl FnOnce() -> R) -> R {
    let cache = BUILDS.get_or_init(Default::default);
    let _held = cache.lock().unwrap_or_else(|e| e.into_inner());
    let _locked = TargetLock::take();
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
