//! Engine errors. Each variant maps to exactly one HTTP status and one gRPC code, in one place
//! in the server (`server/src/api_error.rs`).

use crate::backpressure::Rejection;

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
    /// The store could not record the change (nothing of it is acknowledged); retry later.
    #[error("storage {}: {message}", .kind.as_str())]
    Storage {
        /// Disk full or any other I/O failure.
        kind: StorageErrorKind,
        /// What failed, with the underlying error.
        message: String,
    },
    /// The engine is replaying its log after a start and serves nothing until it is done.
    #[error("the engine is recovering its memory spaces from the log; retry shortly")]
    Recovering,
    /// No snapshot of that name (for that space).
    #[error("snapshot `{0}` not found")]
    SnapshotNotFound(String),
    /// Snapshots need the data directory, which `storage.durability = none` does not open.
    #[error("snapshots need storage: with storage.durability = none nothing is kept on disk")]
    SnapshotsUnavailable,
}

/// What kind of storage failure an [`EngineError::Storage`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// The filesystem is full (ENOSPC): HTTP 507, reason `storage_full`.
    Full,
    /// Any other I/O error (EIO, permissions, a corrupt record): HTTP 503, reason `storage_error`.
    Io,
}

impl StorageErrorKind {
    /// The kind of an I/O error: [`StorageErrorKind::Full`] for ENOSPC (`ErrorKind::StorageFull`,
    /// errno 28), [`StorageErrorKind::Io`] for every other.
    pub fn of(e: &std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) { Self::Full } else { Self::Io }
    }

    /// The reason string clients see: `storage_full` or `storage_error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "storage_full",
            Self::Io => "storage_error",
        }
    }
}

impl EngineError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument { field: field.into(), reason: reason.into() }
    }
}
