//! [`Job`]: one admitted observation (or deletion) on its way from the queue to its space's
//! index.

use crate::ack::BatchAck;
use crate::observation::Priority;
use crate::operation::{Record, Seq};
use crate::queue::Queued;
use crate::space::Space;
use std::sync::Arc;
use std::time::Instant;

/// What a job does to its id.
pub(crate) enum Change {
    /// Put this vector (prepared: normalised for cosine) and content in the index, replacing
    /// whatever the id had.
    Put { vector: Box<[f32]>, content: Option<Box<str>> },
    /// Take the id out of the index.
    Remove,
}

/// One admitted change to one id on its way to the index: a [`Record`] of an insert or upsert,
/// or an id of a delete, with what the pool needs to apply it (its space, its position in the
/// order of operations, lane, admission time and ack).
pub(crate) struct Job {
    pub(crate) space: Arc<Space>,
    pub(crate) id: u64,
    /// The operation's position: the job applies only while no later operation on the id was
    /// admitted (see [`crate::space::IdState`]).
    pub(crate) seq: Seq,
    pub(crate) change: Change,
    pub(crate) lane: usize,
    pub(crate) accepted_at: Instant,
    /// Bytes this job counts against the queue's byte cap.
    pub(crate) bytes: usize,
    pub(crate) ack: Option<Arc<BatchAck>>,
}

impl Job {
    /// The job applying `record` of operation `seq` to `space`.
    pub(crate) fn new(
        space: &Arc<Space>,
        seq: Seq,
        record: Record,
        priority: Priority,
        accepted_at: Instant,
        ack: Option<Arc<BatchAck>>,
    ) -> Self {
        let bytes = Self::record_footprint(space.params.dim, &record);
        Self {
            space: Arc::clone(space),
            id: record.id,
            seq,
            change: Change::Put { vector: record.vector, content: record.content },
            lane: priority.index(),
            accepted_at,
            bytes,
            ack,
        }
    }

    /// The job removing `id` (deleted by operation `seq`) from `space`'s index.
    pub(crate) fn remove(
        space: &Arc<Space>,
        seq: Seq,
        id: u64,
        priority: Priority,
        accepted_at: Instant,
        ack: Option<Arc<BatchAck>>,
    ) -> Self {
        Self {
            space: Arc::clone(space),
            id,
            seq,
            change: Change::Remove,
            lane: priority.index(),
            accepted_at,
            bytes: Self::REMOVE_BYTES,
            ack,
        }
    }

    /// Bytes a removal job holds.
    pub(crate) const REMOVE_BYTES: usize = std::mem::size_of::<Job>();

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
