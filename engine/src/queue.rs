//! The observation queue: three priority lanes, bounded exactly by count and bytes, and the
//! per-worker local deques that work is stolen from.
//!
//! [`LaneQueue`] holds the admission and accounting logic; the deques themselves sit behind the
//! [`Deques`] trait: crossbeam-deque ([`Crossbeam`]) in the engine, a mutex-backed stand-in in
//! the loom models (`loom-tests/tests/queue.rs`), which check that depth never exceeds capacity
//! nor goes negative and that no item is lost or duplicated across push, steal and pop.
//!
//! Admission reserves room in [`Capacity`] first and pushes second, so the queue never holds
//! more than its capacity. Workers move work from a lane into their own local deque and take it
//! from there ([`WorkerQueue::next`]); idle workers steal from the others' local deques. An item
//! counts as queued until a worker takes it (wherever it sits meanwhile: a lane or a local
//! deque), then as in flight until the worker calls [`LaneQueue::finished`].

use crate::admission::Capacity;
use crate::sync::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use engram_telemetry::events::QueueEvents;
use std::sync::Arc;
use std::time::Instant;

/// What the queue needs to know of an item.
pub trait Queued {
    /// The priority lane (0 high, 1 normal, 2 low).
    fn lane(&self) -> usize;
    /// Bytes the item counts against the byte cap (the same value reserved for it).
    fn bytes(&self) -> usize;
    /// When admission accepted it (for the queue wait time).
    fn accepted_at(&self) -> Instant;
}

/// The work-stealing deques the queue is built on: a multi-producer lane, and per-worker local
/// deques with stealers. Implemented with crossbeam-deque by [`Crossbeam`]; the loom models
/// implement it over loom's mutex so the logic of [`LaneQueue`] and [`WorkerQueue`] is what
/// they explore.
pub trait Deques: 'static {
    /// A lane: many threads push, many take.
    type Lane<T: Send>: Send + Sync;
    /// A worker's own deque (only its owner pops).
    type Local<T: Send>: Send;
    /// A handle other workers steal from a local deque through.
    type Stealer<T: Send>: Send + Sync + Clone;

    /// An empty lane.
    fn lane<T: Send>() -> Self::Lane<T>;
    /// Pushes one item into a lane.
    fn push<T: Send>(lane: &Self::Lane<T>, item: T);
    /// Moves up to `limit` items of `lane` into `dest` and returns one more, `None` if empty.
    fn steal_into<T: Send>(lane: &Self::Lane<T>, dest: &Self::Local<T>, limit: usize) -> Option<T>;
    /// An empty local deque (FIFO) and its stealer.
    fn local<T: Send>() -> (Self::Local<T>, Self::Stealer<T>);
    /// Pops from the owner's local deque.
    fn pop<T: Send>(local: &Self::Local<T>) -> Option<T>;
    /// Items in a local deque.
    fn local_len<T: Send>(local: &Self::Local<T>) -> usize;
    /// Steals about half of `victim` into `dest` and returns one more, `None` if empty.
    fn steal_from<T: Send>(victim: &Self::Stealer<T>, dest: &Self::Local<T>) -> Option<T>;
}

/// [`Deques`] over crossbeam-deque: `Injector` lanes, FIFO `Worker`s and their `Stealer`s.
#[derive(Debug)]
pub enum Crossbeam {}

impl Deques for Crossbeam {
    type Lane<T: Send> = crossbeam_deque::Injector<T>;
    type Local<T: Send> = crossbeam_deque::Worker<T>;
    type Stealer<T: Send> = crossbeam_deque::Stealer<T>;

    fn lane<T: Send>() -> Self::Lane<T> {
        crossbeam_deque::Injector::new()
    }
    fn push<T: Send>(lane: &Self::Lane<T>, item: T) {
        lane.push(item);
    }
    fn steal_into<T: Send>(lane: &Self::Lane<T>, dest: &Self::Local<T>, limit: usize) -> Option<T> {
        std::iter::repeat_with(|| lane.steal_batch_with_limit_and_pop(dest, limit.max(1)))
            .find(|s| !s.is_retry())
            .and_then(crossbeam_deque::Steal::success)
    }
    fn local<T: Send>() -> (Self::Local<T>, Self::Stealer<T>) {
        let w = crossbeam_deque::Worker::new_fifo();
        let s = w.stealer();
        (w, s)
    }
    fn pop<T: Send>(local: &Self::Local<T>) -> Option<T> {
        local.pop()
    }
    fn local_len<T: Send>(local: &Self::Local<T>) -> usize {
        local.len()
    }
    fn steal_from<T: Send>(victim: &Self::Stealer<T>, dest: &Self::Local<T>) -> Option<T> {
        std::iter::repeat_with(|| victim.steal_batch_and_pop(dest))
            .find(|s| !s.is_retry())
            .and_then(crossbeam_deque::Steal::success)
    }
}

/// The bounded three-lane queue and its accounting.
///
/// Invariants (loom model `queue`): `capacity().len()` stays within `0 ..= max_count` at every
/// instant; each pushed item is returned by exactly one [`WorkerQueue::next`]; and
/// `capacity().len() + in_flight()` never reads 0 while an item is pushed but not
/// [`finished`](LaneQueue::finished) (read `capacity().len()` first), which is what shutdown's
/// drain check relies on.
pub struct LaneQueue<T: Send, D: Deques = Crossbeam> {
    lanes: [D::Lane<T>; 3],
    capacity: Capacity,
    in_flight: AtomicUsize,
    /// Items queued per lane (in the lane or a worker's local deque): the engine's own count,
    /// which `engram_streaming_queue_depth` samples at scrape time.
    depth: [AtomicI64; 3],
    /// Items taken by workers since start (the drain rate is its derivative).
    taken: AtomicU64,
    events: QueueEvents,
}

impl<T: Send + Queued, D: Deques> LaneQueue<T, D> {
    /// An empty queue bounded by `capacity` items and `capacity_bytes` bytes, recording its wait
    /// times through `events` (the lane depths are its own; the exporter samples them).
    pub fn new(capacity: usize, capacity_bytes: usize, events: QueueEvents) -> Self {
        Self {
            lanes: [D::lane(), D::lane(), D::lane()],
            capacity: Capacity::new(capacity, capacity_bytes),
            in_flight: AtomicUsize::new(0),
            depth: [AtomicI64::new(0), AtomicI64::new(0), AtomicI64::new(0)],
            taken: AtomicU64::new(0),
            events,
        }
    }

    /// The exact accounting admission reserves room in.
    pub fn capacity(&self) -> &Capacity {
        &self.capacity
    }

    /// The queue's telemetry (wait times).
    pub fn events(&self) -> &QueueEvents {
        &self.events
    }

    /// Items queued in lane `lane` now (0 high, 1 normal, 2 low). Never negative: the queue
    /// raises it before it pushes (checked by the loom model `queue`).
    pub fn depth(&self, lane: usize) -> i64 {
        self.depth[lane].load(Ordering::Acquire)
    }

    /// Items taken by workers since start, all lanes.
    pub fn taken_total(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// Pushes items into `lane` whose room the caller reserved with
    /// `capacity().try_reserve(items.len(), their bytes)`.
    pub fn push(&self, lane: usize, items: Vec<T>) {
        // The depth first: a worker can take an item the instant it is pushed, and the depth
        // must never dip below zero.
        self.depth[lane].fetch_add(items.len() as i64, Ordering::AcqRel);
        for item in items {
            D::push(&self.lanes[lane], item);
        }
    }

    /// Items taken by workers and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// A worker is done with an item it took (inserted or failed).
    pub fn finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// The item leaves the queue's accounting for the worker's hands.
    fn take(&self, item: &T) {
        // In flight rises before the capacity is released, so "nothing queued and nothing in
        // flight" is never observed while an item is between the two.
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.capacity.release(1, item.bytes());
        self.depth[item.lane()].fetch_sub(1, Ordering::AcqRel);
        self.taken.fetch_add(1, Ordering::Relaxed);
        self.events.dequeued(item.lane(), item.accepted_at().elapsed());
    }

    /// Items queued per lane (in the lane or prefetched into a worker's local deque).
    pub fn lane_lens(&self) -> [usize; 3] {
        [0, 1, 2].map(|lane| self.depth(lane).max(0) as usize)
    }
}

/// One worker's side of the queue: its local deque and the stealers of every worker's.
pub struct WorkerQueue<T: Send, D: Deques = Crossbeam> {
    id: usize,
    local: D::Local<T>,
    stealers: Arc<[D::Stealer<T>]>,
}

/// Where [`WorkerQueue::next`] found an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The worker's own local deque.
    Local,
    /// A lane (with up to `prefetch` more moved into the local deque).
    Lane,
    /// Another worker's local deque; the value counts the items moved (this one included).
    Stolen(usize),
}

impl<T: Send + Queued, D: Deques> WorkerQueue<T, D> {
    /// The local deques of `n` workers, each knowing every worker's stealer.
    pub fn for_workers(n: usize) -> Vec<Self> {
        let (locals, stealers): (Vec<_>, Vec<_>) = (0..n).map(|_| D::local::<T>()).unzip();
        let stealers: Arc<[D::Stealer<T>]> = stealers.into();
        locals.into_iter().enumerate().map(|(id, local)| Self { id, local, stealers: Arc::clone(&stealers) }).collect()
    }

    /// Takes the next item: from the local deque; else from the first non-empty lane of
    /// `order`, moving up to `prefetch[lane]` more into the local deque (the surplus idle
    /// workers steal); else, if `may_steal`, from another worker's local deque. The returned item has
    /// left `queue`'s capacity and is in flight until [`LaneQueue::finished`].
    ///
    /// `order` is called only when the local deque is empty (a lane refill), so lane-share
    /// credits accrue per refill.
    pub fn next(
        &self,
        queue: &LaneQueue<T, D>,
        order: impl FnOnce() -> [usize; 3],
        prefetch: [usize; 3],
        may_steal: bool,
    ) -> Option<(T, Source)> {
        let found = if let Some(item) = D::pop(&self.local) {
            Some((item, Source::Local))
        } else if let Some(item) =
            order().into_iter().find_map(|lane| D::steal_into(&queue.lanes[lane], &self.local, prefetch[lane]))
        {
            Some((item, Source::Lane))
        } else if may_steal {
            self.steal()
        } else {
            None
        };
        if let Some((item, _)) = &found {
            queue.take(item);
        }
        found
    }

    fn steal(&self) -> Option<(T, Source)> {
        let n = self.stealers.len();
        (1..n).find_map(|k| {
            let victim = &self.stealers[(self.id + k) % n];
            D::steal_from(victim, &self.local).map(|item| (item, Source::Stolen(1 + D::local_len(&self.local))))
        })
    }
}
