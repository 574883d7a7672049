//! The supervisor's admin endpoint: a Unix socket (mode 0600) served on a thread, one
//! thread per connection, speaking the line protocol of [`crate::protocol`]. Each
//! request goes to the event loop as an [`Event::Admin`] and its answer comes back on a
//! channel.

use crate::event::Event;
use crate::protocol::{answer, AdminCommand, MAX_REQUEST};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::Duration;

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the admin socket on a thread until `stop` is set (and a connection wakes the
/// accept).
pub(crate) fn serve(
    listener: UnixListener,
    events: Sender<Event>,
    stop: Arc<AtomicBool>,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("serve-admin".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let events = events.clone();
                let spawned = std::thread::Builder::new()
                    .name("serve-admin-conn".into())
                    .spawn(move || {
                        if let Err(e) = handle(conn, &events) {
                            tracing::debug!(error = %e, "admin connection failed");
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "cannot start an admin connection thread");
                }
            }
        })?;
    Ok(())
}

/// Wakes the accept loop so that it sees `stop` (best effort).
pub(crate) fn wake(path: &Path) {
    let _ = UnixStream::connect(path);
}

/// The answer when the event loop is gone.
const EXITING: &str = "the supervisor is exiting";

fn handle(conn: UnixStream, events: &Sender<Event>) -> io::Result<()> {
    conn.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new((&conn).take(MAX_REQUEST)).read_line(&mut line)?;
    let Some(command) = AdminCommand::parse(&line) else {
        let other: String = line.trim().chars().take(40).collect();
        let refusal = format!(
            "unknown command {other:?} (expected upgrade, status, restart, stop or message TEXT)"
        );
        return writeln!(&conn, "{}", answer(Err(&refusal)));
    };
    let (reply, answered) = mpsc::channel();
    let (done, written) = mpsc::channel();
    let event = Event::Admin {
        command,
        reply,
        written,
    };
    if events.send(event).is_err() {
        return writeln!(&conn, "{}", answer(Err(EXITING)));
    }
    let text = answered.recv().unwrap_or_else(|_| answer(Err(EXITING)));
    let result = writeln!(&conn, "{text}");
    let _ = done.send(());
    result
}
