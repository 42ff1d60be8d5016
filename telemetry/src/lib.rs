//! Telemetry for Engram Stream: one catalog of metrics, handles registered once, events named per stage.
//!
//! The engine and server never spell a metric name. Each stage holds a small *registered event*
//! struct (in the spirit of Vector's `internal_events`) whose handles were created once, at
//! construction, with bounded label values; recording is then an atomic operation on a cached
//! handle, with no lookup, allocation or formatting.
//!
//! Modules:
//! - [`catalog`]: every metric we export: name, type, unit, labels, help text and fixed buckets.
//!   `docs/metrics.md` is checked against it by a test.
//! - [`registry`]: [`Telemetry`], one family of primitives per catalog entry; registers handles
//!   and renders the text exposition for `/metrics` (metrics-exporter-prometheus's formatting).
//! - [`labels`]: bounded label values (`memory_space` overflows into `__other__`) and the fixed
//!   value sets of the enumerated labels.
//! - [`events`]: the registered events of each stage: queue, pool, backpressure, space, api.
//! - [`health`]: `engram_health_score`, a documented 40/30/15/15 composite read from the registry.
//! - [`primitives`]: lock-free `Counter`, `Gauge` and `Histogram` (fixed buckets, consistent
//!   snapshots, interpolated quantiles), modelled with loom through the [`sync`] shim.

pub mod catalog;
pub mod events;
pub mod health;
pub mod labels;
pub mod primitives;
pub mod registry;
pub mod sync;

pub use registry::{Telemetry, TelemetryConfig};
