//! Resident memory of many small memory spaces: creates `SPACES` spaces (dim 384, one backend)
//! with `VECTORS` vectors each, waits until every vector is indexed, and prints one JSON line
//! with the process's resident set size before and after (`/proc/self/statm`) and the sum of
//! the spaces' reported `memory_bytes`.
//!
//! ```sh
//! cargo run --release -p engram-benches --example spaces_rss -- 1000 10 usearch
//! ```
//! (docs/benchmarks.md, "Many small spaces"). Uses only the engine API that predates the
//! change it measures, so the same file builds against the previous commit for a before/after.

use engram_engine::{AckLevel, Batch, Engine, EngineConfig, IndexKind, Observation, Priority, SpaceParams};
use engram_telemetry::{Telemetry, TelemetryConfig};
use std::time::Duration;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).expect("resident pages") * 4096
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let spaces: usize = args.first().map_or(1000, |a| a.parse().expect("SPACES"));
    let vectors: u64 = args.get(1).map_or(10, |a| a.parse().expect("VECTORS"));
    let kind: IndexKind = args.get(2).map_or(Ok(IndexKind::Usearch), |a| a.parse()).expect("usearch | hnsw_rs");
    let config = EngineConfig { workers: 2, ..EngineConfig::default() };
    let e = Engine::new(config, Telemetry::new(TelemetryConfig::default())).expect("engine");
    let before = rss_bytes();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for s in 0..spaces {
        let name = format!("user-{s}");
        e.create_space(&name, SpaceParams { index: Some(kind), ..SpaceParams::with_dim(384) }).expect("create");
        if vectors == 0 {
            continue;
        }
        let observations = (0..vectors)
            .map(|id| {
                let embedding = (0..384)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                    })
                    .collect();
                Observation { id, embedding, content: None }
            })
            .collect();
        let a = e
            .submit(&name, Batch { upsert: false, priority: Priority::Normal, observations }, AckLevel::Indexed)
            .expect("submit");
        a.indexed.expect("waiter").wait_blocking();
    }
    let after = rss_bytes();
    let reported: usize = e.list_spaces().iter().map(|s| s.memory_bytes).sum();
    println!(
        "{}",
        serde_json::json!({
            "index": kind.as_str(),
            "spaces": spaces,
            "vectors_per_space": vectors,
            "rss_before_bytes": before,
            "rss_after_bytes": after,
            "rss_per_space_bytes": (after - before) / spaces.max(1) as u64,
            "memory_bytes_reported": reported,
        })
    );
    e.shutdown(Some(Duration::from_secs(60)));
}
