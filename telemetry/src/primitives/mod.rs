//! Lock-free metric primitives: [`Counter`], [`Gauge`], [`Histogram`].
//!
//! Recording is one or a few atomic read-modify-writes on memory the primitive owns: no lookup,
//! no lock, no allocation, no formatting. Counters are cache-padded so two hot counters never
//! share a cache line. All atomics come from [`crate::sync`], modelled with loom in
//! `loom-tests/` (`tests/telemetry.rs`).

mod counter;
mod gauge;
mod histogram;

pub use counter::Counter;
pub use gauge::Gauge;
pub use histogram::{Histogram, HistogramSnapshot};
