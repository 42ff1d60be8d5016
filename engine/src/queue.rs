//! The observation queue: three priority lanes, bounded exactly by count and bytes.
//!
//! Admission reserves room in [`Capacity`] first and pushes second, so the queue never holds
//! more than its capacity. Lanes are crossbeam-deque `Injector`s; workers move work from them
//! into their own local deques (see [`crate::pool`]). An observation counts as queued until a
//! worker takes it into a batch, wherever it sits meanwhile (lane or a worker's local deque).

use crate::ack::BatchAck;
use crate::admission::Capacity;
use crate::space::Space;
use crossbeam_deque::{Injector, Steal, Worker};
use engram_telemetry::events::QueueEvents;
use std::sync::Arc;
use std::time::Instant;

/// One admitted observation on its way to the index.
pub(crate) struct Job {
    pub(crate) space: Arc<Space>,
    pub(crate) id: u64,
    /// Prepared (normalised for cosine) embedding.
    pub(crate) vector: Box<[f32]>,
    pub(crate) content: Option<Box<str>>,
    pub(crate) lane: usize,
    pub(crate) accepted_at: Instant,
    /// Bytes this job counts against the queue's byte cap.
    pub(crate) bytes: usize,
    pub(crate) ack: Option<Arc<BatchAck>>,
}

impl Job {
    /// Bytes a job of dimension `dim` with `content_len` bytes of content holds.
    pub(crate) fn footprint(dim: usize, content_len: usize) -> usize {
        std::mem::size_of::<Job>() + dim * std::mem::size_of::<f32>() + content_len
    }
}

pub(crate) struct ObservationQueue {
    lanes: [Injector<Job>; 3],
    pub(crate) capacity: Capacity,
    events: QueueEvents,
}

impl ObservationQueue {
    pub(crate) fn new(capacity: usize, capacity_bytes: usize, events: QueueEvents) -> Self {
        Self {
            lanes: [Injector::new(), Injector::new(), Injector::new()],
            capacity: Capacity::new(capacity, capacity_bytes),
            events,
        }
    }

    /// Pushes jobs whose room was reserved with `capacity.try_reserve`.
    pub(crate) fn push(&self, lane: usize, jobs: Vec<Job>, bytes: usize) {
        // Gauges first: a worker can take a job the instant it is pushed, and the depth gauge
        // must never dip below zero.
        self.events.enqueued(lane, jobs.len(), bytes);
        for job in jobs {
            self.lanes[lane].push(job);
        }
    }

    /// Moves up to `limit` jobs of `lane` into `dest` and returns one of them.
    pub(crate) fn steal_into(&self, lane: usize, dest: &Worker<Job>, limit: usize) -> Option<Job> {
        loop {
            match self.lanes[lane].steal_batch_with_limit_and_pop(dest, limit.max(1)) {
                Steal::Success(job) => return Some(job),
                Steal::Empty => return None,
                Steal::Retry => std::hint::spin_loop(),
            }
        }
    }

    /// A worker took `job` into a batch: it leaves the queue's accounting.
    pub(crate) fn taken(&self, job: &Job) {
        self.capacity.release(1, job.bytes);
        self.events.dequeued(job.lane, job.bytes, job.accepted_at.elapsed());
    }

    /// Observations queued per lane (in the lane or prefetched into a worker's local deque),
    /// read back from the exported `engram_streaming_queue_depth` gauges.
    pub(crate) fn lane_lens(&self) -> [usize; 3] {
        [0, 1, 2].map(|lane| self.events.depth(lane) as usize)
    }
}
