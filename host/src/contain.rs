//! Host code that runs code of the host's user where a panic must not escape: the
//! user's `tracing` subscriber (which receives plugin events inside the `extern "C"`
//! log callback, and host events on the reaper and hook threads), callbacks and
//! extensions the user gave the manager, and the manager's own scoped logger.
//!
//! Why: a panic that unwinds out of an `extern "C"` function aborts the process, and
//! one that ends a host thread (the reaper, SIGHUP's, the watcher's) stops what that
//! thread does for good, silently. So each such place runs the user's code through
//! [`contain`], which turns a panic into one line on stderr (the subscriber may be
//! what panicked, so not a `tracing` event) and a fallback; and sets a scoped
//! subscriber only through [`with_logger`], which `tracing` would refuse with a panic
//! inside a dispatch (a subscriber that calls `reload` on an event).

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`; `None` when it panicked, after one line on stderr naming `what` (the
/// panic hook has already printed the panic itself).
///
/// `AssertUnwindSafe`: every caller leaves its own state consistent whichever way `f`
/// ends (each says how), and the user's state is the user's.
pub(crate) fn contain<R>(what: &str, f: impl FnOnce() -> R) -> Option<R> {
    contain_or_why(what, f).ok()
}

/// As [`contain`], with the panic's message as the error.
pub(crate) fn contain_or_why<R>(what: &str, f: impl FnOnce() -> R) -> Result<R, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Ok(r),
        Err(payload) => {
            // The payload is dropped there with its own `Drop` contained (it is the
            // panicking code's too), and the line is written without `eprintln!`, which
            // panics when stderr is gone: either would be the escape this prevents.
            let text = hotswap_plugin_api::__panic_text(payload);
            hotswap_plugin_api::__warn_stderr(format_args!(
                "hotswap: {what} panicked ({text}); the host goes on"
            ));
            Err(text)
        }
    }
}

/// Runs `f` with `logger` as this thread's subscriber, or as it is when `logger` is
/// `None` or this thread is inside a dispatch of a logger this function set (a
/// subscriber's own code calling into the manager, on the reaper or a hook thread):
/// `tracing` cannot nest a scoped subscriber there (it panics), and the events of such
/// a call go nowhere either way (`tracing` does not dispatch while dispatching).
pub(crate) fn with_logger<R>(logger: Option<&tracing::Dispatch>, f: impl FnOnce() -> R) -> R {
    match logger {
        Some(d) if !inside_dispatch() => {
            struct Depth;
            impl Drop for Depth {
                fn drop(&mut self) {
                    SCOPED.with(|c| c.set(c.get() - 1));
                }
            }
            SCOPED.with(|c| c.set(c.get() + 1));
            let _depth = Depth;
            tracing::dispatcher::with_default(d, f)
        }
        _ => f(),
    }
}

thread_local! {
    /// How many [`with_logger`] scopes are active on this thread.
    static SCOPED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Whether this thread is inside a dispatch of a logger [`with_logger`] set. There a
/// scoped subscriber is active (ours), yet `get_default` answers the no-op dispatcher:
/// `tracing` answers that while it dispatches. (Without a scope of ours the no-op
/// answer is ambiguous, as it is also what a thread with no subscriber at all gets.)
fn inside_dispatch() -> bool {
    SCOPED.with(|c| c.get()) > 0
        && tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A payload whose own `Drop` panics again, twice over.
    struct Bomb(u8);

    impl Drop for Bomb {
        fn drop(&mut self) {
            if self.0 > 0 {
                std::panic::panic_any(Bomb(self.0 - 1));
            }
        }
    }

    #[test]
    fn a_payload_that_panics_as_it_is_dropped_does_not_escape() {
        assert_eq!(
            contain("a test closure", || std::panic::panic_any(Bomb(2))),
            None::<()>
        );
    }

    #[test]
    fn a_panic_is_a_none_and_an_answer_is_some() {
        assert_eq!(contain("a test closure", || 7), Some(7));
        assert_eq!(contain("a test closure", || -> u8 { panic!("boom") }), None);
    }

    /// A subscriber whose `event` runs `with_logger` again, as one that calls `reload`.
    struct Reentrant {
        inner: Arc<AtomicUsize>,
        logger: tracing::Dispatch,
    }

    impl tracing::Subscriber for Reentrant {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, _: &tracing::Event<'_>) {
            assert!(inside_dispatch());
            with_logger(Some(&self.logger), || {
                self.inner.fetch_add(1, Ordering::SeqCst);
                tracing::info!("nested: goes nowhere");
            });
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn a_scoped_logger_inside_a_dispatch_is_skipped_not_a_panic() {
        let runs = Arc::new(AtomicUsize::new(0));
        let outer = tracing::Dispatch::new(Reentrant {
            inner: runs.clone(),
            logger: tracing::Dispatch::none(),
        });
        assert!(!inside_dispatch());
        with_logger(Some(&outer), || {
            assert!(!inside_dispatch());
            tracing::info!("an event");
        });
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
