//! Loom models of Engram Stream's lock-free cores. The models live in `tests/` and compile only
//! under `RUSTFLAGS="--cfg engram_loom"` (a custom cfg: a global `--cfg loom` would switch tokio
//! into its own loom mode and break the build), which also swaps the engine's `sync` shim to
//! loom's atomics:
//!
//! ```sh
//! RUSTFLAGS="--cfg engram_loom" LOOM_MAX_PREEMPTIONS=3 \
//!   cargo test -p engram-loom-tests --profile loom --target-dir target/loom
//! ```
//!
//! - `tests/capacity.rs`: exact queue admission ([`engram_engine::admission::Capacity`]).
//! - `tests/telemetry.rs`: the telemetry primitives (counter, gauge, histogram).
//! - `tests/level_cell.rs`: backpressure levels with hysteresis
//!   ([`engram_engine::admission::LevelCell`]).
//! - `tests/graph.rs`: the HNSW graph core's publication order
//!   ([`engram_engine::index::graph::Graph`]: searches, inserts and removals beside each other).
