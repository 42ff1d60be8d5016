//! A monotonic counter.

use crate::sync::{AtomicU64, Ordering};
use crossbeam_utils::CachePadded;

/// A monotonic `u64` counter on its own cache line.
///
/// Invariant (loom model `counter_loses_no_increment`): concurrent `add`s sum exactly.
#[derive(Debug, Default)]
pub struct Counter {
    value: CachePadded<AtomicU64>,
}

impl Counter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self { value: CachePadded::new(AtomicU64::new(0)) }
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n` (relaxed: a counter orders nothing else).
    #[inline]
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}
