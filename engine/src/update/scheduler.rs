//! [`Scheduler`]: the queue, the pool's lifecycle flags, worker sleep and wake-up, and the
//! adaptive batch size.
//!
//! Admission pushes into [`Scheduler::queue`] and calls [`Scheduler::wake_workers`]; workers
//! size their batches by [`Scheduler::batch_target`], sleep in [`Scheduler::idle_wait`] and report
//! each finished job through [`Scheduler::finished`]; the monitor feeds the estimates batch
//! sizing and retry-after read ([`Scheduler::observe_insert_time`],
//! [`Scheduler::observe_drain`]). Nothing here calls back into admission.

use super::job::Job;
use crate::config::EngineConfig;
use crate::queue::LaneQueue;
use crate::space::Space;
use crate::sync::{AtomicBool, AtomicF64Cell, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering};
use engram_telemetry::events::WorkerEvents;
use std::sync::Arc;
use std::time::Duration;

/// The pool's lifecycle, in the order shutdown sets the flags.
#[derive(Debug, Default)]
pub(crate) struct Lifecycle {
    /// Admission refuses everything new (shutdown has begun).
    pub(crate) closing: AtomicBool,
    /// Workers insert nothing until resumed (admission continues).
    pub(crate) paused: AtomicBool,
    /// Workers exit once the queue is empty.
    pub(crate) stop: AtomicBool,
    /// Workers exit now, leaving what is queued (drain timed out).
    pub(crate) abort: AtomicBool,
    /// The monitor exits.
    pub(crate) monitor_stop: AtomicBool,
}

impl Lifecycle {
    pub(crate) fn is(&self, flag: &AtomicBool) -> bool {
        flag.load(Ordering::Acquire)
    }
}

/// One worker's own accounting: the monitor turns it into the worker's utilization and the
/// insertion-time estimate batch sizing uses.
#[derive(Debug)]
pub(crate) struct WorkerStats {
    /// Nanoseconds spent inserting since start.
    busy_ns: AtomicU64,
    /// Observations inserted or failed since start.
    processed: AtomicU64,
    /// Busy share of the monitor's last window, 0 to 1 (exported, sampled, as
    /// `engram_streaming_worker_utilization`).
    utilization: AtomicF64Cell,
}

impl WorkerStats {
    fn new() -> Self {
        Self { busy_ns: AtomicU64::new(0), processed: AtomicU64::new(0), utilization: AtomicF64Cell::new(0.0) }
    }

    /// The worker inserted a batch of `size` observations in `elapsed`.
    pub(crate) fn batch(&self, size: usize, elapsed: Duration) {
        self.busy_ns.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.processed.fetch_add(size as u64, Ordering::Relaxed);
    }

    /// (seconds spent inserting, observations inserted or failed) since start.
    pub(crate) fn totals(&self) -> (f64, f64) {
        (self.busy_ns.load(Ordering::Relaxed) as f64 * 1e-9, self.processed.load(Ordering::Relaxed) as f64)
    }

    pub(crate) fn utilization(&self) -> f64 {
        self.utilization.load(Ordering::Relaxed)
    }

    pub(crate) fn set_utilization(&self, ratio: f64) {
        self.utilization.store(ratio, Ordering::Relaxed);
    }
}

/// Scheduling state shared by admission, the workers and the monitor.
pub(crate) struct Scheduler {
    pub(crate) config: Arc<EngineConfig>,
    pub(crate) queue: LaneQueue<Job>,
    pub(crate) workers: usize,
    pub(crate) workers_alive: AtomicUsize,
    pub(crate) worker_events: Vec<WorkerEvents>,
    /// Per worker, in `worker_events`' order.
    pub(crate) worker_stats: Box<[WorkerStats]>,
    pub(crate) lifecycle: Lifecycle,
    /// Mean insertion time per observation (ns), derived by the monitor from `worker_stats`.
    per_item_ns: AtomicF64Cell,
    /// Smoothed drain rate, observations per second (exported, sampled, as
    /// `engram_streaming_queue_drain_rate`).
    drain_rate: AtomicF64Cell,
    /// Windowed p99s computed by the monitor (queue wait, observation latency).
    pub(crate) latency_window: Mutex<(Option<f64>, Option<f64>)>,
    idle_lock: Mutex<()>,
    idle_cv: Condvar,
    sleepers: AtomicUsize,
    monitor_lock: Mutex<()>,
    monitor_cv: Condvar,
}

impl Scheduler {
    pub(crate) fn new(config: Arc<EngineConfig>, queue: LaneQueue<Job>, worker_events: Vec<WorkerEvents>) -> Self {
        Self {
            workers: worker_events.len(),
            config,
            queue,
            workers_alive: AtomicUsize::new(0),
            worker_stats: worker_events.iter().map(|_| WorkerStats::new()).collect(),
            worker_events,
            lifecycle: Lifecycle::default(),
            per_item_ns: AtomicF64Cell::new(0.0),
            drain_rate: AtomicF64Cell::new(0.0),
            latency_window: Mutex::new((None, None)),
            idle_lock: Mutex::new(()),
            idle_cv: Condvar::new(),
            sleepers: AtomicUsize::new(0),
            monitor_lock: Mutex::new(()),
            monitor_cv: Condvar::new(),
        }
    }

    /// A job of `space` left the pool (inserted or failed).
    pub(crate) fn finished(&self, space: &Space) {
        space.pending.fetch_sub(1, Ordering::AcqRel);
        self.queue.finished();
    }

    /// Adaptive batch size: depth ÷ workers, capped by the latency target over the measured
    /// per-observation insert time, within `min_batch ..= max_batch`.
    pub(crate) fn batch_target(&self) -> usize {
        let c = &self.config;
        let by_depth = self.queue.capacity().len().div_ceil(self.workers.max(1));
        let per_item = self.per_item_ns.load(Ordering::Relaxed);
        let by_latency =
            if per_item > 0.0 { (c.batch_latency_target_ms as f64 * 1e6 / per_item) as usize } else { c.max_batch };
        by_depth.min(by_latency).clamp(c.min_batch, c.max_batch)
    }

    /// Folds the mean insertion time per observation over the last window (from the workers'
    /// own totals) into the estimate batch sizing uses (EWMA, α = 0.2).
    pub(crate) fn observe_insert_time(&self, busy_seconds: f64, observations: f64) {
        if observations <= 0.0 {
            return;
        }
        let sample = busy_seconds * 1e9 / observations;
        let old = self.per_item_ns.load(Ordering::Relaxed);
        let new = if old == 0.0 { sample } else { 0.8 * old + 0.2 * sample };
        self.per_item_ns.store(new, Ordering::Relaxed);
    }

    /// Folds an instantaneous drain rate (observations per second) into the estimate (EWMA,
    /// α = 0.3) that retry-after reads and `/metrics` samples.
    /// Idle periods (nothing queued) keep the last busy estimate, which is the rate that
    /// matters when the queue fills again.
    pub(crate) fn observe_drain(&self, rate: f64) {
        if rate <= 0.0 && self.queue.capacity().is_empty() {
            return;
        }
        let old = self.drain_rate.load(Ordering::Relaxed);
        self.drain_rate.store(if old == 0.0 { rate } else { 0.7 * old + 0.3 * rate }, Ordering::Relaxed);
    }

    /// The smoothed drain rate (observations per second) retry-after and the high-lane bound
    /// are computed from.
    pub(crate) fn drain_rate(&self) -> f64 {
        self.drain_rate.load(Ordering::Relaxed)
    }

    pub(crate) fn idle_wait(&self) {
        let mut guard = self.idle_lock.lock();
        self.sleepers.fetch_add(1, Ordering::AcqRel);
        // Work may sit in another worker's local deque: look again soon. Otherwise sleep until
        // notified (with a timeout as a safety net against a missed wake-up).
        let timeout =
            if self.queue.capacity().is_empty() { Duration::from_millis(50) } else { Duration::from_millis(1) };
        self.idle_cv.wait_for(&mut guard, timeout);
        self.sleepers.fetch_sub(1, Ordering::AcqRel);
    }

    /// Wakes idle workers after a push; free when none sleeps.
    pub(crate) fn wake_workers(&self) {
        if self.sleepers.load(Ordering::Acquire) > 0 {
            self.wake_all_workers();
        }
    }

    /// Wakes every idle worker unconditionally (resume, shutdown).
    pub(crate) fn wake_all_workers(&self) {
        let _guard = self.idle_lock.lock();
        self.idle_cv.notify_all();
    }

    pub(crate) fn monitor_sleep(&self, d: Duration) {
        let mut guard = self.monitor_lock.lock();
        if !self.lifecycle.is(&self.lifecycle.monitor_stop) {
            self.monitor_cv.wait_for(&mut guard, d);
        }
    }

    /// Stops the monitor (and wakes it to see so).
    pub(crate) fn stop_monitor(&self) {
        self.lifecycle.monitor_stop.store(true, Ordering::Release);
        let _g = self.monitor_lock.lock();
        self.monitor_cv.notify_all();
    }
}
