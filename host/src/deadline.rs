//! Deadlines from durations the host's user chose (`hook_timeout`, `free_delay`, a
//! `collect` or `reload_with_timeout` limit, the admin endpoint's timeouts), which may
//! be as large as `Duration::MAX`: `Instant + Duration` panics on overflow, so a
//! deadline too far to represent is a century away instead (as good as never).

use std::time::{Duration, Instant};

/// A century: what "never" is for a deadline.
const NEVER: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `d` after now.
pub(crate) fn after(d: Duration) -> Instant {
    from(Instant::now(), d)
}

/// `d` after `start`, or a century after it when that cannot be represented.
pub(crate) fn from(start: Instant, d: Duration) -> Instant {
    start
        .checked_add(d)
        .or_else(|| start.checked_add(NEVER))
        .unwrap_or(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_durations_are_a_far_deadline_not_a_panic() {
        let now = Instant::now();
        assert!(from(now, Duration::MAX) >= now + Duration::from_secs(86_400));
        assert_eq!(
            from(now, Duration::from_secs(3)),
            now + Duration::from_secs(3)
        );
        assert!(after(Duration::MAX) > Instant::now());
    }
}
