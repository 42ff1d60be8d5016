//! Engine errors. Each variant maps to exactly one HTTP status and one gRPC code, in one place
//! in the server (`server/src/api_error.rs`).

use crate::backpressure::BackpressureLevel;
use std::time::Duration;

/// Why a batch was refused admission. Indices match `engram_telemetry::labels::REJECT_REASONS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The space is in Critical: low priority is shed.
    BackpressureCritical = 0,
    /// The space is in Overloaded: normal and low priority are shed.
    BackpressureOverloaded = 1,
    /// Admitting the batch would exceed the queue's hard cap (observations or bytes).
    QueueFull = 2,
    /// Under pressure (Warning or worse), the high-priority lane already holds what the
    /// workers drain in `engine.high_lane_max_wait_ms`: admitting more would make admitted
    /// high-priority observations wait longer than that to be indexed.
    HighLaneFull = 3,
}

impl RejectReason {
    /// The reason as exported in metrics and API responses.
    pub fn as_str(self) -> &'static str {
        engram_telemetry::labels::REJECT_REASONS[self as usize]
    }
}

/// A refused batch: nothing in it was accepted; retry the whole batch after `retry_after`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Why it was refused.
    pub reason: RejectReason,
    /// When to retry, estimated from the measured queue drain rate.
    pub retry_after: Duration,
    /// The space's backpressure level at the time.
    pub level: BackpressureLevel,
}

/// Errors of the engine's public operations.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// Bad input: `field` names where (e.g. `observations[3].embedding`), `reason` what is wrong.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The offending field, as a path into the request.
        field: String,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// No memory space of that name.
    #[error("memory space `{0}` not found")]
    SpaceNotFound(String),
    /// A memory space of that name exists with different parameters.
    #[error("memory space `{0}` already exists with different parameters")]
    SpaceExists(String),
    /// Admission refused the batch (backpressure or full queue).
    #[error("rejected ({}): retry after {:.3}s", .0.reason.as_str(), .0.retry_after.as_secs_f64())]
    Rejected(Rejection),
    /// Creating the space would exceed `engine.max_spaces`.
    #[error("{limit} memory spaces exist, the most engine.max_spaces allows: drop one first")]
    SpaceLimit {
        /// The configured `engine.max_spaces`.
        limit: usize,
    },
    /// The engine is draining for shutdown and admits nothing new.
    #[error("the engine is shutting down and accepts no new observations")]
    ShuttingDown,
}

impl EngineError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument { field: field.into(), reason: reason.into() }
    }
}
