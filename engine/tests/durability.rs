//! The durable log through the engine's API: what is acknowledged DURABLE is there after the
//! engine is closed and opened again on the same data directory (vectors, content, parameters),
//! drops stay dropped, and a data directory is refused clearly when it is locked, of another
//! format, or not ours. (Killing the process is `server/tests/crash.rs`.)

mod common;

use common::sample;
use engram_dataset::{read_fvecs, read_lines, shared_data_dir};
use engram_engine::{
    AckLevel, Batch, Durability, Engine, EngineConfig, EngineError, IndexKind, Observation, Priority, SpaceParams,
    StorageConfig,
};
use engram_telemetry::{Telemetry, TelemetryConfig};
use std::path::Path;
use std::time::Duration;

fn storage(dir: &Path, durability: Durability) -> StorageConfig {
    StorageConfig::at(dir, durability)
}

/// 2,000 MiniLM vectors with their text, in batches of 100, acknowledged DURABLE; then a close
/// and an open: every observation is back with its content, recall finds each vector first,
/// and the ids are still taken (resubmitting is a duplicate).
fn round_trip(kind: IndexKind, durability: Durability) {
    let tmp = tempfile::tempdir().unwrap();
    let data = shared_data_dir("minilm-384-stdlib").unwrap();
    let base = read_fvecs(&data.join("base.fvecs")).unwrap();
    let text = read_lines(&data.join("base.txt")).unwrap();
    let n = 2_000usize;
    let params = SpaceParams { index: Some(kind), ..SpaceParams::with_dim(base.dim) };
    {
        let engine = common::open_storage(&storage(tmp.path(), durability));
        engine.create_space("m", params).unwrap();
        for start in (0..n).step_by(100) {
            let batch = Batch {
                upsert: false,
                priority: Priority::Normal,
                observations: (start..start + 100)
                    .map(|i| Observation {
                        id: i as u64,
                        embedding: base.row(i).to_vec(),
                        content: Some(text[i].clone()),
                    })
                    .collect(),
            };
            let a = engine.submit("m", batch, AckLevel::Durable).unwrap();
            assert_eq!(a.accepted, 100);
            a.durable.expect("a durable waiter").wait_blocking().unwrap();
        }
        assert!(engine.shutdown(Some(Duration::from_secs(60))).drained);
    }
    let engine = common::open_storage(&storage(tmp.path(), durability));
    let status = engine.status().recovery;
    // The clean shutdown checkpointed the index (usearch or hnsw_rs): nothing is replayed.
    assert_eq!(status.replayed_observations, 0, "{status:?}");
    assert_eq!(status.corrupt_records, 0);
    let info = engine.describe_space("m").unwrap();
    assert_eq!(info.params, params.resolved());
    assert_eq!(info.vectors, n);
    for i in (0..n).step_by(97) {
        let hits = engine.recall("m", base.row(i).to_vec(), 1, None).unwrap();
        assert_eq!(hits[0].id, i as u64);
        assert_eq!(hits[0].content.as_deref(), Some(text[i].as_str()));
    }
    let again = Batch {
        upsert: false,
        priority: Priority::High,
        observations: vec![Observation { id: 5, embedding: base.row(5).to_vec(), content: None }],
    };
    let a = engine.submit("m", again, AckLevel::Durable).unwrap();
    assert_eq!((a.accepted, a.duplicates), (0, 1));
    a.durable.unwrap().wait_blocking().unwrap();
}

#[test]
fn durable_observations_come_back_after_a_restart_usearch_fsync() {
    round_trip(IndexKind::Usearch, Durability::Fsync);
}

#[test]
fn durable_observations_come_back_after_a_restart_hnsw_rs_os() {
    round_trip(IndexKind::HnswRs, Durability::Os);
}

#[test]
fn a_dropped_space_stays_dropped_and_its_name_starts_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let v = |i: u64| vec![1.0, i as f32 + 1.0];
    let batch = |ids: std::ops::Range<u64>| Batch {
        upsert: false,
        priority: Priority::Normal,
        observations: ids.map(|i| Observation { id: i, embedding: v(i), content: None }).collect(),
    };
    {
        let engine = common::open_storage(&storage(tmp.path(), Durability::Fsync));
        for name in ["keep", "gone"] {
            engine.create_space(name, SpaceParams::with_dim(2)).unwrap();
            engine.submit(name, batch(0..50), AckLevel::Durable).unwrap().durable.unwrap().wait_blocking().unwrap();
        }
        engine.drop_space("gone").unwrap();
        // The same name again: a new space, whose log does not hold the old one's records.
        engine.create_space("gone", SpaceParams::with_dim(2)).unwrap();
        engine.submit("gone", batch(100..110), AckLevel::Durable).unwrap().durable.unwrap().wait_blocking().unwrap();
    }
    let engine = common::open_storage(&storage(tmp.path(), Durability::Fsync));
    let spaces: Vec<(String, usize)> = engine.list_spaces().into_iter().map(|s| (s.name, s.vectors)).collect();
    assert_eq!(spaces, vec![("gone".to_owned(), 10), ("keep".to_owned(), 50)]);
}

#[test]
fn a_second_engine_on_the_same_data_directory_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let _first = common::open_storage(&storage(tmp.path(), Durability::Fsync));
    let e = Engine::open(
        EngineConfig::default(),
        &storage(tmp.path(), Durability::Fsync),
        Telemetry::new(TelemetryConfig::default()),
    )
    .unwrap_err();
    let EngineError::InvalidArgument { field, reason } = e else { panic!("{e:?}") };
    assert_eq!(field, "storage.data_dir");
    assert!(reason.contains(&tmp.path().display().to_string()) && reason.contains("another"), "{reason}");
}

#[test]
fn a_foreign_or_newer_data_directory_is_refused_naming_the_path() {
    let open_err = |dir: &Path| match Engine::open(
        EngineConfig::default(),
        &storage(dir, Durability::Fsync),
        Telemetry::new(TelemetryConfig::default()),
    ) {
        Err(EngineError::InvalidArgument { field, reason }) => {
            assert_eq!(field, "storage.data_dir");
            reason
        }
        other => panic!("{other:?}"),
    };
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("FORMAT"), "99\n").unwrap();
    let reason = open_err(tmp.path());
    assert!(reason.contains("FORMAT") && reason.contains("`99`"), "{reason}");

    let foreign = tempfile::tempdir().unwrap();
    std::fs::write(foreign.path().join("notes.txt"), "mine").unwrap();
    let reason = open_err(foreign.path());
    assert!(reason.contains("no FORMAT file"), "{reason}");
    assert!(foreign.path().join("notes.txt").exists());

    let file = foreign.path().join("notes.txt");
    let reason = open_err(&file);
    assert!(reason.contains("notes.txt"), "{reason}");
}

#[test]
fn many_concurrent_durable_writers_share_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = std::sync::Arc::new(common::open_storage(&storage(tmp.path(), Durability::Fsync)));
    engine.create_space("g", SpaceParams::with_dim(8)).unwrap();
    let writers = 8u64;
    let per = 40u64;
    std::thread::scope(|s| {
        for w in 0..writers {
            let engine = &engine;
            s.spawn(move || {
                for b in 0..per {
                    let id = w * 1_000_000 + b;
                    let batch = Batch {
                        upsert: false,
                        priority: Priority::Normal,
                        observations: vec![Observation {
                            id,
                            embedding: (0..8).map(|j| ((id + j) % 7) as f32 + 1.0).collect(),
                            content: None,
                        }],
                    };
                    let a = engine.submit("g", batch, AckLevel::Durable).unwrap();
                    a.durable.unwrap().wait_blocking().unwrap();
                }
            });
        }
    });
    let text = engine.telemetry().render();
    let syncs = sample(&text, "engram_storage_syncs_total").unwrap();
    let records = sample(&text, "engram_storage_appended_records_total").unwrap();
    assert_eq!(records, (writers * per) as f64);
    assert!(syncs >= 1.0 && syncs < records, "{syncs} syncs for {records} appends: no group commit");
}
