//! A gauge: an `f64` that is set, or moved up and down.

use crate::sync::{AtomicF64, Ordering};

/// An `f64` gauge (`atomic_float::AtomicF64`, a compare-and-swap loop for `add` and `sub`).
///
/// Invariant (loom model `gauge_adds_and_subs_sum_exactly`): concurrent `add`s and `sub`s of
/// exactly representable values end at their exact sum.
#[derive(Debug)]
pub struct Gauge {
    value: AtomicF64,
}

impl Default for Gauge {
    fn default() -> Self {
        Self::new()
    }
}

impl Gauge {
    /// A gauge at zero.
    pub fn new() -> Self {
        Self { value: AtomicF64::new(0.0) }
    }

    /// Sets the value.
    #[inline]
    pub fn set(&self, v: f64) {
        self.value.store(v, Ordering::Relaxed);
    }

    /// Adds `v`.
    #[inline]
    pub fn add(&self, v: f64) {
        self.value.fetch_add(v, Ordering::Relaxed);
    }

    /// Subtracts `v`.
    #[inline]
    pub fn sub(&self, v: f64) {
        self.value.fetch_sub(v, Ordering::Relaxed);
    }

    /// The current value.
    #[inline]
    pub fn get(&self) -> f64 {
        self.value.load(Ordering::Relaxed)
    }
}
