//! The worker pool (named threads `engram-worker-N`, and the `engram-monitor` of [`super::monitor`]): N OS threads with crossbeam-deque work stealing and adaptive batches.
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

use super::admit::Admitter;
use super::job::{Change, Job};
use super::monitor::Monitor;
use super::registry::Registry;
use super::scheduler::Scheduler;
use crate::config::LaneShares;
use crate::operation::Seq;
use crate::queue::{Source, WorkerQueue};
use crate::space::Space;
use crate::sync::Ordering;
use engram_telemetry::labels::BatchError;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

pub(crate) struct Pool {
    workers: Vec<JoinHandle<()>>,
    monitor: Option<JoinHandle<()>>,
}

impl Pool {
    /// Starts the workers and the monitor.
    pub(crate) fn start(
        scheduler: &Arc<Scheduler>,
        admitter: &Arc<Admitter>,
        registry: &Arc<Registry>,
    ) -> std::io::Result<Self> {
        let n = scheduler.workers;
        let mut workers = Vec::with_capacity(n);
        for (id, queue) in WorkerQueue::for_workers(n).into_iter().enumerate() {
            let w = WorkerLoop {
                queue,
                scheduler: Arc::clone(scheduler),
                admitter: Arc::clone(admitter),
                id,
                credits: [0.0; 3],
                batch: Vec::with_capacity(scheduler.config.max_batch),
            };
            scheduler.workers_alive.fetch_add(1, Ordering::AcqRel);
            workers.push(std::thread::Builder::new().name(format!("engram-worker-{id}")).spawn(move || w.run())?);
        }
        let monitor = Monitor::new(Arc::clone(scheduler), Arc::clone(admitter), Arc::clone(registry));
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
    scheduler: Arc<Scheduler>,
    admitter: Arc<Admitter>,
    id: usize,
    credits: [f64; 3],
    batch: Vec<Job>,
}

struct AliveGuard<'a>(&'a Scheduler);
impl Drop for AliveGuard<'_> {
    fn drop(&mut self) {
        self.0.workers_alive.fetch_sub(1, Ordering::AcqRel);
    }
}

impl WorkerLoop {
    fn run(mut self) {
        let shared = Arc::clone(&self.scheduler);
        let _alive = AliveGuard(&shared);
        let life = &shared.lifecycle;
        loop {
            if life.is(&life.abort) {
                break;
            }
            if life.is(&life.paused) {
                shared.idle_wait();
                continue;
            }
            self.fill(shared.batch_target());
            if self.batch.is_empty() {
                if life.is(&life.stop) && shared.queue.capacity().is_empty() {
                    break;
                }
                shared.idle_wait();
                continue;
            }
            let started = Instant::now();
            let size = self.batch.len();
            self.process(started);
            let elapsed = started.elapsed();
            shared.worker_stats[self.id].batch(size, elapsed);
            shared.worker_events[self.id].batch_processed(size, elapsed);
        }
    }

    /// Lane order for the next refill: strict priority, but a lower lane whose credit reached 1
    /// goes first (credits accrue by the lane's minimum share per refill).
    fn lane_order(credits: &mut [f64; 3], share: LaneShares) -> [usize; 3] {
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
        let share = self.scheduler.config.lane_min_share;
        let events = &self.scheduler.worker_events[self.id];
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
                &self.scheduler.queue,
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

    /// Applies the batch taken at `started` (when its jobs' queue wait ended).
    fn process(&mut self, started: Instant) {
        let shared = Arc::clone(&self.scheduler);
        let mut last: Option<Arc<Space>> = None;
        for job in self.batch.drain(..) {
            let space = &job.space;
            let events = &shared.worker_events[self.id];
            let (id, seq, accepted_at) = (job.id, job.seq, job.accepted_at);
            let (ok, deferred) = if space.dropped.load(Ordering::Acquire) {
                events.batch_failed(BatchError::SpaceDropped, 1);
                (false, false)
            } else {
                // While a checkpoint copies the index, an insert of a new id goes to the space's
                // tail (searchable) and into the index from the checkpoint thread after the copy.
                let change = match job.change {
                    Change::Put { vector, content } => match space.defer_put(id, seq, vector, content) {
                        Ok(()) => None,
                        Err((vector, content)) => Some(Change::Put { vector, content }),
                    },
                    remove => Some(remove),
                };
                match change.map(|change| catch_unwind(AssertUnwindSafe(|| apply(space, id, seq, change)))) {
                    None => {
                        space.events.indexed(accepted_at.elapsed());
                        (true, true)
                    }
                    Some(Ok(Applied::Put)) => {
                        space.events.indexed(accepted_at.elapsed());
                        (true, false)
                    }
                    Some(Ok(Applied::Removed | Applied::Superseded)) => (true, false),
                    Some(Err(_)) => {
                        events.batch_failed(BatchError::IndexPanic, 1);
                        (false, false)
                    }
                }
            };
            if !deferred {
                // After the vector is in the index: a recall in between finds it in both, once.
                space.tail.applied(id, seq);
                space.job_done(seq);
            }
            if let Some(ack) = job.ack {
                ack.complete(ok, started);
            }
            shared.finished(space);
            if !last.as_ref().is_some_and(|l| Arc::ptr_eq(l, space))
                && let Some(prev) = last.replace(Arc::clone(space))
            {
                self.admitter.evaluate(&prev);
            }
        }
        if let Some(space) = last {
            self.admitter.evaluate(&space);
        }
    }
}

/// Puts what was deferred while a checkpoint copied `space`'s index into it, in arrival order
/// (on the checkpoint thread, after the copy). Their acks were given when they were deferred
/// (each was searchable in the tail); one that cannot be inserted (only allocation failure)
/// is logged and stays in the tail, searchable, until the space is next opened.
pub(crate) fn apply_deferred(space: &Space, puts: Vec<crate::space::DeferredPut>) {
    for p in puts {
        let (id, seq) = (p.id, p.seq);
        let change = Change::Put { vector: p.vector, content: p.content };
        match catch_unwind(AssertUnwindSafe(|| apply(space, id, seq, change))) {
            Ok(_) => space.tail.applied(id, seq),
            Err(_) => {
                tracing::error!(memory_space = %space.name, id, "a deferred insert failed: it stays searchable in the tail")
            }
        }
        space.job_done(seq);
    }
}

/// What applying a job did.
enum Applied {
    /// The vector is in the index.
    Put,
    /// The id is out of the index.
    Removed,
    /// A later operation on the id was admitted: this one has nothing left to do (the later
    /// one applies, or applied, instead).
    Superseded,
}

/// Applies `change`, operation `seq` on `id`, to `space` if it is still the latest operation
/// admitted on the id; under the id's stripe lock, so operations on one id never apply at once.
fn apply(space: &Space, id: u64, seq: Seq, change: Change) -> Applied {
    let _stripe = space.stripe(id);
    let Some(state) = space.ids.get(&id).map(|s| *s) else {
        // Deleted, and the delete applied, since this job was admitted.
        return Applied::Superseded;
    };
    if state.seq != seq {
        return Applied::Superseded;
    }
    let set_indexed = |indexed: bool| {
        if let Some(mut s) = space.ids.get_mut(&id) {
            s.indexed = indexed;
        }
    };
    if state.indexed {
        space.index.remove(id);
        set_indexed(false);
    }
    match change {
        Change::Put { vector, content } => {
            // Content first, so a recall that finds the vector also finds its content.
            space.set_content(id, Some(&vector), content);
            space.index.insert(id, &vector);
            set_indexed(true);
            Applied::Put
        }
        Change::Remove => {
            space.set_content(id, None, None);
            // Forgotten unless a later operation on the id was admitted meanwhile.
            space.ids.remove_if(&id, |_, s| s.seq == seq);
            Applied::Removed
        }
    }
}
