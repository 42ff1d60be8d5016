//! The durable log: space definitions and admitted operations recorded in an embedded store
//! (fjall 3, an LSM tree with a checksummed write-ahead journal) before they are acknowledged
//! DURABLE, and read back at start to rebuild the indexes.
//!
//! - [`StorageConfig`] and [`Durability`]: where (`storage.data_dir`) and how far a write goes
//!   before DURABLE (`fsync`, `os`, `none`).
//! - [`Store`]: the data directory (`FORMAT`, `LOCK`, the fjall database in `db/`), the
//!   `spaces` keyspace (name → uid and parameters), the `log` keyspace (space uid and
//!   sequence number → one encoded [`Operation`] without content, see `codec`) and the
//!   `content` keyspace (space uid and observation id → its content, read by recall, so content
//!   lives on disk and in the store's block cache rather than on the heap).
//! - Group commit (`commit`): appends write to fjall's journal and take a ticket; one syncer
//!   thread persists everything written since its last sync and resolves every ticket it
//!   covered, so concurrent writers share one `fsync` (docs/architecture.md, "The durable log").
//!
//! fjall's `PersistMode` maps the modes: `fsync` → `SyncAll` (fsync of the journal),
//! `os` → `Buffer` (the journal's buffer written to the OS: survives a process crash, not a
//! power loss), `none` → no store at all. Source: fjall's `PersistMode` docs
//! (<https://docs.rs/fjall/3/fjall/enum.PersistMode.html>).

pub(crate) mod checkpoint;
pub(crate) mod codec;
mod commit;
#[cfg(feature = "fault-injection")]
pub mod faults;
#[cfg(not(feature = "fault-injection"))]
pub(crate) mod faults;
mod heal;
pub(crate) mod snapshot;

pub use commit::DurableWaiter;

use crate::error::{EngineError, StorageErrorKind};
use crate::operation::{Operation, Seq};
use commit::GroupCommit;
use engram_telemetry::events::StorageEvents;
use fjall::{PersistMode, Slice};
use heal::{Core, Handles, Write};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The on-disk format this build reads and writes, in the data directory's `FORMAT` file.
pub const FORMAT_VERSION: u32 = 1;

/// How far a write has gone when it is acknowledged DURABLE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// After an fsync of the journal that covers it (group-committed): survives a process
    /// crash and a power loss or kernel crash (as far as the disk honours fsync). The default.
    #[default]
    Fsync,
    /// After the journal's buffer is written to the OS (group-committed): survives a process
    /// crash (kill -9), not a power loss or kernel crash.
    Os,
    /// Nothing is stored: memory only, lost at exit. DURABLE is then the same as ACCEPTED.
    /// For benchmarks and tests.
    None,
}

impl Durability {
    /// The lowercase name, as in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fsync => "fsync",
            Self::Os => "os",
            Self::None => "none",
        }
    }
}

/// Storage settings (`[storage]` of the server config).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// The data directory, created on first start. Default `./engram-data`. One server at a
    /// time: a second one on the same directory is refused at start.
    pub data_dir: PathBuf,
    /// What DURABLE means: `fsync` (default), `os` or `none` (see [`Durability`]).
    pub durability: Durability,
    /// Seconds between index checkpoints of each space that took writes (default 60; 0: only
    /// at shutdown). A start loads the newest checkpoint and replays the log after it.
    pub checkpoint_interval_s: u64,
    /// Operations (inserts, upserts, deletes; one per id) on a space since its last checkpoint
    /// that trigger the next one, checked every second (default 20,000; 0: time only). Bounds
    /// what a start after a crash replays: not the time to ready (the log is read and searched
    /// exactly before it is indexed), but how long the catch-up after it lasts and the memory
    /// it holds (each replayed vector twice, `2 × dim × 4` bytes, until indexed).
    pub checkpoint_after_operations: u64,
    /// Largest snapshot file a restore reads (an upload or a stored one), bytes. Default
    /// 16 GiB.
    pub max_snapshot_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./engram-data"),
            durability: Durability::Fsync,
            checkpoint_interval_s: 60,
            checkpoint_after_operations: 20_000,
            max_snapshot_bytes: 16 << 30,
        }
    }
}

impl StorageConfig {
    /// Fsync durability on `data_dir`, other settings at their defaults.
    pub fn at(data_dir: impl Into<PathBuf>, durability: Durability) -> Self {
        Self { data_dir: data_dir.into(), durability, ..Self::default() }
    }
}

impl StorageConfig {
    /// Memory only (`durability = none`): for tests and benchmarks.
    pub fn memory() -> Self {
        Self { durability: Durability::None, ..Self::default() }
    }
}

/// A space definition as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredSpace {
    /// Unique for the life of the data directory: log keys start with it, so a space dropped
    /// and created again under the same name never sees the old one's records.
    pub(crate) uid: u64,
    /// The space's parameters as the update path serialised them (the store does not read
    /// them: storage sits below spaces).
    pub(crate) params: serde_json::Value,
}

/// The data directory, opened and locked. A failed write breaks it until it heals by itself
/// (see `heal`).
pub(crate) struct Store {
    dir: PathBuf,
    /// The database (replaced when the store heals), the append lock, the broken flag.
    core: Arc<Core>,
    /// Held (with an exclusive lock) for the store's life.
    _lock: File,
    commit: Arc<GroupCommit>,
    pub(crate) events: StorageEvents,
}

/// Counts `e` in `engram_storage_errors_total` when it is a storage error.
pub(crate) fn count_error(events: &StorageEvents, e: &EngineError) {
    if let EngineError::Storage { kind, .. } = e {
        events.failed(*kind == StorageErrorKind::Full);
    }
}

/// A point-in-time view of the store ([`Store::view`]); it keeps the database it reads open.
pub(crate) struct View {
    handles: Arc<Handles>,
    snapshot: fjall::Snapshot,
}

/// The next sequence number and uid, under the append lock.
pub(crate) struct Counters {
    next_seq: Seq,
    next_uid: u64,
}

/// A log key: the space's uid, then the sequence number, both big-endian, so one space's
/// records are one contiguous range in sequence order. Content keys are the same shape with
/// the observation id in place of the sequence number.
pub(crate) fn log_key(uid: u64, seq: Seq) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&uid.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn parse_log_key(k: &[u8]) -> Option<(u64, Seq)> {
    let k: &[u8; 16] = k.try_into().ok()?;
    Some((u64::from_be_bytes(k[..8].try_into().ok()?), u64::from_be_bytes(k[8..].try_into().ok()?)))
}

/// The second half (sequence number or observation id) of a 16-byte `what` key ("log",
/// "content").
///
/// # Errors
/// [`EngineError::Storage`] when the key is not 16 bytes.
fn key_tail(k: &[u8], what: &str) -> Result<u64, EngineError> {
    parse_log_key(k).map(|(_, tail)| tail).ok_or_else(|| EngineError::Storage {
        kind: StorageErrorKind::Io,
        message: format!("a {what} key is not 16 bytes"),
    })
}

/// An I/O failure as the engine reports it: disk full apart from every other error.
pub(crate) fn storage_error(context: &str, e: impl std::fmt::Display + IoKind) -> EngineError {
    EngineError::Storage { kind: e.kind(), message: format!("{context}: {e}") }
}

/// Classifies a store error as disk full or anything else.
pub(crate) trait IoKind {
    /// The kind of failure.
    fn kind(&self) -> StorageErrorKind;
}

impl IoKind for std::io::Error {
    fn kind(&self) -> StorageErrorKind {
        StorageErrorKind::of(self)
    }
}

impl IoKind for fjall::Error {
    fn kind(&self) -> StorageErrorKind {
        match self {
            fjall::Error::Io(e) => IoKind::kind(e),
            fjall::Error::Storage(fjall::LsmError::Io(e)) => IoKind::kind(e),
            _ => StorageErrorKind::Io,
        }
    }
}

/// A start-up failure naming the path and the reason.
fn at_start(path: &Path, reason: impl std::fmt::Display) -> EngineError {
    EngineError::invalid("storage.data_dir", format!("{}: {reason}", path.display()))
}

impl Store {
    /// Opens (creating on first start) the data directory `config.data_dir`: checks its
    /// `FORMAT`, takes its `LOCK`, opens the database, and starts the group-commit syncer.
    /// Log records of spaces that no longer exist (a drop a crash interrupted) are removed.
    ///
    /// # Errors
    /// [`EngineError::InvalidArgument`] on `storage.data_dir`, naming the path and the reason:
    /// it cannot be created or written, another process holds it, it holds a format this build
    /// does not read, or the database cannot be opened.
    pub(crate) fn open(config: &StorageConfig, events: StorageEvents) -> Result<Self, EngineError> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| at_start(&dir, format!("cannot create the data directory: {e}")))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| at_start(&lock_path, format!("cannot open the lock file: {e}")))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(at_start(&dir, "another engram-stream process holds this data directory (LOCK is locked)"));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(at_start(&lock_path, format!("cannot lock: {e}"))),
        }
        check_format(&dir)?;
        let db_path = dir.join("db");
        let handles = Handles::open(&db_path).map_err(|e| at_start(&db_path, format!("cannot open the store: {e}")))?;
        let core = Arc::new(Core::new(db_path, handles));
        let mode = match config.durability {
            Durability::Os => PersistMode::Buffer,
            _ => PersistMode::SyncAll,
        };
        let commit = GroupCommit::start(Arc::clone(&core), mode, events.clone())
            .map_err(|e| at_start(&dir, format!("cannot start the syncer thread: {e}")))?;
        let store = Self { dir, core, _lock: lock, commit, events };
        store.settle()?;
        Ok(store)
    }

    /// Removes log records of uids no live space has, and sets the next sequence number and uid
    /// past everything stored.
    fn settle(&self) -> Result<(), EngineError> {
        let live: std::collections::HashMap<u64, String> =
            self.spaces()?.into_iter().map(|(name, s)| (s.uid, name)).collect();
        let mut next_seq = 1;
        let mut next_uid = live.keys().max().map_or(1, |u| u + 1);
        let mut orphans = 0usize;
        let h = self.core.handles()?;
        for kv in h.log.iter() {
            let key = kv.key().map_err(|e| storage_error("reading the log", e))?;
            let Some((uid, seq)) = parse_log_key(&key) else { continue };
            next_seq = next_seq.max(seq + 1);
            next_uid = next_uid.max(uid + 1);
            if !live.contains_key(&uid) {
                h.log.remove(key.to_vec()).map_err(|e| storage_error("removing a dropped space's record", e))?;
                orphans += 1;
            }
        }
        for kv in h.content.iter() {
            let key = kv.key().map_err(|e| storage_error("reading stored content", e))?;
            if parse_log_key(&key).is_some_and(|(uid, _)| !live.contains_key(&uid)) {
                h.content.remove(key.to_vec()).map_err(|e| storage_error("removing a dropped space's content", e))?;
                orphans += 1;
            }
        }
        if orphans > 0 {
            h.db.persist(PersistMode::SyncAll).map_err(|e| storage_error("syncing", e))?;
            tracing::info!(records = orphans, "removed the log records of dropped memory spaces");
        }
        // Checkpoints: a compacted log may hold nothing past a checkpoint's position, so new
        // sequence numbers start past every checkpoint too. Those of dropped spaces go.
        let root = self.checkpoints_root();
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                let Some(uid) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else { continue };
                next_uid = next_uid.max(uid + 1);
                if !live.contains_key(&uid) {
                    let _ = std::fs::remove_dir_all(entry.path());
                    continue;
                }
                if let Ok(m) = checkpoint::read_manifest(&entry.path()) {
                    next_seq = next_seq.max(m.checkpoints.iter().map(|c| c.seq + 1).max().unwrap_or(1));
                }
            }
        }
        *self.core.append.lock() = Counters { next_seq, next_uid };
        remove_snapshot_leftovers(&self.snapshots_root());
        Ok(())
    }

    /// Every stored space definition, by name.
    pub(crate) fn spaces(&self) -> Result<Vec<(String, StoredSpace)>, EngineError> {
        let mut out = Vec::new();
        for kv in self.core.handles()?.spaces.iter() {
            let (k, v) = kv.into_inner().map_err(|e| storage_error("reading space definitions", e))?;
            let name = String::from_utf8(k.to_vec()).map_err(|_| EngineError::Storage {
                kind: StorageErrorKind::Io,
                message: "a space name is not UTF-8".into(),
            })?;
            let space: StoredSpace = serde_json::from_slice(&v).map_err(|e| EngineError::Storage {
                kind: StorageErrorKind::Io,
                message: format!("the definition of space `{name}` does not parse: {e}"),
            })?;
            out.push((name, space));
        }
        Ok(out)
    }

    /// Records a new space durably (synced, whatever the durability mode: definitions are rare)
    /// and returns its uid.
    ///
    /// # Errors
    /// [`EngineError::Storage`].
    pub(crate) fn create_space(&self, name: &str, params: serde_json::Value) -> Result<u64, EngineError> {
        let uid = self.reserve_uid();
        self.define_space(name, uid, params)?;
        Ok(uid)
    }

    /// A uid no space has had in this data directory, for a space defined later
    /// ([`Store::define_space`]); records written under it before then are removed by the next
    /// start if the definition never comes (a crash mid-restore).
    pub(crate) fn reserve_uid(&self) -> u64 {
        let mut c = self.core.append.lock();
        c.next_uid += 1;
        c.next_uid - 1
    }

    /// A log position no record takes (a restored checkpoint's position: every later record
    /// is past it).
    pub(crate) fn reserve_seq(&self) -> Seq {
        let mut c = self.core.append.lock();
        c.next_seq += 1;
        c.next_seq - 1
    }

    /// Records the definition of space `name` with uid `uid` durably (synced, whatever the
    /// durability mode: definitions are rare).
    ///
    /// # Errors
    /// [`EngineError::Storage`].
    pub(crate) fn define_space(&self, name: &str, uid: u64, params: serde_json::Value) -> Result<(), EngineError> {
        let value = serde_json::to_vec(&StoredSpace { uid, params }).expect("a space definition serialises");
        let h = self.core.writable()?;
        self.guard(self.core.write("recording the space", || h.spaces.insert(name.as_bytes(), value)))?;
        self.sync()
    }

    /// Passes `result` on, breaking the store when it is a storage error (fjall may be
    /// poisoned: see `heal`).
    fn guard<T>(&self, result: Result<T, EngineError>) -> Result<T, EngineError> {
        if let Err(e @ EngineError::Storage { .. }) = &result {
            self.count_error(e);
            self.commit.break_with(e);
        }
        result
    }

    /// A consistent view of the store as of the newest log position appended: that position
    /// and a snapshot of the store that reads exactly what was written through it.
    ///
    /// # Errors
    /// [`EngineError::Storage`] while the store is reopening.
    pub(crate) fn view(&self) -> Result<(Seq, View), EngineError> {
        let c = self.core.append.lock();
        let handles = self.core.handles()?;
        let snapshot = handles.db.snapshot();
        Ok((c.next_seq - 1, View { handles, snapshot }))
    }

    /// The encoded log records of space `uid` in `from..=through` as `view` sees them, in
    /// sequence order.
    pub(crate) fn log_records<'a>(
        &'a self,
        view: &'a View,
        uid: u64,
        from: Seq,
        through: Seq,
    ) -> impl Iterator<Item = Result<(Seq, fjall::Slice), EngineError>> + 'a {
        use fjall::Readable;
        view.snapshot.range(&view.handles.log, log_key(uid, from)..=log_key(uid, through)).map(|kv| {
            let (k, v) = kv.into_inner().map_err(|e| storage_error("reading the log", e))?;
            let seq = key_tail(&k, "log")?;
            Ok((seq, v))
        })
    }

    /// The stored content of every observation of space `uid` as `view` sees it, by id.
    pub(crate) fn contents<'a>(
        &'a self,
        view: &'a View,
        uid: u64,
    ) -> impl Iterator<Item = Result<(u64, fjall::Slice), EngineError>> + 'a {
        use fjall::Readable;
        view.snapshot.prefix(&view.handles.content, uid.to_be_bytes()).map(|kv| {
            let (k, v) = kv.into_inner().map_err(|e| storage_error("reading stored content", e))?;
            let id = key_tail(&k, "content")?;
            Ok((id, v))
        })
    }

    /// Stores content of space `uid` (id → text), in journal writes of at most 4 MiB; synced
    /// by the next group commit or [`Store::sync`].
    ///
    /// # Errors
    /// [`EngineError::Storage`].
    pub(crate) fn put_contents(
        &self,
        uid: u64,
        items: impl IntoIterator<Item = (u64, Vec<u8>)>,
    ) -> Result<usize, EngineError> {
        let h = self.core.writable()?;
        let mut write = h.db.batch();
        let (mut bytes, mut n) = (0usize, 0usize);
        let commit = |write: fjall::OwnedWriteBatch| self.core.write("storing content", || write.commit());
        for (id, text) in items {
            bytes += text.len() + 16;
            n += 1;
            write.insert(&h.content, log_key(uid, id), text);
            if bytes >= 4 << 20 {
                self.guard(commit(std::mem::replace(&mut write, h.db.batch())))?;
                bytes = 0;
            }
        }
        self.guard(commit(write))?;
        Ok(n)
    }

    /// Syncs everything written so far (fsync of the journal, whatever the durability mode).
    ///
    /// # Errors
    /// [`EngineError::Storage`].
    pub(crate) fn sync(&self) -> Result<(), EngineError> {
        self.guard(self.core.persist(PersistMode::SyncAll))
    }

    /// Where snapshot files live: `snapshots/` in the data directory, one directory per space
    /// name (they outlive the space: a backup of a dropped space stays until it is deleted).
    pub(crate) fn snapshots_root(&self) -> PathBuf {
        self.dir.join("snapshots")
    }

    /// Removes a space's definition durably (synced whatever the mode). Its log records are
    /// then removed by [`Store::purge_log`], or, after a crash, by the next [`Store::open`].
    ///
    /// # Errors
    /// [`EngineError::Storage`].
    pub(crate) fn forget_space(&self, name: &str) -> Result<(), EngineError> {
        let h = self.core.writable()?;
        self.guard(self.core.write("removing the space", || h.spaces.remove(name.as_bytes())))?;
        self.sync()
    }

    /// Where checkpoints live: `checkpoints/` in the data directory.
    pub(crate) fn checkpoints_root(&self) -> PathBuf {
        self.dir.join("checkpoints")
    }

    /// The checkpoint directory of space `uid`, created if missing.
    ///
    /// # Errors
    /// [`EngineError::Storage`] when it cannot be created.
    pub(crate) fn checkpoint_dir(&self, uid: u64) -> Result<PathBuf, EngineError> {
        let dir = checkpoint::space_dir(&self.checkpoints_root(), uid);
        std::fs::create_dir_all(&dir).map_err(|e| checkpoint::io("creating", &dir, e))?;
        Ok(dir)
    }

    /// Removes the log records of space `uid` up to and including `through` (covered by its
    /// oldest live checkpoint). Not synced: records left by a crash are skipped at replay,
    /// which starts past the checkpoint.
    ///
    /// # Errors
    /// [`EngineError::Storage`].
    pub(crate) fn compact_log(&self, uid: u64, through: Seq) -> Result<usize, EngineError> {
        let mut removed = 0usize;
        let h = self.core.writable()?;
        let mut write = h.db.batch();
        for kv in h.log.range(log_key(uid, 0)..=log_key(uid, through)) {
            let key = kv.key().map_err(|e| storage_error("reading the log", e))?;
            write.remove(&h.log, key.to_vec());
            removed += 1;
        }
        if removed > 0 {
            self.guard(self.core.write("compacting the log", || write.commit()))?;
        }
        Ok(removed)
    }

    /// Removes the log records and checkpoints of space `uid` (dropped: see
    /// [`Store::forget_space`]).
    ///
    /// # Errors
    /// [`EngineError::Storage`].
    pub(crate) fn purge_log(&self, uid: u64) -> Result<usize, EngineError> {
        let _ = std::fs::remove_dir_all(checkpoint::space_dir(&self.checkpoints_root(), uid));
        let mut removed = 0usize;
        let h = self.core.writable()?;
        for ks in [&h.log, &h.content] {
            for kv in ks.prefix(uid.to_be_bytes()) {
                let key = kv.key().map_err(|e| storage_error("reading the log", e))?;
                self.guard(ks.remove(key.to_vec()).map_err(|e| storage_error("removing a dropped space's record", e)))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The stored content of observation `id` of space `uid`, if it has any (in a space that
    /// keeps its full vectors, use [`Store::kept`]).
    ///
    /// # Errors
    /// [`EngineError::Storage`] when the store cannot be read.
    pub(crate) fn content(&self, uid: u64, id: u64) -> Result<Option<String>, EngineError> {
        let Some(v) = self.content_value(uid, id)? else {
            return Ok(None);
        };
        String::from_utf8(v.to_vec()).map(Some).map_err(|_| EngineError::Storage {
            kind: StorageErrorKind::Io,
            message: format!("the stored content of observation {id} is not UTF-8"),
        })
    }

    /// The full vector (into `vector`, `dim` values) and the content of observation `id` of
    /// space `uid`, whose index holds reduced vectors; `Ok(None)` when the store holds
    /// neither (the id is not live).
    ///
    /// # Errors
    /// [`EngineError::Storage`] when the store cannot be read or the value does not decode.
    pub(crate) fn kept(
        &self,
        uid: u64,
        id: u64,
        dim: usize,
        vector: &mut Vec<f32>,
    ) -> Result<Option<Option<String>>, EngineError> {
        let Some(v) = self.content_value(uid, id)? else {
            return Ok(None);
        };
        let content = codec::decode_kept(dim, &v, vector).map_err(|reason| EngineError::Storage {
            kind: StorageErrorKind::Io,
            message: format!("the stored vector of observation {id}: {reason}"),
        })?;
        Ok(Some(content.map(str::to_owned)))
    }

    /// The content of observation `id` of space `uid`, whose index holds reduced vectors (the
    /// vector beside it is not decoded); `Ok(None)` when the id is not live or has no content.
    ///
    /// # Errors
    /// [`EngineError::Storage`] when the store cannot be read or the value does not decode.
    pub(crate) fn kept_content(&self, uid: u64, id: u64, dim: usize) -> Result<Option<String>, EngineError> {
        let Some(v) = self.content_value(uid, id)? else {
            return Ok(None);
        };
        let content = codec::kept_content(dim, &v).map_err(|reason| EngineError::Storage {
            kind: StorageErrorKind::Io,
            message: format!("the stored value of observation {id}: {reason}"),
        })?;
        Ok(content.map(str::to_owned))
    }

    fn content_value(&self, uid: u64, id: u64) -> Result<Option<Slice>, EngineError> {
        self.core.handles()?.content.get(log_key(uid, id)).map_err(|e| storage_error("reading stored content", e))
    }

    /// Appends `op` (insert records of `dim` values, or a delete) to the log of space `uid`,
    /// with its content changes in the same journal write (an insert's content stored, an
    /// upsert without content or a delete removing what was stored; with `keep_vectors`, for a
    /// space whose index holds reduced vectors, each inserted id's full vector and content, see
    /// `codec::encode_kept`), and returns its sequence number and a waiter that resolves once
    /// the write is durable per the mode. `on_seq` runs with the sequence number under the
    /// append lock once the write succeeded, so state the caller updates there changes in log
    /// order.
    ///
    /// # Errors
    /// [`EngineError::Storage`] when the write fails (nothing of it is acknowledged and
    /// `on_seq` is not called).
    pub(crate) fn append(
        &self,
        uid: u64,
        dim: usize,
        op: &Operation,
        keep_vectors: bool,
        on_seq: impl FnOnce(Seq),
    ) -> Result<(Seq, DurableWaiter), EngineError> {
        let mut value = Vec::new();
        codec::encode(op, dim, false, &mut value);
        let mut bytes = value.len();
        // The content changes that go with the record (an insert's content stored, an upsert
        // without content or a delete removing what was stored), as shared slices: the journal
        // write and the copy kept until the sync (`Write`) hold the same bytes.
        let (records, content) = match op {
            Operation::Insert(b) if keep_vectors => {
                let content = b
                    .records
                    .iter()
                    .map(|r| {
                        let kept = codec::encode_kept(&r.vector, r.content.as_deref());
                        bytes += kept.len();
                        (r.id, Some(Slice::from(kept)))
                    })
                    .collect();
                (b.records.len(), content)
            }
            Operation::Insert(b) => {
                let content = b
                    .records
                    .iter()
                    .filter_map(|r| match &r.content {
                        Some(text) => {
                            bytes += text.len();
                            Some((r.id, Some(Slice::from(text.as_bytes()))))
                        }
                        // A plain insert's id held no content (a delete removed it); an upsert
                        // replaces whatever the id had.
                        None => b.upsert.then_some((r.id, None)),
                    })
                    .collect();
                (b.records.len(), content)
            }
            Operation::Delete(b) => (b.ids.len(), b.ids.iter().map(|&id| (id, None)).collect()),
        };
        let mut c = self.core.append.lock();
        let h = self.core.writable()?;
        let write = Write { uid, seq: c.next_seq, value: Slice::from(value), content };
        // One journal write: the log record and the operation's content changes, atomically.
        if let Err(e) = self.guard(self.core.commit(&h, &write)) {
            drop(c);
            return Err(e);
        }
        let seq = c.next_seq;
        c.next_seq += 1;
        on_seq(seq);
        let waiter = self.commit.written(records, write);
        drop(c);
        self.events.appended(records, bytes);
        Ok((seq, waiter))
    }

    /// The fault injector (tests).
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    pub(crate) fn faults(&self) -> &faults::Faults {
        &self.core.faults
    }

    /// Counts a storage error by kind.
    pub(crate) fn count_error(&self, e: &EngineError) {
        count_error(&self.events, e);
    }

    /// A waiter that resolves once everything appended so far is durable (for observations
    /// acknowledged as duplicates of earlier ones).
    pub(crate) fn barrier(&self) -> DurableWaiter {
        self.commit.barrier()
    }

    /// Every record of space `uid` from sequence number `from` on, in sequence order, decoded
    /// for a space `name` of dimension `dim`. A record that does not decode ends the iteration
    /// with its error.
    pub(crate) fn replay<'a>(
        &'a self,
        name: &'a str,
        uid: u64,
        dim: usize,
        from: Seq,
    ) -> impl Iterator<Item = Result<(Seq, Operation), EngineError>> + 'a {
        let h = self.core.handles();
        let range = h.as_ref().ok().map(|h| h.log.range(log_key(uid, from)..=log_key(uid, Seq::MAX)));
        let failed = h.err().map(Err).into_iter();
        failed.chain(range.into_iter().flatten().map(move |kv| {
            let (k, v) = kv.into_inner().map_err(|e| storage_error("reading the log", e))?;
            let seq = key_tail(&k, "log")?;
            let mut op = codec::decode(name, dim, &v).map_err(|reason| EngineError::Storage {
                kind: StorageErrorKind::Io,
                message: format!("log record {seq} of space `{name}`: {reason}"),
            })?;
            match &mut op {
                Operation::Insert(b) => b.seq = Some(seq),
                Operation::Delete(b) => b.seq = Some(seq),
            }
            Ok((seq, op))
        }))
    }

    /// Bytes the data directory takes on disk: blocks allocated, so fjall's sparse journal
    /// preallocation (64 MiB apparent size) counts only as far as it is written.
    pub(crate) fn disk_bytes(&self) -> u64 {
        allocated_bytes(&self.dir)
    }

    /// Bytes of the data directory's filesystem available to this process (`statvfs`:
    /// `f_bavail × f_frsize`, what `df` shows as available and node_exporter exports as
    /// `node_filesystem_avail_bytes`), or `None` when it cannot be read.
    pub(crate) fn free_bytes(&self) -> Option<u64> {
        let s = rustix::fs::statvfs(&self.dir).ok()?;
        Some(s.f_bavail.saturating_mul(s.f_frsize))
    }

    /// Syncs once more and stops the syncer: every waiter is resolved. Idempotent.
    pub(crate) fn close(&self) {
        self.commit.stop();
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

/// Removes what a crash during a snapshot or an upload left in `root` (the snapshots
/// directory): uploads (`.upload-*.tmp`) and partial files (`.*.tmp`) in each space's directory.
/// Whole snapshots stay.
fn remove_snapshot_leftovers(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    let temporary = |name: &str| name.starts_with('.') && name.ends_with(".tmp");
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if temporary(&name) {
            tracing::info!(file = %entry.path().display(), "removing an unfinished snapshot upload");
            let _ = std::fs::remove_file(entry.path());
        } else if entry.file_type().is_ok_and(|t| t.is_dir())
            && let Ok(inner) = std::fs::read_dir(entry.path())
        {
            for f in inner.flatten() {
                if temporary(&f.file_name().to_string_lossy()) {
                    tracing::info!(file = %f.path().display(), "removing an unfinished snapshot");
                    let _ = std::fs::remove_file(f.path());
                }
            }
        }
    }
}

/// Blocks allocated under `dir`, in bytes (`st_blocks × 512`, as `du` counts); unreadable
/// entries count 0.
fn allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => allocated_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// Checks (or, in a new directory, writes) the `FORMAT` file.
fn check_format(dir: &Path) -> Result<(), EngineError> {
    let path = dir.join("FORMAT");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found = text.trim();
            if found != FORMAT_VERSION.to_string() {
                return Err(at_start(
                    &path,
                    format!(
                        "the data directory has format version `{found}`; this build reads version {FORMAT_VERSION} \
                         (start an older build, or point storage.data_dir elsewhere)"
                    ),
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let non_empty = std::fs::read_dir(dir)
                .map_err(|e| at_start(dir, format!("cannot list: {e}")))?
                .filter_map(Result::ok)
                .any(|e| e.file_name() != "LOCK");
            if non_empty {
                return Err(at_start(
                    dir,
                    "holds files but no FORMAT file: not an engram-stream data directory (refusing to write into it)",
                ));
            }
            let mut f = File::create(&path).map_err(|e| at_start(&path, format!("cannot write: {e}")))?;
            writeln!(f, "{FORMAT_VERSION}")
                .and_then(|()| f.sync_all())
                .map_err(|e| at_start(&path, format!("cannot write: {e}")))?;
            Ok(())
        }
        Err(e) => Err(at_start(&path, format!("cannot read: {e}"))),
    }
}
