//! A fixed in-process ingest, for counting instructions per observation with telemetry on and
//! off (`benches/scripts/telemetry-instructions.sh` runs it under cachegrind).
//!
//! ```sh
//! cargo run --release -p engram-benches --example ingest_fixed -- 2000 [DATASET]
//! ```
//! Loads the first `N` base vectors (and their text, when the data set has `base.txt`) of a
//! shared data set (default `minilm-384-stdlib`), starts an engine with one worker taking fixed
//! batches of 64, submits them in batches of 100 on the normal lane, waits until every one is
//! indexed, and shuts down. One worker and a fixed batch size keep the insertion order, and so
//! the index's work, the same from run to run and from build to build.

use engram_benches::data_dir;
use engram_dataset as dataset;
use engram_engine::AckLevel;
use engram_engine::{Batch, Engine, EngineConfig, IndexKind, Observation, Priority, SpaceParams};
use engram_telemetry::{Telemetry, TelemetryConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(2000, |a| a.parse().expect("N: a whole number of observations"));
    let name = args.next().unwrap_or_else(|| "minilm-384-stdlib".into());
    let dir = data_dir(&name);
    let base = dataset::read_fvecs(&dir.join("base.fvecs")).unwrap_or_else(|e| panic!("{e}"));
    let text = dataset::read_lines(&dir.join("base.txt")).ok();
    assert!(n <= base.len(), "N: at most {} observations in {name}", base.len());

    // A fixed batch size: adaptive sizing follows measured time, which differs between builds
    // and would change the insertion order and so the index's own work.
    let config = EngineConfig { workers: 1, min_batch: 64, max_batch: 64, ..EngineConfig::default() };
    let engine = Engine::new(config, Telemetry::new(TelemetryConfig::default())).expect("engine");
    engine
        // hnsw_rs: the backend docs/telemetry.md's instruction counts were taken with.
        .create_space(
            "fixed",
            SpaceParams { max_elements: n.max(1), index: Some(IndexKind::HnswRs), ..SpaceParams::with_dim(base.dim) },
        )
        .expect("space");
    let waiters: Vec<_> = (0..n)
        .step_by(100)
        .map(|start| {
            let observations = (start..(start + 100).min(n))
                .map(|i| Observation {
                    id: i as u64,
                    embedding: base.row(i).to_vec(),
                    content: text.as_ref().map(|t| t[i].clone()),
                })
                .collect();
            let admission = engine.submit(
                "fixed",
                Batch { upsert: false, priority: Priority::Normal, observations },
                AckLevel::Indexed,
            );
            admission.expect("admitted").indexed.expect("indexed waiter")
        })
        .collect();
    let mut indexed = 0;
    for w in waiters {
        let done = w.wait_blocking();
        assert_eq!(done.failed, 0, "no observation fails");
        indexed += done.indexed;
    }
    engine.shutdown(None);
    println!("{{\"observations\": {n}, \"indexed\": {indexed}}}");
}
