//! `hotswap new` end to end, as a new user would go: generate a workspace, package its
//! plugin with `hotswap build`, build and start its host, ask it, build v2, reload
//! through the admin endpoint (`hotswap reload`), ask again, go back to v1 with SIGHUP,
//! stop it with SIGTERM.
//!
//! The generated workspace starts from this repository's `Cargo.lock` (`hotswap new`
//! copies it for path dependencies), so its dependencies are ones already compiled: the
//! plugin builds go to the test plugins' shared target directory
//! (`target/hotswap-test-plugins`, release, as `hotswap build` builds), and the host is
//! built as the README runs it (`cargo run`, the dev profile) into the directory of the
//! hosts built outside the workspace (`common::hosts_target_dir`), whose dev builds of
//! its dependencies the slink host's build then reuses.

mod common;

use common::repo;
use serde_json::Value as Json;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

fn target_dir() -> PathBuf {
    common::plugin_target_dir()
}

/// Runs the real `hotswap` with `args`; asserts it succeeds and returns its stdout.
fn hotswap(args: &[&OsStr]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hotswap"))
        .args(args)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run hotswap");
    assert!(
        out.status.success(),
        "hotswap {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `hotswap build <svc>/plugin <svc>/plugins [-- --features v2]`.
fn build_plugin(svc: &Path, v2: bool) {
    let (plugin, plugins, target) = (svc.join("plugin"), svc.join("plugins"), target_dir());
    let mut args = vec![
        OsStr::new("build"),
        plugin.as_os_str(),
        plugins.as_os_str(),
        OsStr::new("--target-dir"),
        target.as_os_str(),
    ];
    if v2 {
        args.extend(["--", "--features", "v2"].map(OsStr::new));
    }
    hotswap(&args);
}

/// The running host, killed if the test fails before it stops it.
struct Host {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    log: PathBuf,
}

impl Host {
    /// Sends one request line and returns the answer line.
    fn ask(&mut self, name: &str) -> String {
        writeln!(self.stdin, "{name}").unwrap();
        self.line()
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).unwrap();
        assert!(
            n > 0,
            "the host closed its stdout; its log:\n{}",
            self.log()
        );
        line.trim_end().to_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_new_workspace_builds_serves_and_reloads_the_first_time() {
    let tmp = tempfile::Builder::new()
        .prefix("hotswap-new-")
        .tempdir()
        .unwrap();
    let svc = tmp.path().join("my-service");
    let repo = repo();
    let out = hotswap(&[
        OsStr::new("new"),
        svc.as_os_str(),
        OsStr::new("--hotswap-path"),
        repo.as_os_str(),
    ]);
    assert!(out.contains("hotswap build plugin plugins"), "{out}");
    let manifest = std::fs::read_to_string(svc.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(&format!(
            "hotswap-host = {{ path = '{}' }}",
            repo.join("host").display()
        )),
        "{manifest}"
    );
    assert!(svc.join("Cargo.lock").is_file());

    // Package v1, then build the host.
    build_plugin(&svc, false);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "-p", "my-service", "--manifest-path"])
        .arg(svc.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(common::hosts_target_dir())
        .env_remove("CARGO_TARGET_DIR")
        // As the workspace's own dev profile (see its Cargo.toml): built once, never edited.
        .env("CARGO_INCREMENTAL", "0")
        .output()
        .expect("run cargo build");
    assert!(
        built.status.success(),
        "building the generated host failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let socket = svc.join("admin.sock");
    let log = svc.join("host.log");
    let mut child = Command::new(common::hosts_target_dir().join("debug/my-service"))
        .arg(svc.join("plugins"))
        .arg(&socket)
        .current_dir(&svc)
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the generated host");
    let mut host = Host {
        stdin: child.stdin.take().unwrap(),
        stdout: BufReader::new(child.stdout.take().unwrap()),
        child,
        log,
    };
    let ready = host.line();
    assert!(ready.starts_with("ready: pid"), "{ready}");
    assert_eq!(host.ask("world"), "Hello, world! (v1)");

    // v2 through the admin endpoint: `hotswap reload` answers once it is published.
    build_plugin(&svc, true);
    let admin = |command: &'static str| {
        [
            OsStr::new(command),
            OsStr::new("--admin"),
            socket.as_os_str(),
        ]
    };
    let report = hotswap(&admin("reload"));
    assert!(report.contains("greeter"), "{report}");
    assert_eq!(host.ask("world"), "Hi there, world! (v2)");

    // Back to v1 with SIGHUP, which reloads on the host's own thread: wait (with a
    // deadline) until its status shows the third generation.
    build_plugin(&svc, false);
    host.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = hotswap(&[&admin("status")[..], &[OsStr::new("--json")]].concat());
        let status: Json = serde_json::from_str(&status).unwrap();
        if status["generation"] == 3 {
            assert_eq!(status["last_reload"]["source"], "signal", "{status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload within 60 s: {status}\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(host.ask("again"), "Hello, again! (v1)");

    // SIGTERM stops it cleanly.
    host.signal("TERM");
    let status = host.child.wait().unwrap();
    assert!(status.success(), "{status}\n{}", host.log());
    let log = host.log();
    assert!(log.contains("stopping: SIGTERM"), "{log}");
    assert!(log.contains("SIGHUP"), "{log}");
}

#[test]
fn the_readme_shows_the_generated_host_as_it_is() {
    // The host `hotswap new` writes is compiled with the CLI (its `scaffold-host`
    // example); the README's complete hosting example must be that very file.
    let main = std::fs::read_to_string(repo().join("cli/templates/host/src/main.rs")).unwrap();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```rust,ignore\n{main}```\n")),
        "README.md's \"A complete host\" block differs from cli/templates/host/src/main.rs: \
         copy the file into it"
    );
}
