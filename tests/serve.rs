//! `hotswap serve`, end to end: the real `hotswap` binary supervising the real HTTP demo
//! (`demo/http`, its handlers plugin built with the real `hotswap build`), on loopback.
//!
//! Every supervisor runs in its own process group; the [`Serve`] guard stops it with
//! SIGTERM (it then stops its children's process groups) and kills that group when a
//! test ends, passes or fails (the children, each in a group of its own, also get
//! SIGTERM from the kernel if the supervisor dies: PR_SET_PDEATHSIG).
//!
//! The demo binary belongs to another package, so cargo does not build it for this test
//! (CARGO_BIN_EXE_* only covers this package's binaries). The test builds it once with
//! cargo into the target directory this test run compiled into
//! (`common::workspace_target_dir`): cargo holds its lock only while it compiles, not
//! while tests run, and every dependency of the demo is compiled there already, with the
//! same features (`common::workspace_bin`).
//! `HOTSWAP_HTTP_DEMO_BIN` may point at a prebuilt binary instead.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const HOTSWAP: &str = env!("CARGO_BIN_EXE_hotswap");

/// The demo host binary, built once per test process (`common::workspace_bin`).
fn demo_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("HOTSWAP_HTTP_DEMO_BIN") {
            return PathBuf::from(bin);
        }
        common::workspace_bin("hotswap-demo", "hotswap-http-demo")
    })
    .clone()
}

/// A plugin directory holding the demo's handlers plugin (v1).
fn handlers_dir(dir: &Path) -> PathBuf {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    common::install(&common::build("demo/http/handlers", &[]), &plugins);
    plugins
}

/// Writes an executable shell script.
fn script(path: &Path, body: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Atomic replace: the supervisor may exec the path at any moment.
    std::fs::rename(&tmp, path).unwrap();
}

/// Runs a command to completion, killing it after `limit`.
fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{cmd:?} still running after {limit:?}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `f` until it returns `Some`, up to `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn pid_alive(pid: u32) -> bool {
    // A zombie still counts as present to kill(0); /proc says whether it is a zombie.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("pid");
    rustix::process::kill_process(pid, sig).expect("kill");
}

/// A running `hotswap serve` in its own process group; killed with its group on drop.
struct Serve {
    child: Child,
    dir: tempfile::TempDir,
    log: PathBuf,
    admin: PathBuf,
}

impl Serve {
    /// Starts `hotswap serve <args> --admin <dir>/admin.sock -- <command>` in `dir`.
    fn start(dir: tempfile::TempDir, args: &[&str], command: &[&str]) -> Serve {
        Serve::start_env(dir, args, command, &[])
    }

    /// [`Serve::start`] with extra environment variables for the supervisor.
    fn start_env(
        dir: tempfile::TempDir,
        args: &[&str],
        command: &[&str],
        env: &[(&str, &str)],
    ) -> Serve {
        Serve::start_with(Path::new(HOTSWAP), dir, args, command, env)
    }

    /// [`Serve::start_env`] with `hotswap` at `program`.
    fn start_with(
        program: &Path,
        dir: tempfile::TempDir,
        args: &[&str],
        command: &[&str],
        env: &[(&str, &str)],
    ) -> Serve {
        let log = dir.path().join("serve.log");
        let admin = dir.path().join("admin.sock");
        let mut cmd = Command::new(program);
        cmd.arg("serve")
            .args(args)
            .arg("--admin")
            .arg(format!("unix://{}", admin.display()))
            .arg("--")
            .args(command)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("serve.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .process_group(0);
        let child = cmd.spawn().expect("start hotswap serve");
        Serve {
            child,
            dir,
            log,
            admin,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends one admin command; `None` while the socket is not up yet.
    fn admin(&self, command: &str) -> Option<String> {
        let mut conn = UnixStream::connect(&self.admin).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        writeln!(conn, "{command}").ok()?;
        let mut line = String::new();
        BufReader::new(conn).read_line(&mut line).ok()?;
        Some(line.trim_end().to_owned())
    }

    fn status(&self) -> Option<serde_json::Value> {
        let line = self.admin("status")?;
        serde_json::from_str(line.strip_prefix("ok ")?).ok()
    }

    /// Waits until `n` children serve and nothing else runs; returns their pids.
    fn serving(&mut self, n: usize) -> Vec<u32> {
        let limit = Duration::from_secs(30);
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("hotswap serve exited ({status}):\n{}", self.log());
            }
            if let Some(s) = self.status() {
                let children = s["children"].as_array().cloned().unwrap_or_default();
                let serving: Vec<u32> = children
                    .iter()
                    .filter(|c| c["state"] == "serving")
                    .filter_map(|c| c["pid"].as_u64().map(|p| p as u32))
                    .collect();
                if serving.len() == n && children.len() == n {
                    return serving;
                }
            }
            assert!(
                start.elapsed() < limit,
                "{n} serving children not seen within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The bound TCP address from the status.
    fn tcp_addr(&self) -> SocketAddr {
        let s = wait_for("status", Duration::from_secs(20), || self.status());
        let addr = s["listeners"][0]["address"].as_str().expect("address");
        addr.trim_start_matches("tcp://")
            .parse()
            .expect("tcp address")
    }

    /// `hotswap serve --upgrade` against this supervisor.
    fn upgrade(&self) -> Output {
        self.verb(&["--upgrade"])
    }

    /// `hotswap serve <args> --admin …` against this supervisor (`--restart`, …).
    fn verb(&self, args: &[&str]) -> Output {
        output_within(
            Command::new(HOTSWAP)
                .arg("serve")
                .args(args)
                .arg("--admin")
                .arg(format!("unix://{}", self.admin.display())),
            Duration::from_secs(90),
        )
    }

    /// Waits for the supervisor to exit.
    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "hotswap serve did not exit within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // Politely first (the supervisor drains its children and removes its files),
        // then the whole process group, whatever state it is in.
        if let (Ok(None), Some(pid)) = (
            self.child.try_wait(),
            rustix::process::Pid::from_raw(self.child.id() as i32),
        ) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(3) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Some(pgid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- hotswap serve log ({}) ---\n{}",
                self.dir.path().display(),
                self.log()
            );
        }
    }
}

/// An HTTP response as the tests see it.
#[derive(Debug)]
struct Reply {
    status: u16,
    pid: u32,
    close: bool,
    body: String,
    /// The plugin generation that answered (`X-Generation`), when the plugin did.
    generation: Option<u64>,
}

/// Why a request failed; `received` counts response bytes seen before the failure.
#[derive(Debug)]
struct Failure {
    received: usize,
    what: String,
}

/// Sends one GET and reads the response.
fn exchange(conn: &mut impl ReadWrite, path: &str, close: bool) -> Result<Reply, Failure> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\n{}\r\n",
        if close { "Connection: close\r\n" } else { "" }
    );
    conn.write_all(request.as_bytes()).map_err(|e| Failure {
        received: 0,
        what: format!("write: {e}"),
    })?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut chunk) {
            Ok(0) => {
                return Err(Failure {
                    received: buf.len(),
                    what: "connection closed before the response head".into(),
                })
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => {
                return Err(Failure {
                    received: buf.len(),
                    what: format!("read: {e}"),
                })
            }
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let bad = |what: String| Failure {
        received: head_end,
        what,
    };
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line in {head:?}")))?;
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("no Content-Length".into()))?;
    let pid: u32 = header("x-pid")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("no X-Pid".into()))?;
    let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let generation = header("x-generation").and_then(|v| v.parse().ok());
    while buf.len() < head_end + length {
        match conn.read(&mut chunk) {
            Ok(0) => return Err(bad("connection closed in the body".into())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(bad(format!("read body: {e}"))),
        }
    }
    Ok(Reply {
        status,
        pid,
        close,
        body: String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned(),
        generation,
    })
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// One GET on a fresh connection.
fn get(addr: SocketAddr, path: &str) -> Reply {
    let mut conn = connect(addr).expect("connect");
    exchange(&mut conn, path, true).expect("GET")
}

/// What the load generator saw.
#[derive(Default)]
struct Load {
    ok: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    /// Keep-alive connections the server closed (while draining) before it read the
    /// next request: retried once on a fresh connection, as HTTP clients do.
    retried: AtomicU64,
    pids: Mutex<HashSet<u32>>,
    errors: Mutex<Vec<String>>,
    /// The clients stop after this many requests.
    cap: u64,
}

impl Load {
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 10 {
            errors.push(what);
        }
    }

    /// Whether a client stops: at the cap, or at `stop` once the load has an outcome
    /// (so that "some requests were served" holds by construction, not by timing).
    fn done(&self, stop: &AtomicBool) -> bool {
        let total = self.total();
        (stop.load(Ordering::Relaxed) && total > 0) || total >= self.cap
    }

    fn total(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
            + self.refused.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
    }

    fn record(&self, reply: &Reply, expect_body: &str) {
        if reply.status == 200 && reply.body.starts_with(expect_body) {
            self.ok.fetch_add(1, Ordering::Relaxed);
            self.pids.lock().unwrap().insert(reply.pid);
        } else {
            self.fail(format!("unexpected reply {reply:?}"));
        }
    }
}

/// Starts three clients on `addr` (one keep-alive, two on fresh connections, `GET /` of
/// the demo's handlers) with no request cap; stop them with [`stop_load`].
fn start_load(addr: SocketAddr) -> (Arc<Load>, Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>) {
    let load = Arc::new(Load {
        cap: u64::MAX,
        ..Load::default()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let clients = (0..3)
        .map(|kind| {
            let (load, stop) = (load.clone(), stop.clone());
            std::thread::spawn(move || match kind {
                0 => keepalive_client(addr, &load, &stop),
                _ => fresh_client(addr, "/", "hello from handlers", &load, &stop),
            })
        })
        .collect();
    (load, stop, clients)
}

/// Stops the load `clients` generate (the `stop` flag), waits for them, and re-raises a
/// panic of the test's body (`result`) only then, so no client outlives a failure.
fn stop_load(
    stop: &AtomicBool,
    clients: Vec<std::thread::JoinHandle<()>>,
    result: std::thread::Result<()>,
) {
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

impl Load {
    /// Prints what the load saw during `what` and asserts that no request was refused
    /// or failed, and that some were served; returns how many.
    fn assert_none_lost(&self, what: &str) -> u64 {
        let (ok, refused, failed) = (
            self.ok.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        );
        println!("{what} under load: {ok} served, {refused} refused, {failed} failed");
        assert_eq!(
            (refused, failed),
            (0, 0),
            "{:?}",
            self.errors.lock().unwrap()
        );
        assert!(ok > 0);
        ok
    }
}

/// A client that sends `path` on fresh connections until `stop`.
fn fresh_client(addr: SocketAddr, path: &str, expect: &str, load: &Load, stop: &AtomicBool) {
    while !load.done(stop) {
        match connect(addr) {
            Err(e) => {
                load.refused.fetch_add(1, Ordering::Relaxed);
                load.fail(format!("connect: {e}"));
            }
            Ok(mut conn) => match exchange(&mut conn, path, true) {
                Ok(reply) => load.record(&reply, expect),
                Err(f) => load.fail(format!("fresh connection: {}", f.what)),
            },
        }
    }
}

/// A client that keeps one connection open as long as the server allows.
fn keepalive_client(addr: SocketAddr, load: &Load, stop: &AtomicBool) {
    let mut conn: Option<TcpStream> = None;
    while !load.done(stop) {
        let reused = conn.is_some();
        let mut c = match conn.take() {
            Some(c) => c,
            None => match connect(addr) {
                Ok(c) => c,
                Err(e) => {
                    load.refused.fetch_add(1, Ordering::Relaxed);
                    load.fail(format!("connect: {e}"));
                    continue;
                }
            },
        };
        match exchange(&mut c, "/", false) {
            Ok(reply) => {
                load.record(&reply, "hello from handlers");
                if !reply.close {
                    conn = Some(c);
                }
            }
            // The server closed an idle keep-alive connection as the request went out:
            // nothing of the request was processed; retry it once on a new connection.
            Err(f) if reused && f.received == 0 => {
                load.retried.fetch_add(1, Ordering::Relaxed);
                match connect(addr) {
                    Ok(mut fresh) => match exchange(&mut fresh, "/", false) {
                        Ok(reply) => {
                            load.record(&reply, "hello from handlers");
                            if !reply.close {
                                conn = Some(fresh);
                            }
                        }
                        Err(f) => load.fail(format!("retry: {}", f.what)),
                    },
                    Err(e) => {
                        load.refused.fetch_add(1, Ordering::Relaxed);
                        load.fail(format!("connect: {e}"));
                    }
                }
            }
            Err(f) => load.fail(format!("keep-alive: {}", f.what)),
        }
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hotswap-serve-test-")
        .tempdir()
        .unwrap()
}

#[test]
fn twenty_upgrades_under_load_lose_no_request() {
    const UPGRADES: u64 = 20;
    // Bounds of the load: the clients stop at this many requests (the remaining
    // upgrades then run without load), the upgrades must fit in TIME_LIMIT.
    const MAX_REQUESTS: u64 = 1_000_000;
    const TIME_LIMIT: Duration = Duration::from_secs(20);
    let dir = tempdir();
    let plugins = handlers_dir(dir.path());
    let demo = demo_binary();
    let mut serve = Serve::start(
        dir,
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--workers",
            "2",
            "--ready-timeout",
            "20",
            "--drain-timeout",
            "15",
        ],
        &[
            demo.to_str().unwrap(),
            "--plugins",
            plugins.to_str().unwrap(),
        ],
    );
    let first = serve.serving(2);
    let addr = serve.tcp_addr();
    let load = Arc::new(Load {
        cap: MAX_REQUESTS,
        ..Load::default()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for kind in 0..5 {
        let (load, stop) = (load.clone(), stop.clone());
        clients.push(std::thread::spawn(move || match kind {
            0 | 1 => keepalive_client(addr, &load, &stop),
            2 | 3 => fresh_client(addr, "/", "hello from handlers", &load, &stop),
            // Slow requests: in flight while their process is told to drain.
            _ => fresh_client(addr, "/sleep/50", "slept 50 ms", &load, &stop),
        }));
    }
    let deadline = Instant::now() + TIME_LIMIT;
    let started = Instant::now();
    let mut upgraded = 0;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for i in 0..UPGRADES {
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            if i % 2 == 0 {
                let out = serve.upgrade();
                assert!(
                    out.status.success(),
                    "upgrade {i} failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            } else {
                // SIGHUP: no answer; watch the status for the outcome.
                signal(serve.pid(), rustix::process::Signal::HUP);
                wait_for("the SIGHUP upgrade", Duration::from_secs(30), || {
                    let s = serve.status()?;
                    (s["upgrades_ok"].as_u64()? > i && s["upgrading"] == false).then_some(())
                });
            }
            upgraded += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }));
    stop_load(&stop, clients, result);
    let last = serve.serving(2);
    let (ok, refused, failed, retried) = (
        load.ok.load(Ordering::Relaxed),
        load.refused.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
        load.retried.load(Ordering::Relaxed),
    );
    let pids = load.pids.lock().unwrap().len();
    println!(
        "{upgraded} process upgrades in {:.1} s under load: {ok} requests served by {pids} \
         processes, {refused} refused, {failed} failed, {retried} keep-alive retries{}",
        started.elapsed().as_secs_f64(),
        if load.total() >= MAX_REQUESTS {
            " (request cap reached)"
        } else {
            ""
        }
    );
    assert_eq!(
        upgraded, UPGRADES,
        "the upgrades did not fit in the time bound"
    );
    assert_eq!(
        (refused, failed),
        (0, 0),
        "errors: {:?}",
        load.errors.lock().unwrap()
    );
    assert!(ok > 0);
    assert!(
        pids as u64 > UPGRADES,
        "responses came from only {pids} processes"
    );
    assert!(first.iter().all(|p| !last.contains(p)));
    let status = serve.status().unwrap();
    assert_eq!(status["upgrades_ok"].as_u64(), Some(UPGRADES));
    assert_eq!(status["upgrades_failed"].as_u64(), Some(0));
    let log = serve.log();
    for line in ["starting new child pid", "ready in", "draining old child"] {
        assert!(log.contains(line), "log lacks {line:?}");
    }
}

#[test]
fn a_new_child_that_fails_leaves_the_old_one_serving() {
    let dir = tempdir();
    let plugins = handlers_dir(dir.path());
    let demo = demo_binary();
    let run = dir.path().join("run.sh");
    let good = format!(
        "exec '{}' --plugins '{}'",
        demo.display(),
        plugins.display()
    );
    script(&run, &good);
    let block = dir.path().join("block");
    let pre = format!("test ! -e '{}'", block.display());
    let mut serve = Serve::start(
        dir,
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--ready-timeout",
            "3",
            "--pre-upgrade",
            &pre,
        ],
        &[run.to_str().unwrap()],
    );
    let old = serve.serving(1)[0];
    let addr = serve.tcp_addr();
    assert_eq!(get(addr, "/").pid, old);
    // Garbage gets a 400 (and an oversized head a 431), and the service goes on.
    for (bytes, status) in [
        (b"\x16\x03\x01 hello\r\n\r\n".to_vec(), "400"),
        (
            [b"GET / HTTP/1.1\r\nX: ".to_vec(), vec![b'a'; 20_000]].concat(),
            "431",
        ),
    ] {
        let mut conn = connect(addr).unwrap();
        conn.write_all(&bytes).unwrap();
        let mut answer = String::new();
        let _ = conn.read_to_string(&mut answer);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer:?}"
        );
    }
    assert_eq!(get(addr, "/").pid, old);

    // Requests keep flowing (and all reach the old child) while upgrades fail.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let watcher = {
        let (stop, seen) = (stop.clone(), seen.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let r = get(addr, "/");
                seen.lock().unwrap().push((r.status, r.pid));
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    // 1. Never reports ready: killed at --ready-timeout.
    script(&run, "exec sleep 60");
    let out = serve.upgrade();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(err.contains("was not ready within 3000 ms"), "{err}");
    assert!(
        err.contains(&format!("old child {old} keeps serving")),
        "{err}"
    );
    // 2. Exits at once.
    script(&run, "exit 3");
    let out = serve.upgrade();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains("exited (exit status 3) before it was ready"),
        "{err}"
    );
    // 3. The pre-upgrade command fails: nothing is started.
    script(&run, &good);
    std::fs::write(&block, b"").unwrap();
    let out = serve.upgrade();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("pre-upgrade command failed"), "{err}");

    stop.store(true, Ordering::Relaxed);
    watcher
        .join()
        .expect("requests failed during the failed upgrades");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() > 10, "only {} requests", seen.len());
    assert!(
        seen.iter()
            .all(|&(status, pid)| status == 200 && pid == old),
        "{seen:?}"
    );
    assert_eq!(serve.serving(1), vec![old]);
    assert_eq!(get(addr, "/").pid, old);

    // 4. Fixed: the upgrade goes through.
    std::fs::remove_file(&block).unwrap();
    let out = serve.upgrade();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = serve.serving(1)[0];
    assert_ne!(new, old);
    assert_eq!(get(addr, "/").pid, new);
    let status = serve.status().unwrap();
    assert_eq!(status["upgrades_failed"].as_u64(), Some(3));
    assert_eq!(status["upgrades_ok"].as_u64(), Some(1));
}

#[test]
fn unix_socket_paths_stale_removed_live_and_foreign_refused() {
    let dir = tempdir();
    let plugins = handlers_dir(dir.path());
    let demo = demo_binary();
    let sock = dir.path().join("web.sock");
    drop(UnixListener::bind(&sock).unwrap()); // a stale socket file: nobody listens
    assert!(sock.exists());
    let listen = format!("unix://{}#web", sock.display());
    let mut serve = Serve::start(
        dir,
        &["--listen", &listen],
        &[
            demo.to_str().unwrap(),
            "--plugins",
            plugins.to_str().unwrap(),
        ],
    );
    let pid = serve.serving(1)[0];
    assert!(serve.log().contains("removed stale unix socket"));
    let mut conn = UnixStream::connect(&sock).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let reply = exchange(&mut conn, "/", true).unwrap();
    assert_eq!((reply.status, reply.pid), (200, pid));

    // A second supervisor must not take the live socket over.
    let out = output_within(
        Command::new(HOTSWAP).args(["serve", "--listen", &listen, "--", "true"]),
        Duration::from_secs(20),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("in use by a live process"), "{err}");
    assert!(sock.exists());
    // Nor remove something that is not a socket.
    let file = serve.dir.path().join("file.sock");
    std::fs::write(&file, b"keep me").unwrap();
    let out = output_within(
        Command::new(HOTSWAP).args([
            "serve",
            "--listen",
            &format!("unix://{}", file.display()),
            "--",
            "true",
        ]),
        Duration::from_secs(20),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a socket"));
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    // Still served by the first one, which removes its socket on exit.
    let mut conn = UnixStream::connect(&sock).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(exchange(&mut conn, "/", true).unwrap().pid, pid);
    signal(serve.pid(), rustix::process::Signal::TERM);
    assert!(serve.wait_exit(Duration::from_secs(20)).success());
    assert!(!sock.exists(), "socket file left behind");
}

#[test]
fn sighup_to_the_demo_reloads_its_plugins_in_process() {
    let dir = tempdir();
    let plugins = handlers_dir(dir.path());
    let demo = demo_binary();
    let v2 = common::build("demo/http/handlers", &["v2"]);
    let mut serve = Serve::start(
        dir,
        &["--listen", "tcp://127.0.0.1:0"],
        &[
            demo.to_str().unwrap(),
            "--plugins",
            plugins.to_str().unwrap(),
        ],
    );
    let pid = serve.serving(1)[0];
    let addr = serve.tcp_addr();
    assert_eq!(get(addr, "/").body, "hello from handlers v1\n");
    common::install(&v2, &plugins);
    signal(pid, rustix::process::Signal::HUP);
    let reply = wait_for("the v2 answer", Duration::from_secs(20), || {
        let r = get(addr, "/");
        r.body.contains("v2").then_some(r)
    });
    // Same process: the plugin was swapped in-process, not the process.
    assert_eq!(
        (reply.pid, reply.body.as_str()),
        (pid, "hello from handlers v2\n")
    );
    assert_eq!(serve.serving(1), vec![pid]);
}

#[test]
fn a_hundred_sighup_reloads_under_load_fail_no_request() {
    const RELOADS: u64 = 100;
    let dir = tempdir();
    let plugins = handlers_dir(dir.path());
    let demo = demo_binary();
    let (v1, v2) = (
        common::build("demo/http/handlers", &[]),
        common::build("demo/http/handlers", &["v2"]),
    );
    let mut serve = Serve::start(
        dir,
        &["--listen", "tcp://127.0.0.1:0"],
        &[
            demo.to_str().unwrap(),
            "--plugins",
            plugins.to_str().unwrap(),
        ],
    );
    let pid = serve.serving(1)[0];
    let addr = serve.tcp_addr();
    let first = get(addr, "/version").generation.expect("X-Generation");
    let load = Arc::new(Load {
        cap: 5_000_000,
        ..Load::default()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|kind| {
            let (load, stop) = (load.clone(), stop.clone());
            std::thread::spawn(move || match kind {
                0 => keepalive_client(addr, &load, &stop),
                1 => fresh_client(addr, "/", "hello from handlers", &load, &stop),
                // In flight (awaiting the host's timer in the plugin) across reloads.
                _ => fresh_client(addr, "/sleep/20", "slept 20 ms", &load, &stop),
            })
        })
        .collect();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for i in 1..=RELOADS {
            // The other build, then SIGHUP; wait until a request sees the generation the
            // reload published (a condition, not a time).
            let (build, version) = if i % 2 == 1 { (&v2, "v2") } else { (&v1, "v1") };
            common::clear(&plugins);
            common::install(build, &plugins);
            signal(pid, rustix::process::Signal::HUP);
            let reply = wait_for("the reload's generation", Duration::from_secs(30), || {
                let r = get(addr, "/version");
                (r.generation? >= first + i).then_some(r)
            });
            assert_eq!(
                reply.generation,
                Some(first + i),
                "one generation per reload"
            );
            assert_eq!(reply.body, format!("{version}\n"));
            assert_eq!(reply.pid, pid, "reloaded in-process");
        }
    }));
    stop_load(&stop, clients, result);
    let (ok, failed) = (
        load.ok.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
    );
    println!("{RELOADS} in-process reloads under load: {ok} requests served, {failed} failed");
    assert_eq!(failed, 0, "errors: {:?}", load.errors.lock().unwrap());
    assert!(ok > 0);
    assert_eq!(*load.pids.lock().unwrap(), HashSet::from([pid]));
    assert_eq!(serve.serving(1), vec![pid]);
}

/// A child that records the signals it gets and what it inherited.
fn recorder(dir: &Path) -> (PathBuf, PathBuf) {
    let mark = dir.join("mark");
    let run = dir.join("child.sh");
    script(
        &run,
        &format!(
            "m='{}'\n\
             fd3=$(readlink /proc/$$/fd/3)\n\
             echo \"env $$ $LISTEN_PID $LISTEN_FDS $LISTEN_FDNAMES $EINHORN_FDS ${{fd3%%:*}}\" >> \"$m\"\n\
             trap 'echo usr2 $$ >> \"$m\"' USR2\n\
             trap 'echo \"msg $$ $(cat \"$HOTSWAP_MESSAGE_FILE\")\" >> \"$m\"' USR1\n\
             trap 'echo term $$ >> \"$m\"; exit 0' TERM\n\
             while :; do sleep 0.05; done",
            mark.display()
        ),
    );
    (run, mark)
}

#[test]
fn signals_are_forwarded_and_the_supervisor_exits_after_its_children() {
    let dir = tempdir();
    let (run, mark) = recorder(dir.path());
    let mut serve = Serve::start(
        dir,
        &[
            "--listen",
            "tcp://127.0.0.1:0#api",
            "--start-delay",
            "200ms",
            "--workers",
            "2",
        ],
        &[run.to_str().unwrap()],
    );
    let pids = serve.serving(2);
    let read = || std::fs::read_to_string(&mark).unwrap_or_default();
    // The sockets arrive as systemd passes them: LISTEN_PID is the child's own pid.
    for pid in &pids {
        let line = format!("env {pid} {pid} 1 api 3 socket");
        assert!(read().contains(&line), "{line:?} not in {:?}", read());
    }
    signal(serve.pid(), rustix::process::Signal::USR2);
    wait_for("SIGUSR2 at both children", Duration::from_secs(10), || {
        pids.iter()
            .all(|p| read().contains(&format!("usr2 {p}")))
            .then_some(())
    });
    assert!(pids.iter().all(|p| pid_alive(*p)));
    signal(serve.pid(), rustix::process::Signal::TERM);
    let status = serve.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}");
    for pid in &pids {
        assert!(read().contains(&format!("term {pid}")), "{}", read());
        assert!(!pid_alive(*pid), "child {pid} outlived the supervisor");
    }
    let log = serve.log();
    assert!(log.contains("received SIGTERM: forwarding it"), "{log}");
    assert!(log.contains("all children are gone"), "{log}");
}

#[test]
fn a_wrapper_script_without_exec_is_stopped_whole() {
    let dir = tempdir();
    let plugins = handlers_dir(dir.path());
    let demo = demo_binary();
    let start = dir.path().join("start.sh");
    // As `npm start` or a hand-written wrapper would: no `exec`, so the shell stays the
    // supervisor's child and the server is its child. LISTEN_PID names the shell, so
    // the server takes its sockets from EINHORN_FDS.
    std::fs::write(
        &start,
        format!(
            "unset LISTEN_FDS LISTEN_PID LISTEN_FDNAMES\n'{}' --plugins '{}'\necho server exited\n",
            demo.display(),
            plugins.display()
        ),
    )
    .unwrap();
    let mut serve = Serve::start(
        dir,
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--ready-timeout",
            "20",
            "--drain-timeout",
            "15",
        ],
        &["sh", start.to_str().unwrap()],
    );
    let shell = serve.serving(1)[0];
    let addr = serve.tcp_addr();
    let old = get(addr, "/").pid;
    assert_ne!(old, shell, "the server should run under the wrapper shell");

    // Under load: no request fails across the upgrade.
    let load = Arc::new(Load {
        cap: u64::MAX,
        ..Load::default()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (load, stop) = (load.clone(), stop.clone());
            std::thread::spawn(move || fresh_client(addr, "/", "hello from handlers", &load, &stop))
        })
        .collect();
    let out = serve.upgrade();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_shell = serve.serving(1)[0];
    assert_ne!(new_shell, shell);
    // The old server got the drain signal too, and is gone once it has drained.
    wait_for("the old server to exit", Duration::from_secs(30), || {
        (!pid_alive(old)).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(
        load.failed.load(Ordering::Relaxed),
        0,
        "{:?}",
        load.errors.lock().unwrap()
    );
    assert!(load.ok.load(Ordering::Relaxed) > 0);
    // Only the new server answers now.
    let new = get(addr, "/").pid;
    assert!(![old, shell, new_shell].contains(&new));
    for _ in 0..20 {
        assert_eq!(get(addr, "/").pid, new);
    }
    // Nothing of any child outlives the supervisor.
    signal(serve.pid(), rustix::process::Signal::TERM);
    let status = serve.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    for pid in [shell, old, new_shell, new] {
        assert!(!pid_alive(pid), "process {pid} outlived the supervisor");
    }
    // The supervisor's and the servers' logs went to a file: no colour codes.
    let log = serve.log();
    assert!(log.contains(" INFO "), "{log}");
    assert!(
        !log.contains('\x1b'),
        "ANSI escapes in the log file:\n{log}"
    );
}

#[test]
fn a_crashed_child_is_respawned_with_growing_backoff() {
    let dir = tempdir();
    let (run, _mark) = recorder(dir.path());
    let mut serve = Serve::start(
        dir,
        &["--listen", "tcp://127.0.0.1:0", "--start-delay", "100ms"],
        &[run.to_str().unwrap()],
    );
    let first = serve.serving(1)[0];
    signal(first, rustix::process::Signal::KILL);
    let second = wait_for("a respawned child", Duration::from_secs(20), || {
        let p = serve.serving(1)[0];
        (p != first).then_some(p)
    });
    signal(second, rustix::process::Signal::KILL);
    let third = wait_for("a second respawn", Duration::from_secs(20), || {
        let p = serve.serving(1)[0];
        (p != second).then_some(p)
    });
    assert_ne!(third, first);
    let log = serve.log();
    for line in [
        format!("child {first} exited unexpectedly (killed by signal 9 (SIGKILL))"),
        "respawning in 100 ms (crash 1 in a row)".to_string(),
        format!("child {second} exited unexpectedly"),
        "respawning in 200 ms (crash 2 in a row)".to_string(),
    ] {
        assert!(log.contains(&line), "log lacks {line:?}:\n{log}");
    }
    assert_eq!(serve.status().unwrap()["respawns"].as_u64(), Some(2));
}

#[test]
fn a_worker_over_max_rss_is_recycled() {
    let dir = tempdir();
    let plugins = handlers_dir(dir.path());
    let demo = demo_binary();
    // Every process is over 1 MiB: the worker is recycled about once a second.
    let mut serve = Serve::start(
        dir,
        &["--listen", "tcp://127.0.0.1:0", "--max-rss", "1"],
        &[
            demo.to_str().unwrap(),
            "--plugins",
            plugins.to_str().unwrap(),
        ],
    );
    let first = serve.serving(1)[0];
    let addr = serve.tcp_addr();
    let next = wait_for("a recycled worker", Duration::from_secs(20), || {
        let p = serve.serving(1)[0];
        (p != first).then_some(p)
    });
    let reply = get(addr, "/");
    assert_eq!(reply.status, 200);
    let log = serve.log();
    assert!(
        log.contains(&format!("child {first} uses")) && log.contains("over --max-rss 1 MiB"),
        "{log}"
    );
    assert!(
        log.contains(&format!("draining old child {first}")),
        "{log}"
    );
    assert_ne!(next, first);
}

#[test]
fn a_served_or_pre_upgrade_command_others_can_write_is_warned_about() {
    let dir = tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (run, _mark) = recorder(dir.path());
    // The pre-upgrade command lives in a directory every user can write (no sticky
    // bit): anyone could replace it before the next upgrade.
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let pre = open.join("pre.sh");
    script(&pre, "exit 0");
    // The served command itself is group-writable.
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o775)).unwrap();
    let mut serve = Serve::start(
        dir,
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--start-delay",
            "100ms",
            "--pre-upgrade",
            pre.to_str().unwrap(),
        ],
        &[run.to_str().unwrap()],
    );
    serve.serving(1);
    let log = serve.log();
    let served = format!(
        "served command: program {} is writable by its group",
        run.display()
    );
    assert!(log.contains(&served), "log lacks {served:?}:\n{log}");
    let pre_dir = format!(
        "--pre-upgrade command: the directory of {} is writable by every user",
        open.display()
    );
    assert!(log.contains(&pre_dir), "log lacks {pre_dir:?}:\n{log}");
    // It warns, it does not refuse: the upgrade runs, and warns again.
    let out = serve.upgrade();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(serve.log().matches(&served).count() >= 2, "{}", serve.log());
}

/// Set in a served child's environment: this test binary then plays a served program
/// (see [`served_by_the_test_binary`]) instead of running tests.
const ROLE: &str = "HOTSWAP_SERVE_TEST_ROLE";

/// A script that runs this test binary as a served child playing `role` (`exec`, so
/// `LISTEN_PID` is its pid), with `dir` for its files.
fn test_child(path: &Path, role: &str, dir: &Path) {
    let exe = std::env::current_exe().unwrap();
    script(
        path,
        &format!(
            "exec env {ROLE}={role} HOTSWAP_SERVE_TEST_DIR='{}' '{}' --exact served_by_the_test_binary --nocapture --test-threads=1 -q",
            dir.display(),
            exe.display()
        ),
    );
}

/// Not a test: the served program of the tests that need one they control. Returns at
/// once unless [`ROLE`] is set.
#[test]
fn served_by_the_test_binary() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    match role.as_str() {
        // A release that crashes right after it said it was ready: once the supervisor
        // shows it on probation (a condition, so the exit is never seen before the
        // READY=1).
        "ready-exit" => {
            hotswap_listen::notify_ready().expect("READY=1");
            let dir = PathBuf::from(std::env::var_os("HOTSWAP_SERVE_TEST_DIR").expect("dir"));
            let me = std::process::id() as u64;
            wait_for("being on probation", Duration::from_secs(60), || {
                let mut conn = UnixStream::connect(dir.join("admin.sock")).ok()?;
                writeln!(conn, "status").ok()?;
                let mut line = String::new();
                BufReader::new(conn).read_line(&mut line).ok()?;
                let status: serde_json::Value =
                    serde_json::from_str(line.trim_end().strip_prefix("ok ")?).ok()?;
                status["children"]
                    .as_array()?
                    .iter()
                    .any(|c| c["pid"].as_u64() == Some(me) && c["state"] == "probation")
                    .then_some(())
            });
            std::process::exit(1);
        }
        "hold" => hold_server(),
        other => panic!("unknown role {other}"),
    }
}

/// Serves the first inherited socket: each request is answered only once the file
/// `release` exists in the test's directory, after `got <pid>` was appended to `mark`.
/// On SIGTERM it exits as soon as no request is in flight.
fn hold_server() -> ! {
    let dir = PathBuf::from(std::env::var_os("HOTSWAP_SERVE_TEST_DIR").expect("dir"));
    let mut inherited = hotswap_listen::take().expect("inherited sockets");
    let hotswap_listen::Listener::Tcp(listener) = inherited.remove(0).listener else {
        panic!("the first socket is not TCP");
    };
    let term = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, term.clone()).unwrap();
    let in_flight = Arc::new(AtomicU64::new(0));
    {
        let in_flight = in_flight.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { break };
                in_flight.fetch_add(1, Ordering::SeqCst);
                let (in_flight, dir) = (in_flight.clone(), dir.clone());
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                        head.push(byte[0]);
                    }
                    let pid = std::process::id();
                    let mut mark = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(dir.join("mark"))
                        .unwrap();
                    writeln!(mark, "got {pid}").unwrap();
                    while !dir.join("release").exists() {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    let _ = conn.write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Pid: {pid}\r\nConnection: close\r\n\r\nok\n"
                        )
                        .as_bytes(),
                    );
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
    }
    hotswap_listen::notify_ready().expect("READY=1");
    loop {
        if term.load(Ordering::SeqCst) && in_flight.load(Ordering::SeqCst) == 0 {
            std::process::exit(0);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_release_that_dies_on_probation_leaves_the_old_children_serving() {
    let dir = tempdir();
    let plugins = handlers_dir(dir.path());
    let demo = demo_binary();
    let run = dir.path().join("run.sh");
    script(
        &run,
        &format!(
            "exec '{}' --plugins '{}'",
            demo.display(),
            plugins.display()
        ),
    );
    // A long probation: the bad release's exit ends it early; nothing waits it out.
    let mut serve = Serve::start(
        dir,
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--workers",
            "2",
            "--probation",
            "120s",
            "--ready-timeout",
            "20",
            "--drain-timeout",
            "15",
        ],
        &[run.to_str().unwrap()],
    );
    let mut old = serve.serving(2);
    old.sort_unstable();
    let addr = serve.tcp_addr();
    let (load, stop, clients) = start_load(addr);
    // The new release says READY=1 and exits as soon as it is on probation.
    test_child(&run, "ready-exit", serve.dir.path());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for round in 1..=3u64 {
            let out = serve.upgrade();
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(!out.status.success(), "round {round}: {err}");
            assert!(
                err.contains("after it was ready, within the 120000 ms probation"),
                "{err}"
            );
            assert!(err.contains("keeps serving"), "{err}");
            // The old children never left their places: same pids, nothing draining,
            // no respawn of the bad release in their place.
            let status = serve.status().unwrap();
            assert_eq!(status["upgrades_failed"].as_u64(), Some(round));
            assert!(
                status["last_upgrade"].as_str().unwrap().contains("failed"),
                "{status}"
            );
            let mut now = serve.serving(2);
            now.sort_unstable();
            assert_eq!(now, old);
        }
    }));
    stop_load(&stop, clients, result);
    load.assert_none_lost("3 failed upgrades on probation");
    let pids: Vec<u32> = load.pids.lock().unwrap().iter().copied().collect();
    assert!(pids.iter().all(|p| old.contains(p)), "{pids:?} vs {old:?}");
    let log = serve.log();
    assert!(!log.contains("draining old child"), "{log}");
    assert!(!log.contains("respawning"), "{log}");
    assert!(log.contains("on probation"), "{log}");
}

#[test]
fn a_release_that_passes_probation_replaces_the_old_children_together() {
    let dir = tempdir();
    let (run, _mark) = recorder(dir.path());
    let mut serve = Serve::start(
        dir,
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--workers",
            "2",
            "--start-delay",
            "100ms",
            "--probation",
            "500ms",
        ],
        &[run.to_str().unwrap()],
    );
    let mut old = serve.serving(2);
    old.sort_unstable();
    let out = serve.upgrade();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("done"), "{text}");
    let new = serve.serving(2);
    assert!(new.iter().all(|p| !old.contains(p)));
    let log = serve.log();
    // Both new children were ready (on probation) before any old one was told to drain.
    let probation = log.find("on probation for 500 ms").expect("probation line");
    let passed = log.find("probation passed").expect("passed line");
    let drained = log.find("draining old child").expect("drain line");
    assert!(probation < passed && passed < drained, "{log}");
    assert_eq!(serve.status().unwrap()["upgrades_ok"].as_u64(), Some(1));
}

#[test]
fn a_child_that_misses_its_ready_timeout_gets_sigterm_then_sigkill() {
    let dir = tempdir();
    // Never ready (no --start-delay, no READY=1): stopped at each deadline, respawned.
    let (run, mark) = recorder(dir.path());
    let mut serve = Serve::start(
        dir,
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--ready-timeout",
            "300ms",
            "--drain-timeout",
            "300ms",
        ],
        &[run.to_str().unwrap()],
    );
    // It got SIGTERM first, and finished on its own (its trap ran).
    let first = wait_for(
        "a SIGTERM to the late child",
        Duration::from_secs(30),
        || {
            let log = serve.log();
            let at = log.find(" was not ready within 300 ms (--ready-timeout); sent SIGTERM")?;
            let pid: u32 = log[..at].rsplit(' ').next()?.parse().ok()?;
            std::fs::read_to_string(&mark)
                .ok()?
                .contains(&format!("term {pid}"))
                .then_some(pid)
        },
    );
    assert!(!serve
        .log()
        .contains(&format!("failed child {first} still running")));
    // One that ignores SIGTERM is killed once the grace is over.
    script(&run, "trap '' TERM\nwhile :; do sleep 0.05; done");
    wait_for("a SIGKILL after the grace", Duration::from_secs(30), || {
        serve
            .log()
            .contains("still running 300 ms after SIGTERM; sent SIGKILL")
            .then_some(())
    });
    assert!(serve.child.try_wait().unwrap().is_none());
}

#[test]
fn after_sigterm_new_connections_are_refused_while_requests_in_flight_finish() {
    let dir = tempdir();
    let run = dir.path().join("hold.sh");
    test_child(&run, "hold", dir.path());
    let mark = dir.path().join("mark");
    let sock = dir.path().join("web.sock");
    let unix = format!("unix://{}", sock.display());
    let mut serve = Serve::start(
        dir,
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--listen",
            &unix,
            "--drain-timeout",
            "60",
        ],
        &[run.to_str().unwrap()],
    );
    let pid = serve.serving(1)[0];
    let addr = serve.tcp_addr();
    // A request the child has read and holds.
    let mut conn = connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    wait_for("the request in flight", Duration::from_secs(20), || {
        std::fs::read_to_string(&mark)
            .ok()?
            .contains(&format!("got {pid}"))
            .then_some(())
    });
    signal(serve.pid(), rustix::process::Signal::TERM);
    wait_for(
        "the supervisor to stop accepting",
        Duration::from_secs(20),
        || serve.log().contains("stopped accepting").then_some(()),
    );
    // Refused at once (RST to the SYN), not queued and reset later.
    for _ in 0..20 {
        let started = Instant::now();
        let err = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .expect_err("a new connection after SIGTERM was accepted");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    assert!(!sock.exists(), "the unix socket path is still there");
    assert!(UnixStream::connect(&sock).is_err());
    // The request in flight still gets its answer, then everything exits.
    assert!(serve.child.try_wait().unwrap().is_none());
    assert!(pid_alive(pid));
    std::fs::write(serve.dir.path().join("release"), b"").unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer)
        .expect("the request in flight failed");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    assert!(answer.contains(&format!("X-Pid: {pid}\r\n")), "{answer:?}");
    assert!(answer.ends_with("\r\n\r\nok\n"), "{answer:?}");
    assert!(serve.wait_exit(Duration::from_secs(30)).success());
    assert!(!pid_alive(pid));
}

#[test]
fn restart_message_and_stop_verbs() {
    let dir = tempdir();
    let (run, mark) = recorder(dir.path());
    let mut serve = Serve::start(
        dir,
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--workers",
            "2",
            "--start-delay",
            "100ms",
        ],
        &[run.to_str().unwrap()],
    );
    let read = || std::fs::read_to_string(&mark).unwrap_or_default();
    let old = serve.serving(2);
    // --message: the text in HOTSWAP_MESSAGE_FILE, then SIGUSR1, at every worker.
    let out = serve.verb(&["--message", "rotate the logs"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("delivered to 2 children"));
    wait_for(
        "the message at both workers",
        Duration::from_secs(20),
        || {
            old.iter()
                .all(|p| read().contains(&format!("msg {p} rotate the logs")))
                .then_some(())
        },
    );
    // A multi-line message is refused before it is sent.
    let out = serve.verb(&["--message", "two\nlines"]);
    assert_eq!(out.status.code(), Some(2));
    // --restart: every worker replaced now.
    let out = serve.verb(&["--restart"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = wait_for("new workers", Duration::from_secs(30), || {
        let pids = serve.serving(2);
        pids.iter().all(|p| !old.contains(p)).then_some(pids)
    });
    for p in &old {
        assert!(read().contains(&format!("term {p}")), "{}", read());
        wait_for("an old worker to exit", Duration::from_secs(20), || {
            (!pid_alive(*p)).then_some(())
        });
    }
    assert_eq!(serve.status().unwrap()["messages"].as_u64(), Some(1));
    // --stop: workers and supervisor.
    let out = serve.verb(&["--stop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(serve.wait_exit(Duration::from_secs(30)).success());
    for p in &new {
        assert!(!pid_alive(*p), "worker {p} outlived --stop");
    }
}

#[test]
fn the_log_is_in_journald_format_when_stderr_is_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempdir();
    let (run, _mark) = recorder(dir.path());
    // systemd names the journal stream stderr is connected to: here, the log file.
    let log = dir.path().join("serve.log");
    std::fs::write(&log, b"").unwrap();
    let meta = std::fs::metadata(&log).unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let mut serve = Serve::start_env(
        dir,
        &["--listen", "tcp://127.0.0.1:0", "--start-delay", "100ms"],
        &[run.to_str().unwrap()],
        &[("JOURNAL_STREAM", &stream)],
    );
    serve.serving(1);
    let text = serve.log();
    assert!(text.contains("<6>hotswap_supervisor"), "{text}");
    assert!(!text.contains('\x1b'), "{text}");
    for line in text.lines().filter(|l| !l.is_empty()) {
        assert!(
            ["<3>", "<4>", "<6>", "<7>"]
                .iter()
                .any(|p| line.starts_with(p)),
            "line without a priority: {line:?}"
        );
    }
}

#[test]
fn a_worker_over_max_cpu_is_recycled() {
    let dir = tempdir();
    let run = dir.path().join("spin.sh");
    script(&run, "while :; do :; done");
    let mut serve = Serve::start(
        dir,
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--start-delay",
            "100ms",
            "--max-cpu",
            "5",
            "--cpu-window",
            "1s",
        ],
        &[run.to_str().unwrap()],
    );
    let first = serve.serving(1)[0];
    wait_for("a recycled worker", Duration::from_secs(30), || {
        let p = serve.serving(1)[0];
        (p != first).then_some(p)
    });
    let log = serve.log();
    assert!(
        log.contains(&format!("child {first} used")) && log.contains("over --max-cpu 5%"),
        "{log}"
    );
}

#[test]
fn the_readme_systemd_unit_uses_only_flags_that_exist() {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let start = readme
        .find("```ini\n[Unit]")
        .expect("a systemd unit in the README");
    let unit = &readme[start..];
    let unit = &unit[..unit[7..].find("```").unwrap() + 7];
    for key in [
        "Type=notify",
        "NotifyAccess=",
        "KillMode=",
        "ExecReload=",
        "ExecStart=",
    ] {
        assert!(unit.contains(key), "the unit lacks {key}:\n{unit}");
    }
    let help = output_within(
        Command::new(HOTSWAP).args(["serve", "--help"]),
        Duration::from_secs(20),
    );
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    let mut flags = 0;
    for line in unit.lines().filter(|l| l.contains("hotswap serve")) {
        // Up to the `--` that starts the served command.
        let words = line.split_whitespace().take_while(|w| *w != "--");
        for word in words.filter(|w| w.starts_with("--")) {
            let flag = word.split('=').next().unwrap();
            flags += 1;
            assert!(
                help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                "{flag} is not a `hotswap serve` flag"
            );
        }
    }
    assert!(flags >= 5, "{unit}");
}

/// Installs a copy of the `hotswap` binary at `path` by rename (a new file, as a
/// package manager installs one).
fn install_hotswap(path: &Path) {
    let tmp = path.with_extension("new");
    std::fs::copy(HOTSWAP, &tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn the_supervisor_upgrades_itself_under_load_keeping_its_pid_sockets_and_children() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempdir();
    let plugins = handlers_dir(dir.path());
    let demo = demo_binary();
    let bin = dir.path().join("hotswap");
    install_hotswap(&bin);
    let mut serve = Serve::start_with(
        &bin,
        dir,
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--workers",
            "2",
            "--drain-timeout",
            "15",
        ],
        &[
            demo.to_str().unwrap(),
            "--plugins",
            plugins.to_str().unwrap(),
        ],
        &[],
    );
    let mut children = serve.serving(2);
    children.sort_unstable();
    let addr = serve.tcp_addr();
    let (load, stop, clients) = start_load(addr);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for round in 1..=3u64 {
            // A new hotswap binary at the path the supervisor was started from.
            install_hotswap(&bin);
            let installed = std::fs::metadata(&bin).unwrap().ino();
            let out = serve.verb(&["--upgrade-self"]);
            assert!(
                out.status.success(),
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let status = serve.status().unwrap();
            assert_eq!(status["self_upgrades"].as_u64(), Some(round));
            assert_eq!(status["supervisor_pid"].as_u64(), Some(serve.pid() as u64));
            // The same process runs the new file, with the same children.
            let exe = std::fs::metadata(format!("/proc/{}/exe", serve.pid())).unwrap();
            assert_eq!(exe.ino(), installed);
            let mut now = serve.serving(2);
            now.sort_unstable();
            assert_eq!(now, children);
        }
        // The new image upgrades the adopted children (and reaps them) as its own.
        let out = serve.upgrade();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let new = serve.serving(2);
        assert!(new.iter().all(|p| !children.contains(p)));
    }));
    stop_load(&stop, clients, result);
    load.assert_none_lost("3 supervisor self-upgrades and a process upgrade");
    signal(serve.pid(), rustix::process::Signal::TERM);
    assert!(serve.wait_exit(Duration::from_secs(30)).success());
    assert!(serve.log().contains("adopted its sockets and children"));
}

#[test]
fn a_failure_on_the_second_worker_stops_the_first_new_child_on_probation() {
    let dir = tempdir();
    let (child, mark) = recorder(dir.path());
    let run = dir.path().join("run.sh");
    script(&run, &format!("exec '{}'", child.display()));
    let mut serve = Serve::start(
        dir,
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--workers",
            "2",
            "--start-delay",
            "100ms",
            "--probation",
            "120s",
        ],
        &[run.to_str().unwrap()],
    );
    let mut old = serve.serving(2);
    old.sort_unstable();
    // The release: its first child is fine, the second exits before it is ready.
    let count = serve.dir.path().join("count");
    script(
        &run,
        &format!(
            "n=$(cat '{c}' 2>/dev/null || echo 0)\necho $((n + 1)) > '{c}'\n\
             if [ \"$n\" -ge 1 ]; then exit 3; fi\nexec '{}'",
            child.display(),
            c = count.display()
        ),
    );
    let out = serve.upgrade();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{err}");
    // Before it was ready, or (on a loaded machine, where the shell takes longer than
    // the start delay to get to its `exit 3`) after, within the probation: the upgrade
    // fails either way, which is what this test is about.
    assert!(
        err.contains("for worker 1 exited (exit status 3) before it was ready")
            || err.contains("for worker 1 exited (exit status 3)")
                && err.contains("after it was ready, within the 120000 ms probation"),
        "{err}"
    );
    assert!(
        err.contains("stopped the new children on probation ("),
        "{err}"
    );
    // The first worker's new child was told to stop; both old children kept serving.
    let first_new: u32 = err
        .split("stopped the new children on probation (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .expect("the stopped child's pid");
    assert!(!old.contains(&first_new));
    wait_for(
        "the new child on probation to exit",
        Duration::from_secs(20),
        || (!pid_alive(first_new)).then_some(()),
    );
    assert!(
        std::fs::read_to_string(&mark)
            .unwrap()
            .contains(&format!("term {first_new}")),
        "it got SIGTERM"
    );
    let mut now = serve.serving(2);
    now.sort_unstable();
    assert_eq!(now, old);
    assert!(!serve.log().contains("draining old child"));
}
