//! The engine's synchronisation primitives, in one place (after `tokio/src/loom/`): std atomics
//! and parking_lot locks normally, loom's under `--cfg engram_loom`, so the loom models explore
//! every interleaving of the code built on them. Every atomic, `Mutex`, `RwLock` and `Condvar`
//! of the admission cores, the queue and the update path comes from here; only the index
//! backends (which lock around C++ or hnsw_rs calls loom cannot see into) and the store
//! (`storage`: its waits are fsyncs) use parking_lot directly.
//!
//! The lock types keep parking_lot's API (a guard, not a `LockResult`). Under loom a timed
//! [`Condvar::wait_for`] is a spurious wake-up (a yield): every caller re-checks its condition
//! in a loop, which is all a timed wait promises.
//!
//! Crate-private; the loom models that need the cores reach them through the `internals`
//! feature (see `lib.rs`).

#[cfg(engram_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(engram_loom))]
pub(crate) use parking_lot::{Condvar, Mutex, RwLock};
#[cfg(engram_loom)]
pub(crate) use shim::{Condvar, Mutex, RwLock};
#[cfg(not(engram_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering};

/// An `f64` held as its bits in an [`AtomicU64`] (load and store only: the engine never does a
/// read-modify-write on a float).
#[derive(Debug)]
pub(crate) struct AtomicF64Cell(AtomicU64);

impl AtomicF64Cell {
    pub(crate) fn new(v: f64) -> Self {
        Self(AtomicU64::new(v.to_bits()))
    }
    pub(crate) fn load(&self, order: Ordering) -> f64 {
        f64::from_bits(self.0.load(order))
    }
    pub(crate) fn store(&self, v: f64, order: Ordering) {
        self.0.store(v.to_bits(), order)
    }
}

#[cfg(engram_loom)]
mod shim {
    use std::time::Duration;

    /// loom's mutex with parking_lot's API.
    #[derive(Debug)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);
    impl<T> Mutex<T> {
        pub(crate) fn new(v: T) -> Self {
            Self(loom::sync::Mutex::new(v))
        }
        pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap()
        }
    }

    /// loom's rwlock with parking_lot's API.
    #[derive(Debug, Default)]
    pub(crate) struct RwLock<T>(loom::sync::RwLock<T>);
    impl<T> RwLock<T> {
        pub(crate) fn read(&self) -> loom::sync::RwLockReadGuard<'_, T> {
            self.0.read().unwrap()
        }
        pub(crate) fn write(&self) -> loom::sync::RwLockWriteGuard<'_, T> {
            self.0.write().unwrap()
        }
    }

    /// A condition variable whose timed wait is a spurious wake-up under loom.
    #[derive(Debug, Default)]
    pub(crate) struct Condvar;
    impl Condvar {
        pub(crate) fn new() -> Self {
            Self
        }
        pub(crate) fn wait_for<G>(&self, _guard: &mut G, _timeout: Duration) {
            loom::thread::yield_now();
        }
        pub(crate) fn notify_all(&self) {}
    }
}
