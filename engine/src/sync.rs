//! Atomics shim (public so the loom models share it): std atomics normally, loom's under `--cfg engram_loom` so the loom models in
//! `loom-tests/` explore every interleaving of the admission and backpressure cores.

#[cfg(engram_loom)]
pub use loom::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
#[cfg(not(engram_loom))]
pub use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
