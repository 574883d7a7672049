//! Opt-in reload on SIGHUP. The signal handler (installed by signal-hook) only records
//! the signal and wakes a thread; that thread runs the reload through the host's
//! [`Trigger`], exactly as the admin endpoint does. Signals arriving during a reload are
//! merged into one more reload after it (signal-hook coalesces pending signals).

use crate::trigger::{Source, Trigger};
use signal_hook::consts::SIGHUP;
use signal_hook::iterator::{Handle, Signals};
use std::thread::JoinHandle;

/// Why SIGHUP reload could not be switched on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    /// Installing the handler failed.
    #[error("cannot install a SIGHUP handler")]
    Register(#[source] std::io::Error),
    /// The waiting thread could not be started.
    #[error("cannot start the SIGHUP reload thread")]
    Thread(#[source] std::io::Error),
}

/// SIGHUP reload, switched on. Dropping it (or [`stop`](Self::stop)) stops reacting and
/// joins the thread; SIGHUP is then ignored rather than fatal (signal-hook keeps its
/// handler installed), so a late signal never kills the host.
pub struct SighupReload {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SighupReload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SighupReload").finish_non_exhaustive()
    }
}

/// Reloads through `trigger` whenever the process gets SIGHUP, on a thread named
/// `hotswap-sighup`. A failed reload is logged (and counted by the trigger); the host
/// keeps serving its current generation.
///
/// Fails if the handler cannot be installed or the thread cannot be started.
pub fn reload_on_sighup(trigger: Trigger) -> Result<SighupReload, SignalError> {
    let mut signals = Signals::new([SIGHUP]).map_err(SignalError::Register)?;
    let handle = signals.handle();
    let thread = std::thread::Builder::new()
        .name("hotswap-sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                // The trigger logs and counts the outcome, and contains a panic of
                // the reload; this contains one of the subscriber given this event.
                crate::contain::contain("the SIGHUP reload", || {
                    tracing::info!("SIGHUP: reloading");
                    let _ = trigger.reload(Source::Signal);
                });
            }
        })
        .map_err(|e| {
            handle.close();
            SignalError::Thread(e)
        })?;
    Ok(SighupReload {
        handle,
        thread: Some(thread),
    })
}

impl SighupReload {
    /// Stops reloading on SIGHUP (same as dropping it); waits for a reload in progress.
    pub fn stop(self) {}
}

impl Drop for SighupReload {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
