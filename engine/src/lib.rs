//! The Engram Stream ingest engine: memory spaces of HNSW indexes fed by a bounded, prioritised
//! observation queue and a work-stealing worker pool, guarded by a backpressure state machine.
//!
//! Follow one observation from admission to the index (docs/architecture.md walks it hop by
//! hop):
//!
//! 1. [`observation`]: what a client sends: [`Observation`]s in a [`Batch`] with a [`Priority`].
//! 2. [`engine`]: [`Engine`], the facade; [`Engine::submit`] hands the batch to the update path.
//! 3. `update`: the update path's owner (`UpdateHandler`) and its stages, calls one way:
//!    `update::admit` validates (errors name the field), dedupes, decides the level and
//!    reserves room, and turns the batch into an [`Operation`]; `update::scheduler` holds the
//!    queue and wakes the workers; `update::worker` inserts into the index and acks;
//!    `update::monitor` samples rates and levels; `update::registry` holds the spaces.
//! 4. [`operation`]: [`Operation`], a change in the form a log records it, and [`AckLevel`].
//! 5. [`backpressure`]: levels, which priorities each admits, [`RejectReason`] and retry-after.
//! 6. `admission`: the lock-free cores: exact queue capacity reservation and levels with
//!    hysteresis (modelled with loom, through the crate-private `sync` shim).
//! 7. `queue`: three priority lanes and the workers' local deques (crossbeam-deque here, a loom
//!    stand-in in the models, behind `queue::Deques`).
//! 8. [`index`]: the index seam ([`index::VectorIndex`]) and its backends, `usearch`,
//!    `hnsw_rs` and `engram` (our own graph core), chosen per space by [`IndexKind`]
//!    (default by dimension: [`SpaceParams::index`]).
//! 9. `space`: ids, content and index of a memory space, and recall ([`Engine::recall`]);
//!    `tail` holds what a start replayed and the index has not yet taken, searched exactly.
//! 10. `ack`: [`IndexedWaiter`] resolves when a batch is searchable.
//! 11. [`storage`]: the durable log (fjall): space definitions and admitted operations,
//!     group-committed; [`DurableWaiter`] resolves when a batch is recorded; recovery
//!     (`update::recovery`) replays it at start; checkpoints (`update::checkpoint`) bound
//!     the replay; snapshots (`update::snapshot`) write one space to one file and restore it.
//!
//! [`config`] holds every setting with its default; [`error`] every failure.
//!
//! The feature `internals` makes `admission` and `queue` public for the criterion benches and
//! the loom models; it is not a stable interface. The feature `fault-injection` adds
//! [`Engine::storage_faults`] for tests of the disk-full and I/O-error paths.

#[cfg(any(feature = "internals", engram_loom))]
pub mod admission;
#[cfg(not(any(feature = "internals", engram_loom)))]
mod admission;
#[cfg(any(feature = "internals", engram_loom))]
pub mod queue;
#[cfg(not(any(feature = "internals", engram_loom)))]
mod queue;

pub mod backpressure;
pub mod config;
pub mod engine;
pub mod error;
pub mod index;
pub mod observation;
pub mod operation;
pub mod storage;

mod ack;
mod space;
mod sync;
mod tail;
mod update;

pub use ack::{IndexedOutcome, IndexedWaiter};
pub use backpressure::{BackpressureLevel, RejectReason, Rejection};
pub use config::EngineConfig;
pub use engine::{Engine, EngineStatus};
pub use error::{EngineError, StorageErrorKind};
pub use index::{IndexKind, Metric, Quantization};
pub use observation::{Batch, Observation, Priority};
pub use operation::{AckLevel, Operation};
pub use space::{
    DEFAULT_RECALL_K, DEFAULT_RESCORE_FACTOR, REDUCED_DEFAULT_MIN_DIM, RecallHit, RecallTimes, SpaceInfo, SpaceParams,
    StoredObservation, validate_space_name,
};
#[cfg(feature = "fault-injection")]
pub use storage::faults::Faults as StorageFaults;
pub use storage::{Durability, DurableWaiter, StorageConfig};
pub use update::{
    Admission, AdmitTimes, Deletion, RecoveryStatus, ShutdownReport, SnapshotInfo, SnapshotSource, queued_bytes,
};
