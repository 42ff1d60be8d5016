//! [`Engine`]: the facade clients call. Every method delegates: changes to the update path's
//! owner ([`crate::update`]), reads to the space registry and a space's index.

use crate::backpressure::BackpressureLevel;
use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::observation::Batch;
use crate::operation::AckLevel;
use crate::space::{RecallHit, RecallTimes, SpaceInfo, SpaceParams, StoredObservation};
use crate::storage::StorageConfig;
use crate::sync::Ordering;
use crate::update::{Admission, Deletion, RecoveryStatus, ShutdownReport, SnapshotInfo, SnapshotSource, UpdateHandler};
use engram_telemetry::Telemetry;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// A point-in-time view of the engine, for health endpoints.
#[derive(Debug, Clone, Serialize)]
pub struct EngineStatus {
    /// Global backpressure level (whole-queue utilization).
    pub level: BackpressureLevel,
    /// Observations queued (lanes and workers' local deques).
    pub queue_depth: usize,
    /// Observations queued per lane (high, normal, low), as exported by
    /// `engram_streaming_queue_depth`.
    pub lane_depth: [usize; 3],
    /// Queue capacity in observations.
    pub queue_capacity: usize,
    /// Bytes queued.
    pub queue_bytes: usize,
    /// Queue capacity in bytes.
    pub queue_capacity_bytes: usize,
    /// Queue utilization, 0 to 1 (the larger of the count and byte ratios).
    pub queue_utilization: f64,
    /// Observations taken from the queue per second (smoothed), as exported by
    /// `engram_streaming_queue_drain_rate_observations_per_second`.
    pub drain_rate_per_s: f64,
    /// 99th percentile of the queue wait over the monitor's last 1 s window, from the exported
    /// `engram_streaming_queue_wait_time_seconds` histograms (`None` if nothing was taken).
    pub queue_wait_p99_seconds: Option<f64>,
    /// 99th percentile of accepted → indexed latency over the last 1 s window, all spaces, from
    /// the exported `engram_streaming_observation_latency_seconds` histograms.
    pub observation_latency_p99_seconds: Option<f64>,
    /// Observations taken by workers and being inserted.
    pub in_flight: usize,
    /// Worker threads configured.
    pub workers: usize,
    /// Worker threads running.
    pub workers_alive: usize,
    /// Busy ratio of each worker over the last second, as exported by
    /// `engram_streaming_worker_utilization`.
    pub worker_utilization: Vec<f64>,
    /// True once shutdown has begun: nothing new is admitted.
    pub closing: bool,
    /// Replay of the durable log at start: until `recovering` is false the engine serves
    /// nothing but health and space listings.
    pub recovery: RecoveryStatus,
}

/// The ingest engine: memory spaces, the observation queue, the worker pool and backpressure.
///
/// Created with [`Engine::open`] (on a data directory, recovering what it holds) or
/// [`Engine::new`] (memory only), which start the worker and monitor threads. Admission
/// ([`Engine::submit`]) never blocks on insertion. [`Engine::shutdown`] stops admission and
/// drains; dropping the engine does the same without a time limit.
pub struct Engine {
    handler: UpdateHandler,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("workers", &self.handler.scheduler.workers).finish_non_exhaustive()
    }
}

impl Engine {
    /// Validates `config`, registers the engine's series in `telemetry` and starts the pool.
    ///
    /// # Errors
    /// [`EngineError::InvalidArgument`] naming a bad config field; the OS error of a thread
    /// that could not be spawned is reported the same way, on field `engine.workers`.
    pub fn new(config: EngineConfig, telemetry: Arc<Telemetry>) -> Result<Self, EngineError> {
        Self::open(config, &StorageConfig::memory(), telemetry)
    }

    /// As [`Engine::new`], over the store `storage` describes (none with `durability = none`):
    /// opens (or creates) the data directory and starts replaying its log in the background.
    /// Until that finishes ([`EngineStatus::recovery`]), changes and recalls return
    /// [`EngineError::Recovering`].
    ///
    /// # Errors
    /// As [`Engine::new`], and [`EngineError::InvalidArgument`] on `storage.data_dir` naming
    /// the path and the reason (cannot be created, locked by another process, a format this
    /// build does not read).
    pub fn open(config: EngineConfig, storage: &StorageConfig, telemetry: Arc<Telemetry>) -> Result<Self, EngineError> {
        config.validate()?;
        Ok(Self { handler: UpdateHandler::start(config, storage, telemetry)? })
    }

    /// True once recovery has finished and the engine serves.
    pub fn is_ready(&self) -> bool {
        !self.handler.recovery.is_active()
    }

    /// The store's fault injector (feature `fault-injection`, for tests): journal writes or
    /// syncs made to fail with ENOSPC or EIO until cleared. `None` without a store.
    #[cfg(feature = "fault-injection")]
    pub fn storage_faults(&self) -> Option<&crate::StorageFaults> {
        self.handler.store.as_deref().map(|s| s.faults())
    }

    /// The telemetry registry the engine records into.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.handler.telemetry
    }

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.handler.config
    }

    /// Creates a memory space. Creating one that exists with the same parameters is a no-op
    /// (returns `created == false`), so clients can retry.
    ///
    /// # Errors
    /// [`EngineError::InvalidArgument`] for a bad name or parameter (including a `max_elements`
    /// over `engine.max_space_elements` or the memory budget), [`EngineError::SpaceExists`]
    /// when the name is taken with different parameters, [`EngineError::SpaceLimit`] when
    /// `engine.max_spaces` spaces exist.
    pub fn create_space(&self, name: &str, params: SpaceParams) -> Result<(SpaceInfo, bool), EngineError> {
        self.handler.create_space(name, params)
    }

    /// Drops a memory space and its data. Observations of it still queued are discarded by the
    /// workers (counted as `space_dropped` batch failures; their indexed acks report them failed).
    ///
    /// # Errors
    /// [`EngineError::SpaceNotFound`].
    pub fn drop_space(&self, name: &str) -> Result<(), EngineError> {
        self.handler.drop_space(name)
    }

    /// Describes one memory space.
    ///
    /// # Errors
    /// [`EngineError::SpaceNotFound`].
    pub fn describe_space(&self, name: &str) -> Result<SpaceInfo, EngineError> {
        Ok(self.handler.registry.get(name)?.info())
    }

    /// The backpressure level of a memory space, or `None` when it does not exist. Cheaper than
    /// [`Engine::describe_space`] (no size estimate), for per-batch checks.
    pub fn space_level(&self, name: &str) -> Option<BackpressureLevel> {
        let space = self.handler.registry.get(name).ok()?;
        Some(BackpressureLevel::from_u8(space.effective.load(Ordering::Acquire)))
    }

    /// Describes every memory space, sorted by name.
    pub fn list_spaces(&self) -> Vec<SpaceInfo> {
        let mut all: Vec<SpaceInfo> = self.handler.registry.snapshot().iter().map(|s| s.info()).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Admits a batch into `space`, all or nothing.
    ///
    /// The batch is validated whole first (any bad observation refuses the batch, naming it).
    /// Ids already accepted are acknowledged as duplicates and not queued again, unless the
    /// batch is an upsert ([`Batch::upsert`]): then their vector and content are replaced. The rest is
    /// admitted if the space's backpressure level admits the batch's priority and the queue has
    /// room for all of it; otherwise nothing is admitted and the error carries a retry-after.
    /// With [`AckLevel::Indexed`], [`Admission::indexed`] resolves when every admitted
    /// observation is searchable.
    ///
    /// # Errors
    /// [`EngineError::SpaceNotFound`], [`EngineError::InvalidArgument`] (field path such as
    /// `observations[3].embedding`), [`EngineError::Rejected`], [`EngineError::ShuttingDown`].
    pub fn submit(&self, space: &str, batch: Batch, ack: AckLevel) -> Result<Admission, EngineError> {
        self.handler.submit(space, batch, ack)
    }

    /// Deletes `ids` from `space`. Ids the space holds are recorded as deleted (in one log
    /// record with a store) and from the moment this returns neither recall nor
    /// [`Engine::get_observation`] returns them; they leave the index as the workers reach
    /// them. Ids it does not hold are counted in [`Deletion::not_found`]. Operations on one id
    /// apply in the order they were admitted, across restarts: an id deleted after an insert
    /// stays deleted. Deletes are admitted at every backpressure level while the queue has
    /// room. With [`AckLevel::Durable`] wait for [`Deletion::durable`]; with
    /// [`AckLevel::Indexed`] also for [`Deletion::indexed`] (every id out of the index).
    ///
    /// # Errors
    /// [`EngineError::SpaceNotFound`]; [`EngineError::InvalidArgument`] on `ids` (empty, more
    /// than `max_batch_observations`) or `ids[i]` (repeated, `u64::MAX`);
    /// [`EngineError::Rejected`] when the queue has no room; [`EngineError::Storage`],
    /// [`EngineError::Recovering`], [`EngineError::ShuttingDown`].
    pub fn delete(&self, space: &str, ids: Vec<u64>, ack: AckLevel) -> Result<Deletion, EngineError> {
        self.handler.delete(space, ids, ack)
    }

    /// The `k` observations most similar to `embedding` in `space`, best first, searching with
    /// `ef_search` (default: the space's) candidates.
    ///
    /// # Errors
    /// [`EngineError::SpaceNotFound`]; [`EngineError::InvalidArgument`] on `embedding` (length,
    /// finiteness), `k` (1 to 1000) or `ef_search` (1 to 4096).
    pub fn recall(
        &self,
        space: &str,
        embedding: Vec<f32>,
        k: usize,
        ef_search: Option<usize>,
    ) -> Result<Vec<RecallHit>, EngineError> {
        self.recall_timed(space, embedding, k, ef_search, true).map(|(hits, _)| hits)
    }

    /// [`Engine::recall`], with when each of its stages ended (for a trace's spans). Without
    /// `with_content` no hit's content is read from the store (every `content` is `None`, as
    /// Qdrant's `with_payload: false`): the answer is ids and scores, and the fetch stage ends
    /// as soon as it starts.
    ///
    /// # Errors
    /// As [`Engine::recall`].
    pub fn recall_timed(
        &self,
        space: &str,
        embedding: Vec<f32>,
        k: usize,
        ef_search: Option<usize>,
        with_content: bool,
    ) -> Result<(Vec<RecallHit>, RecallTimes), EngineError> {
        self.handler.serving()?;
        self.handler.registry.get(space)?.recall(embedding, k, ef_search, with_content)
    }

    /// Observation `id` of `space` (its content), or `None` when the space does not hold it
    /// (never accepted, or deleted).
    /// An accepted observation may still be queued: it is returned before it is searchable.
    ///
    /// # Errors
    /// [`EngineError::SpaceNotFound`], [`EngineError::Recovering`], [`EngineError::Storage`]
    /// when its content cannot be read from the store.
    pub fn get_observation(&self, space: &str, id: u64) -> Result<Option<StoredObservation>, EngineError> {
        self.handler.serving()?;
        self.handler.registry.get(space)?.get(id)
    }

    /// Writes a snapshot of `space`: one file (in the data directory's `snapshots/{space}/`)
    /// holding its parameters, index and content as of the newest log position, taken without
    /// stopping ingest (the index is saved under its lock, as a checkpoint is). Blocks for as
    /// long as the write takes. The file's format and what a restore does with it:
    /// docs/architecture.md, "Snapshots".
    ///
    /// # Errors
    /// [`EngineError::SpaceNotFound`], [`EngineError::SnapshotsUnavailable`] (no store),
    /// [`EngineError::Storage`] when it cannot be written (nothing is left behind),
    /// [`EngineError::Recovering`].
    pub fn create_snapshot(&self, space: &str) -> Result<SnapshotInfo, EngineError> {
        self.handler.create_snapshot(space)
    }

    /// The snapshots of `space` this server holds, oldest first (also those of a dropped space:
    /// they outlive it until deleted).
    ///
    /// # Errors
    /// [`EngineError::InvalidArgument`] on a space name that is not valid,
    /// [`EngineError::SnapshotsUnavailable`].
    pub fn list_snapshots(&self, space: &str) -> Result<Vec<SnapshotInfo>, EngineError> {
        self.handler.list_snapshots(space)
    }

    /// The file of snapshot `name` of `space`, for download.
    ///
    /// # Errors
    /// [`EngineError::InvalidArgument`] on a name that is not a snapshot name,
    /// [`EngineError::SnapshotNotFound`], [`EngineError::SnapshotsUnavailable`].
    pub fn snapshot_path(&self, space: &str, name: &str) -> Result<std::path::PathBuf, EngineError> {
        self.handler.snapshot_path(space, name)
    }

    /// Removes snapshot `name` of `space`.
    ///
    /// # Errors
    /// As [`Engine::snapshot_path`], and [`EngineError::Storage`] when it cannot be removed.
    pub fn delete_snapshot(&self, space: &str, name: &str) -> Result<(), EngineError> {
        self.handler.delete_snapshot(space, name)
    }

    /// A fresh path in the data directory to write an uploaded snapshot to before
    /// [`Engine::restore_snapshot`] reads it; the caller removes it afterwards.
    ///
    /// # Errors
    /// [`EngineError::SnapshotsUnavailable`], [`EngineError::Storage`].
    pub fn snapshot_upload_path(&self) -> Result<std::path::PathBuf, EngineError> {
        self.handler.snapshot_upload_path()
    }

    /// Creates space `space` from a snapshot (taken here or on another server) and returns
    /// once it is searchable: the same ids, vectors and content as the snapshot's space at the
    /// snapshot's position. For a usearch space the index is the saved one, so recall answers
    /// exactly as the original did at that position (hnsw_rs rebuilds its graph from the log).
    /// Durable before it returns; a crash midway leaves no space (the next start removes what
    /// was written).
    ///
    /// # Errors
    /// [`EngineError::InvalidArgument`] on `snapshot` when the file is not a whole snapshot
    /// this build reads (cut, altered, another format, parameters over this server's limits,
    /// larger than `storage.max_snapshot_bytes`); [`EngineError::SpaceExists`] when `space`
    /// exists; [`EngineError::SpaceLimit`], [`EngineError::SnapshotNotFound`],
    /// [`EngineError::SnapshotsUnavailable`], [`EngineError::Storage`],
    /// [`EngineError::Recovering`], [`EngineError::ShuttingDown`].
    pub fn restore_snapshot(&self, space: &str, source: &SnapshotSource) -> Result<SpaceInfo, EngineError> {
        self.handler.restore_snapshot(space, source)
    }

    /// A point-in-time status of the queue and pool.
    pub fn status(&self) -> EngineStatus {
        let s = &*self.handler.scheduler;
        let cap = s.queue.capacity();
        let (queue_wait_p99_seconds, observation_latency_p99_seconds) = *s.latency_window.lock();
        EngineStatus {
            level: self.handler.admitter.global_level(),
            queue_depth: cap.len(),
            lane_depth: s.queue.lane_lens(),
            queue_capacity: cap.max_count(),
            queue_bytes: cap.bytes(),
            queue_capacity_bytes: cap.max_bytes(),
            queue_utilization: cap.utilization(),
            drain_rate_per_s: s.drain_rate(),
            queue_wait_p99_seconds,
            observation_latency_p99_seconds,
            in_flight: s.queue.in_flight(),
            workers: s.workers,
            workers_alive: s.workers_alive.load(Ordering::Acquire),
            worker_utilization: s.worker_stats.iter().map(|w| w.utilization()).collect(),
            closing: s.lifecycle.is(&s.lifecycle.closing),
            recovery: self.handler.recovery.status(),
        }
    }

    /// Pauses the workers: admission continues (the queue fills, backpressure engages) but
    /// nothing is inserted until [`Engine::resume`]. For maintenance windows and overload drills.
    pub fn pause(&self) {
        self.handler.pause();
    }

    /// Resumes paused workers.
    pub fn resume(&self) {
        self.handler.resume();
    }

    /// True once shutdown has begun.
    pub fn is_closing(&self) -> bool {
        let life = &self.handler.scheduler.lifecycle;
        life.is(&life.closing)
    }

    /// Stops admission, waits until every accepted observation is inserted (or `timeout`
    /// passes), then stops the threads. Resumes paused workers so the queue can drain.
    /// Idempotent: later calls return at once.
    pub fn shutdown(&self, timeout: Option<Duration>) -> ShutdownReport {
        self.handler.shutdown(timeout)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown(None);
    }
}
