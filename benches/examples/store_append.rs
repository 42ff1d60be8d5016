//! The storage engine candidates for the durable log (issue 13), fjall and redb, on Engram's
//! write: `WRITERS` threads each append `BATCHES` batches of 100 MiniLM-384 observations (id,
//! 384 little-endian f32, the line of `base.txt`: about 1.6 kB), and a batch counts only once it
//! is durable. Group commit in both: one sync covers every batch appended since the previous.
//!
//! - fjall 3 (LSM, one journal): writers commit `WriteBatch`es to the journal (the OS page
//!   cache) concurrently; one syncer thread calls `Database::persist(PersistMode::SyncAll)` in
//!   a loop, and a writer waits for a sync that *started after* its commit.
//! - redb 4 (copy-on-write B-tree, one writer at a time): writers hand their batch to one
//!   committer thread, which writes every batch queued since its last commit in one
//!   transaction with `Durability::Immediate` (its commit is the sync).
//!
//! Modes: `sync` (durable per the above) and `nosync` (fjall: the journal write reaches the OS,
//! no persist; redb: `Durability::None`). Prints one JSON line per store, mode and round:
//! records per second, syncs, records per sync, p99 batch latency (append → durable), disk
//! bytes per record. Two rounds, the stores alternating.
//!
//! ```sh
//! cargo run --release -p engram-benches --example store_append -- 4 100 /work/store-append
//! ```
//! (docs/benchmarks.md, "Storage engine for the durable log"). DIR must be on the disk to be
//! measured (not tmpfs); its subdirectories are created and removed.

use engram_benches::data_dir;
use engram_dataset as dataset;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

const BATCH: usize = 100;

/// What one run measured.
struct Run {
    secs: f64,
    syncs: u64,
    batch_latency: Vec<f64>,
}

/// Record `i`: the id's observation as the log would hold it (vector bytes, then the text).
fn record(base: &dataset::Vectors<f32>, text: &[String], i: usize) -> Vec<u8> {
    let row = base.row(i % base.len());
    let line = text[i % text.len()].as_bytes();
    let mut v = Vec::with_capacity(row.len() * 4 + line.len());
    row.iter().for_each(|x| v.extend_from_slice(&x.to_le_bytes()));
    v.extend_from_slice(line);
    v
}

/// Sync epochs of fjall's syncer: (syncs started, syncs completed).
struct Epochs {
    state: Mutex<(u64, u64)>,
    done: Condvar,
}

fn fjall_run(dir: &Path, records: &[Vec<u8>], writers: usize, batches: usize, sync: bool) -> Run {
    let db = fjall::Database::builder(dir).open().expect("fjall open");
    let ks = db.keyspace("observations", fjall::KeyspaceCreateOptions::default).expect("keyspace");
    let epochs = Epochs { state: Mutex::new((0, 0)), done: Condvar::new() };
    let stop = AtomicBool::new(false);
    let syncs = AtomicU64::new(0);
    let started = Instant::now();
    let batch_latency = std::thread::scope(|s| {
        if sync {
            s.spawn(|| {
                while !stop.load(Ordering::Acquire) {
                    let epoch = {
                        let mut st = epochs.state.lock().unwrap();
                        st.0 += 1;
                        st.0
                    };
                    db.persist(fjall::PersistMode::SyncAll).expect("persist");
                    syncs.fetch_add(1, Ordering::Relaxed);
                    epochs.state.lock().unwrap().1 = epoch;
                    epochs.done.notify_all();
                }
            });
        }
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (db, ks, epochs) = (&db, &ks, &epochs);
                s.spawn(move || {
                    let mut latency = Vec::with_capacity(batches);
                    for b in 0..batches {
                        let t = Instant::now();
                        let mut batch = db.batch();
                        for r in 0..BATCH {
                            let id = ((w * batches + b) * BATCH + r) as u64;
                            batch.insert(ks, id.to_be_bytes(), records[id as usize % records.len()].as_slice());
                        }
                        batch.commit().expect("commit");
                        if sync {
                            let mut st = epochs.state.lock().unwrap();
                            let needed = st.0 + 1; // the next sync to start follows this commit
                            while st.1 < needed {
                                st = epochs.done.wait_timeout(st, Duration::from_millis(100)).unwrap().0;
                            }
                        }
                        latency.push(t.elapsed().as_secs_f64());
                    }
                    latency
                })
            })
            .collect();
        let latency: Vec<f64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        stop.store(true, Ordering::Release);
        latency
    });
    Run { secs: started.elapsed().as_secs_f64(), syncs: syncs.load(Ordering::Relaxed), batch_latency }
}

const TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("observations");

/// A batch for redb's committer, and where to say it is durable.
type Queued = (Vec<u64>, mpsc::SyncSender<()>);

fn redb_run(dir: &Path, records: &[Vec<u8>], writers: usize, batches: usize, sync: bool) -> Run {
    let db = redb::Database::create(dir.join("observations.redb")).expect("redb create");
    let (queue, incoming) = mpsc::channel::<Queued>();
    let syncs = AtomicU64::new(0);
    let started = Instant::now();
    let batch_latency = std::thread::scope(|s| {
        let (db, syncs) = (&db, &syncs);
        let committer = s.spawn(move || {
            while let Ok(first) = incoming.recv() {
                let group: Vec<Queued> = std::iter::once(first).chain(incoming.try_iter()).collect();
                let mut tx = db.begin_write().expect("begin_write");
                tx.set_durability(if sync { redb::Durability::Immediate } else { redb::Durability::None })
                    .expect("durability");
                {
                    let mut table = tx.open_table(TABLE).expect("table");
                    for id in group.iter().flat_map(|(ids, _)| ids) {
                        table.insert(id, records[*id as usize % records.len()].as_slice()).expect("insert");
                    }
                }
                tx.commit().expect("commit");
                syncs.fetch_add(1, Ordering::Relaxed);
                group.into_iter().for_each(|(_, done)| done.send(()).unwrap_or(()));
            }
        });
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let queue = queue.clone();
                s.spawn(move || {
                    let mut latency = Vec::with_capacity(batches);
                    for b in 0..batches {
                        let t = Instant::now();
                        let ids = (0..BATCH).map(|r| ((w * batches + b) * BATCH + r) as u64).collect();
                        let (done, durable) = mpsc::sync_channel(1);
                        queue.send((ids, done)).expect("committer alive");
                        durable.recv().expect("committer alive");
                        latency.push(t.elapsed().as_secs_f64());
                    }
                    latency
                })
            })
            .collect();
        let latency: Vec<f64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        drop(queue);
        committer.join().unwrap();
        latency
    });
    Run { secs: started.elapsed().as_secs_f64(), syncs: syncs.load(Ordering::Relaxed), batch_latency }
}

fn disk_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => disk_bytes(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let writers: usize = args.first().map_or(4, |a| a.parse().expect("WRITERS"));
    let batches: usize = args.get(1).map_or(100, |a| a.parse().expect("BATCHES"));
    let root = args.get(2).map_or_else(|| Path::new("target/store-append").to_path_buf(), Into::into);
    let dir = data_dir("minilm-384-stdlib");
    let base = dataset::read_fvecs(&dir.join("base.fvecs")).unwrap_or_else(|e| panic!("{e}"));
    let text = dataset::read_lines(&dir.join("base.txt")).unwrap_or_else(|e| panic!("{e}"));
    let records: Vec<Vec<u8>> = (0..base.len()).map(|i| record(&base, &text, i)).collect();
    let n = writers * batches * BATCH;
    let mean_bytes = records.iter().map(Vec::len).sum::<usize>() as f64 / records.len() as f64;
    for round in 0..2 {
        for (store, sync) in [("fjall", true), ("redb", true), ("fjall", false), ("redb", false)] {
            let path = root.join(format!("{store}-{round}-{}", if sync { "sync" } else { "nosync" }));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("creating DIR");
            let mut run = match store {
                "fjall" => fjall_run(&path, &records, writers, batches, sync),
                _ => redb_run(&path, &records, writers, batches, sync),
            };
            run.batch_latency.sort_by(f64::total_cmp);
            let p99 = run.batch_latency[(run.batch_latency.len() * 99 / 100).min(run.batch_latency.len() - 1)];
            println!(
                "{{\"round\": {round}, \"store\": \"{store}\", \"mode\": \"{}\", \"writers\": {writers}, \"records\": {n}, \"record_bytes_mean\": {mean_bytes:.0}, \"records_per_s\": {:.0}, \"syncs\": {}, \"records_per_sync\": {:.0}, \"batch_p99_seconds\": {p99:.4}, \"disk_bytes_per_record\": {:.0}}}",
                if sync { "sync" } else { "nosync" },
                n as f64 / run.secs,
                run.syncs,
                n as f64 / run.syncs.max(1) as f64,
                disk_bytes(&path) as f64 / n as f64,
            );
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}
