//! Atomics shim: std atomics (and `atomic_float::AtomicF64`) normally, loom's under
//! `--cfg engram_loom`, so the loom models in `loom-tests/` explore every interleaving of the
//! telemetry primitives. loom has no atomic float, so under loom `AtomicF64` is the bits of an
//! `f64` in a loom `AtomicU64`, updated by compare-and-swap as atomic_float does.

#[cfg(not(engram_loom))]
pub use atomic_float::AtomicF64;
#[cfg(engram_loom)]
pub use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(engram_loom))]
pub use std::sync::atomic::{AtomicU64, Ordering};

/// `f64` in an `AtomicU64`, for loom models (the API subset of `atomic_float::AtomicF64` we use).
#[cfg(engram_loom)]
#[derive(Debug)]
pub struct AtomicF64(AtomicU64);

#[cfg(engram_loom)]
impl AtomicF64 {
    /// A new atomic holding `v`.
    pub fn new(v: f64) -> Self {
        Self(AtomicU64::new(v.to_bits()))
    }
    /// Loads the value.
    pub fn load(&self, order: Ordering) -> f64 {
        f64::from_bits(self.0.load(order))
    }
    /// Stores `v`.
    pub fn store(&self, v: f64, order: Ordering) {
        self.0.store(v.to_bits(), order)
    }
    /// Adds `v`, returning the previous value.
    pub fn fetch_add(&self, v: f64, order: Ordering) -> f64 {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let new = (f64::from_bits(cur) + v).to_bits();
            match self.0.compare_exchange_weak(cur, new, order, Ordering::Relaxed) {
                Ok(prev) => return f64::from_bits(prev),
                Err(actual) => cur = actual,
            }
        }
    }
    /// Subtracts `v`, returning the previous value.
    pub fn fetch_sub(&self, v: f64, order: Ordering) -> f64 {
        self.fetch_add(-v, order)
    }
}
