//! [`Job`]: one admitted observation on its way from the queue to its space's index.

use crate::ack::BatchAck;
use crate::queue::Queued;
use crate::space::Space;
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
