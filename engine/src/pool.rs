//! The worker pool: N OS threads with crossbeam-deque work stealing and adaptive batches.
//!
//! Each worker owns a FIFO local deque. To fill a batch it pops its local deque, then refills
//! it from a priority lane (strict priority, except that the normal and low lanes are
//! guaranteed their configured minimum share of refills while backlogged), then steals from the
//! other workers' local deques. Any worker can insert into any space (the index is internally
//! synchronised), so one hot space can use every worker.
//!
//! Batch size adapts: it grows with queue depth (depth ÷ workers) and is capped so one batch's
//! insertion time, from the measured per-observation insert time, stays under the latency target.
//!
//! A monitor thread samples worker busy time (utilization), the drain rate (used for
//! retry-after), backpressure levels and index sizes.

use crate::engine::Shared;
use crate::queue::Job;
use crossbeam_deque::{Steal, Stealer, Worker};
use engram_telemetry::events::WorkerEvents;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Index of `space_dropped` in `BATCH_ERROR_TYPES`.
const SPACE_DROPPED: usize = 0;
/// Index of `index_panic` in `BATCH_ERROR_TYPES`.
const INDEX_PANIC: usize = 1;

/// Monitor sampling period.
const MONITOR_TICK: Duration = Duration::from_millis(200);

pub(crate) struct Pool {
    workers: Vec<JoinHandle<()>>,
    monitor: Option<JoinHandle<()>>,
}

impl Pool {
    pub(crate) fn start(shared: &Arc<Shared>) -> std::io::Result<Self> {
        let n = shared.workers;
        let locals: Vec<Worker<Job>> = (0..n).map(|_| Worker::new_fifo()).collect();
        let stealers: Arc<[Stealer<Job>]> = locals.iter().map(Worker::stealer).collect();
        let busy: Arc<[AtomicU64]> = (0..n).map(|_| AtomicU64::new(0)).collect();
        let events: Vec<WorkerEvents> = (0..n).map(|id| WorkerEvents::register(&shared.telemetry, id)).collect();
        let mut workers = Vec::with_capacity(n);
        for (id, local) in locals.into_iter().enumerate() {
            let w = WorkerLoop {
                id,
                local,
                stealers: Arc::clone(&stealers),
                shared: Arc::clone(shared),
                events: events[id].clone(),
                busy: Arc::clone(&busy),
                credits: [0.0; 3],
                batch: Vec::with_capacity(shared.config.max_batch),
            };
            shared.workers_alive.fetch_add(1, Ordering::AcqRel);
            workers.push(std::thread::Builder::new().name(format!("engram-worker-{id}")).spawn(move || w.run())?);
        }
        let monitor = Monitor { shared: Arc::clone(shared), busy, events };
        let monitor = std::thread::Builder::new().name("engram-monitor".into()).spawn(move || monitor.run())?;
        Ok(Self { workers, monitor: Some(monitor) })
    }

    /// Joins every thread; the caller has set `stop` (and, to drain, waited for the queue).
    pub(crate) fn join(mut self) {
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(m) = self.monitor.take() {
            let _ = m.join();
        }
    }
}

struct WorkerLoop {
    id: usize,
    local: Worker<Job>,
    stealers: Arc<[Stealer<Job>]>,
    shared: Arc<Shared>,
    events: WorkerEvents,
    busy: Arc<[AtomicU64]>,
    credits: [f64; 3],
    batch: Vec<Job>,
}

struct AliveGuard<'a>(&'a Shared);
impl Drop for AliveGuard<'_> {
    fn drop(&mut self) {
        self.0.workers_alive.fetch_sub(1, Ordering::AcqRel);
    }
}

impl WorkerLoop {
    fn run(mut self) {
        let shared = Arc::clone(&self.shared);
        let _alive = AliveGuard(&shared);
        loop {
            if shared.abort.load(Ordering::Acquire) {
                break;
            }
            if shared.paused.load(Ordering::Acquire) {
                shared.idle_wait();
                continue;
            }
            self.fill(shared.batch_target());
            if self.batch.is_empty() {
                if shared.stop.load(Ordering::Acquire) && shared.queue.capacity.is_empty() {
                    break;
                }
                shared.idle_wait();
                continue;
            }
            let started = Instant::now();
            let size = self.batch.len();
            self.process();
            let elapsed = started.elapsed();
            self.busy[self.id].fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
            shared.observe_insert_time(elapsed, size);
            self.events.batch_processed(size);
        }
    }

    /// Lane order for the next refill: strict priority, but a lower lane whose credit reached 1
    /// goes first (credits accrue by the lane's minimum share per refill).
    fn lane_order(&mut self) -> [usize; 3] {
        let share = self.shared.config.lane_min_share;
        self.credits[1] = (self.credits[1] + share.normal).min(2.0);
        self.credits[2] = (self.credits[2] + share.low).min(2.0);
        if self.credits[2] >= 1.0 {
            self.credits[2] -= 1.0;
            [2, 0, 1]
        } else if self.credits[1] >= 1.0 {
            self.credits[1] -= 1.0;
            [1, 0, 2]
        } else {
            [0, 1, 2]
        }
    }

    fn take(&mut self, job: Job) {
        // in_flight rises before the queue releases the job, so "queue empty and nothing in
        // flight" is never observed while a job is between the two.
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        self.shared.queue.taken(&job);
        self.shared.dequeued_total.fetch_add(1, Ordering::Relaxed);
        self.batch.push(job);
    }

    fn fill(&mut self, target: usize) {
        while self.batch.len() < target {
            if let Some(job) = self.local.pop() {
                self.take(job);
                continue;
            }
            // Prefetch one batch beyond this one into the local deque: the surplus is what
            // idle workers steal, so a burst spreads over every worker.
            let want = target - self.batch.len() + target;
            let from_lane =
                self.lane_order().into_iter().find_map(|lane| self.shared.queue.steal_into(lane, &self.local, want));
            if let Some(job) = from_lane {
                self.take(job);
                continue;
            }
            if self.batch.is_empty()
                && let Some(job) = self.steal()
            {
                self.take(job);
                continue;
            }
            break;
        }
    }

    /// Steals half of another worker's local deque; counts what moved.
    fn steal(&mut self) -> Option<Job> {
        let n = self.stealers.len();
        for k in 1..n {
            let victim = (self.id + k) % n;
            loop {
                match self.stealers[victim].steal_batch_and_pop(&self.local) {
                    Steal::Success(job) => {
                        self.events.stole(1 + self.local.len() as u64);
                        return Some(job);
                    }
                    Steal::Empty => break,
                    Steal::Retry => std::hint::spin_loop(),
                }
            }
        }
        None
    }

    fn process(&mut self) {
        let shared = Arc::clone(&self.shared);
        let mut last: Option<Arc<crate::space::Space>> = None;
        for job in self.batch.drain(..) {
            let space = &job.space;
            let ok = if space.dropped.load(Ordering::Acquire) {
                self.events.batch_failed(SPACE_DROPPED, 1);
                false
            } else {
                if let Some(content) = job.content {
                    // Content first, so a recall that finds the vector also finds its content.
                    space.store_content(job.id, content);
                }
                match catch_unwind(AssertUnwindSafe(|| space.index.insert(job.id, &job.vector))) {
                    Ok(()) => {
                        space.events.indexed(job.accepted_at.elapsed());
                        true
                    }
                    Err(_) => {
                        self.events.batch_failed(INDEX_PANIC, 1);
                        false
                    }
                }
            };
            if let Some(ack) = &job.ack {
                ack.complete(ok);
            }
            shared.finished(space);
            if !last.as_ref().is_some_and(|l| Arc::ptr_eq(l, space))
                && let Some(prev) = last.replace(Arc::clone(space))
            {
                shared.evaluate(&prev);
            }
        }
        if let Some(space) = last {
            shared.evaluate(&space);
        }
    }
}

struct Monitor {
    shared: Arc<Shared>,
    busy: Arc<[AtomicU64]>,
    events: Vec<WorkerEvents>,
}

impl Monitor {
    fn run(self) {
        let shared = &self.shared;
        let mut last_busy: Vec<u64> = vec![0; self.busy.len()];
        let mut last_dequeued = 0u64;
        let mut window_start = Instant::now();
        let mut last_tick = Instant::now();
        let mut ticks = 0u32;
        while !shared.monitor_stop.load(Ordering::Acquire) {
            shared.monitor_sleep(MONITOR_TICK);
            let now = Instant::now();
            let dt = now.duration_since(last_tick).as_secs_f64().max(1e-6);
            last_tick = now;
            let dequeued = shared.dequeued_total.load(Ordering::Relaxed);
            shared.observe_drain((dequeued - last_dequeued) as f64 / dt);
            last_dequeued = dequeued;
            for space in shared.spaces_snapshot() {
                shared.evaluate(&space);
                space.events.index_size(space.index.len(), space.memory_bytes());
            }
            ticks += 1;
            if ticks.is_multiple_of(5) {
                let window = now.duration_since(window_start).as_nanos().max(1) as f64;
                window_start = now;
                for (i, b) in self.busy.iter().enumerate() {
                    let total = b.load(Ordering::Relaxed);
                    let ratio = ((total - last_busy[i]) as f64 / window).clamp(0.0, 1.0);
                    last_busy[i] = total;
                    self.events[i].utilization(ratio);
                    shared.worker_utilization[i].store(ratio, Ordering::Relaxed);
                }
            }
        }
    }
}
