//! A full disk and an I/O error through the fault-injecting store (feature `fault-injection`):
//! a failed sync or journal write refuses new writes with the failure's kind (never accepts and
//! then loses them), the store heals by itself once the fault clears (reopened, the writes no
//! sync covered written again), and then the running engine and a restart from the same data
//! directory agree on every id: everything acknowledged DURABLE is there with its vector and
//! content, every acknowledged delete stays deleted. A reader searches beside it all and never
//! fails. The real full disk (a small tmpfs) is
//! `server/tests/disk_full.rs`.

mod common;

use common::sample;
use engram_dataset::{read_fvecs, shared_data_dir};
use engram_engine::{
    AckLevel, Batch, Durability, Engine, EngineError, Observation, Priority, SpaceParams, StorageConfig,
    StorageErrorKind,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Where the fault is injected.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Syncs fail: the batch reaches the journal (and memory), its DURABLE ack fails.
    Sync,
    /// Journal writes fail: the batch is refused whole, nothing of it kept.
    Write,
}

/// An engine on `dir` with fsync durability and checkpoints only at shutdown.
fn open(dir: &std::path::Path) -> Engine {
    common::open_storage(&StorageConfig {
        checkpoint_interval_s: 0,
        checkpoint_after_operations: 0,
        ..StorageConfig::at(dir, Durability::Fsync)
    })
}

/// Rows `rows` of `base` as one batch (row `i` is id `i`, content `row {i}`).
fn batch(base: &engram_dataset::Vectors<f32>, rows: std::ops::Range<usize>) -> Batch {
    Batch {
        upsert: false,
        priority: Priority::Normal,
        observations: rows
            .map(|i| Observation { id: i as u64, embedding: base.row(i).to_vec(), content: Some(format!("row {i}")) })
            .collect(),
    }
}

/// Submits `b` and waits for its DURABLE ack: `Ok` once acknowledged, the error otherwise (and
/// whether the batch was admitted before its sync failed).
fn durable(engine: &Engine, b: Batch) -> Result<(), (bool, EngineError)> {
    let a = engine.submit("f", b, AckLevel::Durable).map_err(|e| (false, e))?;
    a.durable.unwrap().wait_blocking().map_err(|e| (true, e))
}

fn storage_kind(e: &EngineError) -> Option<StorageErrorKind> {
    match e {
        EngineError::Storage { kind, .. } => Some(*kind),
        _ => None,
    }
}

#[test]
fn a_failed_sync_or_write_refuses_writes_until_the_store_heals_by_itself_and_nothing_acknowledged_is_lost() {
    let data = shared_data_dir("glove-50-angular-100k").unwrap();
    let base = read_fvecs(&data.join("base.fvecs")).unwrap();
    for (fault, kind) in [(Fault::Sync, StorageErrorKind::Full), (Fault::Write, StorageErrorKind::Io)] {
        let tmp = tempfile::tempdir().unwrap();
        let engine = open(tmp.path());
        engine.create_space("f", SpaceParams::with_dim(base.dim)).unwrap();
        let mut acked = BTreeSet::new();
        for start in (0..1_000).step_by(50) {
            durable(&engine, batch(&base, start..start + 50)).unwrap();
            acked.extend(start as u64..start as u64 + 50);
        }
        // A reader beside it all: recall and get never fail, through the failure and the heal
        // (readers wait on the store's lock while it reopens).
        let stop = AtomicBool::new(false);
        let reads = std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let id = (reads * 7_919) % 1_000;
                    let hits = engine.recall("f", base.row(id as usize).to_vec(), 5, Some(64)).unwrap();
                    assert!(!hits.is_empty());
                    let o = engine.get_observation("f", id).unwrap().expect("an acknowledged id");
                    assert_eq!(o.content.as_deref(), Some(format!("row {id}").as_str()));
                    reads += 1;
                }
                reads
            });
            let faults = engine.storage_faults().expect("a store");
            match fault {
                Fault::Sync => faults.fail_syncs(Some(kind)),
                Fault::Write => faults.fail_writes(Some(kind)),
            }

            // The first batch after the fault fails: admitted, then its sync fails (Sync), or
            // refused at its write (Write). Either way it is not acknowledged.
            let (admitted, e) = durable(&engine, batch(&base, 1_000..1_050)).expect_err("not acknowledged");
            assert_eq!(storage_kind(&e), Some(kind), "{fault:?}: {e}");
            assert_eq!(admitted, matches!(fault, Fault::Sync), "{fault:?}: {e}");
            // While the fault lasts (heal attempts fail too), every write is refused with the same
            // kind at once, deletes included, and reads go on.
            for attempt in 0..20 {
                let start = 1_100 + attempt * 10;
                let (admitted, e) = durable(&engine, batch(&base, start..start + 10)).expect_err("refused");
                assert!(!admitted && storage_kind(&e) == Some(kind), "{fault:?} attempt {attempt}: {e}");
                let e = engine.delete("f", vec![1, 2, 3], AckLevel::Durable).expect_err("a delete is refused too");
                assert_eq!(storage_kind(&e), Some(kind), "{fault:?}: {e}");
                assert!(engine.get_observation("f", 7).unwrap().is_some(), "{fault:?}: reads go on");
                std::thread::sleep(Duration::from_millis(50));
            }

            // The fault clears: the store heals by itself, writes are accepted again.
            faults.fail_syncs(None);
            faults.fail_writes(None);
            let cleared = Instant::now();
            let mut refused = 0;
            while let Err((_, e)) = durable(&engine, batch(&base, 1_400..1_450)) {
                assert_eq!(storage_kind(&e), Some(kind), "{fault:?}: {e}");
                assert!(cleared.elapsed() < Duration::from_secs(20), "{fault:?}: the store did not heal in 20 s");
                refused += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            println!(
                "{fault:?}: healed {:?} after the fault cleared ({refused} refusals meanwhile)",
                cleared.elapsed()
            );
            acked.extend(1_400..1_450);
            for start in (1_450..2_000).step_by(50) {
                durable(&engine, batch(&base, start..start + 50)).unwrap();
                acked.extend(start as u64..start as u64 + 50);
            }
            stop.store(true, Ordering::Relaxed);
            reader.join().unwrap()
        });
        println!("{fault:?}: {reads} reads (recall and get) beside the failure and the heal, none failed");
        let d = engine.delete("f", (0..100).collect(), AckLevel::Durable).unwrap();
        d.durable.unwrap().wait_blocking().unwrap();
        let deleted: BTreeSet<u64> = (0..100).collect();

        let metrics = engine.telemetry().render();
        assert_eq!(sample(&metrics, "engram_storage_heals_total"), Some(1.0), "{fault:?}");
        let errors = sample(&metrics, &format!("engram_storage_errors_total{{kind=\"{}\"}}", kind.as_str())).unwrap();
        assert!(errors >= 1.0, "{fault:?}: the failure is counted");

        // What the running engine holds, id by id; then a restart must hold exactly the same.
        let held = |engine: &Engine| -> BTreeMap<u64, Option<String>> {
            (0..2_000u64).map(|id| (id, engine.get_observation("f", id).unwrap().and_then(|o| o.content))).collect()
        };
        let before = held(&engine);
        for id in &acked - &deleted {
            assert_eq!(before[&id].as_deref(), Some(format!("row {id}").as_str()), "{fault:?}: acked {id}");
        }
        for id in &deleted {
            assert_eq!(before[id], None, "{fault:?}: deleted {id}");
        }
        // The batch whose sync failed is in memory (Sync), so the heal wrote it again; the
        // batch whose write failed is nowhere (Write).
        let in_doubt = (1_000..1_050u64).filter(|id| before[id].is_some()).count();
        assert_eq!(in_doubt, if matches!(fault, Fault::Sync) { 50 } else { 0 }, "{fault:?}");
        assert!(engine.shutdown(Some(Duration::from_secs(60))).drained);
        drop(engine);

        let engine = open(tmp.path());
        let after = held(&engine);
        let differ: Vec<u64> = before.keys().copied().filter(|id| before[id] != after[id]).collect();
        assert!(
            differ.is_empty(),
            "{fault:?}: a restart disagrees on {} ids, first {:?}",
            differ.len(),
            &differ[..5.min(differ.len())]
        );
        // Recall finds the acknowledged vectors.
        let live: Vec<u64> = (&acked - &deleted).into_iter().collect();
        let misses = live
            .iter()
            .step_by(10)
            .filter(|&&id| engine.recall("f", base.row(id as usize).to_vec(), 1, Some(128)).unwrap()[0].id != id)
            .count();
        assert!(misses <= 2, "{fault:?}: {misses} of {} acknowledged vectors not found first", live.len() / 10);
        println!(
            "{fault:?} ({}): acknowledged {}, deleted {}, lost 0, resurrected 0, the unacknowledged batch kept: {}",
            kind.as_str(),
            acked.len(),
            deleted.len(),
            in_doubt > 0
        );
    }
}

/// A duplicate that arrives while the first insert of its ids is between claiming them and
/// appending them waits for that append; when the append fails, the duplicate's DURABLE ack
/// fails too (the ids are not stored), never succeeds. The injected write delay holds the first
/// insert in that window for 300 ms.
#[test]
fn a_duplicate_of_ids_whose_first_write_fails_is_never_acknowledged_durable() {
    let data = shared_data_dir("glove-50-angular-100k").unwrap();
    let base = read_fvecs(&data.join("base.fvecs")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let engine = open(tmp.path());
    engine.create_space("f", SpaceParams::with_dim(base.dim)).unwrap();
    durable(&engine, batch(&base, 0..50)).unwrap();
    let faults = engine.storage_faults().expect("a store");
    faults.delay_writes(Duration::from_millis(300));
    faults.fail_writes(Some(StorageErrorKind::Io));
    std::thread::scope(|s| {
        let first = s.spawn(|| durable(&engine, batch(&base, 100..150)));
        std::thread::sleep(Duration::from_millis(100));
        // The first insert has claimed 100..150 and waits on its (failing) write.
        let a = engine.submit("f", batch(&base, 100..150), AckLevel::Durable).unwrap();
        assert_eq!((a.accepted, a.duplicates), (0, 50), "the ids are claimed by the first insert");
        let e = a.durable.unwrap().wait_blocking().expect_err("acknowledged durable, but the ids are not stored");
        assert!(matches!(e, EngineError::Storage { .. }), "{e}");
        let (admitted, e) = first.join().unwrap().expect_err("the first insert's write failed");
        assert!(!admitted && storage_kind(&e) == Some(StorageErrorKind::Io), "{e}");
    });
    faults.delay_writes(Duration::ZERO);
    faults.fail_writes(None);
    let started = Instant::now();
    while durable(&engine, batch(&base, 100..150)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "the store did not heal");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(engine.get_observation("f", 120).unwrap().is_some(), "the retry stored the ids");
}
