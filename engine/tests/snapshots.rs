//! Snapshots through the engine's API: a snapshot restored on another engine answers recall
//! exactly as the original did at the snapshot's position (usearch: the same ids and scores),
//! with the same content, deletes and upserts, and survives a restart there; one taken while
//! writers stream holds every write acknowledged before it began and nothing submitted after
//! it ended; a cut or altered file is refused and leaves no space; hnsw_rs spaces (rebuilt
//! from the snapshot's log) come back whole.

mod common;

use engram_dataset::{read_fvecs, shared_data_dir};
use engram_engine::{
    AckLevel, Batch, Engine, EngineError, IndexKind, Observation, Priority, SnapshotSource, SpaceParams,
};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn glove() -> (engram_dataset::Vectors<f32>, engram_dataset::Vectors<f32>) {
    let dir = shared_data_dir("glove-50-angular-100k").unwrap();
    (read_fvecs(&dir.join("base.fvecs")).unwrap(), read_fvecs(&dir.join("query.fvecs")).unwrap())
}

/// Top-10 ids and scores of `n` queries.
fn answers(engine: &Engine, space: &str, queries: &engram_dataset::Vectors<f32>, n: usize) -> Vec<Vec<(u64, f32)>> {
    (0..n)
        .map(|q| {
            let hits = engine.recall(space, queries.row(q).to_vec(), 10, Some(128)).unwrap();
            hits.into_iter().map(|h| (h.id, h.score)).collect()
        })
        .collect()
}

fn content(engine: &Engine, space: &str, id: u64) -> Option<String> {
    engine.get_observation(space, id).unwrap().map(|o| o.content.unwrap_or_default())
}

#[test]
fn a_restored_snapshot_answers_exactly_as_the_original_did_and_survives_a_restart() {
    let (base, queries) = glove();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = common::open(a_dir.path());
    a.create_space("g", SpaceParams::with_dim(base.dim)).unwrap();
    common::write_rows(&a, "g", &base, 0..5000, |i| i as u64, false);
    common::write_rows(&a, "g", &base, 5000..5500, |i| (i - 5000) as u64, true);
    a.delete("g", (1000..1200).collect(), AckLevel::Indexed).unwrap().indexed.unwrap().wait_blocking();
    let before = answers(&a, "g", &queries, 200);
    let info = a.create_snapshot("g").unwrap();
    assert!(info.name.starts_with("g-") && info.name.ends_with(".snapshot"), "{}", info.name);
    assert_eq!(a.list_snapshots("g").unwrap(), vec![info.clone()]);
    // Writes after the snapshot are not in it.
    common::write_rows(&a, "g", &base, 6000..7000, |i| i as u64, false);

    // Another engine, from the file.
    let file = b_dir.path().join("moved.snapshot");
    std::fs::copy(a.snapshot_path("g", &info.name).unwrap(), &file).unwrap();
    let b = common::open(&b_dir.path().join("data"));
    let restored = b.restore_snapshot("g2", &SnapshotSource::File(file.clone())).unwrap();
    assert_eq!(restored.vectors, 4800, "5000 inserted, 200 deleted");
    let check = |engine: &Engine, when: &str| {
        assert_eq!(answers(engine, "g2", &queries, 200), before, "{when}: recall differs from the original's");
        for id in (0..5000u64).step_by(13) {
            let want = match id {
                0..500 => Some(format!("row {}", 5000 + id)),
                1000..1200 => None,
                _ => Some(format!("row {id}")),
            };
            assert_eq!(content(engine, "g2", id), want, "{when}: id {id}");
        }
        assert_eq!(content(engine, "g2", 6500), None, "{when}: a write after the snapshot");
    };
    check(&b, "after the restore");
    assert!(matches!(b.restore_snapshot("g2", &SnapshotSource::File(file.clone())), Err(EngineError::SpaceExists(_))));
    // The restored space takes writes, and both survive a restart: the shutdown checkpoint
    // is loaded, so the answers are exactly those before it.
    common::write_rows(&b, "g2", &base, 8000..8100, |i| i as u64, false);
    let before_restart = answers(&b, "g2", &queries, 200);
    assert!(b.shutdown(Some(Duration::from_secs(60))).drained);
    drop(b);
    let b = common::open(&b_dir.path().join("data"));
    assert_eq!(b.status().recovery.replayed_observations, 0, "the restored space was checkpointed at shutdown");
    assert_eq!(answers(&b, "g2", &queries, 200), before_restart, "recall changed across the restart");
    assert_eq!(content(&b, "g2", 8050), Some("row 8050".into()));
    assert_eq!(content(&b, "g2", 1100), None, "a delete before the snapshot stays deleted");

    // By name, on the engine that took it.
    let copy =
        a.restore_snapshot("copy", &SnapshotSource::Named { space: "g".into(), name: info.name.clone() }).unwrap();
    assert_eq!(copy.vectors, 4800);
    assert_eq!(answers(&a, "copy", &queries, 200), before);

    // A cut or altered file is refused, and leaves no space behind.
    let bytes = std::fs::read(&file).unwrap();
    for (what, bad) in [
        ("cut", bytes[..bytes.len() / 2].to_vec()),
        ("altered", {
            let mut b = bytes.clone();
            b[bytes.len() / 3] ^= 1;
            b
        }),
        ("empty", Vec::new()),
    ] {
        let path = b_dir.path().join(format!("{what}.snapshot"));
        std::fs::write(&path, bad).unwrap();
        match b.restore_snapshot("bad", &SnapshotSource::File(path)) {
            Err(EngineError::InvalidArgument { field, reason }) => {
                assert_eq!(field, "snapshot", "{what}");
                println!("{what}: {reason}");
            }
            other => panic!("{what}: {other:?}"),
        }
        assert!(b.describe_space("bad").is_err(), "{what}: no space is left behind");
    }
    assert!(matches!(
        a.restore_snapshot("x", &SnapshotSource::Named { space: "g".into(), name: "nope.snapshot".into() }),
        Err(EngineError::SnapshotNotFound(_))
    ));
    // Counted: on `a` one snapshot, one restore by name and one refused (no such snapshot); on
    // `b`, since its restart, the three bad files.
    let count = |e: &Engine, op: &str, outcome: &str| {
        let series = format!(r#"engram_storage_snapshots_total{{operation="{op}",outcome="{outcome}"}}"#);
        common::sample(&e.telemetry().render(), &series)
    };
    assert_eq!(count(&a, "create", "ok"), Some(1.0));
    assert_eq!((count(&a, "restore", "ok"), count(&a, "restore", "failed")), (Some(1.0), Some(1.0)));
    assert_eq!((count(&b, "restore", "ok"), count(&b, "restore", "failed")), (Some(0.0), Some(3.0)));
    assert_eq!(count(&b, "create", "failed"), Some(0.0));
    assert!(matches!(a.snapshot_path("g", "../../LOCK"), Err(EngineError::InvalidArgument { .. })));

    // What a crash mid-snapshot or mid-upload leaves is removed at the next start; whole
    // snapshots stay.
    let snapshots = b_dir.path().join("data/snapshots");
    std::fs::create_dir_all(snapshots.join("g2")).unwrap();
    std::fs::write(snapshots.join(".upload-1-0.tmp"), b"partial").unwrap();
    std::fs::write(snapshots.join("g2/.g2-9-9.snapshot.tmp"), b"partial").unwrap();
    let kept = b.create_snapshot("g2").unwrap();
    b.shutdown(Some(Duration::from_secs(60)));
    drop(b);
    let b = common::open(&b_dir.path().join("data"));
    assert!(!snapshots.join(".upload-1-0.tmp").exists() && !snapshots.join("g2/.g2-9-9.snapshot.tmp").exists());
    assert_eq!(b.list_snapshots("g2").unwrap(), vec![kept]);

    // Snapshots outlive their space and go when deleted.
    a.drop_space("g").unwrap();
    assert_eq!(a.list_snapshots("g").unwrap().len(), 1);
    a.delete_snapshot("g", &info.name).unwrap();
    assert!(a.list_snapshots("g").unwrap().is_empty());
    assert!(matches!(a.snapshot_path("g", &info.name), Err(EngineError::SnapshotNotFound(_))));
    a.shutdown(Some(Duration::from_secs(60)));
    b.shutdown(Some(Duration::from_secs(60)));
}

#[test]
fn a_snapshot_taken_while_writers_stream_holds_what_was_acknowledged_before_it() {
    let (base, _) = glove();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Arc::new(common::open(a_dir.path()));
    a.create_space("s", SpaceParams::with_dim(base.dim)).unwrap();
    let base = Arc::new(base);
    // Two writers: one inserting new ids 0..45_000, one upserting new versions of ids 0..2000
    // (rows 50_000 on) until told to stop; both pace themselves so the snapshot lands mid-way.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(parking_lot::Mutex::new(HashSet::new()));
    let submitted = Arc::new(parking_lot::Mutex::new(HashSet::new()));
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let (a, base, stop, acked, submitted) =
                (Arc::clone(&a), Arc::clone(&base), Arc::clone(&stop), Arc::clone(&acked), Arc::clone(&submitted));
            std::thread::spawn(move || {
                let mut start = 0usize;
                while !stop.load(Ordering::Acquire) && (w == 1 || start < 45_000) {
                    let rows = start..start + 20;
                    let id = |i: usize| if w == 0 { i as u64 } else { (i % 2000) as u64 };
                    let row = |i: usize| if w == 0 { i } else { 50_000 + i % 45_000 };
                    let observations = rows
                        .clone()
                        .map(|i| Observation {
                            id: id(i),
                            embedding: base.row(row(i)).to_vec(),
                            content: Some(format!("w{w} row {}", row(i))),
                        })
                        .collect();
                    submitted.lock().extend(rows.clone().map(id));
                    let batch = Batch { upsert: w == 1, priority: Priority::Normal, observations };
                    match a.submit("s", batch, AckLevel::Durable) {
                        Ok(adm) => {
                            adm.durable.unwrap().wait_blocking().unwrap();
                            acked.lock().extend(rows.map(id));
                        }
                        Err(EngineError::Rejected(r)) => {
                            std::thread::sleep(r.retry_after.min(Duration::from_millis(50)))
                        }
                        Err(e) => panic!("{e}"),
                    }
                    start += 20;
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    let acked_before: HashSet<u64> = acked.lock().clone();
    let info = a.create_snapshot("s").unwrap();
    let submitted_after: HashSet<u64> = submitted.lock().clone();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Release);
    for w in writers {
        w.join().unwrap();
    }
    assert!(acked_before.len() >= 1000, "only {} acknowledged before the snapshot", acked_before.len());
    assert!(acked.lock().len() > submitted_after.len(), "the writers were still writing after the snapshot");
    let file = b_dir.path().join("s.snapshot");
    std::fs::copy(a.snapshot_path("s", &info.name).unwrap(), &file).unwrap();
    let b = common::open(&b_dir.path().join("data"));
    let restored = b.restore_snapshot("s", &SnapshotSource::File(file)).unwrap();
    let mut present = 0usize;
    let mut found = 0usize;
    let max_id = submitted_after.iter().max().copied().unwrap_or(0) + 100;
    for id in 0..max_id {
        let Some(c) = content(&b, "s", id) else {
            assert!(!acked_before.contains(&id), "id {id} was acknowledged before the snapshot and is missing");
            continue;
        };
        assert!(submitted_after.contains(&id), "id {id} ({c}) was submitted after the snapshot ended");
        present += 1;
        // Its vector is the one its content names.
        let row: usize = c.rsplit(' ').next().unwrap().parse().unwrap();
        let hit = b.recall("s", base.row(row).to_vec(), 1, Some(128)).unwrap();
        found += usize::from(hit.first().map(|h| h.id) == Some(id));
    }
    println!(
        "acked before {}, submitted by the end {}, restored {present} (vectors {}), top-1 self-recall {found}",
        acked_before.len(),
        submitted_after.len(),
        restored.vectors
    );
    assert_eq!(present, restored.vectors);
    assert!(found as f64 >= 0.95 * present as f64, "{found} of {present} found by their own vector");
    a.shutdown(Some(Duration::from_secs(60)));
    b.shutdown(Some(Duration::from_secs(60)));
}

#[test]
fn an_hnsw_rs_snapshot_rebuilds_the_space_from_its_log() {
    let (base, _) = glove();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = common::open(a_dir.path());
    a.create_space("h", SpaceParams { index: Some(IndexKind::HnswRs), ..SpaceParams::with_dim(base.dim) }).unwrap();
    common::write_rows(&a, "h", &base, 0..3000, |i| i as u64, false);
    common::write_rows(&a, "h", &base, 3000..3300, |i| (i - 3000) as u64, true);
    a.delete("h", (500..600).collect(), AckLevel::Indexed).unwrap().indexed.unwrap().wait_blocking();
    let info = a.create_snapshot("h").unwrap();
    let file = b_dir.path().join("h.snapshot");
    std::fs::copy(a.snapshot_path("h", &info.name).unwrap(), &file).unwrap();
    let b = common::open(&b_dir.path().join("data"));
    let restored = b.restore_snapshot("h", &SnapshotSource::File(file)).unwrap();
    assert_eq!(restored.vectors, 2900);
    assert_eq!(restored.params.index, Some(IndexKind::HnswRs));
    let mut found = 0;
    for id in (0..3000u64).step_by(7) {
        let want = match id {
            0..300 => Some(3000 + id as usize),
            500..600 => None,
            _ => Some(id as usize),
        };
        assert_eq!(content(&b, "h", id), want.map(|r| format!("row {r}")), "id {id}");
        if let Some(row) = want {
            let hit = b.recall("h", base.row(row).to_vec(), 1, Some(128)).unwrap();
            found += usize::from(hit.first().map(|h| h.id) == Some(id));
        }
    }
    assert!(found >= 390, "{found} found by their own vector");
    a.shutdown(Some(Duration::from_secs(60)));
    b.shutdown(Some(Duration::from_secs(60)));
}
