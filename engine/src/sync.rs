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
//! The HNSW graph core (`index::graph`) takes its atomics, locks and [`OnceLock`] from here too;
//! under loom, [`OnceLock`] is a compare-and-swap on an `AtomicPtr` (loom has none) and
//! `VectorAccess` stands for a node's vector, so a model sees every read of a vector that a
//! write does not happen before.
//!
//! Crate-private; the loom models that need the cores reach them through the `internals`
//! feature (see `lib.rs`).

#[cfg(engram_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(engram_loom)]
pub(crate) use once::OnceLock;
#[cfg(not(engram_loom))]
pub(crate) use parking_lot::{Condvar, Mutex, RwLock};
#[cfg(engram_loom)]
pub(crate) use shim::{Condvar, Mutex, RwLock};
#[cfg(not(engram_loom))]
pub(crate) use std::sync::OnceLock;
#[cfg(not(engram_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Under loom, stands for data that one thread writes before publishing it and others read
/// after (a graph node's vector, kept in plain memory beside it): loom checks the accesses of
/// this cell, so a read that the write does not happen before fails the model ("causality
/// violation") instead of passing unseen. Outside loom there is nothing to check.
#[cfg(engram_loom)]
pub(crate) type VectorAccess = loom::cell::UnsafeCell<()>;

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

#[cfg(engram_loom)]
mod once {
    use loom::sync::atomic::{AtomicPtr, Ordering};
    use std::marker::PhantomData;

    /// `std::sync::OnceLock`'s `get`, `set` and `get_or_init` over a loom `AtomicPtr`: the value
    /// is boxed and published by a compare-and-swap (`AcqRel`) from null, read with `Acquire`.
    /// Unlike std's, two threads may both run `get_or_init`'s closure; the loser's value is
    /// dropped and both return the winner's, which is all the graph relies on.
    pub(crate) struct OnceLock<T> {
        ptr: AtomicPtr<T>,
        _owns: PhantomData<Box<T>>,
    }

    impl<T> OnceLock<T> {
        pub(crate) fn new() -> Self {
            Self { ptr: AtomicPtr::new(std::ptr::null_mut()), _owns: PhantomData }
        }
        pub(crate) fn get(&self) -> Option<&T> {
            // SAFETY: a non-null pointer came from `Box::into_raw` in `set`, published with
            // `Release` and seen here with `Acquire`; it is freed only by `drop`.
            unsafe { self.ptr.load(Ordering::Acquire).as_ref() }
        }
        pub(crate) fn set(&self, v: T) -> Result<(), T> {
            let p = Box::into_raw(Box::new(v));
            match self.ptr.compare_exchange(std::ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => Ok(()),
                // SAFETY: `p` lost the race and was never published.
                Err(_) => Err(*unsafe { Box::from_raw(p) }),
            }
        }
        pub(crate) fn get_or_init(&self, f: impl FnOnce() -> T) -> &T {
            if let Some(v) = self.get() {
                return v;
            }
            let _ = self.set(f());
            self.get().expect("set by this thread or the one that won")
        }
    }

    impl<T> Drop for OnceLock<T> {
        fn drop(&mut self) {
            let p = self.ptr.with_mut(|p| *p);
            if !p.is_null() {
                // SAFETY: `p` came from `Box::into_raw` and nothing else frees it.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}
