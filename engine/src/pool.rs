//! The worker pool: N OS threads with crossbeam-deque work stealing and adaptive batches.
//!
//! Each worker owns a FIFO local deque. To fill a batch it pops its local deque, then refills
//! it from a priority lane (strict priority, except that the normal and low lanes are
//! guaranteed their configured minimum share of refills while backlogged), then steals from the
//! other workers' local deques. Only a high-lane refill prefetches a surplus (one more batch, for
//! idle workers to steal); a lower-lane refill takes what the batch needs, so nothing of lower
//! priority waits in a local deque ahead of high-priority work that arrives meanwhile. Any worker can insert into any space (the index is internally
//! synchronised), so one hot space can use every worker.
//!
//! Batch size adapts: it grows with queue depth (depth ÷ workers) and is capped so one batch's
//! insertion time, from the measured per-observation insert time, stays under the latency target.
//!
//! A monitor thread steers from the exported telemetry: every 200 ms the drain rate (the
//! wait histograms' count, smoothed into the exported gauge retry-after reads) and backpressure
//! levels; every second each worker's utilization (its batch-duration histogram's sum over the
//! window), the per-observation insertion time batch sizing uses (batch-duration sum over
//! batch-size sum), and the windowed p99 queue wait and observation latency (histogram deltas).

use crate::engine::Shared;
use crate::job::Job;
use crate::queue::{Source, WorkerQueue};
use engram_telemetry::primitives::HistogramSnapshot;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
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
        let mut workers = Vec::with_capacity(n);
        for (id, queue) in WorkerQueue::for_workers(n).into_iter().enumerate() {
            let w = WorkerLoop {
                queue,
                shared: Arc::clone(shared),
                id,
                credits: [0.0; 3],
                batch: Vec::with_capacity(shared.config.max_batch),
            };
            shared.workers_alive.fetch_add(1, Ordering::AcqRel);
            workers.push(std::thread::Builder::new().name(format!("engram-worker-{id}")).spawn(move || w.run())?);
        }
        let monitor = Monitor { shared: Arc::clone(shared) };
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
    queue: WorkerQueue<Job>,
    shared: Arc<Shared>,
    id: usize,
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
                if shared.stop.load(Ordering::Acquire) && shared.queue.capacity().is_empty() {
                    break;
                }
                shared.idle_wait();
                continue;
            }
            let started = Instant::now();
            let size = self.batch.len();
            self.process();
            shared.worker_events[self.id].batch_processed(size, started.elapsed());
        }
    }

    /// Lane order for the next refill: strict priority, but a lower lane whose credit reached 1
    /// goes first (credits accrue by the lane's minimum share per refill).
    fn lane_order(credits: &mut [f64; 3], share: crate::config::LaneShares) -> [usize; 3] {
        credits[1] = (credits[1] + share.normal).min(2.0);
        credits[2] = (credits[2] + share.low).min(2.0);
        if credits[2] >= 1.0 {
            credits[2] -= 1.0;
            [2, 0, 1]
        } else if credits[1] >= 1.0 {
            credits[1] -= 1.0;
            [1, 0, 2]
        } else {
            [0, 1, 2]
        }
    }

    fn fill(&mut self, target: usize) {
        let share = self.shared.config.lane_min_share;
        let events = &self.shared.worker_events[self.id];
        while self.batch.len() < target {
            // From the high lane, prefetch one batch beyond this one into the local deque: the
            // surplus is what idle workers steal, so a burst spreads over every worker. From the
            // lower lanes take only what this batch needs: a surplus of them in the local deque
            // would be served before high-priority work that arrives meanwhile (seen: admitted
            // high-priority batches waiting behind a prefetched normal batch under overload).
            // Steal only for an empty batch.
            let need = target - self.batch.len();
            let prefetch = [need + target, need.saturating_sub(1), need.saturating_sub(1)];
            let credits = &mut self.credits;
            let next = self.queue.next(
                &self.shared.queue,
                || Self::lane_order(credits, share),
                prefetch,
                self.batch.is_empty(),
            );
            let Some((job, source)) = next else { break };
            if let Source::Stolen(n) = source {
                events.stole(n as u64);
            }
            self.batch.push(job);
        }
    }

    fn process(&mut self) {
        let shared = Arc::clone(&self.shared);
        let mut last: Option<Arc<crate::space::Space>> = None;
        for job in self.batch.drain(..) {
            let space = &job.space;
            let events = &shared.worker_events[self.id];
            let ok = if space.dropped.load(Ordering::Acquire) {
                events.batch_failed(SPACE_DROPPED, 1);
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
                        events.batch_failed(INDEX_PANIC, 1);
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
}

/// What the monitor remembers between windows.
struct Window {
    started: Instant,
    /// (busy seconds, observations) per worker at the window's start.
    totals: Vec<(f64, f64)>,
    queue_wait: HistogramSnapshot,
    /// Observation latency per exported `memory_space` label (folded spaces share one).
    latency: HashMap<String, HistogramSnapshot>,
}

impl Monitor {
    fn run(self) {
        let shared = &self.shared;
        let mut window = self.window(Instant::now());
        let mut last_taken = shared.queue.events().taken_total();
        let mut last_tick = Instant::now();
        let mut ticks = 0u32;
        while !shared.monitor_stop.load(Ordering::Acquire) {
            shared.monitor_sleep(MONITOR_TICK);
            let now = Instant::now();
            let dt = now.duration_since(last_tick).as_secs_f64().max(1e-6);
            last_tick = now;
            let taken = shared.queue.events().taken_total();
            shared.observe_drain((taken - last_taken) as f64 / dt);
            last_taken = taken;
            for space in shared.spaces_snapshot() {
                shared.evaluate(&space);
            }
            ticks += 1;
            if ticks.is_multiple_of(5) {
                window = self.close_window(window, now);
            }
        }
    }

    fn window(&self, started: Instant) -> Window {
        let shared = &self.shared;
        let mut latency = HashMap::new();
        for space in shared.spaces_snapshot() {
            let label = space.events.label();
            if !latency.contains_key(label) {
                latency.insert(label.to_owned(), space.events.observation_latency());
            }
        }
        Window {
            started,
            totals: shared.worker_events.iter().map(|e| e.totals()).collect(),
            queue_wait: shared.queue.events().wait_time(),
            latency,
        }
    }

    /// Publishes the window's utilization, insertion time and p99s; opens the next window.
    fn close_window(&self, old: Window, now: Instant) -> Window {
        let shared = &self.shared;
        let next = self.window(now);
        let secs = now.duration_since(old.started).as_secs_f64().max(1e-6);
        let (mut busy, mut observations) = (0.0, 0.0);
        for (i, (then, now)) in old.totals.iter().zip(&next.totals).enumerate() {
            let worker_busy = (now.0 - then.0).max(0.0);
            shared.worker_events[i].utilization((worker_busy / secs).clamp(0.0, 1.0));
            busy += worker_busy;
            observations += (now.1 - then.1).max(0.0);
        }
        shared.observe_insert_time(busy, observations);
        let wait_p99 = next.queue_wait.since(&old.queue_wait).quantile(0.99);
        let mut latency: Option<HistogramSnapshot> = None;
        for (label, now) in &next.latency {
            let window = old.latency.get(label).map_or_else(|| now.clone(), |then| now.since(then));
            match &mut latency {
                Some(all) => all.merge(&window),
                None => latency = Some(window),
            }
        }
        *shared.latency_window.lock() = (wait_p99, latency.and_then(|l| l.quantile(0.99)));
        next
    }
}
