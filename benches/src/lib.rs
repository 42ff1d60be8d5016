//! Criterion benchmarks for Engram Stream (`benches/ingest.rs`), on the shared benchmark data.
//!
//! ```sh
//! cargo bench -p engram-benches -- --quick --noplot
//! ```
//! Results land in `target/criterion/<group>/<function>/new/estimates.json` (ns per iteration).

use std::path::PathBuf;

/// Directory of a shared data set (see [`engram_engine::dataset::shared_data_dir`]).
///
/// # Panics
/// When the directory does not exist (benchmarks need the real data).
pub fn data_dir(name: &str) -> PathBuf {
    engram_engine::dataset::shared_data_dir(name).unwrap_or_else(|e| panic!("{e}"))
}
