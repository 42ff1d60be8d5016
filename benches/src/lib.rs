//! Benchmarks for Engram Stream, on the shared benchmark data.
//!
//! - `benches/queue.rs`: lane queue enqueue → dequeue, 1 and 2 threads, lanes mixed.
//! - `benches/ingest.rs`: admission; pool dispatch (one hot space, many spaces); index insert and
//!   search per backend on both shared data sets (recall@10 printed beside the time); the engine
//!   end to end (submit → indexed) per backend.
//! - `benches/telemetry.rs`: the telemetry primitives against `metrics` and `prometheus`.
//! - `examples/index_raw.rs`: one backend's multi-threaded insert rate, query latency, recall@10
//!   and bytes per vector on a whole data set, as JSON (the raw rate the engine is compared to).
//!
//! ```sh
//! cargo bench -p engram-benches -- --quick --noplot
//! ```
//! Results land in `target/criterion/<group>/<function>/new/estimates.json` (ns per iteration);
//! `scripts/criterion-summary.py` turns them into the table in docs/benchmarks.md.

use engram_dataset::{self as dataset, Vectors, recall_at_k};
use engram_engine::index::{self, IndexKind, IndexParams, VectorIndex};
use engram_engine::{AckLevel, Batch, Engine, EngineError, IndexedWaiter, Observation, Priority, SpaceParams};
use std::collections::VecDeque;
use std::path::PathBuf;

/// Resident set size of this process, bytes (Linux `/proc/self/statm`; 0 where it cannot be read).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// Submits every row of `base` (`n × dim`) to `space` as observations `0..n` (with `text[i]` as
/// content where given), in batches of 100 with up to 16 in flight, each acknowledged INDEXED,
/// and returns once the last is. When admission rejects a batch (backpressure or a full queue)
/// it waits for the oldest batch in flight, or for the rejection's `retry_after` when none is,
/// and sends again. `at_half(indexed)` runs once, with every batch sent so far indexed, when the
/// count sent first reaches half of `n` (a point to sample memory at).
///
/// # Panics
/// When the engine refuses a batch for another reason than backpressure, or fails an
/// observation.
pub fn ingest_indexed(
    engine: &Engine,
    space: &str,
    base: &Vectors<f32>,
    text: Option<&[String]>,
    mut at_half: impl FnMut(usize),
) {
    let n = base.len();
    let mut half_seen = false;
    let mut in_flight: VecDeque<IndexedWaiter> = VecDeque::new();
    for start in (0..n).step_by(100) {
        let end = (start + 100).min(n);
        let observations = (start..end)
            .map(|i| Observation { id: i as u64, embedding: base.row(i).to_vec(), content: text.map(|t| t[i].clone()) })
            .collect();
        let batch = Batch { upsert: false, priority: Priority::Normal, observations };
        let admitted = loop {
            match engine.submit(space, batch.clone(), AckLevel::Indexed) {
                Ok(a) => break a,
                Err(EngineError::Rejected(rejection)) => match in_flight.pop_front() {
                    Some(oldest) => assert_eq!(oldest.wait_blocking().failed, 0),
                    None => std::thread::sleep(rejection.retry_after),
                },
                Err(e) => panic!("submit: {e}"),
            }
        };
        in_flight.push_back(admitted.indexed.expect("INDEXED asked"));
        while in_flight.len() > 16 {
            assert_eq!(in_flight.pop_front().unwrap().wait_blocking().failed, 0);
        }
        if !half_seen && end >= n / 2 {
            half_seen = true;
            for w in in_flight.drain(..) {
                assert_eq!(w.wait_blocking().failed, 0);
            }
            at_half(end);
        }
    }
    for w in in_flight.drain(..) {
        assert_eq!(w.wait_blocking().failed, 0);
    }
}

/// Directory of a shared data set (see [`engram_dataset::shared_data_dir`]).
///
/// # Panics
/// When the directory does not exist (benchmarks need the real data).
pub fn data_dir(name: &str) -> PathBuf {
    engram_dataset::shared_data_dir(name).unwrap_or_else(|e| panic!("{e}"))
}

/// Base vectors (`n × dim`, row-major) and queries of a shared data set.
#[derive(Debug)]
pub struct Data {
    /// base.fvecs.
    pub base: Vectors<f32>,
    /// query.fvecs.
    pub queries: Vectors<f32>,
}

/// Reads a shared data set's base and query vectors.
///
/// # Panics
/// When the files are missing or malformed.
pub fn read_data(name: &str) -> Data {
    let dir = data_dir(name);
    let read = |f: &str| dataset::read_fvecs(&dir.join(f)).unwrap_or_else(|e| panic!("{e}"));
    Data { base: read("base.fvecs"), queries: read("query.fvecs") }
}

/// The parameters every benchmark uses: the engine's defaults for a space (cosine, `M` 16,
/// `ef_construction` 200), `ef_search` 64 (the value the benchmarks search at; a space's default
/// is 128), room for `n` vectors and `threads` concurrent callers, vectors held as `f32`
/// (quantization `none`: the raw backends, whose scores are exact without rescoring; the
/// engine's reduced kinds are measured by `examples/engine_sweep.rs`).
pub fn index_params(kind: IndexKind, dim: usize, n: usize, threads: usize) -> IndexParams {
    let space = SpaceParams::with_dim(dim);
    IndexParams {
        kind,
        metric: space.metric,
        dim,
        m: space.m,
        ef_construction: space.ef_construction,
        ef_search: 64,
        quantization: engram_engine::Quantization::None,
        max_elements: n,
        threads,
    }
}

/// Exact top-`k` ids of each of the first `nq` queries among the first `n` base vectors
/// ([`dataset::exact_top_k`]: inner product, which is cosine on the shared unit vectors).
pub fn exact_top_k(data: &Data, n: usize, nq: usize, k: usize) -> Vec<Vec<i32>> {
    (0..nq).map(|q| dataset::exact_top_k(&data.base, n, data.queries.row(q), k)).collect()
}

/// Builds an index of `kind` over the first `n` base vectors, inserting from `threads` threads
/// (interleaved rows), and returns it with the seconds the inserts took.
///
/// # Panics
/// When the backend cannot allocate the index.
pub fn build(kind: IndexKind, data: &Data, n: usize, threads: usize) -> (Box<dyn VectorIndex>, f64) {
    let idx = index::build(&index_params(kind, data.base.dim, n, threads)).unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let idx = &idx;
            s.spawn(move || {
                for i in (t..n).step_by(threads) {
                    idx.insert(i as u64, data.base.row(i));
                }
            });
        }
    });
    (idx, started.elapsed().as_secs_f64())
}

/// Mean recall@k of `idx` over the queries `truth` was computed for, searching at `ef`.
pub fn recall(idx: &dyn VectorIndex, data: &Data, truth: &[Vec<i32>], k: usize, ef: usize) -> f64 {
    let total: f64 = truth
        .iter()
        .enumerate()
        .map(|(q, t)| {
            let got: Vec<u64> = idx.search(data.queries.row(q), k, ef).iter().map(|h| h.id).collect();
            recall_at_k(&got, t, k)
        })
        .sum();
    total / truth.len() as f64
}

/// The `ef_search` values of a sweep: `arg`, comma-separated, or 32, 64, 96, 128, 192, 256.
///
/// # Panics
/// When `arg` is not comma-separated whole numbers (named `EFS`).
pub fn sweep_efs(arg: Option<String>) -> Vec<usize> {
    arg.unwrap_or_else(|| "32,64,96,128,192,256".into())
        .split(',')
        .map(|e| e.parse().expect("EFS: comma-separated whole numbers"))
        .collect()
}

/// Passes of a sweep over its `ef_search` values: `SWEEP_REPEAT`, default 3, at least 1.
///
/// # Panics
/// When `SWEEP_REPEAT` is set but not a whole number.
pub fn sweep_repeat() -> usize {
    std::env::var("SWEEP_REPEAT").ok().map_or(3, |r| r.parse().expect("SWEEP_REPEAT: a whole number")).max(1)
}
