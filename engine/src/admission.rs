//! The lock-free cores of admission, modelled with loom in `loom-tests/`:
//!
//! - [`Capacity`]: exact reservation of queue space in observations *and* bytes. A batch first
//!   reserves, then pushes; a reservation that would exceed either cap fails and rolls back, so
//!   the queue never holds more than its capacity, even for an instant.
//! - [`LevelCell`]: a backpressure level with hysteresis, updated by compare-and-swap so each
//!   transition is observed (and counted) by exactly one thread.
//!
//! Both use the atomics of [`crate::sync`], which become loom's under `--cfg engram_loom`.

use crate::sync::{AtomicU8, AtomicUsize, Ordering};

/// Exact capacity accounting of the observation queue.
///
/// Invariant (checked by the loom model `capacity`): `0 <= len() <= max_count` and
/// `0 <= bytes() <= max_bytes` at every instant, whatever the interleaving of
/// [`Capacity::try_reserve`] and [`Capacity::release`].
#[derive(Debug)]
pub struct Capacity {
    count: AtomicUsize,
    bytes: AtomicUsize,
    max_count: usize,
    max_bytes: usize,
}

impl Capacity {
    /// Empty accounting with caps `max_count` observations and `max_bytes` bytes.
    pub fn new(max_count: usize, max_bytes: usize) -> Self {
        Self { count: AtomicUsize::new(0), bytes: AtomicUsize::new(0), max_count, max_bytes }
    }

    /// Reserves room for `count` observations of `bytes` bytes in total, all or nothing.
    ///
    /// Returns `false` (having changed nothing, once the rollback is done) when either cap would
    /// be exceeded.
    pub fn try_reserve(&self, count: usize, bytes: usize) -> bool {
        let max_count = self.max_count;
        if self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| c.checked_add(count).filter(|&n| n <= max_count))
            .is_err()
        {
            return false;
        }
        let max_bytes = self.max_bytes;
        if self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| b.checked_add(bytes).filter(|&n| n <= max_bytes))
            .is_err()
        {
            self.count.fetch_sub(count, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Returns the room of `count` observations of `bytes` bytes, previously reserved.
    pub fn release(&self, count: usize, bytes: usize) {
        let prev_count = self.count.fetch_sub(count, Ordering::AcqRel);
        let prev_bytes = self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        debug_assert!(prev_count >= count && prev_bytes >= bytes, "released more than reserved");
    }

    /// Observations reserved now.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// True when nothing is reserved.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes reserved now.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// The cap in observations.
    pub fn max_count(&self) -> usize {
        self.max_count
    }

    /// The cap in bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Utilization, 0 to 1: the larger of the count and byte fill ratios.
    pub fn utilization(&self) -> f64 {
        let c = self.len() as f64 / self.max_count as f64;
        let b = self.bytes() as f64 / self.max_bytes as f64;
        c.max(b)
    }
}

/// Entry thresholds of levels 1 to 3 (Warning, Critical, Overloaded) and the hysteresis gap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// `enter[i]` is the utilization at which level `i + 1` is entered.
    pub enter: [f64; 3],
    /// A level `l >= 1` is left when utilization drops below `enter[l - 1] - hysteresis`.
    pub hysteresis: f64,
}

impl Thresholds {
    /// The level that follows `current` at utilization `util`: climb while `util` reaches the
    /// next entry threshold, otherwise descend while it is below the current level's exit
    /// threshold. Between entry and exit the level holds (hysteresis).
    pub fn next(&self, current: u8, util: f64) -> u8 {
        let mut level = current.min(3);
        while level < 3 && util >= self.enter[usize::from(level)] {
            level += 1;
        }
        if level == current {
            while level > 0 && util < self.enter[usize::from(level) - 1] - self.hysteresis {
                level -= 1;
            }
        }
        level
    }
}

/// A backpressure level (0 to 3) that moves by [`Thresholds::next`].
///
/// Invariant (checked by the loom model `level_cell`): after concurrent updates the level equals
/// what [`Thresholds::next`] gives from the previous level at the last utilization applied, and
/// every transition is returned to exactly one caller, so an activation is counted once.
#[derive(Debug)]
pub struct LevelCell {
    level: AtomicU8,
}

impl Default for LevelCell {
    fn default() -> Self {
        Self { level: AtomicU8::new(0) }
    }
}

impl LevelCell {
    /// The current level.
    pub fn get(&self) -> u8 {
        self.level.load(Ordering::Acquire)
    }

    /// Moves the level for utilization `util`. Returns `Some((from, to))` to the one caller
    /// whose compare-and-swap made the change, `None` when the level held.
    pub fn update(&self, thresholds: &Thresholds, util: f64) -> Option<(u8, u8)> {
        let mut current = self.level.load(Ordering::Acquire);
        loop {
            let next = thresholds.next(current, util);
            if next == current {
                return None;
            }
            match self.level.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some((current, next)),
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(all(test, not(engram_loom)))]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds { enter: [0.5, 0.8, 0.95], hysteresis: 0.1 };

    #[test]
    fn capacity_is_exact_and_rolls_back_on_bytes() {
        let c = Capacity::new(10, 100);
        assert!(c.try_reserve(6, 60));
        assert!(!c.try_reserve(5, 10), "count cap");
        assert!(!c.try_reserve(1, 41), "bytes cap rolls the count back");
        assert_eq!((c.len(), c.bytes()), (6, 60));
        assert!(c.try_reserve(4, 40));
        assert!((c.utilization() - 1.0).abs() < 1e-12);
        c.release(10, 100);
        assert!(c.is_empty());
    }

    #[test]
    fn capacity_never_exceeded_under_threads() {
        let c = std::sync::Arc::new(Capacity::new(1000, usize::MAX));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    let mut got = 0;
                    for _ in 0..10_000 {
                        if c.try_reserve(3, 3) {
                            got += 3;
                            assert!(c.len() <= 1000);
                        }
                    }
                    got
                })
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, c.len());
        assert!((997..=1000).contains(&total));
    }

    #[test]
    fn thresholds_climb_and_hold_with_hysteresis() {
        assert_eq!(T.next(0, 0.49), 0);
        assert_eq!(T.next(0, 0.5), 1);
        assert_eq!(T.next(0, 0.96), 3, "jumps straight to the level the utilization is in");
        assert_eq!(T.next(3, 0.9), 3, "holds until 0.85");
        assert_eq!(T.next(3, 0.84), 2);
        assert_eq!(T.next(2, 0.75), 2, "holds until 0.7");
        assert_eq!(T.next(2, 0.1), 0, "descends every level it is below");
        assert_eq!(T.next(1, 0.41), 1);
        assert_eq!(T.next(1, 0.39), 0);
    }

    #[test]
    fn level_cell_reports_each_transition_once() {
        let cell = LevelCell::default();
        assert_eq!(cell.update(&T, 0.85), Some((0, 2)));
        assert_eq!(cell.update(&T, 0.85), None);
        assert_eq!(cell.update(&T, 0.5), Some((2, 1)));
        assert_eq!(cell.get(), 1);
    }
}
