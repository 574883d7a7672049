//! Operating a host: SIGHUP to a host process, the admin endpoint (reload, status,
//! metrics that parse as Prometheus text, the TCP token, garbage and oversized requests
//! while calls go on), `hotswap reload` / `status` exit statuses, and `hotswap watch`
//! picking up an edit.

mod common;

use common::{build, clear, install, install_with, plugin_dir, repo, Build};
use hotswap_host::admin::client::{AdminTarget, Client};
use hotswap_host::admin::{Admin, AdminConfig, AdminError, Limits};
use hotswap_host::{PluginManager, Trigger, Value};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const PROBE: &str = "tests/plugins/probe";
const WORLD: &str = "demo/hello/world";

fn swap_to(dir: &Path, b: &Build) {
    clear(dir);
    install(b, dir);
}

/// An in-process host: a manager over a plugin directory, its trigger and admin endpoint.
struct Host {
    plugins: tempfile::TempDir,
    _sockets: tempfile::TempDir,
    socket: PathBuf,
    manager: Arc<PluginManager>,
    admin: Admin,
}

impl Host {
    fn start(first: &Build, configure: impl FnOnce(AdminConfig) -> AdminConfig) -> Host {
        Host::with_manager(
            first,
            |dir| {
                PluginManager::builder(dir)
                    .call_metrics(true)
                    .build()
                    .unwrap()
            },
            configure,
        )
    }

    fn with_manager(
        first: &Build,
        make: impl FnOnce(&Path) -> PluginManager,
        configure: impl FnOnce(AdminConfig) -> AdminConfig,
    ) -> Host {
        let plugins = plugin_dir();
        install(first, plugins.path());
        let manager = Arc::new(make(plugins.path()));
        manager.load_plugins(&Value::Null).unwrap();
        let sockets = plugin_dir();
        let socket = sockets.path().join("admin.sock");
        let admin = Admin::start(
            Trigger::new(manager.clone()),
            configure(AdminConfig::unix(&socket)),
        )
        .unwrap();
        Host {
            plugins,
            _sockets: sockets,
            socket,
            manager,
            admin,
        }
    }

    fn client(&self) -> Client {
        Client::new(AdminTarget::Unix(self.socket.clone())).timeout(Duration::from_secs(30))
    }

    fn admin_arg(&self) -> String {
        self.socket.display().to_string()
    }
}

/// Runs the real `hotswap` binary; returns (exit code, stdout, stderr).
fn hotswap(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hotswap"));
    cmd.args(args)
        .env_remove("HOTSWAP_ADMIN")
        .env_remove("HOTSWAP_ADMIN_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run hotswap");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends raw bytes on a fresh connection, then reads the whole answer; returns the
/// status code, or `None` when the server closed without answering.
fn raw_exchange(socket: &Path, bytes: &[u8], close_write: bool) -> (Option<u16>, String, Duration) {
    let started = Instant::now();
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server may answer and close before reading everything: ignore write errors.
    let _ = s.write_all(bytes);
    if close_write {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok());
    (status, text, started.elapsed())
}

/// Checks the Prometheus text exposition format line by line; returns the samples.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let sample = regex::Regex::new(
        r#"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? (?P<value>\S+)(?: -?[0-9]+)?$"#,
    )
    .unwrap();
    let help = regex::Regex::new(r"^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .*$").unwrap();
    let kind = regex::Regex::new(
        r"^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$",
    )
    .unwrap();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    assert!(text.ends_with('\n'), "exposition must end with a newline");
    for line in text.lines() {
        if let Some(c) = kind.captures(line) {
            let old = types.insert(c[1].to_owned(), c[2].to_owned());
            assert!(old.is_none(), "TYPE repeated: {line}");
            continue;
        }
        if help.is_match(line) {
            continue;
        }
        assert!(!line.starts_with('#'), "bad comment line {line:?}");
        let c = sample
            .captures(line)
            .unwrap_or_else(|| panic!("not a sample line: {line:?}"));
        let name = &c[1];
        let value = &c["value"];
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample before its TYPE: {line:?}"
        );
        let key = line.rsplit_once(' ').map(|(k, _)| k.to_owned()).unwrap();
        assert!(
            samples.insert(key, v).is_none(),
            "duplicate series {line:?}"
        );
    }
    // Histograms, each series (its labels but `le`): cumulative buckets, +Inf equals
    // _count, and a _sum.
    let le = regex::Regex::new(r#"(^|,)le="([^"]*)""#).unwrap();
    for (family, t) in &types {
        if t != "histogram" {
            continue;
        }
        let mut series: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
        for (k, v) in &samples {
            let Some(labels) = k.strip_prefix(&format!("{family}_bucket{{")) else {
                continue;
            };
            let labels = labels.strip_suffix('}').expect("closed label set");
            let c = le.captures(labels).expect("a bucket has an le label");
            let bound = match &c[2] {
                "+Inf" => f64::INFINITY,
                b => b.parse().expect("le is a number"),
            };
            let rest = le.replace(labels, "").trim_start_matches(',').to_owned();
            series.entry(rest).or_default().push((bound, *v));
        }
        assert!(!series.is_empty(), "{family} has no buckets");
        for (labels, mut buckets) in series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family}{{{labels}}} buckets not cumulative"
            );
            let inf = buckets.last().expect("a +Inf bucket");
            assert_eq!(
                inf.0,
                f64::INFINITY,
                "{family}{{{labels}}} has no +Inf bucket"
            );
            let suffix = |s: &str| {
                if labels.is_empty() {
                    format!("{family}_{s}")
                } else {
                    format!("{family}_{s}{{{labels}}}")
                }
            };
            assert_eq!(
                Some(&inf.1),
                samples.get(&suffix("count")),
                "{family}{{{labels}}}"
            );
            assert!(samples.contains_key(&suffix("sum")), "{family}{{{labels}}}");
        }
    }
    samples
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process killed when the test ends, its output collected by threads.
struct Running {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let output = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for pipe in [Box::new(out) as Box<dyn Read + Send>, Box::new(err)] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut o = output.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        Running { child, output }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("child exited early ({status}):\n{}", self.output());
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo binary, built once per test process (`common::workspace_bin`).
fn demo_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| common::workspace_bin("hotswap-demo", "hotswap-demo"))
        .clone()
}

#[test]
fn sighup_reloads_a_host_process() {
    let v1 = build(WORLD, &[]);
    let v2 = build(WORLD, &["v2"]);
    let bin = demo_binary();
    let plugins = plugin_dir();
    install(&v1, plugins.path());
    let sockets = plugin_dir();
    let socket = sockets.path().join("admin.sock");
    let mut cmd = Command::new(bin);
    cmd.args(["hello", "--serve", "--plugins"])
        .arg(plugins.path())
        .arg("--admin")
        .arg(&socket)
        .env("RUST_LOG", "info");
    let mut host = Running::spawn(cmd);
    let client = Client::new(AdminTarget::Unix(socket.clone())).timeout(Duration::from_secs(10));
    let build_id = |client: &Client| -> Option<(u64, String)> {
        let status = client.get("/status").ok()?.json().ok()?;
        let generation = status["generation"].as_u64()?;
        let id = status["plugins"][0]["build_id"].as_str()?.to_owned();
        Some((generation, id))
    };
    let first = wait_for("the host's admin endpoint", Duration::from_secs(60), || {
        host.assert_running();
        build_id(&client)
    });
    assert_eq!(first, (1, v1.manifest.build_id.clone()));
    wait_for("v1 answers", Duration::from_secs(10), || {
        host.output().contains("hello from v1").then_some(())
    });

    swap_to(plugins.path(), &v2);
    host.signal("HUP");
    let (generation, id) = wait_for("the SIGHUP reload", Duration::from_secs(30), || {
        host.assert_running();
        build_id(&client).filter(|(g, _)| *g > 1)
    });
    assert_eq!(generation, 2);
    assert_eq!(id, v2.manifest.build_id);
    let status = client.get("/status").unwrap().json().unwrap();
    assert_eq!(status["last_reload"]["source"], "signal");
    assert_eq!(status["last_reload"]["outcome"], "success");
    let metrics = parse_prometheus(&client.get("/metrics").unwrap().text());
    assert_eq!(
        metrics[r#"hotswap_reloads_total{trigger="signal",outcome="success"}"#],
        1.0
    );
    wait_for("v2 answers", Duration::from_secs(10), || {
        host.output().contains("hello from v2").then_some(())
    });

    // A clean stop removes the socket.
    host.signal("TERM");
    let status = wait_for("the host to stop", Duration::from_secs(20), || {
        host.child.try_wait().ok().flatten()
    });
    assert!(status.success(), "{status}\n{}", host.output());
    assert!(!socket.exists(), "socket left behind");
    // Its logs went to a pipe, not a terminal: no colour codes.
    let output = host.output();
    assert!(output.contains(" INFO "), "{output}");
    assert!(
        !output.contains('\x1b'),
        "ANSI escapes in piped logs:\n{output}"
    );
}

#[test]
fn admin_endpoint_reloads_and_reports_status_and_metrics() {
    let v1 = build(PROBE, &[]);
    let v2 = build(PROBE, &["v2"]);
    let host = Host::start(&v1, |c| c);
    let mode = std::fs::metadata(&host.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    let client = host.client();

    let health = client.get("/healthz").unwrap();
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    let status = client.get("/status").unwrap();
    assert_eq!(status.status, 200);
    assert_eq!(status.content_type.as_deref(), Some("application/json"));
    let status = status.json().unwrap();
    assert_eq!(status["generation"], 1);
    assert_eq!(status["plugins"][0]["name"], "probe");
    assert_eq!(
        status["plugins"][0]["build_id"],
        v1.manifest.build_id.as_str()
    );
    assert_eq!(status["versions"][0]["state"], "current");
    assert_eq!(status["pid"], std::process::id());

    swap_to(host.plugins.path(), &v2);
    let reload = client.post("/reload", None).unwrap();
    assert_eq!(reload.status, 200, "{}", reload.text());
    let report = reload.json().unwrap();
    assert_eq!(report["generation"], 2);
    assert_eq!(report["plugins"][0]["outcome"], "loaded");
    assert_eq!(
        report["plugins"][0]["build_id"],
        v2.manifest.build_id.as_str()
    );
    assert_eq!(
        host.manager.invoke_func("probe", "version", &[]).unwrap(),
        Value::from("v2")
    );

    let metrics = client.get("/metrics").unwrap();
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .content_type
        .as_deref()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let m = parse_prometheus(&metrics.text());
    assert_eq!(
        m[r#"hotswap_reloads_total{trigger="admin",outcome="success"}"#],
        1.0
    );
    assert_eq!(
        m[r#"hotswap_reloads_total{trigger="admin",outcome="failure"}"#],
        0.0
    );
    assert_eq!(m["hotswap_reload_duration_seconds_count"], 1.0);
    assert_eq!(m["hotswap_generation"], 2.0);
    // One load and one reload: two generations published, one reload.
    assert_eq!(m["hotswap_generations_published_total"], 2.0);
    assert_eq!(host.manager.status().reloads, 1);
    assert_eq!(m[r#"hotswap_versions_in_memory{state="current"}"#], 1.0);
    assert!(m
        .keys()
        .any(|k| k.starts_with("hotswap_reclamation_info{mode=")));
    assert!(m
        .keys()
        .any(|k| k.starts_with("hotswap_plugin_info{plugin=\"probe\"")));
    // The reload loaded probe; the call above by name is counted on its version.
    assert_eq!(
        m[r#"hotswap_plugin_reloads_total{plugin="probe",outcome="loaded"}"#],
        1.0
    );
    assert_eq!(
        m[r#"hotswap_calls_total{plugin="probe",version="0.1.0",kind="by_name"}"#],
        1.0
    );
    assert!(
        m.contains_key(r#"hotswap_call_duration_seconds_count{plugin="probe",version="0.1.0"}"#)
    );

    // The CLI, against the same endpoint.
    let (code, out, err) = hotswap(&["status", "--admin", &host.admin_arg()], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("generation 2"), "{out}");
    assert!(out.contains("1 reload(s) published"), "{out}");
    assert!(out.contains(&v2.manifest.build_id), "{out}");
    let (code, out, err) = hotswap(
        &["status", "--json"],
        &[("HOTSWAP_ADMIN", &host.admin_arg())],
    );
    assert_eq!(code, 0, "{err}");
    let json: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(json["generation"], 2);
    let (code, out, err) = hotswap(&["reload", "--admin", &host.admin_arg()], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("generation 2 -> 3"), "{out}");
    assert!(out.contains("unchanged"), "{out}");

    // Reload data from the request reaches on_load of what is loaded.
    swap_to(host.plugins.path(), &v1);
    let (code, out, err) = hotswap(
        &[
            "reload",
            "--admin",
            &host.admin_arg(),
            "--json",
            "--data",
            r#"{"k": 1}"#,
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let json: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(json["generation"], 4);

    let (code, _, err) = hotswap(&["status"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("no admin endpoint"), "{err}");
    let (code, _, err) = hotswap(&["status", "--admin", "/nonexistent/admin.sock"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot connect"), "{err}");
}

#[test]
fn tcp_requires_the_bearer_token() {
    let v1 = build(PROBE, &[]);
    let host = Host::start(&v1, |c| {
        c.with_tcp("127.0.0.1:0".parse().unwrap(), "s3cret-token-0123456789")
    });
    let addr = host.admin.tcp_addr().unwrap();
    let url = format!("http://{addr}");
    let tcp = |token: Option<&str>| {
        Client::new(url.parse().unwrap())
            .token(token.map(str::to_owned))
            .get("/status")
            .unwrap()
    };
    let none = tcp(None);
    assert_eq!(none.status, 401, "{}", none.text());
    assert_eq!(tcp(Some("wrong")).status, 401);
    assert_eq!(tcp(Some("s3cret-token-0123456789")).status, 200);
    let refused = Client::new(url.parse().unwrap())
        .post("/reload", None)
        .unwrap();
    assert_eq!(refused.status, 401);
    assert_eq!(
        host.manager.generation_id(),
        1,
        "an unauthorized reload ran"
    );
    for route in ["/metrics", "/healthz"] {
        let r = Client::new(url.parse().unwrap()).get(route).unwrap();
        assert_eq!(r.status, 401, "{route}");
    }
    // The unix socket is guarded by its mode, not the token.
    assert_eq!(host.client().get("/status").unwrap().status, 200);

    let (code, _, err) = hotswap(&["status", "--admin", &url], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
    let (code, out, err) = hotswap(
        &[
            "status",
            "--admin",
            &url,
            "--token",
            "s3cret-token-0123456789",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("generation 1"), "{out}");
    let (code, out, err) = hotswap(
        &["reload", "--admin", &url],
        &[("HOTSWAP_ADMIN_TOKEN", "s3cret-token-0123456789")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("generation 1 -> 2"), "{out}");

    // Plain HTTP with a token only on loopback.
    let manager = Arc::new(PluginManager::new(host.plugins.path()).unwrap());
    let wide = AdminConfig {
        tcp: Some(("0.0.0.0:0".parse().unwrap(), "t".into())),
        ..AdminConfig::default()
    };
    assert!(matches!(
        Admin::start(Trigger::new(manager.clone()), wide),
        Err(AdminError::NotLoopback(_))
    ));
    // A token shorter than the minimum is refused, with a way to make a good one.
    for short in ["", "t", "fifteen-bytes!!"] {
        let config = AdminConfig {
            tcp: Some(("127.0.0.1:0".parse().unwrap(), short.into())),
            ..AdminConfig::default()
        };
        let err = Admin::start(Trigger::new(manager.clone()), config).unwrap_err();
        assert!(
            matches!(err, AdminError::TokenTooShort { len } if len == short.len()),
            "{err}"
        );
        assert!(err.to_string().contains("openssl rand -hex 32"), "{err}");
    }
    let spaced = AdminConfig {
        tcp: Some(("127.0.0.1:0".parse().unwrap(), "has a space in it!!".into())),
        ..AdminConfig::default()
    };
    assert!(matches!(
        Admin::start(Trigger::new(manager.clone()), spaced),
        Err(AdminError::BadToken)
    ));
    let sixteen =
        AdminConfig::default().with_tcp("127.0.0.1:0".parse().unwrap(), "0123456789abcdef");
    Admin::start(Trigger::new(manager), sixteen).expect("a 16-byte token is enough");
}

#[test]
fn the_cli_sends_no_token_off_loopback_unless_allowed() {
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): nothing answers there.
    let remote = "http://192.0.2.1:9";
    let token = "0123456789abcdef0123";
    let (code, out, err) = hotswap(&["status", "--admin", remote, "--token", token], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("not a loopback address"), "{err}");
    assert!(err.contains("clear text"), "{err}");
    let (code, _, err) = hotswap(
        &["reload", "--admin", remote],
        &[("HOTSWAP_ADMIN_TOKEN", token)],
    );
    assert_eq!(code, 1);
    assert!(err.contains("not a loopback address"), "{err}");
    // Allowed explicitly: a warning, then an ordinary connection failure.
    let (code, _, err) = hotswap(
        &[
            "status",
            "--admin",
            remote,
            "--token",
            token,
            "--allow-remote",
            "--timeout",
            "1",
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains("warning: --allow-remote"), "{err}");
    assert!(!err.contains("not a loopback address"), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
}

#[test]
fn garbage_and_oversized_requests_get_4xx_while_calls_go_on() {
    let v1 = build(PROBE, &[]);
    let v2 = build(PROBE, &["v2"]);
    let limits = Limits {
        max_connections: 6,
        read_timeout: Duration::from_millis(700),
        ..Limits::default()
    };
    let host = Host::start(&v1, |c| c.with_limits(limits));
    let socket = host.socket.clone();
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let failures = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    if host.manager.invoke_func("probe", "version", &[]).is_err() {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let big_header = [
                b"GET /status HTTP/1.1\r\nX-Big: ".as_slice(),
                &vec![b'a'; 200_000],
                b"\r\n\r\n",
            ]
            .concat();
            let cases: Vec<(&str, Vec<u8>, u16)> = vec![
                ("binary garbage", b"\x00\x01\xfe\xff garbage".to_vec(), 400),
                ("garbage head", b"\x16\x03\x01\x02\x00\r\n\r\n".to_vec(), 400),
                ("no version", b"GET /status\r\n\r\n".to_vec(), 400),
                ("bad version", b"GET /status HTTP/x\r\n\r\n".to_vec(), 400),
                ("absolute URL", b"GET http://x/status HTTP/1.1\r\n\r\n".to_vec(), 400),
                ("bad header", b"GET /status HTTP/1.1\r\nno-colon\r\n\r\n".to_vec(), 400),
                ("not UTF-8", b"GET /st\xffus HTTP/1.1\r\n\r\n".to_vec(), 400),
                ("unknown route", b"GET /admin HTTP/1.1\r\n\r\n".to_vec(), 404),
                ("wrong method", b"DELETE /status HTTP/1.1\r\n\r\n".to_vec(), 405),
                ("GET reload", b"GET /reload HTTP/1.1\r\n\r\n".to_vec(), 405),
                ("huge header", big_header, 431),
                (
                    "huge body",
                    b"POST /reload HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n".to_vec(),
                    413,
                ),
                (
                    "chunked",
                    b"POST /reload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                        .to_vec(),
                    411,
                ),
                (
                    "bad JSON body",
                    b"POST /reload HTTP/1.1\r\nContent-Length: 5\r\n\r\nnope!".to_vec(),
                    400,
                ),
                (
                    "wrong body type",
                    b"POST /reload HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
                        .to_vec(),
                    415,
                ),
                (
                    "body cut short",
                    b"POST /reload HTTP/1.1\r\nContent-Length: 50\r\n\r\n{}".to_vec(),
                    400,
                ),
                ("headers cut short", b"GET /status HTTP/1.1\r\nHost: x".to_vec(), 400),
            ];
            for (what, bytes, expected) in &cases {
                let (status, text, took) = raw_exchange(&socket, bytes, true);
                assert_eq!(status, Some(*expected), "{what}: {text}");
                assert!(took < Duration::from_secs(5), "{what} took {took:?}");
            }
            // A client that stops sending gets 408 once its time is up.
            let (status, _, took) = raw_exchange(&socket, b"GET /status HTTP/1.1\r\n", false);
            assert_eq!(status, Some(408));
            assert!(took < Duration::from_secs(5), "slow client held {took:?}");
            // Connecting and leaving is not an error anyone sees.
            drop(UnixStream::connect(&socket).unwrap());
            // Random bytes: always a 4xx (or nothing, for bytes that are only blank).
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            for _ in 0..100 {
                let mut bytes = Vec::new();
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let len = (seed % 300) as usize + 1;
                for _ in 0..len {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    bytes.push((seed >> 24) as u8);
                }
                let (status, text, _) = raw_exchange(&socket, &bytes, true);
                match status {
                    Some(code) => assert!((400..500).contains(&code), "{bytes:?} -> {text}"),
                    None => assert!(bytes.iter().all(u8::is_ascii_whitespace), "{bytes:?}"),
                }
            }
            // Idle connections beyond the request limit hold no request slot.
            let idle: Vec<UnixStream> = (0..limits.max_connections * 3)
                .map(|_| UnixStream::connect(&socket).unwrap())
                .collect();
            let (status, text, _) = raw_exchange(&socket, b"GET /status HTTP/1.1\r\n\r\n", true);
            assert_eq!(status, Some(200), "{text}");
            drop(idle);
            // After all that, the endpoint and the host still work.
            let health = wait_for("the endpoint to recover", Duration::from_secs(5), || {
                let r = host.client().get("/healthz").ok()?;
                (r.status == 200).then_some(r)
            });
            assert_eq!(health.text(), "ok\n");
            swap_to(host.plugins.path(), &v2);
            let reload = host.client().post("/reload", None).unwrap();
            assert_eq!(reload.status, 200, "{}", reload.text());
        }));
        stop.store(true, Ordering::Relaxed);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    });
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert!(calls.load(Ordering::Relaxed) > 1000);
    assert_eq!(
        host.manager.invoke_func("probe", "version", &[]).unwrap(),
        Value::from("v2")
    );
}

/// Opens `n` connections that each stop part-way (nothing, a request line, headers
/// announcing a body that never comes, headers without the token); returns them open.
fn idle_connections<S: Write>(n: usize, connect: impl Fn() -> S) -> Vec<S> {
    let stalls: [&[u8]; 4] = [
        b"",
        b"GET /status HTTP/1.1\r\n",
        b"POST /reload HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
        b"POST /reload HTTP/1.1\r\nAuthorization: Bearer nope\r\nContent-Length: 1000\r\n\r\n",
    ];
    (0..n)
        .map(|i| {
            let mut s = connect();
            s.write_all(stalls[i % stalls.len()]).unwrap();
            s
        })
        .collect()
}

/// Whether the server has neither answered nor closed `s` (a non-blocking peek).
fn still_waiting(s: &UnixStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let waiting = matches!((&*s).read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    waiting
}

#[test]
fn idle_connections_cannot_starve_the_admin_endpoint() {
    let v1 = build(PROBE, &[]);
    let v2 = build(PROBE, &["v2"]);
    const TOKEN: &str = "0123456789abcdef0123456789abcdef";
    // Deadlines far beyond the test's own: the endpoint must answer while every idle
    // connection is still open, not once they have timed out.
    let patient = Limits {
        head_timeout: Duration::from_secs(600),
        read_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let host = Host::start(&v1, |c| {
        c.with_tcp("127.0.0.1:0".parse().unwrap(), TOKEN)
            .with_limits(patient)
    });
    let addr = host.admin.tcp_addr().unwrap();
    let url = format!("http://{addr}");
    let tcp = || {
        Client::new(url.parse().unwrap())
            .token(Some(TOKEN.into()))
            .timeout(Duration::from_secs(30))
    };
    let idle_unix = idle_connections(100, || UnixStream::connect(&host.socket).unwrap());
    let idle_tcp = idle_connections(100, || TcpStream::connect(addr).unwrap());

    for _ in 0..3 {
        let r = host.client().get("/healthz").unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
        let r = tcp().get("/healthz").unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    }
    swap_to(host.plugins.path(), &v2);
    let r = host.client().post("/reload", None).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    swap_to(host.plugins.path(), &v1);
    let r = tcp().post("/reload", None).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(host.manager.generation_id(), 3);
    assert_eq!(tcp().get("/status").unwrap().status, 200);
    // The idle ones were not pushed out to make room: they are still waiting (all but
    // the TCP ones without the token, answered 401 as soon as their headers were in).
    for (i, s) in idle_unix.iter().enumerate() {
        assert!(
            still_waiting(s),
            "unix connection {i} was answered or closed"
        );
    }
    for (i, mut s) in idle_tcp.into_iter().enumerate() {
        if i % 4 == 3 {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            assert!(text.starts_with("HTTP/1.1 401 "), "{text}");
        }
    }
    drop(idle_unix);
    drop(host);

    // With room for fewer pending connections than there are idle ones, the oldest give
    // way; and a request head that does not come in time gets 408.
    let tight = Limits {
        max_pending: 8,
        head_timeout: Duration::from_millis(300),
        read_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let host = Host::start(&v1, |c| c.with_limits(tight));
    let idle = idle_connections(100, || UnixStream::connect(&host.socket).unwrap());
    let r = host.client().get("/status").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    swap_to(host.plugins.path(), &v2);
    let r = host.client().post("/reload", None).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    drop(idle);
    let (status, text, _) = raw_exchange(&host.socket, b"GET /status HTTP/1.1\r\n", false);
    assert_eq!(status, Some(408), "{text}");
}

/// Installs `b` as build `id`, made at `time_ms` (build order independent of the order
/// the test process happened to build them in).
fn install_as(b: &Build, dir: &Path, id: &str, time_ms: u64) {
    install_with(b, dir, |m| {
        m.build_id = id.into();
        m.build_time_ms = time_ms;
        m.build_time = format!("(at {time_ms} ms)");
        m.file = format!("probe-{id}{}", std::env::consts::DLL_SUFFIX);
    });
}

#[test]
fn rollback_goes_back_a_build_and_holds_until_a_newer_one() {
    let v1 = build(PROBE, &[]);
    let v2 = build(PROBE, &["v2"]);
    let bad = build(PROBE, &["fail-load"]);
    let host = Host::start(&v1, |c| c);
    let dir = host.plugins.path();
    clear(dir);
    install_as(&v1, dir, "b1", 1_000);
    install_as(&v2, dir, "b2", 2_000);
    let version = || host.manager.invoke_func("probe", "version", &[]).unwrap();
    let admin = host.admin_arg();
    let rollback = |args: &[&str]| {
        let mut all = vec!["rollback", "probe", "--admin", &admin];
        all.extend_from_slice(args);
        hotswap(&all, &[])
    };
    let reload = || {
        let r = host.client().post("/reload", None).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    };
    let stop = AtomicBool::new(false);
    let failures = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if host.manager.invoke_func("probe", "version", &[]).is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            reload();
            assert_eq!(version(), Value::from("v2"));

            // `hotswap status` lists the builds kept, marking the running one.
            let (code, out, err) = hotswap(&["status", "--admin", &admin], &[]);
            assert_eq!(code, 0, "{err}");
            assert!(
                out.contains("builds in the plugin directory"),
                "{out}\n{}",
                host.client().get("/status").unwrap().text()
            );
            let builds = out
                .split("builds in the plugin directory")
                .nth(1)
                .unwrap_or_default();
            let row = |id: &str| {
                builds
                    .lines()
                    .find(|l| l.contains(id))
                    .unwrap_or_else(|| panic!("{id} not listed: {out}"))
                    .trim_end()
                    .to_owned()
            };
            assert!(row("b2").ends_with("running"), "{out}");
            assert!(!row("b1").ends_with("running"), "{out}");

            // Back one build, as a normal reload.
            let (code, out, err) = rollback(&[]);
            assert_eq!(code, 0, "{err}");
            assert!(out.contains("b1 (was b2)"), "{out}");
            assert_eq!(version(), Value::from("v1"));
            // A later reload does not undo it.
            reload();
            assert_eq!(version(), Value::from("v1"));
            let status = host.client().get("/status").unwrap().json().unwrap();
            let b1 = status["builds"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["build_id"] == "b1")
                .unwrap()
                .clone();
            assert_eq!(
                (b1["running"].clone(), b1["pinned"].clone()),
                (true.into(), true.into())
            );

            // Nothing older: an error, and nothing changes.
            let generation = host.manager.generation_id();
            let (code, _, err) = rollback(&[]);
            assert_eq!(code, 1);
            assert!(
                err.contains("no build older than the running one (b1)"),
                "{err}"
            );
            let (code, _, err) = rollback(&["--to", "nope"]);
            assert_eq!(code, 1);
            assert!(
                err.contains("no build nope") && err.contains("b1, b2"),
                "{err}"
            );
            assert_eq!(host.manager.generation_id(), generation);

            // A named build, forward too.
            let (code, _, err) = rollback(&["--to", "b2"]);
            assert_eq!(code, 0, "{err}");
            assert_eq!(version(), Value::from("v2"));

            // A rollback to a build that fails to load is a failed reload: b2 serves
            // on, and the next reload still loads what it would have.
            install_as(&bad, dir, "b0", 500);
            let (code, _, err) = rollback(&["--to", "b0"]);
            assert_eq!(code, 1);
            assert!(err.contains("on_load"), "{err}");
            assert_eq!(version(), Value::from("v2"));
            reload();
            assert_eq!(version(), Value::from("v2"));

            // Held at b1 until a build newer than every build at the rollback appears.
            let (code, _, err) = rollback(&["--to", "b1"]);
            assert_eq!(code, 0, "{err}");
            reload();
            assert_eq!(version(), Value::from("v1"));
            install_as(&v2, dir, "b3", 3_000);
            reload();
            assert_eq!(version(), Value::from("v2"));
            assert_eq!(host.manager.find_plugin("probe").unwrap().build_id, "b3");
        }));
        stop.store(true, Ordering::Relaxed);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    });
    assert_eq!(failures.load(Ordering::Relaxed), 0);
}

#[test]
fn a_failing_reload_is_an_error_and_a_non_zero_exit() {
    let v1 = build(PROBE, &[]);
    let bad = build(PROBE, &["fail-load"]);
    let host = Host::start(&v1, |c| c);
    swap_to(host.plugins.path(), &bad);

    let response = host.client().post("/reload", None).unwrap();
    assert_eq!(response.status, 500, "{}", response.text());
    let body = response.json().unwrap();
    assert_eq!(body["kind"], "load");
    assert_eq!(body["step"], "on_load");
    assert_eq!(body["plugin"], "probe");
    assert!(body["error"].as_str().unwrap().contains("on_load"));

    let (code, out, err) = hotswap(&["reload", "--admin", &host.admin_arg()], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("reload failed (HTTP 500)"), "{err}");
    assert!(err.contains("step:    on_load"), "{err}");
    assert!(err.contains("plugin:  probe"), "{err}");
    let (code, out, _) = hotswap(&["reload", "--json", "--admin", &host.admin_arg()], &[]);
    assert_eq!(code, 1);
    let json: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(json["step"], "on_load");

    // Nothing changed; status and metrics say what happened.
    assert_eq!(host.manager.generation_id(), 1);
    let status = host.client().get("/status").unwrap().json().unwrap();
    assert_eq!(
        status["plugins"][0]["build_id"],
        v1.manifest.build_id.as_str()
    );
    assert_eq!(status["last_reload"]["outcome"], "failure");
    let m = parse_prometheus(&host.client().get("/metrics").unwrap().text());
    assert_eq!(
        m[r#"hotswap_reloads_total{trigger="admin",outcome="failure"}"#],
        3.0
    );
    assert_eq!(m["hotswap_last_reload_success"], 0.0);
}

#[test]
fn a_reload_during_a_reload_gets_409() {
    let v1 = build(PROBE, &[]);
    let v2 = build(PROBE, &["v2"]);
    let slow = Arc::new(AtomicBool::new(false));
    let in_callback = Arc::new(AtomicBool::new(false));
    let (slow2, in_cb2) = (slow.clone(), in_callback.clone());
    let host = Host::with_manager(
        &v1,
        move |dir| {
            PluginManager::builder(dir)
                .reload_callback(move |_, _| {
                    if slow2.load(Ordering::SeqCst) {
                        in_cb2.store(true, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(1500));
                    }
                    Ok(())
                })
                .build()
                .unwrap()
        },
        |c| c,
    );
    swap_to(host.plugins.path(), &v2);
    slow.store(true, Ordering::SeqCst);
    let first = {
        let client = host.client();
        std::thread::spawn(move || client.post("/reload", None).unwrap())
    };
    wait_for("the first reload to start", Duration::from_secs(30), || {
        in_callback.load(Ordering::SeqCst).then_some(())
    });
    let second = host.client().post("/reload", None).unwrap();
    assert_eq!(second.status, 409, "{}", second.text());
    assert_eq!(second.json().unwrap()["kind"], "reload_in_progress");
    let (code, _, err) = hotswap(&["reload", "--admin", &host.admin_arg()], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 409"), "{err}");
    let first = first.join().unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    let m = parse_prometheus(&host.client().get("/metrics").unwrap().text());
    assert_eq!(
        m[r#"hotswap_reloads_total{trigger="admin",outcome="refused"}"#],
        2.0
    );
}

/// Saves `text` as `path` the way most editors do, whole at once (written beside it,
/// renamed over it): an in-place write is a truncation and a write, which a machine
/// under load may space further apart than the watch's debounce, so that the watch
/// would build the empty file in between (one build more than the edits).
fn save(path: &Path, text: &str) {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, path).unwrap();
}

#[test]
fn watch_rebuilds_and_reloads_on_an_edit() {
    // A copy of the world plugin, outside the workspace (its own [workspace] table),
    // built into the test plugins' target directory so dependencies are not rebuilt; its
    // library has a name of its own there, so it never overwrites the real world
    // plugin's (a cdylib's file name carries no hash).
    let root = repo().join("target/hotswap-test-operate");
    std::fs::create_dir_all(&root).unwrap();
    let work = tempfile::Builder::new()
        .prefix("watch-")
        .tempdir_in(&root)
        .unwrap();
    let krate = work.path().join("world");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    std::fs::write(
        krate.join("Cargo.toml"),
        format!(
            "[package]\nname = \"world\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
             [lib]\nname = \"world_watch\"\ncrate-type = [\"cdylib\"]\n\n[features]\nv2 = []\n\n\
             [dependencies]\nhotswap-plugin-api = {{ path = {:?} }}\n\n[workspace]\n",
            repo().join("plugin-api").display().to_string()
        ),
    )
    .unwrap();
    std::fs::copy(repo().join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let source = std::fs::read_to_string(repo().join(WORLD).join("src/lib.rs")).unwrap();
    std::fs::write(krate.join("src/lib.rs"), &source).unwrap();

    // A host with the world plugin's v1 build, then `hotswap watch` on the copy.
    let v1 = build(WORLD, &[]);
    let host = Host::start(&v1, |c| c);
    let greet = || {
        host.manager
            .invoke_func("world", "greet", &[])
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
    };
    assert_eq!(greet().as_deref(), Some("hello from v1"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hotswap"));
    cmd.arg("watch")
        .arg(&krate)
        .arg(host.plugins.path())
        .args(["--admin", &host.admin_arg(), "--debounce", "200"])
        .arg("--target-dir")
        .arg(repo().join("target/hotswap-test-plugins"));
    let mut watch = Running::spawn(cmd);
    // The first round builds the copy as it is and reloads it.
    wait_for(
        "the first build and reload",
        Duration::from_secs(300),
        || {
            watch.assert_running();
            (host.manager.generation_id() >= 2).then_some(())
        },
    );
    assert_eq!(greet().as_deref(), Some("hello from v1"));

    let edited = source.replace(r#"{ "v2" } else { "v1" }"#, r#"{ "v2" } else { "edited" }"#);
    assert_ne!(edited, source, "the world plugin's source changed shape");
    save(&krate.join("src/lib.rs"), &edited);
    wait_for("the edit to go live", Duration::from_secs(300), || {
        watch.assert_running();
        (greet().as_deref() == Some("hello from edited")).then_some(())
    });
    // A second edit: a point after which anything the first builds triggered has been
    // handled, whatever the timing.
    let edited2 = source.replace(r#"{ "v2" } else { "v1" }"#, r#"{ "v2" } else { "again" }"#);
    save(&krate.join("src/lib.rs"), &edited2);
    wait_for(
        "the second edit to go live",
        Duration::from_secs(300),
        || {
            watch.assert_running();
            (greet().as_deref() == Some("hello from again")).then_some(())
        },
    );
    let out = watch.output();
    assert!(out.contains("changed: src/lib.rs"), "{out}");
    assert!(out.contains("reloaded: generation"), "{out}");
    // Three builds: at start, and one per edit. The first rewrote the copied
    // Cargo.lock, and that rewrite of its own output did not count as a change, alone
    // or in the same round as the edit's event: every change named is the edit.
    assert_eq!(out.matches("== building").count(), 3, "{out}");
    let changes: Vec<&str> = out.lines().filter(|l| l.starts_with("changed: ")).collect();
    assert_eq!(changes, ["changed: src/lib.rs"; 2], "{out}");
    let generation = host.manager.generation_id();
    assert_eq!(generation, 4, "{out}");
    drop(watch);

    // Started again with nothing changed: no build, no reload, until an edit.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hotswap"));
    cmd.arg("watch")
        .arg(&krate)
        .arg(host.plugins.path())
        .args(["--admin", &host.admin_arg(), "--debounce", "200"])
        .arg("--target-dir")
        .arg(repo().join("target/hotswap-test-plugins"));
    let mut watch = Running::spawn(cmd);
    wait_for("the up-to-date check", Duration::from_secs(60), || {
        watch.assert_running();
        watch.output().contains("up to date").then_some(())
    });
    std::fs::write(krate.join("src/lib.rs"), &edited).unwrap();
    wait_for(
        "the third edit to go live",
        Duration::from_secs(300),
        || {
            watch.assert_running();
            (greet().as_deref() == Some("hello from edited")).then_some(())
        },
    );
    let out = watch.output();
    assert_eq!(out.matches("== building").count(), 1, "{out}");
    assert_eq!(host.manager.generation_id(), generation + 1, "{out}");
}
