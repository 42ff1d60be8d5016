//! Worker pool events.

use crate::Telemetry;
use crate::catalog;
use crate::labels::{BATCH_ERROR_TYPES, BatchError};
use crate::primitives::{Counter, Gauge, Histogram};
use crate::registry::Source;
use std::sync::Arc;
use std::time::Duration;

/// Handles of the pool as a whole.
#[derive(Debug, Clone)]
pub struct PoolEvents {
    workers: Arc<Gauge>,
}

impl PoolEvents {
    /// Registers the pool's series.
    pub fn register(t: &Telemetry) -> Self {
        Self { workers: t.gauge(&catalog::WORKERS, &[]) }
    }

    /// The pool now runs `n` worker threads.
    pub fn workers(&self, n: usize) {
        self.workers.set(n as f64);
    }
}

/// Handles of one worker thread, labelled `worker_id`. Its utilization is the engine's own
/// value, sampled at scrape time ([`WorkerEvents::sample_utilization`]).
#[derive(Debug, Clone)]
pub struct WorkerEvents {
    batches: Arc<Counter>,
    failures: [Arc<Counter>; BATCH_ERROR_TYPES.len()],
    stolen: Arc<Counter>,
    batch_size: Arc<Histogram>,
    batch_duration: Arc<Histogram>,
}

impl WorkerEvents {
    /// Registers the series of worker `id`.
    pub fn register(t: &Telemetry, id: usize) -> Self {
        let w = id.to_string();
        let w = w.as_str();
        Self {
            batches: t.counter(&catalog::BATCHES_PROCESSED, &[w]),
            failures: BATCH_ERROR_TYPES.map(|e| t.counter(&catalog::BATCH_FAILURES, &[w, e])),
            stolen: t.counter(&catalog::WORK_STOLEN, &[w]),
            batch_size: t.histogram(&catalog::BATCH_SIZE, &[w]),
            batch_duration: t.histogram(&catalog::BATCH_DURATION, &[w]),
        }
    }

    /// Exports worker `id`'s utilization (0 to 1 over the engine's last window), read from
    /// `source` at each scrape (`None` once the worker is gone).
    pub fn sample_utilization(t: &Telemetry, id: usize, source: Source) {
        t.sampled(&catalog::WORKER_UTILIZATION, &[id.to_string().as_str()], source);
    }

    /// The worker inserted a batch of `size` observations in `elapsed`.
    #[inline]
    pub fn batch_processed(&self, size: usize, elapsed: Duration) {
        if !super::RECORDING {
            return;
        }
        self.batches.add(1);
        self.batch_size.record(size as f64);
        self.batch_duration.record(elapsed.as_secs_f64());
    }

    /// `count` observations of a batch failed with `error_type`.
    #[inline]
    pub fn batch_failed(&self, error_type: BatchError, count: u64) {
        if super::RECORDING {
            self.failures[error_type as usize].add(count);
        }
        tracing::error!(error_type = error_type.as_str(), count, "batch insertion failed");
    }

    /// The worker stole `count` observations from another worker's local queue.
    #[inline]
    pub fn stole(&self, count: u64) {
        if !super::RECORDING {
            return;
        }
        self.stolen.add(count);
    }
}
