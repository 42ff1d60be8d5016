//! The observation queue alone: reserve → push into a lane → take from a worker's deque →
//! finish, with the three lanes mixed (items go round-robin to high, normal and low; workers
//! take by strict priority). One thread does both ends, or two threads each push and take
//! (each taking from its own deque first, then the lanes, then stealing from the other).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use engram_engine::queue::{LaneQueue, Queued, WorkerQueue};
use engram_telemetry::events::QueueEvents;
use engram_telemetry::{Telemetry, TelemetryConfig};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

/// Items moved per iteration (and per thread with two threads).
const ITEMS: usize = 1024;
/// Items per push, as admission pushes a batch at a time.
const BATCH: usize = 32;
/// Bytes each item counts against the queue's byte capacity (about a MiniLM observation).
const ITEM_BYTES: usize = 1600;

struct Item {
    lane: usize,
    at: Instant,
}

impl Queued for Item {
    fn lane(&self) -> usize {
        self.lane
    }
    fn bytes(&self) -> usize {
        ITEM_BYTES
    }
    fn accepted_at(&self) -> Instant {
        self.at
    }
}

/// Pushes `ITEMS` items in batches over the three lanes and takes them all back through `worker`.
fn round(queue: &LaneQueue<Item>, worker: &WorkerQueue<Item>) -> usize {
    let mut taken = 0;
    for b in 0..ITEMS / BATCH {
        let lane = b % 3;
        assert!(queue.capacity().try_reserve(BATCH, BATCH * ITEM_BYTES), "capacity sized for the run");
        let at = Instant::now();
        queue.push(lane, (0..BATCH).map(|_| Item { lane, at }).collect());
        while let Some((item, _)) = worker.next(queue, || [0, 1, 2], [BATCH; 3], true) {
            black_box(item.lane);
            queue.finished();
            taken += 1;
        }
    }
    taken
}

fn queue(c: &mut Criterion) {
    let telemetry = Telemetry::new(TelemetryConfig::default());
    let cap = 4 * ITEMS;
    let queue = Arc::new(LaneQueue::<Item>::new(
        cap,
        cap * ITEM_BYTES,
        QueueEvents::register(&telemetry, cap, cap * ITEM_BYTES),
    ));
    let mut g = c.benchmark_group("queue");
    g.throughput(Throughput::Elements(ITEMS as u64));

    let one = WorkerQueue::<Item>::for_workers(1).pop().expect("one worker");
    g.bench_function("enqueue_dequeue_mixed_lanes/1_thread", |b| {
        b.iter(|| assert_eq!(round(&queue, &one), ITEMS));
    });

    g.throughput(Throughput::Elements(2 * ITEMS as u64));
    g.bench_function("enqueue_dequeue_mixed_lanes/2_threads", |b| {
        b.iter(|| {
            // Two threads each push ITEMS and take until their round is done; a thread may
            // take the other's items (lanes are shared, deques are stolen from), so check the
            // total after both finish. A worker's deque is not `Sync`: each thread owns one.
            let (taken, workers): (Vec<usize>, Vec<WorkerQueue<Item>>) = std::thread::scope(|s| {
                let handles: Vec<_> = WorkerQueue::<Item>::for_workers(2)
                    .into_iter()
                    .map(|w| {
                        let queue = &queue;
                        s.spawn(move || (round(queue, &w), w))
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("queue thread")).unzip()
            });
            // Whatever one thread prefetched after the other stopped looking is still queued.
            let rest: usize = workers
                .iter()
                .map(|w| {
                    std::iter::from_fn(|| w.next(&queue, || [0, 1, 2], [BATCH; 3], true))
                        .inspect(|_| queue.finished())
                        .count()
                })
                .sum();
            assert_eq!(taken.iter().sum::<usize>() + rest, 2 * ITEMS);
        });
    });
    g.finish();
}

criterion_group!(benches, queue);
criterion_main!(benches);
