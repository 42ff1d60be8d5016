//! The open database, and how the store heals after a failed write without a restart.
//!
//! fjall poisons a database after a failed journal write, sync, flush or compaction (its
//! `Error::Poisoned`): every later write fails until it is opened again. So a failure (ENOSPC,
//! EIO, or one injected by [`super::faults`]) *breaks* the store: new writes are refused at
//! once with the failure's kind (507 `storage_full` or 503 `storage_error`, with `Retry-After`),
//! and the syncer thread tries to heal it, backing off from 100 ms to 5 s:
//!
//! 1. It takes the append lock, so no write goes in meanwhile.
//! 2. It closes the database (waiting up to 2 s for readers to let go; new readers wait on
//!    the lock meanwhile) and opens it again: fjall replays its journal, keeping every write
//!    that reached it whole and dropping a torn tail.
//! 3. It writes again every [`Write`] appended since the last successful sync, under the same
//!    keys (so one that survived is overwritten with itself), in their order, and syncs. Those
//!    writes were refused to their clients (never acknowledged DURABLE), but the engine's memory
//!    already holds them (queued, perhaps indexed), so the store is made to hold them too: memory
//!    and store agree again, and a restart changes nothing.
//! 4. It writes a probe (the removal of a key no record has) and syncs: the journal takes writes
//!    again. Then writes are accepted again.
//!
//! A batch whose own journal write failed is not among them: the engine keeps nothing of it,
//! and its bytes in the journal are a torn tail, which the reopen drops.

use super::faults::Faults;
use super::{Counters, storage_error};
use crate::error::{EngineError, StorageErrorKind};
use crate::operation::Seq;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Slice};
// parking_lot, not the `sync` shim: the store is not a loom model (its waits are real I/O).
use parking_lot::{Mutex, RwLock};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// Largest memtable of a keyspace before fjall flushes it to a table, bytes.
const MEMTABLE_BYTES: u64 = 8 << 20;

/// How long a reopen waits for readers (a recall reading content, a snapshot being written) to
/// release the old database before it gives up this attempt (new readers wait meanwhile).
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// The fjall database and its keyspaces, opened together and replaced together.
pub(crate) struct Handles {
    pub(crate) db: Database,
    /// Space name → uid and parameters.
    pub(crate) spaces: Keyspace,
    /// Space uid and sequence number → one encoded operation.
    pub(crate) log: Keyspace,
    /// Space uid and observation id → its content.
    pub(crate) content: Keyspace,
}

impl Handles {
    /// Opens the database at `path` (creating it on first start) and its keyspaces.
    ///
    /// # Errors
    /// fjall's, when the database or a keyspace cannot be opened.
    pub(crate) fn open(path: &std::path::Path) -> Result<Self, fjall::Error> {
        let db = Database::builder(path).open()?;
        // Memtables of 8 MiB, not fjall's default 64 MiB per keyspace: the log and content are
        // write-mostly (recall reads content through the block cache), and every byte a memtable
        // holds is resident (measured: with 64 MiB, a 17k-vector MiniLM load added 2 KB of RSS
        // per vector; docs/benchmarks.md, "Durability").
        let open =
            |name: &str| db.keyspace(name, || KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES));
        let (spaces, log, content) = (open("spaces")?, open("log")?, open("content")?);
        Ok(Self { db, spaces, log, content })
    }
}

/// One append as the journal got it: the log record and the content changes that went with it,
/// kept (cheap clones of the same bytes) until a sync covers it, to be written again if the
/// store heals before one does.
#[derive(Clone)]
pub(crate) struct Write {
    pub(crate) uid: u64,
    pub(crate) seq: Seq,
    pub(crate) value: Slice,
    /// Observation id → its new content, or `None` where the content is removed.
    pub(crate) content: Vec<(u64, Option<Slice>)>,
}

const HEALTHY: u8 = 0;
const BROKEN_FULL: u8 = 1;
const BROKEN_IO: u8 = 2;

/// What the store shares with its syncer thread.
pub(crate) struct Core {
    db_path: PathBuf,
    /// `None` only after a reopen closed the database and could not open it again (readers
    /// then get an error until a later attempt opens it).
    handles: RwLock<Option<Arc<Handles>>>,
    /// Serialises appends, so sequence numbers are in journal order; a heal holds it throughout.
    pub(crate) append: Mutex<Counters>,
    broken: AtomicU8,
    pub(crate) faults: Faults,
}

impl Core {
    pub(crate) fn new(db_path: PathBuf, handles: Handles) -> Self {
        Self {
            db_path,
            handles: RwLock::new(Some(Arc::new(handles))),
            append: Mutex::new(Counters { next_seq: 1, next_uid: 1 }),
            broken: AtomicU8::new(HEALTHY),
            faults: Faults::default(),
        }
    }

    /// The open database.
    ///
    /// # Errors
    /// [`EngineError::Storage`] after a heal closed it and could not open it again.
    pub(crate) fn handles(&self) -> Result<Arc<Handles>, EngineError> {
        self.handles.read().clone().ok_or_else(|| EngineError::Storage {
            kind: self.broken().unwrap_or(StorageErrorKind::Io),
            message: "the store could not be reopened after a failed write (it retries by itself); retry later".into(),
        })
    }

    /// The open database for a write: refused while the store is broken.
    ///
    /// # Errors
    /// [`EngineError::Storage`] with the kind of the failure that broke the store.
    pub(crate) fn writable(&self) -> Result<Arc<Handles>, EngineError> {
        match self.broken() {
            Some(kind) => Err(refusal(kind)),
            None => self.handles(),
        }
    }

    /// The kind of the failure that broke the store, until it heals.
    pub(crate) fn broken(&self) -> Option<StorageErrorKind> {
        match self.broken.load(Ordering::Acquire) {
            HEALTHY => None,
            BROKEN_FULL => Some(StorageErrorKind::Full),
            _ => Some(StorageErrorKind::Io),
        }
    }

    /// Marks the store broken by a failure of `kind`. A full disk stays the reason given while
    /// later errors (fjall's `Poisoned`) follow from it.
    pub(crate) fn set_broken(&self, kind: StorageErrorKind) {
        let code = if kind == StorageErrorKind::Full { BROKEN_FULL } else { BROKEN_IO };
        let _ = self.broken.compare_exchange(HEALTHY, code, Ordering::AcqRel, Ordering::Acquire);
        if code == BROKEN_FULL {
            self.broken.store(BROKEN_FULL, Ordering::Release);
        }
    }

    /// Runs the journal write `f` unless a write fault is injected; either failure is a storage
    /// error of `context`. Every write to the store goes through here.
    ///
    /// # Errors
    /// [`EngineError::Storage`] when the write fails (or a fault is injected).
    pub(crate) fn write<T>(
        &self,
        context: &str,
        f: impl FnOnce() -> Result<T, fjall::Error>,
    ) -> Result<T, EngineError> {
        self.faults.write().map_err(|e| storage_error(context, e))?;
        f().map_err(|e| storage_error(context, e))
    }

    /// Writes `w` to the journal of `h` as one atomic batch (not synced).
    ///
    /// # Errors
    /// [`EngineError::Storage`] when the write fails (or a fault is injected).
    pub(crate) fn commit(&self, h: &Handles, w: &Write) -> Result<(), EngineError> {
        let mut batch = h.db.batch();
        batch.insert(&h.log, super::log_key(w.uid, w.seq), w.value.clone());
        for (id, text) in &w.content {
            match text {
                Some(t) => batch.insert(&h.content, super::log_key(w.uid, *id), t.clone()),
                None => batch.remove(&h.content, super::log_key(w.uid, *id)),
            }
        }
        self.write("appending to the log", || batch.commit())
    }

    /// Syncs the journal with `mode`.
    ///
    /// # Errors
    /// [`EngineError::Storage`] when the sync fails (or a fault is injected).
    pub(crate) fn persist(&self, mode: PersistMode) -> Result<(), EngineError> {
        let h = self.handles()?;
        self.faults.sync().map_err(|e| storage_error("syncing the log", e))?;
        h.db.persist(mode).map_err(|e| storage_error("syncing the log", e))
    }

    /// Reopens the database and writes `writes` again (see the module docs), with the append
    /// lock held by the caller (`_appends`). On success the store is healthy again.
    ///
    /// # Errors
    /// [`EngineError::Storage`] when readers hold the old database too long, or the database
    /// cannot be opened, written or synced: the store stays broken and the caller tries again.
    pub(crate) fn reopen(
        &self,
        _appends: &parking_lot::MutexGuard<'_, Counters>,
        writes: &[Write],
    ) -> Result<(), EngineError> {
        // Readers wait on the lock meanwhile (a reopen takes milliseconds) rather than fail.
        let mut slot = self.handles.write();
        if let Some(old) = slot.take() {
            let since = Instant::now();
            while Arc::strong_count(&old) > 1 {
                if since.elapsed() > RELEASE_WAIT {
                    *slot = Some(old);
                    return Err(EngineError::Storage {
                        kind: StorageErrorKind::Io,
                        message: "a reader held the store for 2 s: reopening later".into(),
                    });
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            // The last handle: fjall stops its workers and releases its lock file here.
            drop(old);
        }
        let h = Arc::new(Handles::open(&self.db_path).map_err(|e| storage_error("reopening the store", e))?);
        *slot = Some(Arc::clone(&h));
        drop(slot);
        for w in writes {
            self.commit(&h, w)?;
        }
        // A probe, so a heal proves the journal takes writes again even with nothing to write
        // again: the removal of a key no record has (uid 0 is never a space's).
        self.write("probing the journal", || h.log.remove(super::log_key(0, 0)))?;
        self.persist(PersistMode::SyncAll)?;
        self.broken.store(HEALTHY, Ordering::Release);
        Ok(())
    }
}

/// The error a write gets while the store is broken.
pub(crate) fn refusal(kind: StorageErrorKind) -> EngineError {
    let why = match kind {
        StorageErrorKind::Full => "the disk is full",
        StorageErrorKind::Io => "a write failed",
    };
    EngineError::Storage {
        kind,
        message: format!("{why}: writes are refused until the store has healed (it retries by itself); retry later"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Durability, StorageConfig, Store};
    use engram_telemetry::events::StorageEvents;
    use engram_telemetry::{Telemetry, TelemetryConfig};

    /// A write the journal never got (as after a failed sync whose pages the kernel dropped)
    /// is in the store after a reopen, and the store is healthy again.
    #[test]
    fn a_reopen_writes_again_what_no_sync_covered() {
        let tmp = tempfile::tempdir().unwrap();
        let events = StorageEvents::register(&Telemetry::new(TelemetryConfig::default()));
        let store = Store::open(&StorageConfig::at(tmp.path(), Durability::Fsync), events).unwrap();
        let lost = Write {
            uid: 7,
            seq: 42,
            value: Slice::from(&b"record"[..]),
            content: vec![(5, Some(Slice::from(&b"text"[..]))), (6, None)],
        };
        store.core.set_broken(StorageErrorKind::Io);
        assert!(store.core.writable().is_err(), "a broken store refuses writes");
        {
            let appends = store.core.append.lock();
            store.core.reopen(&appends, std::slice::from_ref(&lost)).unwrap();
        }
        assert!(store.core.broken().is_none());
        let h = store.core.handles().unwrap();
        assert_eq!(h.log.get(crate::storage::log_key(7, 42)).unwrap().as_deref(), Some(&b"record"[..]));
        assert_eq!(store.content(7, 5).unwrap().as_deref(), Some("text"));
        assert_eq!(store.content(7, 6).unwrap(), None);
    }
}
