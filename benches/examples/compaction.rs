//! hnsw_rs tombstones and their compaction, raw (no engine): what a share of removed points
//! costs recall queries, and what [`VectorIndex::compact`] gives back, as one JSON object on
//! stdout.
//!
//! ```sh
//! cargo run --release -p engram-benches --example compaction -- DATASET [REMOVED_PERCENT] [N] [NQ]
//! # e.g. glove-50-angular-100k 40 all 1000
//! ```
//! Inserts the first `N` base vectors (default `all`) into an hnsw_rs index from 2 threads with
//! the engine's default parameters (cosine, `M` 16, `ef_construction` 200), removes
//! `REMOVED_PERCENT` % of them (default 40, spread evenly over the ids), then measures the first
//! `NQ` queries (default 1,000) one at a time at `ef_search` 64 and 128: mean and p99 latency
//! and recall@10 against an exact top-10 over the live points only. Then compacts the index
//! (timed, on this thread, nothing else running) and measures again. `index_memory_bytes` is
//! the backend's own accounting (tombstones count like points); RSS is reported too, but the
//! allocator need not return the old graph's pages to the system.

use engram_benches::{build, read_data};
use engram_engine::index::{IndexKind, VectorIndex};
use std::time::Instant;

/// Resident set size of this process, bytes (Linux `/proc/self/statm`).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// True for the ids this run removes: `percent` of every 100 consecutive ids, interleaved.
fn removed(id: usize, percent: usize) -> bool {
    (id * 37) % 100 < percent
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: compaction DATASET [REMOVED_PERCENT] [N] [NQ]";
    let name = args.next().expect(usage);
    let percent: usize = args.next().map_or(40, |a| a.parse().expect("REMOVED_PERCENT: a whole number"));
    assert!(percent < 100, "REMOVED_PERCENT: 0 to 99");
    let data = read_data(&name);
    let n: usize =
        args.next().filter(|a| a != "all").map_or(data.base.len(), |a| a.parse().expect("N: a whole number or `all`"));
    assert!(n <= data.base.len() && n > 0, "N: 1 to {}", data.base.len());
    let nq: usize = args.next().map_or(1_000, |a| a.parse().expect("NQ: a whole number"));
    let nq = nq.min(data.queries.len());
    let k = 10;

    let (idx, insert_seconds) = build(IndexKind::HnswRs, &data, n, 2);
    let live: Vec<usize> = (0..n).filter(|&i| !removed(i, percent)).collect();
    for i in (0..n).filter(|&i| removed(i, percent)) {
        assert!(idx.remove(i as u64));
    }
    // Exact top-k over the live points (inner product: cosine on the shared unit vectors).
    let truth: Vec<Vec<u64>> = (0..nq)
        .map(|q| {
            let query = data.queries.row(q);
            let mut scored: Vec<(f32, u64)> = live
                .iter()
                .map(|&i| (data.base.row(i).iter().zip(query).map(|(a, b)| a * b).sum::<f32>(), i as u64))
                .collect();
            scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
            scored[..k].iter().map(|s| s.1).collect()
        })
        .collect();

    let measure = |idx: &dyn VectorIndex| -> serde_json::Value {
        let at: Vec<serde_json::Value> = [64, 128]
            .into_iter()
            .map(|ef| {
                let mut latencies = Vec::with_capacity(nq);
                let mut found = 0usize;
                for (q, truth) in truth.iter().enumerate() {
                    let t0 = Instant::now();
                    let hits = idx.search(data.queries.row(q), k, ef);
                    latencies.push(t0.elapsed().as_secs_f64());
                    found += hits.iter().filter(|h| truth.contains(&h.id)).count();
                }
                latencies.sort_by(f64::total_cmp);
                serde_json::json!({
                    "ef_search": ef,
                    "recall_at_10": found as f64 / (nq * k) as f64,
                    "query_ms_mean": latencies.iter().sum::<f64>() / nq as f64 * 1e3,
                    "query_ms_p99": latencies[(nq * 99 / 100).min(nq - 1)] * 1e3,
                })
            })
            .collect();
        serde_json::json!({
            "vectors": idx.len(),
            "tombstones": idx.tombstones(),
            "index_memory_bytes": idx.memory_bytes(),
            "rss_bytes": rss_bytes(),
            "search": at,
        })
    };

    let before = measure(idx.as_ref());
    let started = Instant::now();
    let dropped = idx.compact(&|| false).unwrap_or_else(|e| panic!("compaction abandoned: {e}"));
    let compaction_seconds = started.elapsed().as_secs_f64();
    let after = measure(idx.as_ref());

    let report = serde_json::json!({
        "dataset": name,
        "index": "hnsw_rs",
        "dim": data.base.dim,
        "inserted": n,
        "removed_percent": percent,
        "insert_seconds": insert_seconds,
        "queries": nq,
        "compaction_seconds": compaction_seconds,
        "tombstones_dropped": dropped,
        "live_per_s_compacted": live.len() as f64 / compaction_seconds,
        "before": before,
        "after": after,
        "cores": std::thread::available_parallelism().map_or(1, |c| c.get()),
    });
    println!("{report}");
}
