//! Fault injection at the store's seam: journal writes and syncs made to fail with the errors a
//! full or failing disk gives (ENOSPC, EIO), so the refusal and self-healing paths are tested
//! without root or a small filesystem (the real case: `server/tests/disk_full.rs`).
//!
//! The failure is raised where fjall would raise it (a batch commit, a persist), before fjall
//! is called, so the journal is untouched; fjall itself is not poisoned, but the store treats
//! an injected failure exactly as a real one: it refuses writes and heals by reopening. A fault
//! stays set until cleared, as a full disk stays full until space is freed.

use crate::error::StorageErrorKind;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

const NONE: u8 = 0;
const FULL: u8 = 1;
#[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
const IO: u8 = 2;

/// Injected failures, cleared by default. One relaxed load per write or sync when unset.
#[derive(Debug, Default)]
pub struct Faults {
    writes: AtomicU8,
    syncs: AtomicU8,
    /// Microseconds every journal write waits first (under the append lock), to widen races.
    write_delay_us: AtomicU64,
}

#[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
fn encode(kind: Option<StorageErrorKind>) -> u8 {
    match kind {
        None => NONE,
        Some(StorageErrorKind::Full) => FULL,
        Some(StorageErrorKind::Io) => IO,
    }
}

fn raise(code: u8) -> std::io::Result<()> {
    match code {
        NONE => Ok(()),
        // The errno values Linux gives: ENOSPC (28), EIO (5).
        FULL => Err(std::io::Error::from_raw_os_error(28)),
        _ => Err(std::io::Error::from_raw_os_error(5)),
    }
}

impl Faults {
    /// Every journal write (a batch commit, an insert or remove) fails with `kind` until
    /// cleared with `None`.
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    pub fn fail_writes(&self, kind: Option<StorageErrorKind>) {
        self.writes.store(encode(kind), Ordering::SeqCst);
    }

    /// Every sync (persist) fails with `kind` until cleared with `None`.
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    pub fn fail_syncs(&self, kind: Option<StorageErrorKind>) {
        self.syncs.store(encode(kind), Ordering::SeqCst);
    }

    /// Every journal write first waits `delay` (zero: no wait), as a slow disk would, holding
    /// the append lock: the window between an insert's claim of its ids and its append widens.
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    pub fn delay_writes(&self, delay: Duration) {
        self.write_delay_us.store(delay.as_micros() as u64, Ordering::SeqCst);
    }

    /// The injected write failure, if one is set (after the injected delay).
    pub(crate) fn write(&self) -> std::io::Result<()> {
        let delay = self.write_delay_us.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
        raise(self.writes.load(Ordering::Relaxed))
    }

    /// The injected sync failure, if one is set.
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        raise(self.syncs.load(Ordering::Relaxed))
    }
}
