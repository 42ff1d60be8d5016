//! Criterion benchmarks for Engram Stream (`benches/ingest.rs`), on the shared benchmark data.
//!
//! ```sh
//! cargo bench -p engram-benches -- --quick --noplot
//! ```
//! Results land in `target/criterion/<group>/<function>/new/estimates.json` (ns per iteration).

use std::path::PathBuf;

/// Directory of a shared data set: `$ENGRAM_DATA_DIR/<name>`, else `../shared/data/<name>`
/// beside the repository.
///
/// # Panics
/// When the directory does not exist (benchmarks need the real data).
pub fn data_dir(name: &str) -> PathBuf {
    let root = std::env::var_os("ENGRAM_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    let dir = root.join(name);
    assert!(dir.exists(), "benchmark data {} not found", dir.display());
    dir
}
