//! Observation queue events.

use crate::Telemetry;
use crate::catalog;
use crate::labels::PRIORITIES;
use metrics::{Gauge, Histogram};
use std::time::Duration;

/// Handles of the observation queue: depth and wait time per lane, bytes held.
#[derive(Debug, Clone)]
pub struct QueueEvents {
    depth: [Gauge; 3],
    wait: [Histogram; 3],
    memory_bytes: Gauge,
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
        self.depth[lane].increment(count as f64);
        self.memory_bytes.increment(bytes as f64);
    }

    /// One observation of `bytes` left lane `lane` for a worker after waiting `waited`.
    #[inline]
    pub fn dequeued(&self, lane: usize, bytes: usize, waited: Duration) {
        self.depth[lane].decrement(1.0);
        self.memory_bytes.decrement(bytes as f64);
        self.wait[lane].record(waited.as_secs_f64());
    }
}
