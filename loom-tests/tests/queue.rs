//! Loom models of the observation queue ([`LaneQueue`], [`WorkerQueue`]) with its admission
//! accounting and backpressure level, over a mutex-backed [`Deques`] stand-in for
//! crossbeam-deque (whose own correctness crossbeam verifies): what is explored is our logic of
//! reserve → push → take (pop, lane refill, steal) → release → finish.
//!
//! Mutation checks (run by hand, not committed):
//! 1. In `LaneQueue::take`, releasing the capacity *before* raising `in_flight` makes
//!    `drain_check_never_sees_an_empty_queue_while_work_is_pending` fail: the observer reads an
//!    empty queue and nothing in flight while the item is taken but unfinished (shutdown would
//!    report "drained" and stop a worker with work in hand).
//! 2. In `LaneQueue::push`, raising the lane depth *after* pushing makes
//!    `every_item_is_taken_once_and_accounting_stays_in_bounds` fail: a worker takes the item
//!    and lowers the depth first, and it reads -1.
//! 3. In `WorkerQueue::next`, not calling `queue.take` for stolen items makes
//!    `every_item_is_taken_once_and_accounting_stays_in_bounds` fail: a stolen item never leaves
//!    the capacity (1 still reserved with the queue empty) and `finished` underflows `in_flight`.
#![cfg(engram_loom)]

use engram_engine::admission::{LevelCell, Thresholds};
use engram_engine::queue::{Deques, LaneQueue, Queued, Source, WorkerQueue};
use engram_telemetry::events::QueueEvents;
use engram_telemetry::{Telemetry, TelemetryConfig};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;
use std::collections::VecDeque;
use std::time::Instant;

/// Lanes and local deques as loom mutexes around `VecDeque`s.
enum LoomDeques {}

type Shared<T> = Arc<Mutex<VecDeque<T>>>;

impl Deques for LoomDeques {
    type Lane<T: Send> = Mutex<VecDeque<T>>;
    type Local<T: Send> = Shared<T>;
    type Stealer<T: Send> = Shared<T>;

    fn lane<T: Send>() -> Self::Lane<T> {
        Mutex::new(VecDeque::new())
    }
    fn push<T: Send>(lane: &Self::Lane<T>, item: T) {
        lane.lock().unwrap().push_back(item);
    }
    fn steal_into<T: Send>(lane: &Self::Lane<T>, dest: &Self::Local<T>, limit: usize) -> Option<T> {
        move_front(lane, |len| limit.max(1).min(len), dest)
    }
    fn local<T: Send>() -> (Self::Local<T>, Self::Stealer<T>) {
        let d = Arc::new(Mutex::new(VecDeque::new()));
        (d.clone(), d)
    }
    fn pop<T: Send>(local: &Self::Local<T>) -> Option<T> {
        local.lock().unwrap().pop_front()
    }
    fn local_len<T: Send>(local: &Self::Local<T>) -> usize {
        local.lock().unwrap().len()
    }
    fn steal_from<T: Send>(victim: &Self::Stealer<T>, dest: &Self::Local<T>) -> Option<T> {
        move_front(victim, |len| len.div_ceil(2), dest)
    }
}

/// Takes `count(len)` items from the front of `from` and returns the first, handing the rest to
/// `dest`. Never holds both locks, so two workers stealing from each other cannot deadlock.
fn move_front<T>(from: &Mutex<VecDeque<T>>, count: impl FnOnce(usize) -> usize, dest: &Shared<T>) -> Option<T> {
    let mut moved: VecDeque<T> = {
        let mut from = from.lock().unwrap();
        let n = count(from.len());
        from.drain(..n).collect()
    };
    let first = moved.pop_front()?;
    dest.lock().unwrap().extend(moved);
    Some(first)
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Item {
    id: u32,
    lane: usize,
}

impl Queued for Item {
    fn lane(&self) -> usize {
        self.lane
    }
    fn bytes(&self) -> usize {
        1
    }
    fn accepted_at(&self) -> Instant {
        Instant::now()
    }
}

type Queue = LaneQueue<Item, LoomDeques>;

fn queue(capacity: usize) -> Arc<Queue> {
    let t = Telemetry::new(TelemetryConfig::default());
    Arc::new(LaneQueue::new(capacity, 1000, QueueEvents::register(&t, capacity, 1000)))
}

/// Admission as the engine does it: reserve, then push; `false` when there is no room.
fn admit(q: &Queue, item: Item) -> bool {
    if !q.capacity().try_reserve(1, 1) {
        return false;
    }
    let lane = item.lane;
    q.push(lane, vec![item]);
    true
}

fn depth_never_negative(q: &Queue) {
    for lane in 0..3 {
        assert!(q.depth(lane) >= 0, "lane {lane} depth {}", q.depth(lane));
    }
}

/// Invariants: with room for 2, a producer admits a batch of two high-lane items, then tries a
/// low-lane one, while two workers (the first refilling with a prefetch of 2, the second stealing from it when the
/// lanes are empty) take them: each admitted item is taken exactly once, the capacity never
/// exceeds 2 and no lane depth goes negative at any point, and at the end the queue is empty
/// and nothing is in flight. (Concurrent reservations are modelled in `capacity.rs`.)
#[test]
fn every_item_is_taken_once_and_accounting_stays_in_bounds() {
    loom::model(|| {
        let q = queue(2);
        let mut workers = WorkerQueue::<Item, LoomDeques>::for_workers(2).into_iter();
        let (w0, w1) = (workers.next().unwrap(), workers.next().unwrap());
        let producer = {
            let q = q.clone();
            thread::spawn(move || {
                // A batch of two into the high lane (all or nothing, as admission does), then
                // one low-lane item that fits only once a worker has taken something.
                let mut admitted = Vec::new();
                if q.capacity().try_reserve(2, 2) {
                    q.push(0, vec![Item { id: 1, lane: 0 }, Item { id: 2, lane: 0 }]);
                    admitted.extend([1, 2]);
                }
                depth_never_negative(&q);
                if admit(&q, Item { id: 3, lane: 2 }) {
                    admitted.push(3);
                }
                assert!(q.capacity().len() <= 2);
                depth_never_negative(&q);
                admitted
            })
        };
        let worker = {
            let q = q.clone();
            thread::spawn(move || {
                let mut got = Vec::new();
                if let Some((item, _)) = w0.next(&q, || [0, 1, 2], [2; 3], false) {
                    depth_never_negative(&q);
                    q.finished();
                    got.push(item.id);
                }
                (got, w0)
            })
        };
        // The main thread is the second worker: it steals from the first when the lanes are empty.
        let mut got = Vec::new();
        if let Some((item, source)) = w1.next(&q, || [2, 0, 1], [1; 3], true) {
            assert!(matches!(source, Source::Lane | Source::Stolen(_)));
            depth_never_negative(&q);
            q.finished();
            got.push(item.id);
        }
        let mut admitted = producer.join().unwrap();
        let (got0, w0) = worker.join().unwrap();
        got.extend(got0);
        // Drain what is left, as the pool does before stopping.
        while let Some((item, _)) =
            w0.next(&q, || [0, 1, 2], [2; 3], true).or_else(|| w1.next(&q, || [0, 1, 2], [2; 3], true))
        {
            q.finished();
            got.push(item.id);
        }
        admitted.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, admitted, "each admitted item taken exactly once");
        assert_eq!((q.capacity().len(), q.capacity().bytes(), q.in_flight()), (0, 0, 0));
        assert_eq!(q.lane_lens(), [0, 0, 0]);
    });
}

/// Invariant behind shutdown's drain check: once an item is admitted and until its worker
/// finishes it, an observer reading the capacity first and `in_flight` second never sees both
/// at zero.
#[test]
fn drain_check_never_sees_an_empty_queue_while_work_is_pending() {
    loom::model(|| {
        let q = queue(1);
        let admitted = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let w = WorkerQueue::<Item, LoomDeques>::for_workers(1).pop().unwrap();
        let producer = {
            let (q, admitted) = (q.clone(), admitted.clone());
            thread::spawn(move || {
                assert!(admit(&q, Item { id: 7, lane: 1 }));
                admitted.store(true, Ordering::SeqCst);
            })
        };
        let worker = {
            let (q, done) = (q.clone(), done.clone());
            thread::spawn(move || {
                loop {
                    if let Some((item, _)) = w.next(&q, || [0, 1, 2], [1; 3], false) {
                        assert_eq!(item.id, 7);
                        done.store(true, Ordering::SeqCst);
                        q.finished();
                        return;
                    }
                    thread::yield_now();
                }
            })
        };
        let was_admitted = admitted.load(Ordering::SeqCst);
        let queued = q.capacity().len();
        let in_flight = q.in_flight();
        let was_done = done.load(Ordering::SeqCst);
        if was_admitted && !was_done {
            assert!(queued + in_flight > 0, "drain check saw nothing pending while the item was");
        }
        producer.join().unwrap();
        worker.join().unwrap();
        assert_eq!((q.capacity().len(), q.in_flight()), (0, 0));
    });
}

/// Backpressure over the queue: a producer fills a queue of 2 and raises the level with each
/// admission's utilization, while a worker takes an item and lowers it; the engine's monitor
/// then re-evaluates. Invariants: every transition is reported to exactly one caller and they
/// chain without gaps (so activations are counted once per entry into a worse state), and after
/// the re-evaluation the level is the one the final utilization's band and hysteresis give.
#[test]
fn backpressure_follows_the_utilization_band_with_hysteresis() {
    const T: Thresholds = Thresholds { enter: [0.5, 0.8, 0.95], hysteresis: 0.1 };
    loom::model(|| {
        let q = queue(2);
        let level = Arc::new(LevelCell::default());
        let w = WorkerQueue::<Item, LoomDeques>::for_workers(1).pop().unwrap();
        let producer = {
            let (q, level) = (q.clone(), level.clone());
            thread::spawn(move || {
                let mut seen = Vec::new();
                for id in 0..2 {
                    assert!(admit(&q, Item { id, lane: 0 }));
                    seen.extend(level.update(&T, q.capacity().utilization()));
                }
                seen
            })
        };
        let mut seen = Vec::new();
        if let Some((_, _)) = w.next(&q, || [0, 1, 2], [1; 3], false) {
            q.finished();
            seen.extend(level.update(&T, q.capacity().utilization()));
        }
        seen.extend(producer.join().unwrap());
        // The monitor's periodic re-evaluation.
        let util = q.capacity().utilization();
        let before = level.get();
        seen.extend(level.update(&T, util));
        assert_eq!(level.get(), T.next(before, util), "level matches the band of utilization {util}");
        assert!(level.update(&T, util).is_none(), "a settled level does not move again");
        // Transitions chain from Normal to the final level, each reported once.
        let mut current = 0;
        let mut remaining = seen.clone();
        while let Some(i) = remaining.iter().position(|&(from, _)| from == current) {
            current = remaining.remove(i).1;
        }
        assert!(remaining.is_empty() && current == level.get(), "transitions {seen:?} do not chain");
        let rises = seen.iter().filter(|(from, to)| to > from).count();
        let falls = seen.len() - rises;
        assert!(rises >= falls, "{seen:?}");
    });
}
