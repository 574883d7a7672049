//! `hotswap build` end to end: the real binary builds the demo plugin `demo/hello/world`.
//!
//! Plugin builds go to `<repo>/target/hotswap-test-plugins`, shared with the other
//! workspace tests, so only the first run compiles abi_stable; later builds are incremental.

use hotswap_manifest::{sha256_hex, Manifest, MANIFEST_SUFFIX};
use hotswap_plugin_api::header::{ABI_MAJOR, ABI_MINOR};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_owned()
}

fn plugin_target_dir() -> PathBuf {
    repo_root().join("target").join("hotswap-test-plugins")
}

/// Runs `hotswap <args>` and returns its output, echoing stderr for failed tests.
fn hotswap(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_hotswap"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("run hotswap");
    eprintln!(
        "$ hotswap {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `hotswap build <flags> --target-dir <target_dir> demo/hello/world <out> [-- <cargo>]`.
fn hotswap_build_world(target_dir: &Path, out: &Path, flags: &[&str], cargo: &[&str]) -> Output {
    let mut args = vec!["build"];
    args.extend_from_slice(flags);
    args.extend([
        "--target-dir",
        target_dir.to_str().expect("utf-8 path"),
        "demo/hello/world",
        out.to_str().expect("utf-8 path"),
    ]);
    if !cargo.is_empty() {
        args.push("--");
        args.extend_from_slice(cargo);
    }
    hotswap(&args)
}

/// `hotswap build <flags> demo/hello/world <out> --target-dir <shared>`; asserts success.
fn build_world(out: &Path, flags: &[&str]) -> String {
    let output = hotswap_build_world(&plugin_target_dir(), out, flags, &[]);
    assert!(output.status.success(), "hotswap build failed");
    String::from_utf8(output.stdout).expect("utf-8 stdout")
}

/// Every build in `dir`: (manifest path, manifest), sorted by build time.
fn builds(dir: &Path) -> Vec<(PathBuf, Manifest)> {
    let mut found: Vec<(PathBuf, Manifest)> = std::fs::read_dir(dir)
        .expect("list output dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(MANIFEST_SUFFIX))
        .map(|p| {
            let m = Manifest::read(&p).expect("valid manifest");
            (p, m)
        })
        .collect();
    found.sort_by_key(|(_, m)| m.build_time_ms);
    found
}

fn file_count(dir: &Path) -> usize {
    std::fs::read_dir(dir).expect("list output dir").count()
}

/// Checks one packaged build: the library is there, named by the manifest, and matches it.
fn check_build(out: &Path, manifest_path: &Path, m: &Manifest) {
    let library = out.join(&m.file);
    assert_eq!(Manifest::path_for(&library), manifest_path);
    let bytes = std::fs::read(&library).expect("library beside its manifest");
    assert_eq!(m.sha256, sha256_hex(&bytes));
    assert_eq!(m.name, "world");
    assert_eq!(m.version, "0.1.0");
    assert_eq!(m.plugin_api_abi, [ABI_MAJOR, ABI_MINOR]);
    assert_eq!(m.live_prefix, "live_");
    assert_eq!(m.source_hash.len(), 64);
    assert!(m.file.starts_with("world-0.1.0-"), "{}", m.file);
    assert!(m.file.contains(&m.build_id), "{}", m.file);
    assert!(m.build_time.ends_with('Z'), "{}", m.build_time);
    assert!(m.rustc_version.starts_with("rustc "), "{}", m.rustc_version);
    assert!(!m.target.is_empty());
}

#[test]
fn builds_packages_and_prunes_the_demo_plugin() {
    let out = tempfile::tempdir().expect("tempdir");
    let out = out.path();

    // A release build, packaged with its manifest.
    let stdout = build_world(out, &[]);
    assert!(stdout.starts_with("built world 0.1.0 ("), "{stdout}");
    let first = builds(out);
    assert_eq!(first.len(), 1);
    assert_eq!(file_count(out), 2, "a library and its manifest");
    let (path, m) = &first[0];
    check_build(out, path, m);
    assert_eq!(m.profile, "release");
    assert!(stdout.contains(&m.file), "{stdout}");

    // The same source again: a second build under another name, same source hash.
    let stdout = build_world(out, &["--verbose"]);
    assert!(stdout.contains("sha256"), "{stdout}");
    let second = builds(out);
    assert_eq!(second.len(), 2);
    assert_eq!(file_count(out), 4);
    assert_ne!(second[0].1.file, second[1].1.file);
    assert_eq!(second[0].1.source_hash, second[1].1.source_hash);
    for (path, m) in &second {
        check_build(out, path, m);
    }

    // --keep 1 leaves only the newest build.
    let stdout = build_world(out, &["--keep", "1", "--live-prefix", "hot_"]);
    assert!(stdout.starts_with("built world"), "{stdout}");
    let kept = builds(out);
    assert_eq!(kept.len(), 1);
    assert_eq!(file_count(out), 2, "one library and one manifest left");
    assert_eq!(kept[0].1.live_prefix, "hot_");
    assert!(kept[0].1.build_time_ms >= second[1].1.build_time_ms);
    assert!(second.iter().all(|(_, m)| m.build_id != kept[0].1.build_id));
    assert!(out.join(&kept[0].1.file).is_file());

    // The packaged file passes the host's pre-flight checks; a truncated copy does not.
    let bytes = std::fs::read(out.join(&kept[0].1.file)).expect("read library");
    let abi = hotswap_manifest::elf::read_plugin_abi(&bytes).expect("a plugin");
    assert_eq!([abi.abi_major, abi.abi_minor], [ABI_MAJOR, ABI_MINOR]);
    assert!(matches!(
        hotswap_manifest::elf::validate(&bytes[..bytes.len() / 2]),
        Err(hotswap_manifest::elf::ElfError::Truncated { .. })
    ));
}

/// Without `--target-dir`, cargo builds in the plugin's own target directory (here the
/// shared one, through CARGO_TARGET_DIR), where `cargo build --release` builds: the
/// dependencies are compiled once for both, and the packaged library is the one cargo
/// left there. Run from a build script (cargo's environment for one), while its cargo
/// holds that directory's lock, it builds in `<that>/hotswap-build` instead.
#[test]
fn the_default_target_dir_is_the_plugins_own_but_a_subdirectory_in_a_build_script() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let target = plugin_target_dir();
    let out = scratch.path().join("out");
    let run = |build_script: bool, flags: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hotswap"));
        cmd.args(["build", "-v"])
            .args(flags)
            .arg("demo/hello/world")
            .arg(&out)
            .current_dir(repo_root())
            .env("CARGO_TARGET_DIR", &target);
        if build_script {
            cmd.env("CARGO_CFG_TARGET_OS", "linux")
                .env("OUT_DIR", scratch.path());
        } else {
            cmd.env_remove("CARGO_CFG_TARGET_OS");
        }
        let output = cmd.output().expect("run hotswap build");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    let (ok, stderr) = run(false, &[]);
    assert!(ok, "hotswap build failed:\n{stderr}");
    assert!(
        stderr.contains(&format!("--target-dir {} ", target.display())),
        "cargo did not build in the plugin's target directory:\n{stderr}"
    );
    let (manifest_path, m) = &builds(&out)[0];
    check_build(&out, manifest_path, m);
    let uplifted = std::fs::read(target.join("release/libworld.so")).expect("cargo's library");
    assert_eq!(
        m.sha256,
        sha256_hex(&uplifted),
        "packaged what cargo built there"
    );

    // `--no-build` names where it looks before it looks: no second build needed.
    let (_, stderr) = run(true, &["--no-build"]);
    let sub = target.join("hotswap-build/release/libworld.so");
    assert!(
        stderr.contains(&format!("--no-build: packaging {}", sub.display())),
        "in a build script the default is <target>/hotswap-build:\n{stderr}"
    );
}

#[test]
fn a_crate_that_is_not_a_cdylib_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let krate = dir.path().join("plainlib");
    std::fs::create_dir_all(krate.join("src")).expect("mkdir");
    std::fs::write(
        krate.join("Cargo.toml"),
        "[package]\nname = \"plainlib\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [lib]\n\n[workspace]\n",
    )
    .expect("write Cargo.toml");
    std::fs::write(krate.join("src/lib.rs"), "pub fn f() {}\n").expect("write lib.rs");
    let out = dir.path().join("out");

    let output = hotswap(&[
        "build",
        krate.to_str().expect("utf-8 path"),
        out.to_str().expect("utf-8 path"),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains(r#"is not a cdylib: add `crate-type = ["cdylib"]` under [lib]"#),
        "{stderr}"
    );
    assert!(!out.exists() || file_count(&out) == 0);
}

#[test]
fn help_mentions_every_flag() {
    let output = hotswap(&["build", "--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "-v, --verbose",
        "--debug",
        "--leave-temps",
        "--no-build",
        "--live-prefix",
        "--include",
        "--exclude",
        "--target-dir",
        "--keep",
        "--allow-panic-abort",
        "<PLUGIN_DIR>",
        "<OUTPUT_DIR>",
        "CARGO_ARGS",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
}

/// `hotswap build` of the demo plugin with `panic = "abort"` (cargo's `--config`), in a
/// target directory of its own (another panic strategy rebuilds every dependency), with
/// the dev profile (`--debug`): what is checked is the panic strategy, which the build
/// and the host read from the library whatever its profile, and an unoptimised build of
/// the dependencies takes about half the time.
fn build_world_aborting(out: &Path, flags: &[&str]) -> Output {
    let target_dir = repo_root()
        .join("target")
        .join("hotswap-test-plugins-abort");
    let flags: Vec<&str> = flags.iter().copied().chain(["--debug"]).collect();
    hotswap_build_world(
        &target_dir,
        out,
        &flags,
        &[
            "--config",
            "profile.dev.panic=\"abort\"",
            // The workspace optimises abi_stable in dev builds (for the host's layout
            // checks); nothing here runs it, and at opt-level 0 it compiles 5 s faster.
            "--config",
            "profile.dev.package.abi_stable.opt-level=0",
        ],
    )
}

#[test]
fn a_panic_abort_plugin_is_refused_by_the_build_unless_allowed_and_always_by_the_host() {
    use hotswap_host::{LoadErrorKind, PluginManager, Step, Value};
    use hotswap_manifest::PanicStrategy;
    let scratch = tempfile::tempdir().expect("tempdir");

    // Refused, in one line that says why and what to do; nothing packaged.
    let out = scratch.path().join("refused");
    let output = build_world_aborting(&out, &[]);
    assert!(!output.status.success(), "a panic=abort build must fail");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .expect("an error line");
    assert_eq!(
        error,
        "error: world is built with panic = \"abort\": a panic in it would abort the host; \
         use panic = \"unwind\" (the default) or pass --allow-panic-abort"
    );
    assert!(!out.exists() || file_count(&out) == 0);

    // Allowed: a loud warning, and the manifest says so.
    let out = scratch.path().join("allowed");
    let output = build_world_aborting(&out, &["--allow-panic-abort"]);
    assert!(output.status.success(), "--allow-panic-abort builds");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("ABORT THE HOST PROCESS"),
        "{stderr}"
    );
    let found = builds(&out);
    assert_eq!(found.len(), 1);
    let (manifest_path, manifest) = &found[0];
    assert_eq!(manifest.panic, PanicStrategy::Abort);
    let json = std::fs::read_to_string(manifest_path).expect("read manifest");
    assert!(json.contains("\"panic\": \"abort\""), "{json}");

    // The host refuses it all the same, before dlopen: its panics would abort the host.
    // Also under a manifest rewritten to say unwind.
    for panic in [PanicStrategy::Abort, PanicStrategy::Unwind] {
        let mut m2 = manifest.clone();
        m2.panic = panic;
        m2.write(manifest_path).expect("rewrite manifest");
        let m = PluginManager::new(&out).expect("manager");
        let e = m.load_plugins(&Value::Null).expect_err("refused at load");
        let e = e.as_load().expect("a load error");
        assert_eq!(e.step, Step::Validate);
        assert!(
            matches!(&e.kind, LoadErrorKind::PanicAbort { plugin } if plugin == "world"),
            "{e}"
        );
        assert!(e.to_string().contains("panic = \"abort\""), "{e}");
    }
}

#[test]
fn manifests_without_a_panic_field_read_as_unwind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    build_world(&out, &["--keep", "1"]);
    let (path, _) = builds(&out).pop().expect("a build");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["panic"], "unwind");
    json.as_object_mut().unwrap().remove("panic");
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let m = Manifest::read(&path).expect("an old manifest still reads");
    assert_eq!(m.panic, hotswap_manifest::PanicStrategy::Unwind);
}
