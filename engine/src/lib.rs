//! The Engram Stream ingest engine: memory spaces of HNSW indexes fed by a bounded, prioritised
//! observation queue and a work-stealing worker pool, guarded by a backpressure state machine.
//!
//! Follow one observation from admission to the index:
//!
//! 1. [`observation`]: what a client sends: [`Observation`]s in a [`Batch`] with a [`Priority`].
//! 2. [`engine`]: [`Engine::submit`] finds the space, validates the whole batch (errors name
//!    the field), acknowledges ids already accepted as duplicates, and asks backpressure.
//! 3. [`backpressure`]: the space's level (worse of global and its own share) decides which
//!    priorities are admitted, and how long a refused client should wait.
//! 4. [`admission`]: the lock-free cores: exact queue capacity reservation and levels with
//!    hysteresis (modelled with loom in `loom-tests/`, through the [`sync`] shim).
//! 5. [`queue`]: the reserved observations are pushed into their priority lane; the deques
//!    sit behind [`queue::Deques`] (crossbeam-deque here, a loom stand-in in the models).
//! 6. `pool`: workers refill from the lanes (strict priority with minimum shares), steal from
//!    each other, size batches adaptively, and insert into the space's index.
//! 7. [`index`]: the index seam ([`index::VectorIndex`]) and its backends, `usearch` (default)
//!    and `hnsw_rs`, chosen per space by [`IndexKind`].
//! 8. `space`: ids, content and index of a memory space; [`Engine::recall`] searches it.
//! 9. `ack`: [`IndexedWaiter`] resolves when a batch is searchable.
//!
//! [`config`] holds every setting with its default; [`error`] every failure; [`dataset`] reads
//! the TEXMEX benchmark files used by the load generator, tests and benches.

pub mod admission;
pub mod backpressure;
pub mod config;
pub mod dataset;
pub mod engine;
pub mod error;
pub mod index;
pub mod observation;
pub mod queue;
pub mod sync;

mod ack;
mod job;
mod pool;
mod space;

pub use ack::{IndexedOutcome, IndexedWaiter};
pub use backpressure::BackpressureLevel;
pub use config::EngineConfig;
pub use engine::{Admission, Engine, EngineStatus, RecallHit, ShutdownReport, queued_bytes};
pub use error::{EngineError, RejectReason, Rejection};
pub use index::{IndexKind, Metric};
pub use observation::{Batch, Observation, Priority};
pub use space::{SpaceInfo, SpaceParams, validate_space_name};
