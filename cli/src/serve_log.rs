//! How `hotswap serve` writes its log on stderr: plain lines (colours only on a
//! terminal), or journald's stream format, one line per event with a `<N>` syslog
//! priority prefix and no timestamp (the journal adds its own), chosen by
//! `--log-format` or, by default, by whether stderr is the journal (`JOURNAL_STREAM`
//! names stderr's device and inode, as systemd sets it).

use std::fmt;
use std::os::unix::fs::MetadataExt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The supervisor's log format (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// journald when stderr is the journal, else plain.
    Auto,
    /// Timestamp, level, target, message; colours only when stderr is a terminal.
    Plain,
    /// `<6>target: message`: the priority journald reads, no colours, no timestamp.
    Journald,
}

impl LogFormat {
    /// What `Auto` means here.
    fn resolve(self) -> LogFormat {
        match self {
            LogFormat::Auto if stderr_is_journal() => LogFormat::Journald,
            LogFormat::Auto => LogFormat::Plain,
            other => other,
        }
    }
}

/// Whether stderr is the journal's stream: `JOURNAL_STREAM` is `DEVICE:INODE` of it
/// (a variable inherited by a process whose stderr was redirected does not match).
fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(m) => dev.parse() == Ok(m.dev()) && ino.parse() == Ok(m.ino()),
        Err(_) => false,
    }
}

/// journald's line format.
struct Journald;

impl<S, N> FormatEvent<S, N> for Journald
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // sd-daemon(3): <3> error, <4> warning, <6> info, <7> debug.
        let priority = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        write!(writer, "<{priority}>{}: ", event.metadata().target())?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Sets up logging for the supervisor: `RUST_LOG` or `info`, on stderr, in `format`.
/// Does nothing if the embedding program installed a subscriber already.
pub(crate) fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format.resolve() {
        LogFormat::Journald => builder.with_ansi(false).event_format(Journald).try_init(),
        _ => builder
            .with_ansi(
                format == LogFormat::Auto && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            )
            .try_init(),
    };
}
