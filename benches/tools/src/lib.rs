//! Benchmark tooling for Engram Stream, run as `engram-tools load|capacity` (or through
//! `engram-stream load|capacity`, which runs this binary). A client of the server: it depends on
//! the server crate only for the generated `engram.v1` client.
//!
//! Modules:
//! - [`load`]: streams a TEXMEX data set into a running server over gRPC or HTTP (one shared
//!   pacing, retry and tally loop, `load::drive`, over a transport per protocol), waits until
//!   every observation is indexed, scores recall@10 and writes a JSON report
//!   ([`load::LoadReport`]), with the server's own view from `/metrics` (`load::scrape`, parsed
//!   by `prometheus-parse`).
//! - [`capacity`]: sizes a deployment from `load` reports, and [`capacity::criterion`] the
//!   per-observation costs criterion measured.
//! - [`otlp_sink`]: an OTLP/gRPC trace receiver that only counts, for the cost of tracing
//!   against a live endpoint (`benches/scripts/tracing-cost.sh`).
//! - `progress`: the load's progress, an `indicatif` bar (rate, ETA) on a terminal and a plain
//!   line every 2 s otherwise.

pub mod capacity;
pub mod load;
pub mod otlp_sink;
mod progress;
