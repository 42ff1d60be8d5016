//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

/// A deterministic pseudo-random vector of `dim` values in [-0.5, 0.5) (xorshift64 from `seed`).
pub fn vector(dim: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..dim)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// Value of one exported sample, e.g. `engram_streaming_queue_depth{priority="high"}` (the
/// series with its labels, exactly as rendered), or `None` when it is not in `text`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}

/// An engine with 2 workers over `storage`, once its recovery finished and what it replayed is
/// all indexed (at most 120 s).
pub fn open_storage(storage: &engram_engine::StorageConfig) -> engram_engine::Engine {
    let engine = open_ready(storage);
    wait_caught_up(&engine);
    engine
}

/// An engine with 2 workers over `storage`, as soon as it is ready (its log read; what it
/// replayed may not be in the index yet: recall scans it exactly until it is).
pub fn open_ready(storage: &engram_engine::StorageConfig) -> engram_engine::Engine {
    use engram_engine::{Engine, EngineConfig};
    let config = EngineConfig { workers: 2, ..EngineConfig::default() };
    let telemetry = engram_telemetry::Telemetry::new(engram_telemetry::TelemetryConfig::default());
    let engine = Engine::open(config, storage, telemetry).unwrap();
    let started = std::time::Instant::now();
    while !engine.is_ready() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "recovery did not finish: {:?}",
            engine.status().recovery
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    engine
}

/// Waits (at most 120 s) until every observation `engine` replayed at start is in its index.
pub fn wait_caught_up(engine: &engram_engine::Engine) {
    let started = std::time::Instant::now();
    while engine.status().recovery.catching_up {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "the replayed observations were not indexed: {:?}",
            engine.status().recovery
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// [`open_storage`] on data directory `dir`, `Os` durability, checkpoints only at shutdown
/// (neither by time nor by count).
pub fn open(dir: &std::path::Path) -> engram_engine::Engine {
    use engram_engine::{Durability, StorageConfig};
    open_storage(&StorageConfig {
        checkpoint_interval_s: 0,
        checkpoint_after_operations: 0,
        ..StorageConfig::at(dir, Durability::Os)
    })
}

/// Writes rows `rows` of `base` to `space` in batches of 100 (row `i` as id `id(i)`, content
/// `row {i}`; `upsert` on every batch) and waits until each batch is indexed.
pub fn write_rows(
    engine: &engram_engine::Engine,
    space: &str,
    base: &engram_dataset::Vectors<f32>,
    rows: std::ops::Range<usize>,
    id: impl Fn(usize) -> u64,
    upsert: bool,
) {
    use engram_engine::{AckLevel, Batch, Observation, Priority};
    for start in rows.clone().step_by(100) {
        let batch = Batch {
            upsert,
            priority: Priority::Normal,
            observations: (start..(start + 100).min(rows.end))
                .map(|i| Observation { id: id(i), embedding: base.row(i).to_vec(), content: Some(format!("row {i}")) })
                .collect(),
        };
        let a = engine.submit(space, batch, AckLevel::Indexed).unwrap();
        a.durable.unwrap().wait_blocking().unwrap();
        assert_eq!(a.indexed.unwrap().wait_blocking().failed, 0);
    }
}

/// Copies `from` to `to` recursively (a crash image of a running engine's data directory: what
/// the OS holds at that moment).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            // A file removed meanwhile (a checkpoint replaced) is simply not in the image.
            let _ = std::fs::copy(entry.path(), &target);
        }
    }
}
