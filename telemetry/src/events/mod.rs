//! Registered telemetry events, one module per stage.
//!
//! Each struct is created once (per queue, space, worker or server) and holds its metric
//! handles; each method is one named event that records its metrics (and, where an operator
//! should see it, its log line) in one place. Call sites pass enum indices, never strings.
//!
//! - [`queue`]: lane depth, queue bytes and wait time.
//! - [`space`]: admission outcomes, indexing, latency, backpressure and index size of a space.
//! - [`pool`]: a worker's batches, failures, steals and utilization.
//! - [`api`]: HTTP and gRPC request metrics, refused requests by reason, open sessions.
//! - [`throttle`]: one log line per interval for events that repeat (level changes).
//! - [`process`]: CPU, memory, file descriptors and threads of the process (metrics-process).

/// False when the crate is built with the `off` feature: every recording that exists only to be
/// exported (counters, latency and size histograms, in-flight gauges) becomes a no-op, while
/// what the engine steers by (lane depth, queue wait counts, batch size and duration, drain rate,
/// utilization, sampled series) is still recorded. For measuring telemetry's end-to-end cost
/// (`docs/telemetry.md`); never for production, where the exported series would read 0.
pub const RECORDING: bool = !cfg!(feature = "off");

pub mod api;
pub mod pool;
pub mod process;
pub mod queue;
pub mod space;
pub mod throttle;

pub use api::{ConnectionEvents, GrpcEvents, HttpEvents, HttpRoute};
pub use pool::{PoolEvents, WorkerEvents};
pub use process::{ProcessEvents, ProcessSample};
pub use queue::QueueEvents;
pub use space::SpaceEvents;
pub use throttle::LogThrottle;
