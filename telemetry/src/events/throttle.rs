//! [`LogThrottle`]: at most one log line per interval for an event that can repeat thousands of
//! times a minute (a space's backpressure level flapping under sustained overload), with a
//! count of the lines held back. The metric counts every occurrence; the log only samples them.

use crate::sync::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a space's (or the engine's) backpressure level change is logged at most.
pub const LEVEL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Lets one line through per interval and counts the ones held back since the last.
///
/// Lock-free: one compare-and-swap decides which caller of an interval writes the line (loom
/// model `loom-tests/tests/telemetry.rs`, `log_throttle_admits_one_line_per_interval`).
#[derive(Debug)]
pub struct LogThrottle {
    interval_ns: u64,
    origin: Instant,
    /// Nanoseconds since `origin` from which the next line may be written.
    next_ns: AtomicU64,
    held: AtomicU64,
}

impl LogThrottle {
    /// A throttle letting one line through per `interval`; the first call is always let through.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval_ns: interval.as_nanos().min(u128::from(u64::MAX)) as u64,
            origin: Instant::now(),
            next_ns: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// `Some(held back since the last line)` when a line may be written now, else `None` (and
    /// the line is counted as held back). Every held-back line is reported exactly once: by
    /// this interval's line if it raced the winner, else by the next one.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(self.origin.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64)
    }

    /// [`LogThrottle::admit`] at `now_ns` nanoseconds after the throttle was made.
    pub fn admit_at(&self, now_ns: u64) -> Option<u64> {
        let next = self.next_ns.load(Ordering::Acquire);
        if now_ns >= next
            && self
                .next_ns
                .compare_exchange(next, now_ns.saturating_add(self.interval_ns), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::AcqRel));
        }
        self.held.fetch_add(1, Ordering::AcqRel);
        None
    }
}

#[cfg(all(test, not(engram_loom)))]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_rest_are_counted() {
        let t = LogThrottle::new(Duration::from_secs(10));
        assert_eq!(t.admit_at(0), Some(0));
        for i in 1..=999 {
            assert_eq!(t.admit_at(i * 1_000_000), None);
        }
        assert_eq!(t.admit_at(10_000_000_000), Some(999), "the next line says how many were held back");
        assert_eq!(t.admit_at(10_000_000_001), None);
    }
}
