//! The engine in process, on the durable path: the ingest rate until searchable, resident
//! memory per vector, and recall@10 with query time at several `ef_search` values, for one
//! space `quantization`, as one JSON object on stdout.
//!
//! ```sh
//! cargo run --release -p engram-benches --example engine_sweep -- DATASET QUANTIZATION [DURABILITY] [EFS]
//! # e.g. minilm-384-stdlib i8 fsync 32,64,96,128,192,256
//! ```
//! Opens an engine (2 workers, embedded defaults) on a fresh data directory under the system
//! temp directory with `DURABILITY` (`fsync`, the default, `os` or `none`), creates a space
//! with the defaults (cosine, `M` 16, `ef_construction` 200) and `QUANTIZATION` (`none`, `f16`,
//! `bf16`, `i8`; rescore factor the default), and submits every base vector (with `base.txt` as
//! content where the set has it) in batches of 100 with up to 16 in flight, each acknowledged
//! INDEXED (which implies DURABLE). The rate is observations over the time until the last one
//! is indexed. Then every query runs through `Engine::recall_timed` on one thread (validation,
//! normalisation, the search, rescoring and the content read included) at each `ef_search`,
//! scored against `groundtruth.ivecs`. `WITH_CONTENT=0` in the environment asks for ids and
//! scores only (`with_content: false`: no hit's content is read, as hnswlib answers labels and
//! distances).
//!
//! `RESCORE_FACTOR` in the environment sets the space's `rescore_factor` (default: the engine's);
//! `INDEX` its backend (`usearch`, the default, `hnsw_rs` or `engram`); `SWEEP_REPEAT` (default 3)
//! how many times each `ef_search` runs every query, the fastest pass of each value reported, the
//! passes going round the values (background work of the store after the ingest, a flush or a
//! compaction, shares the 2 cores with the query thread; the sweep also starts 15 s after the last
//! ack for that reason). Before the sweep every query runs once at the first `ef_search`,
//! unmeasured, so the first measured value does not pay for a cold block cache.
//!
//! Memory: resident growth over the whole ingest divided by the vectors (includes the store's
//! fixed memtable and block cache), and over the second half only (the marginal cost per
//! vector, with the fixed parts mostly paid in the first half).

use engram_benches::{data_dir, read_data, rss_bytes, sweep_efs, sweep_repeat};
use engram_dataset as dataset;
use engram_engine::{Durability, Engine, EngineConfig, IndexKind, Quantization, SpaceParams, StorageConfig};
use engram_telemetry::{Telemetry, TelemetryConfig};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: engine_sweep DATASET QUANTIZATION [DURABILITY] [EFS]";
    let name = args.next().expect(usage);
    let quantization: Quantization =
        args.next().expect(usage).parse().unwrap_or_else(|e: String| panic!("QUANTIZATION: {e}"));
    let durability = match args.next().as_deref() {
        None | Some("fsync") => Durability::Fsync,
        Some("os") => Durability::Os,
        Some("none") => Durability::None,
        Some(other) => panic!("DURABILITY: fsync, os or none, not {other}"),
    };
    let efs = sweep_efs(args.next());
    let data = read_data(&name);
    let dir = data_dir(&name);
    let text = dataset::read_lines(&dir.join("base.txt")).ok();
    let gt = dataset::read_ivecs(&dir.join("groundtruth.ivecs")).unwrap_or_else(|e| panic!("{e}"));
    let k = 10;
    let n = data.base.len();

    let data_dir = std::env::temp_dir().join(format!("engram-engine-sweep-{}", std::process::id()));
    let storage = StorageConfig { checkpoint_interval_s: 60, ..StorageConfig::at(&data_dir, durability) };
    let config = EngineConfig { workers: 2, ..EngineConfig::default() };
    let engine = Engine::open(config, &storage, Telemetry::new(TelemetryConfig::default())).unwrap();
    while !engine.is_ready() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let defaults = SpaceParams::with_dim(data.base.dim);
    let rescore_factor = std::env::var("RESCORE_FACTOR")
        .ok()
        .map_or(defaults.rescore_factor, |f| f.parse().expect("RESCORE_FACTOR: a whole number"));
    let with_content = std::env::var("WITH_CONTENT").map_or(true, |w| w != "0");
    let index: IndexKind = std::env::var("INDEX")
        .map_or(Ok(IndexKind::Usearch), |i| i.parse())
        .unwrap_or_else(|e: String| panic!("INDEX: {e}"));
    let params = SpaceParams {
        index: Some(index),
        quantization: Some(quantization),
        rescore_factor,
        max_elements: n,
        ..defaults
    };
    engine.create_space("sweep", params).unwrap();

    let rss_before = rss_bytes();
    let mut rss_half = None;
    let started = Instant::now();
    engram_benches::ingest_indexed(&engine, "sweep", &data.base, text.as_deref(), |indexed| {
        if rss_half.is_none() && indexed >= n / 2 {
            rss_half = Some((rss_bytes(), indexed));
        }
    });
    let ingest_seconds = started.elapsed().as_secs_f64();
    let rss_after = rss_bytes();
    let (rss_at_half, half) = rss_half.unwrap();
    // Inserts a checkpoint deferred are acknowledged INDEXED from the tail (searchable) and
    // reach the index when its copy is done: wait for them before reading the index's memory.
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    let info = loop {
        let info = engine.describe_space("sweep").unwrap();
        if info.vectors == n || Instant::now() > deadline {
            break info;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(info.vectors, n, "vectors in the index two minutes after the last INDEXED ack");

    // Let the store's flushes and a checkpoint the ingest started finish before timing queries.
    std::thread::sleep(std::time::Duration::from_secs(15));
    for q in 0..data.queries.len() {
        std::hint::black_box(
            engine.recall_timed("sweep", data.queries.row(q).to_vec(), k, Some(efs[0]), with_content).unwrap(),
        );
    }
    let repeat = sweep_repeat();
    // Passes go round the ef values (ef 32, 64, ..., then again), so a burst of background work
    // slows one value in one pass, and the fastest pass of each value is kept.
    let mut passes: Vec<Vec<(f64, f64, Vec<f64>)>> = vec![Vec::new(); efs.len()];
    for _ in 0..repeat {
        for (i, &ef) in efs.iter().enumerate() {
            let mut latencies = Vec::with_capacity(data.queries.len());
            let mut total = 0.0;
            for q in 0..data.queries.len() {
                let t0 = Instant::now();
                let (hits, _) =
                    engine.recall_timed("sweep", data.queries.row(q).to_vec(), k, Some(ef), with_content).unwrap();
                latencies.push(t0.elapsed().as_secs_f64());
                let ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
                let truth: Vec<i32> = gt.row(q)[..k].to_vec();
                total += dataset::recall_at_k(&ids, &truth, k);
            }
            let mean = latencies.iter().sum::<f64>() / latencies.len() as f64;
            passes[i].push((mean, total / data.queries.len() as f64, latencies));
        }
    }
    let sweep: Vec<serde_json::Value> = efs
        .iter()
        .zip(passes)
        .map(|(&ef, passes)| {
            let (mean, recall, mut latencies) =
                passes.into_iter().min_by(|a, b| a.0.total_cmp(&b.0)).expect("one pass");
            latencies.sort_by(f64::total_cmp);
            serde_json::json!({
                "ef_search": ef,
                "recall_at_10": recall,
                "query_ms_mean": mean * 1e3,
                "query_ms_p50": latencies[latencies.len() / 2] * 1e3,
                "query_ms_p99": latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)] * 1e3,
                "passes": repeat,
            })
        })
        .collect();
    let report = serde_json::json!({
        "dataset": name,
        "system": format!("engram-{}", quantization.as_str()),
        "quantization": quantization.as_str(),
        "rescore_factor": params.rescore_factor,
        "durability": durability.as_str(),
        "dim": data.base.dim,
        "vectors": n,
        "content": text.is_some(),
        "with_content": with_content,
        "index": index.as_str(),
        "m": params.m,
        "ef_construction": params.ef_construction,
        "ingest_seconds": ingest_seconds,
        "ingest_per_s": n as f64 / ingest_seconds,
        "queries": data.queries.len(),
        "index_memory_bytes": info.memory_bytes,
        "rss_growth_bytes_per_vector": rss_after.saturating_sub(rss_before) as f64 / n as f64,
        "rss_growth_second_half_bytes_per_vector": rss_after.saturating_sub(rss_at_half) as f64 / (n - half) as f64,
        "rss_after_bytes": rss_after,
        "cores": std::thread::available_parallelism().map_or(1, |c| c.get()),
        "sweep": sweep,
    });
    engine.shutdown(Some(std::time::Duration::from_secs(120)));
    drop(engine);
    let _ = std::fs::remove_dir_all(&data_dir);
    println!("{report}");
}
