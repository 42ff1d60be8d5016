//! Our own HNSW graph core (`engram_engine::index::graph`), raw: the same measurement as
//! `benches/scripts/hnswlib-raw.py`, for a side-by-side ratio in one run.
//!
//! ```sh
//! cargo build-release && target/release/examples/graph_raw DATASET [EFS]
//! # e.g. glove-50-angular-100k 32,64,96,128,192,256
//! ```
//! Normalises every base and query vector (cosine, as hnswlib's `cosine` space does inside
//! `add_items`; not timed), inserts every base vector from 2 threads (interleaved rows) at `M`
//! 16, `ef_construction` 200, then at each `ef_search` answers every query on one thread,
//! `SWEEP_REPEAT` (default 3) passes round the values with the fastest pass reported, and
//! scores recall@10 against `groundtruth.ivecs`. Prints one JSON object shaped like
//! hnswlib-raw.py's.

use engram_benches::{data_dir, read_data, rss_bytes, sweep_efs, sweep_repeat};
use engram_dataset::{self as dataset, recall_at_k};
use engram_engine::index::Metric;
use engram_engine::index::graph::{DistanceKind, Graph};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: graph_raw DATASET [EFS]";
    let name = args.next().expect(usage);
    let efs = sweep_efs(args.next());
    let repeat = sweep_repeat();
    let (threads, m, ef_construction, k) = (2, 16, 200, 10);
    let data = read_data(&name);
    let dim = data.base.dim;
    let prepare = |v: &[f32]| {
        let mut v = v.to_vec();
        Metric::Cosine.prepare(&mut v).expect("a zero vector in the data set");
        v
    };
    let base: Vec<Vec<f32>> = (0..data.base.len()).map(|i| prepare(data.base.row(i))).collect();
    let queries: Vec<Vec<f32>> = (0..data.queries.len()).map(|q| prepare(data.queries.row(q))).collect();
    let gt = dataset::read_ivecs(&data_dir(&name).join("groundtruth.ivecs")).unwrap_or_else(|e| panic!("{e}"));
    let truth: Vec<Vec<i32>> = (0..queries.len()).map(|q| gt.row(q)[..k].to_vec()).collect();
    let n = base.len();

    let rss_before = rss_bytes();
    let graph = Graph::new(dim, m, ef_construction, DistanceKind::InnerProduct).unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (graph, base) = (&graph, &base);
            s.spawn(move || {
                for i in (t..n).step_by(threads) {
                    graph.insert(i as u64, &base[i]).unwrap_or_else(|e| panic!("{e}"));
                }
            });
        }
    });
    let insert_seconds = started.elapsed().as_secs_f64();
    let rss_after = rss_bytes();

    let mut best: Vec<(f64, f64)> = vec![(f64::INFINITY, 0.0); efs.len()];
    for _ in 0..repeat {
        for (slot, &ef) in best.iter_mut().zip(&efs) {
            let started = Instant::now();
            let answers: Vec<Vec<u64>> = queries
                .iter()
                .map(|q| graph.search(q, k, ef).unwrap_or_else(|e| panic!("{e}")).iter().map(|h| h.id).collect())
                .collect();
            let seconds = started.elapsed().as_secs_f64();
            if seconds < slot.0 {
                let recall =
                    answers.iter().zip(&truth).map(|(a, t)| recall_at_k(a, t, k)).sum::<f64>() / truth.len() as f64;
                *slot = (seconds, recall);
            }
        }
    }
    let sweep: Vec<serde_json::Value> = efs
        .iter()
        .zip(&best)
        .map(|(ef, (seconds, recall))| {
            serde_json::json!({
                "ef_search": ef,
                "recall_at_10": recall,
                "query_ms_mean": seconds / queries.len() as f64 * 1e3,
                "passes": repeat,
            })
        })
        .collect();
    let report = serde_json::json!({
        "dataset": name,
        "system": "engram-graph",
        "dim": dim,
        "vectors": n,
        "threads": threads,
        "m": m,
        "ef_construction": ef_construction,
        "insert_seconds": insert_seconds,
        "insert_per_s": n as f64 / insert_seconds,
        "queries": queries.len(),
        "index_memory_bytes": graph.memory_bytes(),
        "rss_growth_bytes_per_vector": rss_after.saturating_sub(rss_before) as f64 / n as f64,
        "cores": std::thread::available_parallelism().map_or(1, |c| c.get()),
        "sweep": sweep,
    });
    println!("{report}");
}
