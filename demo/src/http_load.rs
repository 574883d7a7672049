//! `http-load`: the HTTP demo (`hotswap-http-demo`, `demo/http`) under a loopback load
//! while it reloads its handlers plugin in-process, as the README's latency figures were
//! taken:
//!
//! ```sh
//! cargo build --release -p hotswap-demo --bins
//! target/release/hotswap-demo http-load            # --reloads 100 --connections 4 --steady 20000
//! ```
//!
//! Builds the handlers plugin twice with the real `hotswap build` (v1, and v2 with the
//! `v2` feature), starts the demo binary beside this one on a loopback port, and runs
//! `--connections` keep-alive clients (`GET /`, one request at a time each, as `wrk`
//! does): after a warm-up, `--reloads` in-process reloads (the other build's files
//! linked in, SIGHUP, and the reload window closes once `/version` answers from the
//! generation it published), each after a steady window with no reload of at least
//! `--steady / --reloads` requests and as many as the reload windows so far averaged.
//! Steady and reload windows alternate, so other load on the machine falls on both
//! alike (as the benchmark pairs its samples).
//! Prints p50/p99/p99.9/max latency of each phase, their ratio, and every failed
//! request; exits non-zero if any request failed. Loopback only; every loop is bounded
//! by a request count or by the reloads, and the demo is stopped at the end.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: hotswap-demo http-load [--reloads N] [--connections N] [--steady REQUESTS] [--demo PATH]";

/// Requests of the warm-up phase (not measured).
const WARMUP: u64 = 2_000;
/// How long the demo gets to answer its first request, and a reload to be served.
const PATIENCE: Duration = Duration::from_secs(30);

/// The phases the clients record into.
const WARMING: u8 = 0;
const STEADY: u8 = 1;
const RELOADING: u8 = 2;
const STOP: u8 = 3;

struct Options {
    reloads: u64,
    connections: usize,
    steady: u64,
    demo: PathBuf,
}

fn options() -> Result<Options, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut opts = Options {
        reloads: 100,
        connections: 4,
        steady: 20_000,
        demo: exe.with_file_name("hotswap-http-demo"),
    };
    let mut args = std::env::args().skip(2);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| USAGE.to_owned());
        let number = |v: String| v.parse::<u64>().map_err(|_| USAGE.to_owned());
        match arg.as_str() {
            "--reloads" => opts.reloads = number(value()?)?,
            "--connections" => opts.connections = number(value()?)?.max(1) as usize,
            "--steady" => opts.steady = number(value()?)?.max(1),
            "--demo" => opts.demo = value()?.into(),
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        }
    }
    Ok(opts)
}

/// What the clients saw, by phase.
#[derive(Default)]
struct Seen {
    /// Requests answered 200, by phase.
    done: [AtomicU64; 3],
    failed: AtomicU64,
    errors: Mutex<Vec<String>>,
    latencies: [Mutex<Vec<Duration>>; 3],
}

impl Seen {
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.len() < 10 {
            errors.push(what);
        }
    }
}

/// One answer: status, `X-Generation`, body.
struct Answer {
    status: u16,
    generation: Option<u64>,
    body: String,
}

/// Sends `GET path` on a keep-alive connection and reads the whole answer.
fn exchange(conn: &mut TcpStream, path: &str) -> Result<Answer, String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: load\r\n\r\n");
    conn.write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 2048];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut chunk) {
            Ok(0) => return Err("closed before the answer's head".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let (mut length, mut generation) = (0usize, None);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().map_err(|_| format!("bad length {value:?}"))?;
            } else if name.eq_ignore_ascii_case("x-generation") {
                generation = value.parse().ok();
            }
        }
    }
    while buf.len() < head_end + length {
        match conn.read(&mut chunk) {
            Ok(0) => return Err("closed inside the body".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Ok(Answer {
        status,
        generation,
        body: String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned(),
    })
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let conn = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    let _ = conn.set_nodelay(true);
    conn.set_read_timeout(Some(PATIENCE))
        .map_err(|e| format!("timeout: {e}"))?;
    Ok(conn)
}

/// One client: `GET /` back to back on one keep-alive connection (a new one after a
/// failure), each answer's latency recorded under the phase it started in.
fn client(addr: SocketAddr, phase: &AtomicU8, seen: &Seen) {
    let mut mine: [Vec<Duration>; 3] = Default::default();
    let mut conn = None;
    loop {
        let now = phase.load(Ordering::Acquire);
        if now == STOP {
            break;
        }
        let c = match conn.take() {
            Some(c) => c,
            None => match connect(addr) {
                Ok(c) => c,
                Err(e) => {
                    seen.fail(e);
                    continue;
                }
            },
        };
        let mut c = c;
        let start = Instant::now();
        match exchange(&mut c, "/") {
            Ok(a) if a.status == 200 && a.body.starts_with("hello from handlers") => {
                mine[now as usize].push(start.elapsed());
                seen.done[now as usize].fetch_add(1, Ordering::Relaxed);
                conn = Some(c);
            }
            Ok(a) => seen.fail(format!("status {}: {:?}", a.status, a.body)),
            Err(e) => seen.fail(e),
        }
    }
    for (all, mine) in seen.latencies.iter().zip(mine) {
        all.lock().unwrap_or_else(|e| e.into_inner()).extend(mine);
    }
}

/// The demo process, stopped (SIGTERM, then SIGKILL) when dropped.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.0);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Files of a build directory: the manifest and the rest.
fn build_files(dir: &Path) -> Result<(PathBuf, Vec<PathBuf>), String> {
    let mut manifest = None;
    let mut rest = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.to_string_lossy().ends_with(".manifest.json") {
            manifest = Some(path);
        } else {
            rest.push(path);
        }
    }
    Ok((
        manifest.ok_or_else(|| format!("no manifest in {}", dir.display()))?,
        rest,
    ))
}

/// Hard-links a build's files into `dir`, the manifest last; returns the links.
fn install((manifest, rest): &(PathBuf, Vec<PathBuf>), dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut links = Vec::new();
    for file in rest.iter().chain(std::iter::once(manifest)) {
        let to = dir.join(file.file_name().ok_or("a built file has a name")?);
        std::fs::hard_link(file, &to).map_err(|e| format!("link {}: {e}", to.display()))?;
        links.push(to);
    }
    Ok(links)
}

/// Nearest-rank percentile of sorted durations, in ms.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
}

/// Polls `GET /version` on its own connection until the generation is at least `want`.
fn wait_generation(addr: SocketAddr, want: u64) -> Result<Answer, String> {
    let deadline = Instant::now() + PATIENCE;
    let mut conn = connect(addr)?;
    loop {
        let a = match exchange(&mut conn, "/version") {
            Ok(a) => a,
            Err(_) => {
                conn = connect(addr)?;
                exchange(&mut conn, "/version")?
            }
        };
        if a.generation.is_some_and(|g| g >= want) {
            return Ok(a);
        }
        if Instant::now() > deadline {
            return Err(format!("generation {want} not served after {PATIENCE:?}"));
        }
        // A short pause between polls, so the poll is not a load of its own.
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs the measurement.
pub(crate) fn run() -> Result<(), String> {
    let opts = options()?;
    if !opts.demo.is_file() {
        return Err(format!(
            "{} not found: build it first (cargo build --release -p hotswap-demo --bins), or pass --demo PATH",
            opts.demo.display()
        ));
    }
    let work = super::repo().join("target/hotswap-demo/http-load");
    let _ = std::fs::remove_dir_all(&work);
    let (v1, v2, plugins) = (work.join("v1"), work.join("v2"), work.join("plugins"));
    for d in [&v1, &v2, &plugins] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let handlers = super::repo().join("demo/http/handlers");
    println!("== building the handlers plugin, v1 and v2 (not timed)");
    super::hotswap_build(&handlers, &v1, &[])?;
    super::hotswap_build(&handlers, &v2, &["--features", "v2"])?;
    // A reload's deploy: the other build's files hard-linked in (library first, manifest
    // last, as the builder writes them) after the current build's are removed. Linked,
    // not copied: the host knows each file from its first load and does not hash it
    // again, so the reloads measure the swap, not file copies.
    let builds = [build_files(&v1)?, build_files(&v2)?];
    let mut installed = install(&builds[0], &plugins)?;

    // A free loopback port (the demo binds it right after).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("loopback port: {e}"))?;
    let log = std::fs::File::create(work.join("demo.log")).map_err(|e| e.to_string())?;
    let child = Command::new(&opts.demo)
        .arg("--plugins")
        .arg(&plugins)
        .arg("--listen")
        .arg(addr.to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", opts.demo.display()))?;
    let pid = rustix::process::Pid::from_child(&child);
    let demo = Demo(child);
    let first = {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match connect(addr).and_then(|mut c| exchange(&mut c, "/version")) {
                Ok(a) => break a.generation.ok_or("no X-Generation on /version")?,
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("the demo never answered: {e}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    };
    println!(
        "== {} keep-alive clients on http://{addr}/ (demo pid {}, log {})",
        opts.connections,
        pid.as_raw_nonzero(),
        work.join("demo.log").display()
    );

    let phase = AtomicU8::new(WARMING);
    let seen = Seen::default();
    let (reload_time, reloads) = std::thread::scope(|s| -> Result<(Duration, u64), String> {
        for _ in 0..opts.connections {
            s.spawn(|| client(addr, &phase, &seen));
        }
        let count = |p: u8| seen.done[p as usize].load(Ordering::Relaxed);
        let result = (|| {
            // Phase changes wait on request counts; the pause only spares a core.
            while count(WARMING) < WARMUP && seen.failed.load(Ordering::Relaxed) == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
            println!(
                "== {} in-process reloads (SIGHUP), each after a window of at least {} \
                 requests with no reload",
                opts.reloads,
                opts.steady / opts.reloads.max(1)
            );
            let mut reloading = Duration::ZERO;
            for i in 1..=opts.reloads {
                // A steady window, then a reload window, in turn: other load on the
                // machine falls on both alike. A steady window is as long (in requests)
                // as the reload window before it, and at least its share of --steady.
                let window =
                    (opts.steady / opts.reloads.max(1)).max(count(RELOADING) / (i - 1).max(1));
                let until = count(STEADY) + window;
                phase.store(STEADY, Ordering::Release);
                while count(STEADY) < until && seen.failed.load(Ordering::Relaxed) == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                phase.store(RELOADING, Ordering::Release);
                let start = Instant::now();
                let (next, version) = if i % 2 == 1 {
                    (&builds[1], "v2")
                } else {
                    (&builds[0], "v1")
                };
                for f in &installed {
                    std::fs::remove_file(f).map_err(|e| format!("{}: {e}", f.display()))?;
                }
                installed = install(next, &plugins)?;
                rustix::process::kill_process(pid, rustix::process::Signal::HUP)
                    .map_err(|e| format!("SIGHUP: {e}"))?;
                let a = wait_generation(addr, first + i)?;
                if a.generation != Some(first + i) || a.body.trim() != version {
                    return Err(format!(
                        "reload {i}: generation {:?} answered {:?}, expected {} and {version}",
                        a.generation,
                        a.body,
                        first + i
                    ));
                }
                reloading += start.elapsed();
            }
            Ok((reloading, opts.reloads))
        })();
        phase.store(STOP, Ordering::Release);
        result
    })?;
    drop(demo);

    let sorted = |p: u8| {
        let mut v = std::mem::take(
            &mut *seen.latencies[p as usize]
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        v.sort();
        v
    };
    let (steady, during) = (sorted(STEADY), sorted(RELOADING));
    let failed = seen.failed.load(Ordering::Relaxed);
    println!();
    println!(
        "{:<22} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "latency (ms)", "requests", "p50", "p99", "p99.9", "max"
    );
    for (name, v) in [("steady", &steady), ("during reloads", &during)] {
        println!(
            "{name:<22} {:>9} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            v.len(),
            percentile(v, 50.0),
            percentile(v, 99.0),
            percentile(v, 99.9),
            percentile(v, 100.0)
        );
    }
    println!(
        "p99 during reloads / steady: {:.2}x; p50: {:.2}x",
        percentile(&during, 99.0) / percentile(&steady, 99.0),
        percentile(&during, 50.0) / percentile(&steady, 50.0)
    );
    println!(
        "{reloads} reloads in {:.2} s ({:.1} ms each, SIGHUP to the new generation answering); {failed} failed requests",
        reload_time.as_secs_f64(),
        reload_time.as_secs_f64() * 1e3 / reloads.max(1) as f64
    );
    let errors = seen.errors.lock().unwrap_or_else(|e| e.into_inner());
    if failed > 0 {
        return Err(format!("{failed} requests failed: {errors:?}"));
    }
    Ok(())
}
