//! Snapshots of a memory space: [`UpdateHandler::create_snapshot`] writes one file of the
//! space as of a log position without stopping ingest; [`UpdateHandler::restore_snapshot`]
//! creates a space from one, on this server or another. The file format is in
//! `storage::snapshot`.
//!
//! **Create.** Under the checkpointer's lock (no log compaction meanwhile): `C`, the position
//! through which every operation on the space is applied; the index saved (usearch `save`,
//! under its write lock, with the ids' states read under the same lock, exactly as a
//! checkpoint); then a view of the store at the newest position `Q`, through which the log
//! records after `C` and every id's content are read. The index may hold operations past `C`:
//! replaying `C + 1 ..= Q` over it sets every id to its latest operation, as recovery does.
//! Both backends save their graph (usearch `save_to_buffer`, hnsw_rs its dump).
//!
//! **Restore.** The file is verified (its hash) before anything is written. Under a uid no
//! space has had: the index is written as a checkpoint at a fresh position `S` with the
//! states moved to `S`, the records appended to the log after `S`, the content stored, all
//! synced; then the space definition is recorded, the commit point: a crash before it leaves
//! records of an undefined uid, which the next start removes, and a crash after it leaves a
//! space the next start recovers as any other. Then the space is opened and replayed, as at
//! start, and the call returns once it is searchable.

use super::UpdateHandler;
use super::recovery::{Recovery, Replay};
use crate::error::EngineError;
use crate::space::{SpaceInfo, SpaceParams, validate_space_name};
use crate::storage::checkpoint::{self, SavedState};
use crate::storage::snapshot::{self, Header, Reader, SNAPSHOT_FORMAT, Writer};
use crate::storage::{Store, codec};
use crate::sync::Ordering;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One snapshot file of a memory space, as listed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The file's name: `{space}-{position}-{created_unix_ms}.snapshot`.
    pub name: String,
    /// The space it was taken of.
    pub memory_space: String,
    /// The log position the snapshot is the space as of.
    pub position: u64,
    /// Unix time it was taken, milliseconds.
    pub created_unix_ms: u64,
    /// The file's length, bytes.
    pub size_bytes: u64,
    /// The xxh3-64 hash of the file's contents it records (hex; the file's last 8 bytes).
    pub checksum_xxh3: String,
}

/// Where a restore reads its snapshot from.
#[derive(Debug, Clone)]
pub enum SnapshotSource {
    /// A snapshot this server holds: `name` among those of space `space`.
    Named {
        /// The space the snapshot was taken of (its directory).
        space: String,
        /// The snapshot's file name.
        name: String,
    },
    /// A snapshot file anywhere (an upload); it is not removed.
    File(PathBuf),
}

fn invalid(reason: impl Into<String>) -> EngineError {
    EngineError::invalid("snapshot", reason)
}

impl UpdateHandler {
    fn snapshot_store(&self) -> Result<&Arc<Store>, EngineError> {
        self.store.as_ref().ok_or(EngineError::SnapshotsUnavailable)
    }

    /// The directory of the snapshots of space `space` (a valid space name).
    fn snapshot_dir(&self, space: &str) -> Result<PathBuf, EngineError> {
        validate_space_name(space)?;
        Ok(self.snapshot_store()?.snapshots_root().join(space))
    }

    /// See [`Engine::create_snapshot`](crate::Engine::create_snapshot).
    pub(crate) fn create_snapshot(&self, name: &str) -> Result<SnapshotInfo, EngineError> {
        let result = self.write_snapshot(name);
        if let Some(store) = &self.store {
            store.events.snapshot(false, result.is_ok());
        }
        result
    }

    fn write_snapshot(&self, name: &str) -> Result<SnapshotInfo, EngineError> {
        self.serving()?;
        let store = self.snapshot_store()?;
        let checkpointer = self.checkpointer.as_ref().ok_or(EngineError::SnapshotsUnavailable)?;
        let space = self.registry.get(name)?;
        let dir = self.snapshot_dir(name)?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| crate::storage::storage_error("creating the snapshot directory", e))?;
        let started = Instant::now();
        let _exclusive = checkpointer.exclusive();
        let applied = space.applied_through();
        let index_tmp = dir.join(".index.tmp");
        let mut states = Vec::new();
        let saved = space
            .index
            .save(&index_tmp, &mut || states = super::checkpoint::saved_states(&space))
            .map_err(|e| invalid(format!("saving the index of `{name}`: {e}")))?;
        let from = if saved {
            applied
        } else {
            states.clear();
            0
        };
        let (position, view) = store.view()?;
        let created_unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let file_name = format!("{name}-{position}-{created_unix_ms}.snapshot");
        let tmp = dir.join(format!(".{file_name}.tmp"));
        let header = Header {
            format: SNAPSHOT_FORMAT,
            space: name.to_owned(),
            params: serde_json::to_value(space.params).expect("space parameters serialise"),
            position,
            checkpoint: from,
            created_unix_ms,
            engine_version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let written = (|| {
            let mut w = Writer::create(&tmp, &header)?;
            if saved {
                w.section_from_file(&index_tmp)?;
            } else {
                w.section(&[])?;
            }
            w.section(&checkpoint::encode_states(&states))?;
            let mut records = 0u64;
            for r in store.log_records(&view, space.uid, from + 1, position) {
                let (seq, value) = r?;
                w.item(seq, &value)?;
                records += 1;
            }
            w.end_items()?;
            for c in store.contents(&view, space.uid) {
                let (id, text) = c?;
                w.item(id, &text)?;
            }
            w.end_items()?;
            let (bytes, hash) = w.finish()?;
            Ok::<_, EngineError>((bytes, hash, records))
        })();
        drop(view);
        let _ = std::fs::remove_file(&index_tmp);
        let (size_bytes, hash, records) = match written {
            Ok(w) => w,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                store.count_error(&e);
                return Err(e);
            }
        };
        let path = dir.join(&file_name);
        std::fs::rename(&tmp, &path).map_err(|e| crate::storage::storage_error("naming the snapshot", e))?;
        let _ = std::fs::File::open(&dir).and_then(|d| d.sync_all());
        tracing::info!(
            memory_space = name,
            snapshot = %file_name,
            position,
            checkpoint = from,
            log_records = records,
            bytes = size_bytes,
            seconds = started.elapsed().as_secs_f64(),
            "snapshot written"
        );
        Ok(SnapshotInfo {
            name: file_name,
            memory_space: name.to_owned(),
            position,
            created_unix_ms,
            size_bytes,
            checksum_xxh3: format!("{hash:016x}"),
        })
    }

    /// See [`Engine::list_snapshots`](crate::Engine::list_snapshots).
    pub(crate) fn list_snapshots(&self, space: &str) -> Result<Vec<SnapshotInfo>, EngineError> {
        let dir = self.snapshot_dir(space)?;
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(Vec::new()) };
        let mut out: Vec<SnapshotInfo> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_owned();
                if !snapshot::valid_name(&name) {
                    return None;
                }
                let path = e.path();
                let header = snapshot::header(&path).ok()?;
                Some(SnapshotInfo {
                    size_bytes: e.metadata().ok()?.len(),
                    checksum_xxh3: format!("{:016x}", snapshot::recorded_hash(&path)?),
                    name,
                    memory_space: header.space,
                    position: header.position,
                    created_unix_ms: header.created_unix_ms,
                })
            })
            .collect();
        out.sort_by(|a, b| (a.created_unix_ms, &a.name).cmp(&(b.created_unix_ms, &b.name)));
        Ok(out)
    }

    /// See [`Engine::snapshot_path`](crate::Engine::snapshot_path).
    pub(crate) fn snapshot_path(&self, space: &str, name: &str) -> Result<PathBuf, EngineError> {
        if !snapshot::valid_name(name) {
            return Err(EngineError::invalid(
                "snapshot",
                format!("`{name}` is not a snapshot name ([A-Za-z0-9._-], ending in .snapshot)"),
            ));
        }
        let path = self.snapshot_dir(space)?.join(name);
        if !path.is_file() {
            return Err(EngineError::SnapshotNotFound(name.to_owned()));
        }
        Ok(path)
    }

    /// See [`Engine::delete_snapshot`](crate::Engine::delete_snapshot).
    pub(crate) fn delete_snapshot(&self, space: &str, name: &str) -> Result<(), EngineError> {
        let path = self.snapshot_path(space, name)?;
        std::fs::remove_file(&path).map_err(|e| crate::storage::storage_error("removing the snapshot", e))?;
        tracing::info!(memory_space = space, snapshot = name, "snapshot removed");
        Ok(())
    }

    /// A path in the data directory for an uploaded snapshot to be written to, unique to this
    /// call (the caller removes it).
    pub(crate) fn snapshot_upload_path(&self) -> Result<PathBuf, EngineError> {
        let root = self.snapshot_store()?.snapshots_root();
        std::fs::create_dir_all(&root)
            .map_err(|e| crate::storage::storage_error("creating the snapshot directory", e))?;
        static UPLOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = UPLOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(root.join(format!(".upload-{}-{n}.tmp", std::process::id())))
    }

    /// See [`Engine::restore_snapshot`](crate::Engine::restore_snapshot).
    pub(crate) fn restore_snapshot(&self, name: &str, source: &SnapshotSource) -> Result<SpaceInfo, EngineError> {
        let result = self.restore(name, source);
        if let Some(store) = &self.store {
            store.events.snapshot(true, result.is_ok());
        }
        result
    }

    fn restore(&self, name: &str, source: &SnapshotSource) -> Result<SpaceInfo, EngineError> {
        self.serving()?;
        validate_space_name(name)?;
        let store = Arc::clone(self.snapshot_store()?);
        let path = match source {
            SnapshotSource::Named { space, name } => self.snapshot_path(space, name)?,
            SnapshotSource::File(path) => path.clone(),
        };
        let len = std::fs::metadata(&path).map_err(|e| invalid(format!("reading {}: {e}", path.display())))?.len();
        if len > self.max_snapshot_bytes {
            return Err(invalid(format!(
                "is {len} bytes, more than storage.max_snapshot_bytes ({})",
                self.max_snapshot_bytes
            )));
        }
        snapshot::verify(&path).map_err(invalid)?;
        let (mut reader, header) = Reader::open(&path).map_err(invalid)?;
        let params = SpaceParams::from_stored(header.params.clone())
            .map_err(|e| invalid(format!("its space parameters do not parse: {e}")))?;
        params.validate(&self.config)?;
        self.check_name_free(name)?;
        let started = Instant::now();
        let uid = store.reserve_uid();
        let written = self.write_restored(&store, uid, &params, &header, &mut reader);
        if let Err(e) = written {
            let _ = store.purge_log(uid);
            return Err(e);
        }
        // The commit point: the definition, under the registry's lock with the name checked
        // again; then the space is opened as a start opens it.
        let replay = Replay::new(&self.config, &self.telemetry, &self.registry, &self.scheduler, &store);
        let recovery = Recovery::new();
        let opened = self.registry.update(|spaces| {
            if spaces.contains_key(name) {
                return Err(EngineError::SpaceExists(name.to_owned()));
            }
            if spaces.len() >= self.config.max_spaces {
                return Err(EngineError::SpaceLimit { limit: self.config.max_spaces });
            }
            store.define_space(name, uid, serde_json::to_value(params).expect("space parameters serialise"))?;
            let (space, from) = recovery.open_space(&replay, name, uid, params)?;
            spaces.insert(name.to_owned(), Arc::clone(&space));
            Ok((space, from))
        });
        let (space, from) = match opened {
            Ok(o) => o,
            Err(e) => {
                if store.spaces()?.iter().all(|(_, s)| s.uid != uid) {
                    let _ = store.purge_log(uid);
                }
                return Err(e);
            }
        };
        if !recovery.replay_space(&replay, &space, from) {
            return Err(EngineError::ShuttingDown);
        }
        while space.pending.load(Ordering::Acquire) > 0 {
            if self.scheduler.lifecycle.closing.load(Ordering::Acquire) {
                return Err(EngineError::ShuttingDown);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let info = space.info();
        tracing::info!(
            memory_space = name,
            from_space = %header.space,
            position = header.position,
            vectors = info.vectors,
            seconds = started.elapsed().as_secs_f64(),
            "memory space restored from a snapshot"
        );
        Ok(info)
    }

    fn check_name_free(&self, name: &str) -> Result<(), EngineError> {
        match self.registry.get(name) {
            Ok(_) => Err(EngineError::SpaceExists(name.to_owned())),
            Err(_) => Ok(()),
        }
    }

    /// Writes the restored space's checkpoint, log records and content under `uid`, synced.
    fn write_restored(
        &self,
        store: &Store,
        uid: u64,
        params: &SpaceParams,
        header: &Header,
        reader: &mut Reader,
    ) -> Result<(), EngineError> {
        let dir = store.checkpoint_dir(uid)?;
        let index_tmp = dir.join("index.tmp");
        let index_len = reader.section_to_file(&index_tmp).map_err(invalid)?;
        let states = checkpoint::decode_states(&reader.bytes(u64::MAX).map_err(invalid)?)
            .map_err(|e| invalid(format!("its states: {e}")))?;
        if index_len > 0 {
            // Load it once here, so a file the backend does not read is refused now.
            crate::index::load(&params.index_params(1), &index_tmp)
                .map_err(|e| invalid(format!("its index does not load: {e}")))?;
            let at = store.reserve_seq();
            let moved: Vec<SavedState> = states.into_iter().map(|s| SavedState { seq: at, ..s }).collect();
            checkpoint::commit(&dir, at, &index_tmp, &moved)?;
        } else {
            let _ = std::fs::remove_file(&index_tmp);
            if !states.is_empty() {
                return Err(invalid("holds states but no index"));
            }
        }
        // The log after the checkpoint, decoded (so a record this space cannot hold is refused)
        // and appended in order; then the content as of the snapshot's position (after the
        // records, whose upserts without content clear it).
        let dim = params.dim;
        // A space with reduced index vectors keeps each id's full vector with its content.
        let keep = params.quantization().is_reduced();
        let record_limit = (self.config.max_batch_observations * (dim * 4 + 64) + 64) as u64;
        let mut last = None;
        let mut previous = header.checkpoint;
        while let Some((seq, value)) = reader.item(record_limit).map_err(invalid)? {
            if seq <= previous || seq > header.position {
                return Err(invalid(format!("log record {seq} is out of order")));
            }
            previous = seq;
            let op =
                codec::decode(&header.space, dim, &value).map_err(|e| invalid(format!("log record {seq}: {e}")))?;
            last = Some(store.append(uid, dim, &op, keep, |_| {})?.1);
        }
        let content_limit = (self.config.max_content_bytes + if keep { 1 + dim * 4 } else { 0 }) as u64;
        let mut contents = Vec::new();
        let mut failed = None;
        let mut items = std::iter::from_fn(|| match reader.item(content_limit) {
            Ok(item) => item,
            Err(e) => {
                failed = Some(e);
                None
            }
        })
        .fuse();
        // In chunks, so the content is never all in memory at once.
        loop {
            contents.clear();
            contents.extend(items.by_ref().take(4096));
            if contents.is_empty() {
                break;
            }
            if keep {
                let mut vector = Vec::with_capacity(dim);
                for (id, value) in &contents {
                    codec::decode_kept(dim, value, &mut vector)
                        .map_err(|e| invalid(format!("the stored vector of observation {id}: {e}")))?;
                }
            }
            store.put_contents(uid, contents.drain(..))?;
        }
        if let Some(e) = failed {
            return Err(invalid(e));
        }
        if !reader.at_end() {
            return Err(invalid("holds bytes past its content"));
        }
        if let Some(waiter) = last {
            waiter.wait_blocking()?;
        }
        store.sync()
    }
}
