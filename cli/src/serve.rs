//! `hotswap serve`: run a command under the zero-downtime supervisor
//! ([`hotswap_supervisor`]), or ask a running supervisor for an upgrade, a restart, a
//! stop, a message to its workers, or its status.

use crate::serve_log::{self, LogFormat};
use clap::Args;
use hotswap_supervisor::protocol::MAX_MESSAGE;
use hotswap_supervisor::{self as supervisor, AdminCommand, Config, ListenSpec};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `hotswap serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Socket to bind and pass to the children (fd 3, 4, … in order): tcp://HOST:PORT,
    /// tcp4://…, tcp6://[ADDR]:PORT or unix:///PATH, optionally followed by #NAME (its
    /// LISTEN_FDNAMES entry). Repeatable
    #[arg(long = "listen", value_name = "URI", value_parser = parse_listen)]
    listen: Vec<ListenSpec>,

    /// How many copies of the command serve at once; upgraded one at a time
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    workers: u32,

    /// How long a new child has to report READY=1 on NOTIFY_SOCKET before it is stopped
    /// (SIGTERM, SIGKILL after --drain-timeout) (seconds, or with a unit: 500ms, 2s, 1m)
    #[arg(long, value_name = "DURATION", default_value = "30", value_parser = parse_duration)]
    ready_timeout: Duration,

    /// For programs that cannot report readiness: consider a child ready this long after
    /// it started (like socketmaster's -start)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    start_delay: Option<Duration>,

    /// How long an old child may drain after SIGTERM before it gets SIGKILL; also the
    /// grace between SIGTERM and SIGKILL for a new child that missed --ready-timeout
    #[arg(long, value_name = "DURATION", default_value = "30", value_parser = parse_duration)]
    drain_timeout: Duration,

    /// How long an upgrade's new children must stay up after READY=1 before the old
    /// ones drain; meanwhile both serve. A new child that exits during it fails the
    /// upgrade and every old child keeps serving. 0: each old child drains as soon as its
    /// replacement is ready
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration)]
    probation: Duration,

    /// Shell command that must succeed before each upgrade (e.g. fetch and build)
    #[arg(long, value_name = "CMD")]
    pre_upgrade: Option<String>,

    /// How long the pre-upgrade command may run
    #[arg(long, value_name = "DURATION", default_value = "300", value_parser = parse_duration)]
    pre_upgrade_timeout: Duration,

    /// Run the children as this user (name or uid; needs root)
    #[arg(long, value_name = "USER")]
    user: Option<String>,

    /// Recycle (upgrade) a worker whose resident memory exceeds this many MiB
    #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u64).range(1..))]
    max_rss: Option<u64>,

    /// Recycle (upgrade) a worker that used more than PERCENT of one CPU (above 100 for
    /// several threads) over --cpu-window
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u64).range(1..))]
    max_cpu: Option<u64>,

    /// The window --max-cpu is measured over
    #[arg(long, value_name = "DURATION", default_value = "10", value_parser = parse_duration)]
    cpu_window: Duration,

    /// Log format on stderr: journald (`<6>` priority prefixes, no colours or
    /// timestamps), plain, or auto (journald when stderr is the journal: JOURNAL_STREAM)
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,

    /// Admin socket (unix:///PATH, mode 0600): where `--upgrade`, `--upgrade-self`,
    /// `--restart`, `--stop`, `--message` and `--status` talk to the supervisor
    #[arg(long, value_name = "unix:///PATH", value_parser = parse_admin)]
    admin: Option<PathBuf>,

    /// Ask the running supervisor (at --admin, or --pid) for an upgrade and wait for the
    /// outcome (with --pid: send SIGHUP, no outcome)
    #[arg(long, conflicts_with_all = ["status", "restart", "stop", "message", "listen", "command"])]
    upgrade: bool,

    /// Ask the running supervisor (at --admin) to replace every worker now: SIGTERM to
    /// each (SIGKILL after its drain timeout) and a new child at once
    #[arg(long, requires = "admin", conflicts_with_all = ["status", "stop", "message", "listen", "command"])]
    restart: bool,

    /// Ask the running supervisor (at --admin) to stop its workers and exit, as SIGTERM
    /// does
    #[arg(long, requires = "admin", conflicts_with_all = ["status", "message", "listen", "command"])]
    stop: bool,

    /// Deliver TEXT (one line) to every ready worker of the running supervisor (at
    /// --admin): written to the file named by HOTSWAP_MESSAGE_FILE in the workers'
    /// environment, then SIGUSR1 to each (only for programs that handle SIGUSR1)
    #[arg(long, value_name = "TEXT", requires = "admin", conflicts_with_all = ["status", "listen", "command"])]
    message: Option<String>,

    /// Ask the running supervisor (at --admin) to upgrade itself: re-execute its
    /// program (the path it was started from, so a new hotswap installed there by rename)
    /// keeping its pid, listening sockets and children; waits until the new image
    /// answers. Refused while an upgrade or a restart is in motion
    #[arg(long, requires = "admin", conflicts_with_all = ["status", "restart", "stop", "message", "upgrade", "listen", "command"])]
    upgrade_self: bool,

    /// Print the running supervisor's status (JSON) from its --admin socket
    #[arg(long, requires = "admin", conflicts_with_all = ["listen", "command"])]
    status: bool,

    /// The supervisor's pid, for --upgrade without an admin socket
    #[arg(
        long,
        value_name = "PID",
        requires = "upgrade",
        conflicts_with = "admin"
    )]
    pid: Option<u32>,

    /// The command to run (after `--`), e.g. `-- ./my-host --plugins plugins`
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// The help's examples.
pub(crate) const EXAMPLES: &str = "Examples:\n  \
    hotswap serve --listen tcp://127.0.0.1:8080 --admin unix:///tmp/app.admin -- ./my-host\n  \
    hotswap serve --listen tcp://:80 --listen unix:///run/app.sock --workers 4 \
    --pre-upgrade 'make build' -- ./my-host\n  \
    hotswap serve --upgrade --admin unix:///tmp/app.admin\n  \
    hotswap serve --upgrade --pid 1234\n  \
    hotswap serve --restart --admin unix:///tmp/app.admin\n  \
    hotswap serve --message 'reopen logs' --admin unix:///tmp/app.admin\n  \
    hotswap serve --stop --admin unix:///tmp/app.admin\n  \
    hotswap serve --upgrade-self --admin unix:///tmp/app.admin\n  \
    hotswap serve --status --admin unix:///tmp/app.admin";

fn parse_listen(s: &str) -> Result<ListenSpec, String> {
    s.parse()
        .map_err(|e: supervisor::SocketError| e.to_string())
}

fn parse_admin(s: &str) -> Result<PathBuf, String> {
    let path = s.strip_prefix("unix://").unwrap_or(s);
    if path.is_empty() {
        return Err("expected unix:///PATH".into());
    }
    if s.contains("://") && !s.starts_with("unix://") {
        return Err("the admin endpoint is a unix socket: unix:///PATH".into());
    }
    Ok(PathBuf::from(path))
}

/// Parses `30`, `1.5`, `500ms`, `2s`, `1m` into a duration.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (seconds, or 500ms, 2s, 1m)"))?;
    Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("{s:?} is not a duration between 0 and ~584 years"))
}

/// Sends `command` to the supervisor at `admin`, prints the answer; the exit status.
fn ask(admin: &std::path::Path, command: AdminCommand, timeout: Option<Duration>) -> i32 {
    match supervisor::request(admin, command, timeout) {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(e) => crate::report(&e),
    }
}

/// `--upgrade-self`: the request, then the new image's status (its `self_upgrades`
/// grew), since the image that answered the request is gone right after.
fn upgrade_self(admin: &std::path::Path) -> i32 {
    let count = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v["self_upgrades"].as_u64())
    };
    let status = || supervisor::request(admin, AdminCommand::Status, Some(Duration::from_secs(10)));
    let before = match status() {
        Ok(text) => count(&text).unwrap_or(0),
        Err(e) => return crate::report(&e),
    };
    match supervisor::request(
        admin,
        AdminCommand::UpgradeSelf,
        Some(Duration::from_secs(30)),
    ) {
        Ok(text) => println!("{text}"),
        Err(e) => return crate::report(&e),
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        // The socket is briefly absent while the new image binds it again.
        if let Some(now) = status().ok().and_then(|t| count(&t)) {
            if now > before {
                println!("the supervisor runs its new image (self-upgrade {now})");
                return 0;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("error: the supervisor did not come back within 30 s (see its log)");
    crate::EXIT_FAILURE
}

/// Runs `hotswap serve` and returns the exit status.
pub(crate) fn run(args: ServeArgs) -> i32 {
    let verb = if args.restart {
        Some(AdminCommand::Restart)
    } else if args.stop {
        Some(AdminCommand::Stop)
    } else if let Some(text) = &args.message {
        if text.is_empty() || text.contains(['\n', '\r']) || text.len() > MAX_MESSAGE {
            eprintln!("error: --message takes one non-empty line of at most {MAX_MESSAGE} bytes");
            return 2;
        }
        Some(AdminCommand::Message(text.clone()))
    } else {
        None
    };
    if let (Some(verb), Some(admin)) = (verb, &args.admin) {
        return ask(admin, verb, Some(Duration::from_secs(60)));
    }
    if let (true, Some(admin)) = (args.upgrade_self, &args.admin) {
        return upgrade_self(admin);
    }
    if args.upgrade {
        return match (&args.admin, args.pid) {
            (Some(admin), _) => match supervisor::request(admin, AdminCommand::Upgrade, None) {
                Ok(text) => {
                    println!("{text}");
                    0
                }
                Err(e) => crate::report(&e),
            },
            (None, Some(pid)) => match supervisor::signal_upgrade(pid) {
                Ok(()) => {
                    println!("sent SIGHUP to supervisor {pid}; it logs the outcome");
                    0
                }
                Err(e) => crate::report(&e),
            },
            (None, None) => {
                eprintln!("error: --upgrade needs --admin unix:///PATH or --pid PID");
                2
            }
        };
    }
    if args.status {
        return match args
            .admin
            .as_deref()
            .map(|a| supervisor::request(a, AdminCommand::Status, Some(Duration::from_secs(10))))
        {
            Some(Ok(text)) => {
                println!("{text}");
                0
            }
            Some(Err(e)) => crate::report(&e),
            None => {
                eprintln!("error: --status needs --admin unix:///PATH");
                2
            }
        };
    }
    if args.listen.is_empty() || args.command.is_empty() {
        eprintln!(
            "error: hotswap serve needs at least one --listen URI and a command after `--`\n\n{EXAMPLES}"
        );
        return 2;
    }
    serve_log::init(args.log_format);
    let config = Config::from(args);
    match supervisor::serve(&config) {
        Ok(()) => 0,
        Err(e) => crate::report(&e),
    }
}

impl From<ServeArgs> for Config {
    fn from(args: ServeArgs) -> Config {
        let mut config = Config::new(args.command);
        config.listen = args.listen;
        config.workers = args.workers as usize;
        config.ready_timeout = args.ready_timeout;
        config.start_delay = args.start_delay;
        config.drain_timeout = args.drain_timeout;
        config.pre_upgrade = args.pre_upgrade;
        config.pre_upgrade_timeout = args.pre_upgrade_timeout;
        config.user = args.user;
        config.max_rss_mib = args.max_rss;
        config.max_cpu_percent = args.max_cpu;
        config.cpu_window = args.cpu_window;
        config.probation = args.probation;
        config.admin = args.admin;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        for bad in ["", "x", "-1", "1h", "nan"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn admin_addresses() {
        assert_eq!(parse_admin("unix:///run/a"), Ok(PathBuf::from("/run/a")));
        assert_eq!(parse_admin("/run/a"), Ok(PathBuf::from("/run/a")));
        assert!(parse_admin("tcp://1.2.3.4:5").is_err());
        assert!(parse_admin("unix://").is_err());
    }
}
