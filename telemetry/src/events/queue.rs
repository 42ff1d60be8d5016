//! Observation queue events.

use crate::Telemetry;
use crate::catalog;
use crate::labels::PRIORITIES;
use crate::primitives::{Histogram, HistogramSnapshot};
use crate::registry::Source;
use std::sync::Arc;
use std::time::Duration;

/// Handles of the observation queue: the wait time per lane, and the sampled series.
///
/// The lane depths, the drain rate, the queue's bytes and its utilization are the engine's own
/// values (what admission and retry-after steer by), read at each scrape through the sources
/// given to [`QueueEvents::sample`]; nothing here is read back by the engine but the wait
/// histograms, which only feed reported p99s.
#[derive(Debug, Clone)]
pub struct QueueEvents {
    wait: [Arc<Histogram>; 3],
}

/// Where the sampled queue series read from; each returns `None` once the queue is gone.
pub struct QueueSources {
    /// Bytes queued (`engram_streaming_queue_memory_bytes`).
    pub bytes: Source,
    /// Utilization, 0 to 1 (`engram_streaming_queue_utilization`).
    pub utilization: Source,
    /// Observations queued per lane, high, normal, low (`engram_streaming_queue_depth`).
    pub depth: [Source; 3],
    /// Smoothed drain rate, observations per second (`engram_streaming_queue_drain_rate`).
    pub drain_rate: Source,
}

impl QueueEvents {
    /// Registers the queue's series and exports its capacities (observations, bytes).
    pub fn register(t: &Telemetry, capacity: usize, capacity_bytes: usize) -> Self {
        t.gauge(&catalog::QUEUE_CAPACITY, &[]).set(capacity as f64);
        t.gauge(&catalog::QUEUE_CAPACITY_BYTES, &[]).set(capacity_bytes as f64);
        Self { wait: PRIORITIES.map(|p| t.histogram(&catalog::QUEUE_WAIT_TIME, &[p])) }
    }

    /// Exports the engine's queue state, read from `sources` at each scrape.
    pub fn sample(t: &Telemetry, sources: QueueSources) {
        let QueueSources { bytes, utilization, depth, drain_rate } = sources;
        t.sampled(&catalog::QUEUE_MEMORY_BYTES, &[], bytes);
        t.sampled(&catalog::QUEUE_UTILIZATION, &[], utilization);
        for (lane, source) in depth.into_iter().enumerate() {
            t.sampled(&catalog::QUEUE_DEPTH, &[PRIORITIES[lane]], source);
        }
        t.sampled(&catalog::QUEUE_DRAIN_RATE, &[], drain_rate);
    }

    /// Everything recorded so far of the queue wait time (seconds), all lanes merged.
    pub fn wait_time(&self) -> HistogramSnapshot {
        let mut all = self.wait[0].snapshot();
        self.wait[1..].iter().for_each(|h| all.merge(&h.snapshot()));
        all
    }

    /// One observation left lane `lane` (a priority index) for a worker after waiting `waited`.
    #[inline]
    pub fn dequeued(&self, lane: usize, waited: Duration) {
        if super::RECORDING {
            self.wait[lane].record(waited.as_secs_f64());
        }
    }
}
