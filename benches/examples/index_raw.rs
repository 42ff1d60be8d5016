//! One index backend, raw (no engine): multi-threaded insert rate, query latency, recall@10 and
//! memory on a whole shared data set, as one JSON object on stdout.
//!
//! ```sh
//! cargo run --release -p engram-benches --example index_raw -- DATASET BACKEND THREADS [N] [EFS]
//! # e.g. glove-50-angular-100k usearch 2 100000 32,64,128,256
//! ```
//! Inserts the first `N` base vectors (default, or `all`: every one) from `THREADS` threads with the engine's
//! default parameters (cosine, `M` 16, `ef_construction` 200), then runs every query on one
//! thread at `ef_search` 64 and scores recall@10 against `groundtruth.ivecs` (or an exact top-10
//! over the first `N` when `N` is smaller than the set). This is the "raw multi-threaded insert
//! rate" docs/benchmarks.md compares the engine's end-to-end rate with. `EFS`, a comma-separated
//! list of `ef_search` values, adds a `sweep` of recall@10 and query latency at each, for
//! comparing backends at equal recall.

use engram_benches::{build, data_dir, exact_top_k, index_params, read_data, recall, rss_bytes};
use engram_dataset as dataset;
use engram_engine::index::IndexKind;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: index_raw DATASET BACKEND THREADS [N] [EFS]";
    let name = args.next().expect(usage);
    let kind: IndexKind = args.next().expect(usage).parse().unwrap_or_else(|e: String| panic!("BACKEND: {e}"));
    let threads: usize = args.next().expect(usage).parse().expect("THREADS: a whole number");
    let data = read_data(&name);
    let n: usize =
        args.next().filter(|a| a != "all").map_or(data.base.len(), |a| a.parse().expect("N: a whole number or `all`"));
    assert!(n <= data.base.len() && n > 0, "N: 1 to {}", data.base.len());
    let efs: Vec<usize> = args
        .next()
        .map(|a| a.split(',').map(|e| e.parse().expect("EFS: comma-separated whole numbers")).collect())
        .unwrap_or_default();
    let k = 10;
    let ef = 64;
    let truth: Vec<Vec<i32>> = if n == data.base.len() {
        let gt = dataset::read_ivecs(&data_dir(&name).join("groundtruth.ivecs")).unwrap_or_else(|e| panic!("{e}"));
        (0..data.queries.len()).map(|q| gt.row(q)[..k].to_vec()).collect()
    } else {
        exact_top_k(&data, n, data.queries.len(), k)
    };

    let rss_before = rss_bytes();
    let (idx, insert_seconds) = build(kind, &data, n, threads);
    let rss_after = rss_bytes();

    // (mean, p99) query latency in seconds at `ef`, one query at a time.
    let latency = |ef: usize| {
        let mut latencies: Vec<f64> = (0..data.queries.len())
            .map(|q| {
                let t0 = Instant::now();
                std::hint::black_box(idx.search(data.queries.row(q), k, ef));
                t0.elapsed().as_secs_f64()
            })
            .collect();
        latencies.sort_by(f64::total_cmp);
        let mean = latencies.iter().sum::<f64>() / latencies.len() as f64;
        (mean, latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)])
    };
    let (mean, p99) = latency(ef);
    let recall_at_10 = recall(idx.as_ref(), &data, &truth, k, ef);
    let memory = idx.memory_bytes();
    let sweep: Vec<serde_json::Value> = efs
        .iter()
        .map(|&ef| {
            let (mean, p99) = latency(ef);
            serde_json::json!({
                "ef_search": ef,
                "recall_at_10": recall(idx.as_ref(), &data, &truth, k, ef),
                "query_ms_mean": mean * 1e3,
                "query_ms_p99": p99 * 1e3,
            })
        })
        .collect();

    let params = index_params(kind, data.base.dim, n, threads);
    let report = serde_json::json!({
        "dataset": name,
        "index": kind.as_str(),
        "dim": data.base.dim,
        "vectors": n,
        "threads": threads,
        "m": params.m,
        "ef_construction": params.ef_construction,
        "ef_search": ef,
        "insert_seconds": insert_seconds,
        "insert_per_s": n as f64 / insert_seconds,
        "queries": data.queries.len(),
        "query_ms_mean": mean * 1e3,
        "query_ms_p99": p99 * 1e3,
        "recall_at_10": recall_at_10,
        "index_memory_bytes": memory,
        "index_bytes_per_vector": memory as f64 / n as f64,
        "rss_growth_bytes": rss_after.saturating_sub(rss_before),
        "rss_growth_bytes_per_vector": rss_after.saturating_sub(rss_before) as f64 / n as f64,
        "cores": std::thread::available_parallelism().map_or(1, |c| c.get()),
        "sweep": sweep,
    });
    println!("{report}");
}
