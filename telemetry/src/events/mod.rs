//! Registered telemetry events, one module per stage.
//!
//! Each struct is created once (per queue, space, worker or server) and holds its metric
//! handles; each method is one named event that records its metrics (and, where an operator
//! should see it, its log line) in one place. Call sites pass enum indices, never strings.
//!
//! - [`queue`]: queue wait time; lane depth, bytes, utilization and drain rate sampled from the
//!   engine.
//! - [`space`]: admission outcomes, indexing, latency, backpressure and index size of a space.
//! - [`pool`]: a worker's batches, failures, steals and utilization.
//! - [`api`]: HTTP and gRPC request metrics, refused requests by reason, open sessions.
//! - [`storage`]: the durable log: appends, group-commit syncs, errors, recovery.
//! - [`throttle`]: one log line per interval for events that repeat (level changes).
//! - [`auth`]: requests refused by authentication or authorization, keys configured, reloads.
//! - [`tls`]: TLS handshake failures, certificate reloads and expiry.
//! - [`trace`]: traces sampled and spans exported or dropped by the OTLP exporter.
//! - [`process`]: CPU, memory, file descriptors and threads of the process (metrics-process).

/// False when the crate is built with the `off` feature: every recording becomes a no-op
/// (counters, histograms, in-flight gauges). What the engine steers by (lane depths, drain
/// rate, insertion time, utilization, levels) is the engine's own state, which the exporter
/// samples at scrape time, so nothing the engine reads changes. For measuring telemetry's
/// end-to-end cost (`docs/telemetry.md`); never for production, where the exported series
/// would read 0.
pub const RECORDING: bool = !cfg!(feature = "off");

pub mod api;
pub mod auth;
pub mod pool;
pub mod process;
pub mod queue;
pub mod space;
pub mod storage;
pub mod throttle;
pub mod tls;
pub mod trace;

pub use api::{ConnectionEvents, GrpcEvents, HttpEvents, HttpRoute};
pub use auth::{AuthEvents, AuthFailure, Transport};
pub use pool::{PoolEvents, WorkerEvents};
pub use process::{ProcessEvents, ProcessSample};
pub use queue::{QueueEvents, QueueSources};
pub use space::SpaceEvents;
pub use storage::StorageEvents;
pub use throttle::LogThrottle;
pub use trace::{DropReason, SampleReason, TraceEvents};
