//! How long to wait before respawning a worker that crashed: doubling delays, capped,
//! reset after a worker that served long enough.

use std::time::Duration;

/// How long to wait before respawning a worker that crashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first respawn; doubled for every further crash in a row.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// A worker that ran at least this long before crashing starts the count afresh.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The delay before respawning after `crashes` crashes in a row (1 for the first).
    pub fn delay(&self, crashes: u32) -> Duration {
        let doublings = crashes.saturating_sub(1).min(30);
        self.initial.saturating_mul(1u32 << doublings).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff::default();
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(200));
        assert_eq!(b.delay(4), Duration::from_millis(800));
        assert_eq!(b.delay(40), Duration::from_secs(30));
    }
}
