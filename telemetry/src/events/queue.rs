//! Observation queue events.

use crate::Telemetry;
use crate::catalog;
use crate::labels::PRIORITIES;
use crate::primitives::{Gauge, Histogram};
use std::sync::Arc;
use std::time::Duration;

/// Handles of the observation queue: depth and wait time per lane, bytes held.
#[derive(Debug, Clone)]
pub struct QueueEvents {
    depth: [Arc<Gauge>; 3],
    wait: [Arc<Histogram>; 3],
    memory_bytes: Arc<Gauge>,
}

impl QueueEvents {
    /// Registers the queue's series and exports its capacities (observations, bytes).
    pub fn register(t: &Telemetry, capacity: usize, capacity_bytes: usize) -> Self {
        t.gauge(&catalog::QUEUE_CAPACITY, &[]).set(capacity as f64);
        t.gauge(&catalog::QUEUE_CAPACITY_BYTES, &[]).set(capacity_bytes as f64);
        Self {
            depth: PRIORITIES.map(|p| t.gauge(&catalog::QUEUE_DEPTH, &[p])),
            wait: PRIORITIES.map(|p| t.histogram(&catalog::QUEUE_WAIT_TIME, &[p])),
            memory_bytes: t.gauge(&catalog::QUEUE_MEMORY_BYTES, &[]),
        }
    }

    /// `count` observations holding `bytes` were pushed into lane `lane` (a priority index).
    #[inline]
    pub fn enqueued(&self, lane: usize, count: usize, bytes: usize) {
        self.depth[lane].add(count as f64);
        self.memory_bytes.add(bytes as f64);
    }

    /// Observations queued in lane `lane` now: the exported `engram_streaming_queue_depth`
    /// value itself, read back (no second copy).
    pub fn depth(&self, lane: usize) -> u64 {
        self.depth[lane].get().max(0.0) as u64
    }

    /// One observation of `bytes` left lane `lane` for a worker after waiting `waited`.
    #[inline]
    pub fn dequeued(&self, lane: usize, bytes: usize, waited: Duration) {
        self.depth[lane].sub(1.0);
        self.memory_bytes.sub(bytes as f64);
        self.wait[lane].record(waited.as_secs_f64());
    }
}
