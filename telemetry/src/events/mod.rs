//! Registered telemetry events, one module per stage.
//!
//! Each struct is created once (per queue, space, worker or server) and holds its metric
//! handles; each method is one named event that records its metrics (and, where an operator
//! should see it, its log line) in one place. Call sites pass enum indices, never strings.
//!
//! - [`queue`]: lane depth, queue bytes and wait time.
//! - [`space`]: admission outcomes, indexing, latency, backpressure and index size of a space.
//! - [`pool`]: a worker's batches, failures, steals and utilization.
//! - [`api`]: HTTP and gRPC request metrics and open sessions.

pub mod api;
pub mod pool;
pub mod queue;
pub mod space;

pub use api::{GrpcEvents, HttpEvents, HttpRoute};
pub use pool::{PoolEvents, WorkerEvents};
pub use queue::QueueEvents;
pub use space::SpaceEvents;
