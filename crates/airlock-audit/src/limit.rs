//! The budget of guest reports in one sandbox's audit queue: a token bucket for their rate and
//! a cap on how many may wait at once, so that a flooding guest can neither crowd host records
//! out of the queue nor keep the writer busy forever. What the guest loses is counted and
//! recorded (`audit.dropped`, reason [`GUEST_LIMIT`]).

use std::time::Instant;

/// `reason` of the `audit.dropped` record for guest reports over their budget.
pub const GUEST_LIMIT: &str = "guest_limit";
/// `reason` of the `audit.dropped` record for events the full queue could not take.
pub const QUEUE_FULL: &str = "queue_full";

/// How many guest reports a sandbox may have recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestBudget {
    /// Reports that may wait in the queue at once (host records have the rest of it).
    pub queued: usize,
    /// Sustained reports per second.
    pub per_second: u32,
    /// Reports accepted in a burst above the rate.
    pub burst: u32,
}

impl Default for GuestBudget {
    fn default() -> Self {
        Self {
            queued: 1024,
            per_second: 2000,
            burst: 10_000,
        }
    }
}

/// A token bucket: `burst` tokens, refilled at `per_second`.
#[derive(Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
    per_second: f64,
    burst: f64,
}

impl Bucket {
    pub(crate) fn new(per_second: u32, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            last: Instant::now(),
            per_second: f64::from(per_second),
            burst: f64::from(burst),
        }
    }

    /// Takes one token if there is one at `now`.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10, 5);
        assert_eq!((0..8).filter(|_| b.take(t0)).count(), 5);
        // 0.5 s at 10/s: five more, never above the burst.
        assert_eq!(
            (0..8)
                .filter(|_| b.take(t0 + Duration::from_millis(500)))
                .count(),
            5
        );
        assert_eq!(
            (0..20)
                .filter(|_| b.take(t0 + Duration::from_secs(100)))
                .count(),
            5
        );
    }
}
