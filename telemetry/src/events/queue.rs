//! Observation queue events.

use crate::Telemetry;
use crate::catalog;
use crate::labels::PRIORITIES;
use crate::primitives::{Gauge, Histogram, HistogramSnapshot};
use std::sync::Arc;
use std::time::Duration;

/// Handles of the observation queue: depth and wait time per lane, and the drain rate.
///
/// The queue's bytes and utilization are the admission accounting's own values, sampled at
/// scrape time ([`QueueEvents::sample`]); the lane depths are these gauges, which the engine
/// reads back; the count of observations taken is the wait histograms' count.
#[derive(Debug, Clone)]
pub struct QueueEvents {
    depth: [Arc<Gauge>; 3],
    wait: [Arc<Histogram>; 3],
    drain_rate: Arc<Gauge>,
}

impl QueueEvents {
    /// Registers the queue's series and exports its capacities (observations, bytes).
    pub fn register(t: &Telemetry, capacity: usize, capacity_bytes: usize) -> Self {
        t.gauge(&catalog::QUEUE_CAPACITY, &[]).set(capacity as f64);
        t.gauge(&catalog::QUEUE_CAPACITY_BYTES, &[]).set(capacity_bytes as f64);
        Self {
            depth: PRIORITIES.map(|p| t.gauge(&catalog::QUEUE_DEPTH, &[p])),
            wait: PRIORITIES.map(|p| t.histogram(&catalog::QUEUE_WAIT_TIME, &[p])),
            drain_rate: t.gauge(&catalog::QUEUE_DRAIN_RATE, &[]),
        }
    }

    /// Exports the bytes queued and the utilization (0 to 1), read from the admission
    /// accounting at each scrape. Each source returns `None` once the queue is gone.
    pub fn sample(
        t: &Telemetry,
        bytes: impl Fn() -> Option<f64> + Send + Sync + 'static,
        utilization: impl Fn() -> Option<f64> + Send + Sync + 'static,
    ) {
        t.sampled(&catalog::QUEUE_MEMORY_BYTES, &[], bytes);
        t.sampled(&catalog::QUEUE_UTILIZATION, &[], utilization);
    }

    /// `count` observations were pushed into lane `lane` (a priority index).
    #[inline]
    pub fn enqueued(&self, lane: usize, count: usize) {
        self.depth[lane].add(count as f64);
    }

    /// Observations taken from the queue by workers since start, all lanes: the count of the
    /// exported wait-time histograms.
    pub fn taken_total(&self) -> u64 {
        self.wait.iter().map(|h| h.snapshot().count).sum()
    }

    /// Everything recorded so far of the queue wait time (seconds), all lanes merged.
    pub fn wait_time(&self) -> HistogramSnapshot {
        let mut all = self.wait[0].snapshot();
        self.wait[1..].iter().for_each(|h| all.merge(&h.snapshot()));
        all
    }

    /// Sets the exported drain rate (observations per second).
    pub fn set_drain_rate(&self, rate: f64) {
        self.drain_rate.set(rate);
    }

    /// The exported drain rate (observations per second), read back.
    pub fn drain_rate(&self) -> f64 {
        self.drain_rate.get()
    }

    /// Observations queued in lane `lane` now: the exported `engram_streaming_queue_depth`
    /// value itself, read back (no second copy). Never negative: the queue raises it before it
    /// pushes (checked by the loom model `queue`).
    pub fn depth(&self, lane: usize) -> f64 {
        self.depth[lane].get()
    }

    /// One observation left lane `lane` for a worker after waiting `waited`.
    #[inline]
    pub fn dequeued(&self, lane: usize, waited: Duration) {
        self.depth[lane].sub(1.0);
        self.wait[lane].record(waited.as_secs_f64());
    }
}
