//! Index checkpoints through the engine's API: a clean shutdown checkpoints every usearch
//! space, so the next start loads the index and replays nothing; what comes after a checkpoint
//! is replayed from the log on top of it; a checkpoint that does not verify is moved aside and
//! the one before it used; the log behind the checkpoints is compacted; hnsw_rs spaces come
//! back whole, and their tombstones are compacted away after a checkpoint.

mod common;

use common::sample;
use engram_dataset::{read_fvecs, shared_data_dir};
use engram_engine::{AckLevel, Engine, IndexKind, SpaceParams};
use std::time::Duration;

/// What every id should hold: for ids 0..3000, row 10_000 + id for the upserted 0..1000 and
/// row id otherwise; ids 2000..2500 deleted; ids 3000..3500 (written after the first
/// checkpoint) row id.
fn check(engine: &Engine, space: &str, base: &engram_dataset::Vectors<f32>, with_tail: bool, when: &str) {
    let mut misses = 0;
    for id in (0..3500u64).step_by(7) {
        let got = engine.get_observation(space, id).unwrap();
        let row = match id {
            0..1000 => Some(10_000 + id as usize),
            2000..2500 => None,
            3000.. if !with_tail => None,
            _ => Some(id as usize),
        };
        match row {
            None => assert_eq!(got, None, "{space} {when}: {id} should be absent"),
            Some(row) => {
                assert_eq!(got.unwrap().content, Some(format!("row {row}")), "{space} {when}: {id}");
                let hit = engine.recall(space, base.row(row).to_vec(), 1, Some(256)).unwrap();
                misses += usize::from(hit.first().map(|h| h.id) != Some(id));
            }
        }
    }
    assert!(misses <= 3, "{space} {when}: {misses} ids not found first by their latest vector");
    let expected = 3000 - 500 + if with_tail { 500 } else { 0 };
    assert_eq!(engine.describe_space(space).unwrap().vectors, expected, "{space} {when}");
}

#[test]
fn a_shutdown_checkpoint_replays_nothing_and_a_corrupt_one_falls_back_to_the_previous() {
    let tmp = tempfile::tempdir().unwrap();
    let data = shared_data_dir("glove-50-angular-100k").unwrap();
    let base = read_fvecs(&data.join("base.fvecs")).unwrap();
    let spaces = [("u", IndexKind::Usearch), ("h", IndexKind::HnswRs), ("e", IndexKind::Engram)];
    {
        let engine = common::open(tmp.path());
        for (name, kind) in spaces {
            engine.create_space(name, SpaceParams { index: Some(kind), ..SpaceParams::with_dim(base.dim) }).unwrap();
            common::write_rows(&engine, name, &base, 0..3000, |i| (i % 10_000) as u64, false);
            common::write_rows(&engine, name, &base, 10_000..11_000, |i| (i % 10_000) as u64, true);
            let d = engine.delete(name, (2000..2500).collect(), AckLevel::Durable).unwrap();
            d.durable.unwrap().wait_blocking().unwrap();
        }
        assert!(engine.shutdown(Some(Duration::from_secs(60))).drained);
    }
    // Every backend checkpoints: usearch (uid 1) with save_to_buffer, hnsw_rs (uid 2) with its
    // dump, engram (uid 3) with its graph's own file.
    let manifests = [1, 2, 3].map(|uid| tmp.path().join(format!("checkpoints/{uid}/MANIFEST")));
    for (m, (name, _)) in manifests.iter().zip(spaces) {
        assert!(m.exists(), "space {name} has a checkpoint");
    }
    {
        let engine = common::open(tmp.path());
        let r = engine.status().recovery;
        // A clean stop checkpointed both: nothing to replay.
        assert_eq!(r.replayed_observations, 0, "{r:?}");
        for (name, _) in spaces {
            check(&engine, name, &base, false, "after a clean restart");
        }
        let metrics = engine.telemetry().render();
        for (name, _) in spaces {
            let age = format!(r#"engram_storage_checkpoint_age_seconds{{memory_space="{name}"}}"#);
            assert!(sample(&metrics, &age).is_some(), "{age}");
        }
        // A second checkpoint, with more after the first.
        for (name, _) in spaces {
            common::write_rows(&engine, name, &base, 3000..3500, |i| (i % 10_000) as u64, false);
        }
        assert!(engine.shutdown(Some(Duration::from_secs(60))).drained);
        for manifest in &manifests {
            let m: serde_json::Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
            assert_eq!(m["checkpoints"].as_array().unwrap().len(), 2, "{m}");
            // Corrupt the newest index file: one flipped byte.
            let newest = manifest.parent().unwrap().join(m["checkpoints"][0]["index_file"].as_str().unwrap());
            let mut bytes = std::fs::read(&newest).unwrap();
            let at = bytes.len() / 2;
            bytes[at] ^= 0x40;
            std::fs::write(&newest, bytes).unwrap();
        }
    }
    let engine = common::open(tmp.path());
    let r = engine.status().recovery;
    // Each space falls back to its previous checkpoint and replays the 500 written after it
    // (the log was kept behind it).
    assert_eq!(r.replayed_observations, 500 * spaces.len() as u64, "{r:?}");
    for (name, _) in spaces {
        check(&engine, name, &base, true, "after falling back");
    }
    for manifest in &manifests {
        let moved: Vec<_> = std::fs::read_dir(manifest.parent().unwrap())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".corrupt"))
            .collect();
        assert_eq!(moved.len(), 2, "the corrupt checkpoint's two files are moved aside, not deleted");
    }
    let metrics = engine.telemetry().render();
    let corrupt = sample(&metrics, r#"engram_storage_checkpoint_failures_total{reason="corrupt"}"#);
    assert_eq!(corrupt, Some(spaces.len() as f64));
    engine.shutdown(Some(Duration::from_secs(60)));
}

/// An engine on `dir` (`os` durability) that checkpoints a space after every 1,000 operations
/// and never by time.
fn checkpointing_every_1000_operations(dir: &std::path::Path) -> Engine {
    common::open_storage(&engram_engine::StorageConfig {
        checkpoint_interval_s: 0,
        checkpoint_after_operations: 1_000,
        ..engram_engine::StorageConfig::at(dir, engram_engine::Durability::Os)
    })
}

#[test]
fn a_checkpoint_follows_every_n_operations_so_a_crash_replays_at_most_about_n() {
    let data = shared_data_dir("glove-50-angular-100k").unwrap();
    let base = read_fvecs(&data.join("base.fvecs")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("live");
    let engine = checkpointing_every_1000_operations(&dir);
    engine.create_space("u", SpaceParams::with_dim(base.dim)).unwrap();
    // 1,500 operations at a time, 1.5 s apart (the trigger is checked every second); the
    // last 1,500 are copied at once, before the trigger can see them.
    for chunk in 0..4 {
        common::write_rows(&engine, "u", &base, chunk * 1500..(chunk + 1) * 1500, |i| (i % 10_000) as u64, false);
        if chunk < 3 {
            std::thread::sleep(Duration::from_millis(1500));
        }
    }
    let checkpoints = sample(&engine.telemetry().render(), "engram_storage_checkpoints_total").unwrap();
    assert!(checkpoints >= 3.0, "{checkpoints} checkpoints after 6,000 operations with a trigger at 1,000");
    // A crash image: the engine is still running.
    common::copy_dir(&dir, &tmp.path().join("image"));
    let recovered = common::open(&tmp.path().join("image"));
    let replayed = recovered.status().recovery.replayed_observations;
    println!("checkpoints {checkpoints}, replayed after the crash image {replayed} of 6,000");
    assert!(replayed <= 2_000, "replayed {replayed}: the count trigger did not bound the tail");
    assert_eq!(recovered.describe_space("u").unwrap().vectors, 6000);
    recovered.shutdown(Some(Duration::from_secs(60)));
    engine.shutdown(Some(Duration::from_secs(60)));
}

/// hnsw_rs keeps deletes and upserts as tombstones; once a checkpoint finds 20 % of a space's
/// points are tombstones, the index is rebuilt without them beside ingest and checkpointed
/// again: the tombstone gauge falls (to 0 unless the checkpoint that started the compaction
/// came in the middle of the delete batch), a crash image taken right after comes back with
/// the same few (the compacted graph is what the newest checkpoint holds), and neither the
/// live engine nor the recovered one returns a deleted id or misses a live one.
#[test]
fn hnsw_rs_tombstones_are_compacted_after_a_checkpoint_and_stay_gone_after_a_crash() {
    tombstones_are_compacted_after_a_checkpoint_and_stay_gone_after_a_crash(IndexKind::HnswRs);
}

/// The same for the engram backend (removals leave tombstones there too).
#[test]
fn engram_tombstones_are_compacted_after_a_checkpoint_and_stay_gone_after_a_crash() {
    tombstones_are_compacted_after_a_checkpoint_and_stay_gone_after_a_crash(IndexKind::Engram);
}

fn tombstones_are_compacted_after_a_checkpoint_and_stay_gone_after_a_crash(kind: IndexKind) {
    let data = shared_data_dir("glove-50-angular-100k").unwrap();
    let base = read_fvecs(&data.join("base.fvecs")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("live");
    let engine = checkpointing_every_1000_operations(&dir);
    engine.create_space("h", SpaceParams { index: Some(kind), ..SpaceParams::with_dim(base.dim) }).unwrap();
    let metrics = || engine.telemetry().render();
    let tombstones = || sample(&metrics(), r#"engram_index_tombstones{memory_space="h"}"#).unwrap();
    let compactions = || sample(&metrics(), r#"engram_index_compactions_total{outcome="compacted"}"#).unwrap();
    common::write_rows(&engine, "h", &base, 0..4000, |i| i as u64, false);
    // 500 upserted (each leaves a tombstone, unless the insert it replaces was still deferred
    // by a checkpoint's copy, which happens more the slower the dump: that vector never
    // reached the graph): at most 500 of 4,500 points, under the 20 % that start a compaction.
    let row = |id: u64| if id % 8 == 7 { 10_000 + (id / 8) as usize } else { id as usize };
    common::write_rows(&engine, "h", &base, 10_000..10_500, |i| (i - 10_000) as u64 * 8 + 7, true);
    std::thread::sleep(Duration::from_millis(2500)); // the checkpoints these trigger
    let upserted = tombstones();
    assert!(upserted > 0.0 && upserted <= 500.0, "{upserted} tombstones after 500 upserts");
    assert_eq!(compactions(), 0.0, "500 tombstones of 4,500 points start no compaction");
    // 1,500 deleted: 2,000 tombstones of 4,500 points.
    let live = |id: u64| id % 8 >= 3;
    let deleted: Vec<u64> = (0..4000).filter(|&id| !live(id)).collect();
    let d = engine.delete("h", deleted, AckLevel::Durable).unwrap();
    d.durable.unwrap().wait_blocking().unwrap();
    let started = std::time::Instant::now();
    while compactions() < 1.0 {
        assert!(started.elapsed() < Duration::from_secs(120), "no compaction; tombstones {}", tombstones());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The compaction checkpoints the space once more right after: wait until checkpoints stop.
    let mut last = sample(&metrics(), "engram_storage_checkpoints_total").unwrap();
    loop {
        std::thread::sleep(Duration::from_millis(1500));
        let now = sample(&metrics(), "engram_storage_checkpoints_total").unwrap();
        if now == last {
            break;
        }
        last = now;
    }
    let left = tombstones();
    println!("tombstones after the compaction: {left} (2,000 before)");
    assert!(left <= 50.0, "{left} tombstones left after the compaction");
    let check = |engine: &Engine, when: &str| {
        assert_eq!(engine.describe_space("h").unwrap().vectors, 2500, "{when}");
        let mut misses = 0;
        for id in 0..4000u64 {
            if !live(id) {
                assert_eq!(engine.get_observation("h", id).unwrap(), None, "{when}: deleted {id} is back");
                continue;
            }
            let hits = engine.recall("h", base.row(row(id)).to_vec(), 10, Some(128)).unwrap();
            assert!(hits.iter().all(|h| live(h.id)), "{when}: a deleted id returned for {id}: {hits:?}");
            misses += usize::from(hits.first().map(|h| h.id) != Some(id));
        }
        assert!(misses <= 10, "{when}: {misses} of 2,500 live ids not found first by their latest vector");
    };
    check(&engine, "after the compaction");
    common::copy_dir(&dir, &tmp.path().join("image"));
    let recovered = common::open(&tmp.path().join("image"));
    check(&recovered, "after a crash image taken after the compaction");
    let t = sample(&recovered.telemetry().render(), r#"engram_index_tombstones{memory_space="h"}"#).unwrap();
    assert_eq!(t, left, "the checkpoint written after the compaction holds the compacted graph");
    recovered.shutdown(Some(Duration::from_secs(60)));
    // Ingest goes on into the compacted index.
    common::write_rows(&engine, "h", &base, 20_000..21_000, |i| i as u64, false);
    assert_eq!(engine.recall("h", base.row(20_500).to_vec(), 1, Some(128)).unwrap()[0].id, 20_500);
    engine.shutdown(Some(Duration::from_secs(60)));
}

/// A start is ready once it has read the log, before what it read is in the graph: recall
/// scans the replayed tail exactly meanwhile. A crash image of an hnsw_rs space (its inserts
/// are the slow ones) with 8,000 operations and no checkpoint: 6,000 inserts, 1,000 upserts
/// and 1,000 deletes. Right after ready, while the workers still insert the tail, recall finds
/// each live id first by its latest vector and never returns a deleted one, and reading an id
/// gives its latest content; the catch-up then ends with every live vector in the graph.
#[test]
fn a_start_is_ready_before_its_replayed_tail_is_indexed_and_recall_scans_the_tail_exactly() {
    let data = shared_data_dir("glove-50-angular-100k").unwrap();
    let base = read_fvecs(&data.join("base.fvecs")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("live");
    let engine = common::open(&dir); // checkpoints only at shutdown
    engine
        .create_space("h", SpaceParams { index: Some(IndexKind::HnswRs), ..SpaceParams::with_dim(base.dim) })
        .unwrap();
    common::write_rows(&engine, "h", &base, 0..6000, |i| i as u64, false);
    // Every sixth id upserted to row 10,000 + id / 6; the ids ≡ 1 (mod 6) deleted.
    common::write_rows(&engine, "h", &base, 10_000..11_000, |i| (i - 10_000) as u64 * 6, true);
    let d = engine.delete("h", (0..6000).filter(|id| id % 6 == 1).collect(), AckLevel::Durable).unwrap();
    d.durable.unwrap().wait_blocking().unwrap();
    common::copy_dir(&dir, &tmp.path().join("image"));
    engine.shutdown(Some(Duration::from_secs(60)));

    let row = |id: u64| if id.is_multiple_of(6) { 10_000 + (id / 6) as usize } else { id as usize };
    let recovered = common::open_ready(&engram_engine::StorageConfig {
        checkpoint_interval_s: 0,
        checkpoint_after_operations: 0,
        ..engram_engine::StorageConfig::at(tmp.path().join("image"), engram_engine::Durability::Os)
    });
    let at_ready = recovered.status().recovery;
    println!("at ready: {at_ready:?}");
    assert_eq!(at_ready.replayed_observations, 8000, "{at_ready:?}");
    assert!(at_ready.catching_up && at_ready.unindexed_observations > 0, "{at_ready:?}");
    let (mut during, mut misses) = (0, 0);
    for id in 0..6000u64 {
        let catching_up = recovered.status().recovery.catching_up;
        let got = recovered.get_observation("h", id).unwrap();
        if id % 6 == 1 {
            assert_eq!(got, None, "deleted {id} is back");
            continue;
        }
        assert_eq!(got.unwrap().content, Some(format!("row {}", row(id))), "{id}");
        let hits = recovered.recall("h", base.row(row(id)).to_vec(), 10, None).unwrap();
        assert!(hits.iter().all(|h| h.id % 6 != 1), "a deleted id returned for {id}: {hits:?}");
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "not best first: {hits:?}");
        let mut ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), hits.len(), "an id returned twice for {id}: {hits:?}");
        misses += usize::from(hits.first().map(|h| h.id) != Some(id));
        during += usize::from(catching_up);
    }
    println!("recall checks while catching up: {during} of 5,000; not first: {misses}");
    assert!(during >= 100, "only {during} checks ran before the catch-up ended");
    assert!(misses <= 10, "{misses} of 5,000 live ids not found first by their latest vector");
    common::wait_caught_up(&recovered);
    let done = recovered.status().recovery;
    assert_eq!(done.unindexed_observations, 0, "{done:?}");
    assert_eq!(recovered.describe_space("h").unwrap().vectors, 5000);
    recovered.shutdown(Some(Duration::from_secs(60)));
}

/// While a checkpoint copies a space's index (usearch: under its write lock; hnsw_rs: its
/// dump), inserts of new ids do not wait: they go to the space's tail, searchable, and into
/// the index after the copy. Two writers stream GloVe rows with INDEXED acks for about 6 s
/// (longer, up to 30 s, until three checkpoints ran) with a checkpoint after every 1,000
/// operations; after each ack, each of the batch's vectors
/// is recalled at once and must come back first, checkpoint or not; at the end every vector
/// is in the index and the tail is empty.
#[test]
fn inserts_during_a_checkpoint_are_searchable_when_acknowledged_and_reach_the_index_after() {
    let data = shared_data_dir("glove-50-angular-100k").unwrap();
    let base = std::sync::Arc::new(read_fvecs(&data.join("base.fvecs")).unwrap());
    for kind in IndexKind::ALL {
        let tmp = tempfile::tempdir().unwrap();
        let engine = std::sync::Arc::new(checkpointing_every_1000_operations(tmp.path()));
        engine.create_space("s", SpaceParams { index: Some(kind), ..SpaceParams::with_dim(base.dim) }).unwrap();
        let started = std::time::Instant::now();
        let writers: Vec<_> = (0..2usize)
            .map(|w| {
                let (engine, base) = (std::sync::Arc::clone(&engine), std::sync::Arc::clone(&base));
                std::thread::spawn(move || {
                    let (mut misses, mut written) = (0, 0);
                    let mut start = w * 50_000;
                    // About 6 s, longer (up to 30 s) until three checkpoints ran while writing:
                    // on 2 cores hnsw_rs sometimes completed only two in 6 s (1 run of 6 at
                    // c5d64d2, 2 of 5 with issue 16's stage clocks, at 5,700 to 6,800 rows).
                    let writing = || {
                        let t = started.elapsed();
                        t < Duration::from_secs(6)
                            || (t < Duration::from_secs(30)
                                && sample(&engine.telemetry().render(), "engram_storage_checkpoints_total")
                                    .is_some_and(|c| c < 3.0))
                    };
                    while writing() && start < w * 50_000 + 40_000 {
                        common::write_rows(&engine, "s", &base, start..start + 100, |i| i as u64, false);
                        for i in (start..start + 100).step_by(10) {
                            let hits = engine.recall("s", base.row(i).to_vec(), 1, Some(256)).unwrap();
                            misses += usize::from(hits.first().map(|h| h.id) != Some(i as u64));
                        }
                        start += 100;
                        written += 100;
                    }
                    (written, misses)
                })
            })
            .collect();
        let (mut written, mut misses) = (0, 0);
        for w in writers {
            let (n, m) = w.join().unwrap();
            written += n;
            misses += m;
        }
        let metrics = engine.telemetry().render();
        let checkpoints = sample(&metrics, "engram_storage_checkpoints_total").unwrap();
        let deferred = sample(&metrics, "engram_storage_checkpoint_deferred_inserts_total").unwrap();
        println!(
            "{kind:?}: {written} written, {checkpoints} checkpoints, {deferred} inserts deferred, \
             {misses} not found first right after the ack"
        );
        assert!(checkpoints >= 3.0, "{kind:?}: only {checkpoints} checkpoints while writing");
        assert!(deferred > 0.0, "{kind:?}: no insert arrived while a checkpoint copied the index");
        assert!(
            misses <= written / 1000,
            "{kind:?}: {misses} of {} acknowledged vectors not found first",
            written / 10
        );
        // What the last checkpoint deferred reaches the index once that checkpoint is done
        // (`pending` falls just after an insert returns, so both are waited for).
        let waited = std::time::Instant::now();
        while engine.describe_space("s").map(|d| d.vectors < written || d.pending > 0).unwrap() {
            assert!(waited.elapsed() < Duration::from_secs(30), "{kind:?}: {:?}", engine.describe_space("s"));
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(engine.describe_space("s").unwrap().vectors, written, "{kind:?}");
        assert_eq!(engine.describe_space("s").unwrap().pending, 0, "{kind:?}");
        engine.shutdown(Some(Duration::from_secs(60)));
    }
}
