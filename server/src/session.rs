//! What both transports do with a client's request, written once: the gRPC observation stream
//! and the HTTP observation route each decode their message into an engine [`Batch`], hand it
//! to an [`IngestSession`], and encode what comes back; recall runs through [`recall`].
//!
//! An HTTP request is one batch ([`submit`]: the level travels in its response header, so
//! nothing is tracked); a gRPC `StreamObservations` stream is one session for its whole life,
//! which also tells the stream when the level of a space it writes to changed
//! ([`IngestSession::level_changes`]).

use crate::api_error::ApiError;
use engram_engine::{AckLevel, Admission, BackpressureLevel, Batch, DEFAULT_RECALL_K, Engine, RecallHit, RecallTimes};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// One client's run of batches into the engine.
pub struct IngestSession {
    engine: Arc<Engine>,
    /// The level last reported per space this session wrote to.
    levels: HashMap<String, BackpressureLevel>,
}

/// A space whose backpressure level changed since the session last reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelChange {
    /// The memory space.
    pub space: String,
    /// Its level now.
    pub level: BackpressureLevel,
    /// Queue utilization (0 to 1) when the change was seen.
    pub queue_utilization: f64,
    /// How long a client should wait before sending more to the space, from Warning up.
    pub retry_after: Option<Duration>,
}

impl IngestSession {
    /// A session over `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine, levels: HashMap::new() }
    }

    /// Submits a decoded batch (or the transport's decode error) to `space`, with waiters up to
    /// `ack` (ACCEPTED, DURABLE or INDEXED). The space is watched for level changes from then on.
    ///
    /// # Errors
    /// The decode error as given, or the engine's refusal mapped by [`ApiError`] (invalid
    /// field, unknown space, backpressure with retry-after, shutting down).
    pub fn submit(
        &mut self,
        space: &str,
        batch: Result<Batch, ApiError>,
        ack: AckLevel,
    ) -> Result<Admission, ApiError> {
        let admitted = submit(&self.engine, space, batch, ack);
        if !self.levels.contains_key(space) && self.engine.space_level(space).is_some() {
            self.levels.insert(space.to_owned(), BackpressureLevel::Normal);
        }
        admitted
    }

    /// The spaces whose level changed since the last call (dropped spaces are forgotten).
    pub fn level_changes(&mut self) -> Vec<LevelChange> {
        let mut changed = Vec::new();
        let engine = &self.engine;
        self.levels.retain(|space, last| match engine.space_level(space) {
            Some(level) => {
                if level != *last {
                    *last = level;
                    changed.push((space.clone(), level));
                }
                true
            }
            None => false,
        });
        if changed.is_empty() {
            return Vec::new();
        }
        let queue_utilization = engine.status().queue_utilization;
        changed
            .into_iter()
            .map(|(space, level)| LevelChange { space, level, queue_utilization, retry_after: level.retry_hint() })
            .collect()
    }
}

/// Submits one decoded batch (or the transport's decode error) to `space`, with waiters up to
/// `ack`: a request that is its own session (HTTP), with no level tracking to keep.
///
/// # Errors
/// As [`IngestSession::submit`].
pub fn submit(
    engine: &Engine,
    space: &str,
    batch: Result<Batch, ApiError>,
    ack: AckLevel,
) -> Result<Admission, ApiError> {
    batch.and_then(|b| Ok(engine.submit(space, b, ack)?))
}

/// The `k` (default [`DEFAULT_RECALL_K`]) observations nearest `embedding` in `space`, searching
/// `ef_search` candidates (default: the space's), each with its content when `with_content`, and
/// when each stage of the recall ended (for the request's trace). Runs on the blocking pool so a
/// search never holds up the async runtime.
///
/// # Errors
/// The engine's error (unknown space, wrong dimension, `k` over the limit) mapped by
/// [`ApiError`], or an internal error when the search task was lost.
pub async fn recall(
    engine: &Arc<Engine>,
    space: String,
    embedding: Vec<f32>,
    k: Option<usize>,
    ef_search: Option<usize>,
    with_content: bool,
) -> Result<(Vec<RecallHit>, RecallTimes), ApiError> {
    let engine = Arc::clone(engine);
    let k = k.unwrap_or(DEFAULT_RECALL_K);
    tokio::task::spawn_blocking(move || engine.recall_timed(&space, embedding, k, ef_search, with_content))
        .await
        .map_err(|e| ApiError::internal(format!("recall task failed: {e}")))?
        .map_err(ApiError::from)
}

/// What a delete did, once acknowledged at the level asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deleted {
    /// The level reached (the one asked for).
    pub status: AckLevel,
    /// Ids the space held: deleted.
    pub deleted: usize,
    /// Ids the space did not hold.
    pub not_found: usize,
    /// The space's backpressure level after admission.
    pub level: BackpressureLevel,
}

/// Deletes `ids` from `space` and waits until the delete is acknowledged at `ack`: DURABLE once
/// recorded, INDEXED once every id is out of the index too (after DURABLE). From the moment the
/// engine admits it, recall and get never return the ids.
///
/// # Errors
/// The engine's error (unknown space, bad ids, no queue room, storage) mapped by [`ApiError`],
/// or the sync's error when the log could not record it.
pub async fn delete(engine: &Engine, space: &str, ids: Vec<u64>, ack: AckLevel) -> Result<Deleted, ApiError> {
    let d = engine.delete(space, ids, ack)?;
    if let Some(durable) = d.durable {
        durable.wait().await?;
    }
    if let Some(indexed) = d.indexed {
        indexed.wait().await;
    }
    Ok(Deleted { status: ack, deleted: d.deleted, not_found: d.not_found, level: d.level })
}
