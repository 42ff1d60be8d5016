//! Durable-log events: appends, group-commit syncs, storage errors, recovery.

use crate::Telemetry;
use crate::catalog;
use crate::primitives::{Counter, Gauge, Histogram};
use crate::registry::Source;
use std::sync::Arc;
use std::time::Duration;

/// `kind` label values of `engram_storage_errors_total`.
pub const STORAGE_ERROR_KINDS: [&str; 2] = ["storage_full", "storage_error"];

/// `reason` label values of `engram_storage_checkpoint_failures_total`.
pub const CHECKPOINT_FAILURE_REASONS: [&str; 2] = ["write", "corrupt"];

/// `operation` label values of `engram_storage_snapshots_total`.
pub const SNAPSHOT_OPERATIONS: [&str; 2] = ["create", "restore"];

/// `outcome` label values of `engram_storage_snapshots_total`.
pub const SNAPSHOT_OUTCOMES: [&str; 2] = ["ok", "failed"];

/// `outcome` label values of `engram_index_compactions_total`.
pub const COMPACTION_OUTCOMES: [&str; 2] = ["compacted", "abandoned"];

/// Handles of the durable log (one per store).
#[derive(Debug, Clone)]
pub struct StorageEvents {
    appended_records: Arc<Counter>,
    appended_bytes: Arc<Counter>,
    syncs: Arc<Counter>,
    sync_duration: Arc<Histogram>,
    sync_records: Arc<Histogram>,
    errors: [Arc<Counter>; 2],
    recovery_duration: Arc<Gauge>,
    replayed: Arc<Counter>,
    corrupt: Arc<Counter>,
    checkpoints: Arc<Counter>,
    checkpoint_deferred: Arc<Counter>,
    checkpoint_failures: [Arc<Counter>; 2],
    checkpoint_duration: Arc<Histogram>,
    /// By operation, then outcome.
    snapshots: [[Arc<Counter>; 2]; 2],
    heals: Arc<Counter>,
    /// By outcome.
    compactions: [Arc<Counter>; 2],
    compaction_duration: Arc<Histogram>,
}

impl StorageEvents {
    /// Registers the log's series.
    pub fn register(t: &Telemetry) -> Self {
        Self {
            appended_records: t.counter(&catalog::STORAGE_APPENDED_RECORDS, &[]),
            appended_bytes: t.counter(&catalog::STORAGE_APPENDED_BYTES, &[]),
            syncs: t.counter(&catalog::STORAGE_SYNCS, &[]),
            sync_duration: t.histogram(&catalog::STORAGE_SYNC_DURATION, &[]),
            sync_records: t.histogram(&catalog::STORAGE_SYNC_RECORDS, &[]),
            errors: STORAGE_ERROR_KINDS.map(|k| t.counter(&catalog::STORAGE_ERRORS, &[k])),
            recovery_duration: t.gauge(&catalog::RECOVERY_DURATION, &[]),
            replayed: t.counter(&catalog::RECOVERY_REPLAYED, &[]),
            corrupt: t.counter(&catalog::RECOVERY_CORRUPT, &[]),
            checkpoints: t.counter(&catalog::STORAGE_CHECKPOINTS, &[]),
            checkpoint_deferred: t.counter(&catalog::STORAGE_CHECKPOINT_DEFERRED, &[]),
            checkpoint_failures: CHECKPOINT_FAILURE_REASONS
                .map(|r| t.counter(&catalog::STORAGE_CHECKPOINT_FAILURES, &[r])),
            checkpoint_duration: t.histogram(&catalog::STORAGE_CHECKPOINT_DURATION, &[]),
            snapshots: SNAPSHOT_OPERATIONS
                .map(|op| SNAPSHOT_OUTCOMES.map(|outcome| t.counter(&catalog::STORAGE_SNAPSHOTS, &[op, outcome]))),
            heals: t.counter(&catalog::STORAGE_HEALS, &[]),
            compactions: COMPACTION_OUTCOMES.map(|o| t.counter(&catalog::INDEX_COMPACTIONS, &[o])),
            compaction_duration: t.histogram(&catalog::INDEX_COMPACTION_DURATION, &[]),
        }
    }

    /// A checkpoint was written in `took`.
    pub fn checkpointed(&self, took: Duration) {
        if super::RECORDING {
            self.checkpoints.add(1);
            self.checkpoint_duration.record(took.as_secs_f64());
        }
    }

    /// `inserts` arrived while a checkpoint copied their space's index and were deferred.
    pub fn checkpoint_deferred(&self, inserts: u64) {
        if super::RECORDING {
            self.checkpoint_deferred.add(inserts);
        }
    }

    /// A checkpoint could not be written (`corrupt` false) or did not verify at start (true).
    pub fn checkpoint_failed(&self, corrupt: bool) {
        if super::RECORDING {
            self.checkpoint_failures[usize::from(corrupt)].add(1);
        }
    }

    /// An index rebuild without its tombstones finished in `took` (`compacted` true) or was
    /// abandoned (false: stopped, or ingest outran it).
    pub fn compaction(&self, compacted: bool, took: Duration) {
        if super::RECORDING {
            self.compactions[usize::from(!compacted)].add(1);
            if compacted {
                self.compaction_duration.record(took.as_secs_f64());
            }
        }
    }

    /// A snapshot was written (`restore` false) or a space restored from one (true), or the
    /// call failed (`ok` false).
    pub fn snapshot(&self, restore: bool, ok: bool) {
        if super::RECORDING {
            self.snapshots[usize::from(restore)][usize::from(!ok)].add(1);
        }
    }

    /// Exports the seconds since the checkpoint of the space labelled `space` (its bounded
    /// label), read from `age` at each scrape.
    pub fn sample_checkpoint_age(t: &Telemetry, space: &str, age: Source) {
        t.sampled(&catalog::STORAGE_CHECKPOINT_AGE, &[space], age);
    }

    /// Exports the store's bytes on disk, read from `disk_bytes` at each scrape (`None` once
    /// the store is gone).
    pub fn sample_disk_bytes(t: &Telemetry, disk_bytes: Source) {
        t.sampled(&catalog::STORAGE_DISK_BYTES, &[], disk_bytes);
    }

    /// Exports the bytes available on the data directory's filesystem, read from `free_bytes`
    /// at each scrape.
    pub fn sample_free_bytes(t: &Telemetry, free_bytes: Source) {
        t.sampled(&catalog::STORAGE_FILESYSTEM_FREE_BYTES, &[], free_bytes);
    }

    /// One log record of `observations` observations and `bytes` bytes was appended.
    #[inline]
    pub fn appended(&self, observations: usize, bytes: usize) {
        if super::RECORDING {
            self.appended_records.add(observations as u64);
            self.appended_bytes.add(bytes as u64);
        }
    }

    /// One group-commit sync took `elapsed` and made `observations` observations durable.
    #[inline]
    pub fn synced(&self, observations: u64, elapsed: Duration) {
        if super::RECORDING {
            self.syncs.add(1);
            self.sync_duration.record(elapsed.as_secs_f64());
            self.sync_records.record(observations as f64);
        }
    }

    /// The store healed after a failed write or sync (reopened, writes accepted again).
    pub fn healed(&self) {
        self.heals.add(1);
    }

    /// A write or sync failed; `full` when the filesystem is full (ENOSPC).
    #[inline]
    pub fn failed(&self, full: bool) {
        self.errors[usize::from(!full)].add(1);
    }

    /// `observations` were replayed from the log at start.
    #[inline]
    pub fn replayed(&self, observations: u64) {
        self.replayed.add(observations);
    }

    /// A log record did not decode at start.
    pub fn corrupt_record(&self) {
        self.corrupt.add(1);
    }

    /// Recovery finished after `elapsed`.
    pub fn recovered(&self, elapsed: Duration) {
        self.recovery_duration.set(elapsed.as_secs_f64());
    }
}
