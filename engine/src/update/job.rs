//! [`Job`]: one admitted observation on its way from the queue to its space's index.

use crate::ack::BatchAck;
use crate::observation::Priority;
use crate::operation::Record;
use crate::queue::Queued;
use crate::space::Space;
use std::sync::Arc;
use std::time::Instant;

/// One admitted observation on its way to the index: a [`Record`] of an insert operation with
/// what the pool needs to apply it (its space, lane, admission time and ack).
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
    /// The job applying `record` to `space`.
    pub(crate) fn new(
        space: &Arc<Space>,
        record: Record,
        priority: Priority,
        accepted_at: Instant,
        ack: Option<Arc<BatchAck>>,
    ) -> Self {
        let bytes = Self::record_footprint(space.params.dim, &record);
        Self {
            space: Arc::clone(space),
            id: record.id,
            vector: record.vector,
            content: record.content,
            lane: priority.index(),
            accepted_at,
            bytes,
            ack,
        }
    }

    /// Bytes the job of `record` in a space of dimension `dim` holds.
    pub(crate) fn record_footprint(dim: usize, record: &Record) -> usize {
        Self::footprint(dim, record.content.as_ref().map_or(0, |c| c.len()))
    }

    /// Bytes a job of dimension `dim` with `content_len` bytes of content holds.
    pub(crate) fn footprint(dim: usize, content_len: usize) -> usize {
        std::mem::size_of::<Job>() + dim * std::mem::size_of::<f32>() + content_len
    }
}

/// Bytes one queued observation of `dim` dimensions with `content_len` bytes of content counts
/// against `engine.queue_capacity_bytes` (the queue's own accounting: the job record, the
/// vector as `f32`, and the content).
pub fn queued_bytes(dim: usize, content_len: usize) -> usize {
    Job::footprint(dim, content_len)
}

impl Queued for Job {
    fn lane(&self) -> usize {
        self.lane
    }
    fn bytes(&self) -> usize {
        self.bytes
    }
    fn accepted_at(&self) -> Instant {
        self.accepted_at
    }
}
