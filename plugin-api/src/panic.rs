//! The plugin's own panic hook and the message a caught panic becomes.
//!
//! The hook replaces std's default one in the plugin's copy of std: that one calls
//! `thread::current()` and may capture a backtrace, leaving per-thread state of the
//! version on every thread that panicked. Ours only records where the panic happened,
//! for the message [`panic_message`] makes once the glue caught it.

use std::any::Any;
use std::cell::Cell;
use std::sync::Once;

thread_local! {
    // Where the last panic on this thread happened. `const`, `Copy` and drop-free on
    // purpose: a thread-local with a destructor would make glibc keep this library
    // mapped for as long as the calling thread lives.
    static PANIC_LOCATION: Cell<Option<Location>> = const { Cell::new(None) };
}

/// A panic's location, kept in a fixed buffer so it can live in a drop-free thread-local.
#[derive(Clone, Copy)]
struct Location {
    file: [u8; 160],
    len: u8,
    line: u32,
    col: u32,
}

impl Location {
    fn new(l: &std::panic::Location<'_>) -> Location {
        // Keep the tail of a long path: the file name matters most.
        let bytes = l.file().as_bytes();
        let tail = &bytes[bytes.len().saturating_sub(160)..];
        let mut file = [0u8; 160];
        file[..tail.len()].copy_from_slice(tail);
        Location {
            file,
            len: tail.len() as u8,
            line: l.line(),
            col: l.column(),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = String::from_utf8_lossy(&self.file[..self.len as usize]);
        write!(f, "{file}:{}:{}", self.line, self.col)
    }
}

/// Replaces the plugin's std default panic hook, once per loaded file. The default hook
/// calls `thread::current()` and may capture a backtrace, which leave per-thread state
/// of this library on the host's calling thread (destroyed there only at its next call
/// boundary after this version retires, or at its exit; without a host that owns it,
/// glibc would keep the library mapped until the thread exits). Ours only notes the
/// location; the message and location reach the host in the returned error.
pub(crate) fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            if let Some(l) = info.location() {
                PANIC_LOCATION.with(|c| c.set(Some(Location::new(l))));
            }
        }));
    });
}

/// A caught panic as its message and nothing else: the message, then the payload
/// dropped with `drop_payload`. Every entry point that catches a panic ends it here:
/// dropping the payload where it was caught would let a payload whose own `Drop`
/// panics (`panic_any(Bomb)`) unwind out of an `extern "C"` function, which aborts.
pub fn panic_text(payload: Box<dyn Any + Send>) -> String {
    let message = panic_message(&*payload);
    drop_payload(payload);
    message
}

/// Drops a panic's payload, whose own drop may panic too: that second payload is leaked
/// rather than let unwind out of an entry point.
pub(crate) fn drop_payload(payload: Box<dyn Any + Send>) {
    if let Err(again) =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(payload)))
    {
        std::mem::forget(again);
    }
}

/// Drops `value`, whose `Drop` is plugin code, where an unwinding panic must not leave
/// (an `extern "C"` function the host calls): a panic is reported on stderr and its
/// payload dropped with [`drop_payload`]. `what` names the value in the report.
pub(crate) fn drop_guarded<T>(value: T, what: &str) {
    if let Err(payload) =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(value)))
    {
        let message = panic_text(payload);
        warn_stderr(format_args!(
            "hotswap: {what} panicked while being dropped: {message}"
        ));
    }
}

/// Writes one line to stderr and ignores a failure to (a closed or full pipe):
/// `eprintln!` panics then, and where this runs that panic would abort the process.
pub fn warn_stderr(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    };
    match PANIC_LOCATION.with(|c| c.take()) {
        Some(location) => format!("{text} (at {location})"),
        None => text,
    }
}
