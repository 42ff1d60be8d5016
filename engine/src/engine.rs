//! [`Engine`]: memory spaces, admission, recall, status and shutdown, over the queue and pool.

use crate::ack::{BatchAck, IndexedWaiter};
use crate::admission::{LevelCell, Thresholds};
use crate::backpressure::{self, BackpressureLevel};
use crate::config::EngineConfig;
use crate::error::{EngineError, RejectReason, Rejection};
use crate::job::Job;
use crate::observation::{Batch, Priority};
use crate::pool::Pool;
use crate::queue::LaneQueue;
use crate::space::{Space, SpaceInfo, SpaceParams, build_index, embedding_problem, validate_space_name};
use atomic_float::AtomicF64;
use engram_telemetry::Telemetry;
use engram_telemetry::events::space::SpaceSources;
use engram_telemetry::events::throttle::LEVEL_LOG_INTERVAL;
use engram_telemetry::events::{LogThrottle, PoolEvents, QueueEvents, SpaceEvents, WorkerEvents};
use engram_telemetry::labels::REJECT_REASONS;
use engram_telemetry::registry::Source;
use parking_lot::{Condvar, Mutex, RwLock};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Index of `invalid_argument` in `REJECT_REASONS`.
const REJECT_INVALID: usize = 4;
/// Index of `shutting_down` in `REJECT_REASONS`.
const REJECT_SHUTTING_DOWN: usize = 5;
const _: () = assert!(REJECT_REASONS.len() == 6);

/// Concurrent recall queries an index admits beyond one insert per worker; more wait their turn
/// (the server runs queries on tokio's blocking pool, which can hold hundreds).
const QUERY_THREADS: usize = 8;

/// Bytes one queued observation of `dim` dimensions with `content_len` bytes of content counts
/// against `engine.queue_capacity_bytes` (the queue's own accounting: the job record, the
/// vector as `f32`, and the content).
pub fn queued_bytes(dim: usize, content_len: usize) -> usize {
    Job::footprint(dim, content_len)
}

/// What admission did with a batch.
#[derive(Debug)]
pub struct Admission {
    /// New observations admitted to the queue.
    pub accepted: usize,
    /// Observations whose id was already accepted: acknowledged, not inserted again.
    pub duplicates: usize,
    /// The space's backpressure level after admission (Warning and above: slow down).
    pub level: BackpressureLevel,
    /// Resolves when every admitted observation is indexed (when requested).
    pub indexed: Option<IndexedWaiter>,
}

/// One recall result.
#[derive(Debug, Clone, Serialize)]
pub struct RecallHit {
    /// Observation id.
    pub id: u64,
    /// Similarity (cosine similarity, inner product, or negative L2 distance).
    pub score: f32,
    /// The observation's content, if it had any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// A point-in-time view of the engine, for health endpoints.
#[derive(Debug, Clone, Serialize)]
pub struct EngineStatus {
    /// Global backpressure level (whole-queue utilization).
    pub level: BackpressureLevel,
    /// Observations queued (lanes and workers' local deques).
    pub queue_depth: usize,
    /// Observations queued per lane (high, normal, low), as exported by
    /// `engram_streaming_queue_depth`.
    pub lane_depth: [usize; 3],
    /// Queue capacity in observations.
    pub queue_capacity: usize,
    /// Bytes queued.
    pub queue_bytes: usize,
    /// Queue capacity in bytes.
    pub queue_capacity_bytes: usize,
    /// Queue utilization, 0 to 1 (the larger of the count and byte ratios).
    pub queue_utilization: f64,
    /// Observations taken from the queue per second (smoothed), as exported by
    /// `engram_streaming_queue_drain_rate_observations_per_second`.
    pub drain_rate_per_s: f64,
    /// 99th percentile of the queue wait over the monitor's last 1 s window, from the exported
    /// `engram_streaming_queue_wait_time_seconds` histograms (`None` if nothing was taken).
    pub queue_wait_p99_seconds: Option<f64>,
    /// 99th percentile of accepted → indexed latency over the last 1 s window, all spaces, from
    /// the exported `engram_streaming_observation_latency_seconds` histograms.
    pub observation_latency_p99_seconds: Option<f64>,
    /// Observations taken by workers and being inserted.
    pub in_flight: usize,
    /// Worker threads configured.
    pub workers: usize,
    /// Worker threads running.
    pub workers_alive: usize,
    /// Busy ratio of each worker over the last second, as exported by
    /// `engram_streaming_worker_utilization`.
    pub worker_utilization: Vec<f64>,
    /// True once shutdown has begun: nothing new is admitted.
    pub closing: bool,
}

/// Result of [`Engine::shutdown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// True when every accepted observation was inserted before the workers stopped.
    pub drained: bool,
    /// Observations still queued or in flight when the workers stopped (0 when drained).
    pub remaining: usize,
}

/// State shared by the engine handle, the workers and the monitor.
pub(crate) struct Shared {
    pub(crate) config: EngineConfig,
    pub(crate) thresholds: Thresholds,
    pub(crate) telemetry: Arc<Telemetry>,
    pub(crate) queue: LaneQueue<Job>,
    spaces: RwLock<HashMap<String, Arc<Space>>>,
    global: LevelCell,
    /// Global level-change log lines: one per `LEVEL_LOG_INTERVAL` at most.
    global_level_log: LogThrottle,
    /// Memory spaces that exist (for each space's share of the queue).
    space_count: AtomicUsize,
    pub(crate) workers: usize,
    pub(crate) workers_alive: AtomicUsize,
    pub(crate) worker_events: Vec<WorkerEvents>,
    pub(crate) closing: AtomicBool,
    pub(crate) paused: AtomicBool,
    pub(crate) stop: AtomicBool,
    pub(crate) abort: AtomicBool,
    pub(crate) monitor_stop: AtomicBool,
    /// Mean insertion time per observation (ns), derived by the monitor from the exported
    /// batch duration and size histograms.
    per_item_ns: AtomicF64,
    /// Windowed p99s computed by the monitor (queue wait, observation latency).
    pub(crate) latency_window: Mutex<(Option<f64>, Option<f64>)>,
    idle_lock: Mutex<()>,
    idle_cv: Condvar,
    sleepers: AtomicUsize,
    monitor_lock: Mutex<()>,
    monitor_cv: Condvar,
}

impl Shared {
    pub(crate) fn spaces_snapshot(&self) -> Vec<Arc<Space>> {
        self.spaces.read().values().cloned().collect()
    }

    /// Updates the global level and `space`'s own and effective levels; returns the effective.
    pub(crate) fn evaluate(&self, space: &Space) -> BackpressureLevel {
        let cap = self.queue.capacity();
        if let Some((from, to)) = self.global.update(&self.thresholds, cap.utilization())
            && let Some(suppressed) = self.global_level_log.admit()
        {
            tracing::info!(from, to, utilization = cap.utilization(), suppressed, "global backpressure level changed");
        }
        space.own.update(&self.thresholds, self.own_utilization(space));
        let effective = self.global.get().max(space.own.get());
        let previous = space.effective.swap(effective, Ordering::AcqRel);
        if previous != effective {
            space.events.backpressure_changed(previous, effective);
        }
        BackpressureLevel::from_u8(effective)
    }

    /// Observations one space may hold before its own level counts as full: the whole queue
    /// for a lone space, `max_space_share` of it once there are two or more.
    fn space_capacity(&self) -> usize {
        let cap = self.queue.capacity().max_count();
        if self.space_count.load(Ordering::Acquire) <= 1 {
            cap
        } else {
            ((cap as f64 * self.config.max_space_share) as usize).max(1)
        }
    }

    /// The space's pending observations over its share of the queue.
    fn own_utilization(&self, space: &Space) -> f64 {
        space.pending.load(Ordering::Acquire) as f64 / self.space_capacity() as f64
    }

    /// `Some(retry-after)` when `n` more high-priority observations would queue behind more
    /// than `high_lane_max_wait_ms` of work at the measured drain rate (and the lane is not
    /// empty); `None` to admit. No bound before a drain rate is measured.
    fn high_lane_full(&self, n: usize) -> Option<Duration> {
        let target = self.config.high_lane_max_wait_ms;
        let drain = self.queue.events().drain_rate();
        if target == 0 || drain <= 0.0 {
            return None;
        }
        let room = (drain * target as f64 / 1000.0) as usize;
        let depth = self.queue.lane_lens()[Priority::High.index()];
        (depth > 0 && depth + n > room).then(|| backpressure::retry_after(depth, room, 1.0, n, drain))
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

    /// Folds the mean insertion time per observation over the last window (from the exported
    /// histograms' sums) into the estimate batch sizing uses (EWMA, α = 0.2).
    pub(crate) fn observe_insert_time(&self, busy_seconds: f64, observations: f64) {
        if observations <= 0.0 {
            return;
        }
        let sample = busy_seconds * 1e9 / observations;
        let old = self.per_item_ns.load(Ordering::Relaxed);
        let new = if old == 0.0 { sample } else { 0.8 * old + 0.2 * sample };
        self.per_item_ns.store(new, Ordering::Relaxed);
    }

    /// Folds an instantaneous drain rate (observations per second) into the exported estimate.
    /// Idle periods (nothing queued) keep the last busy estimate, which is the rate that
    /// matters when the queue fills again.
    pub(crate) fn observe_drain(&self, rate: f64) {
        if rate <= 0.0 && self.queue.capacity().is_empty() {
            return;
        }
        let events = self.queue.events();
        let old = events.drain_rate();
        events.set_drain_rate(if old == 0.0 { rate } else { 0.7 * old + 0.3 * rate });
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
    fn wake_workers(&self) {
        if self.sleepers.load(Ordering::Acquire) > 0 {
            self.wake_all_workers();
        }
    }

    /// Wakes every idle worker unconditionally (resume, shutdown).
    fn wake_all_workers(&self) {
        let _guard = self.idle_lock.lock();
        self.idle_cv.notify_all();
    }

    pub(crate) fn monitor_sleep(&self, d: Duration) {
        let mut guard = self.monitor_lock.lock();
        if !self.monitor_stop.load(Ordering::Acquire) {
            self.monitor_cv.wait_for(&mut guard, d);
        }
    }

    fn reject(
        &self,
        space: &Space,
        priority: Priority,
        n: usize,
        level: BackpressureLevel,
        reason: RejectReason,
    ) -> EngineError {
        space.events.rejected(reason as usize, n as u64);
        let th = &self.thresholds;
        // The utilization at which the refusing level is left.
        let exit = |level: usize| th.enter[level - 1] - th.hysteresis;
        let cap = self.queue.capacity();
        let (depth, capacity) = if self.global.get() >= space.own.get() {
            (cap.len(), cap.max_count())
        } else {
            (space.pending.load(Ordering::Acquire), self.space_capacity())
        };
        let exit_util = match (reason, priority) {
            (RejectReason::QueueFull, _) => 1.0,
            (_, Priority::Low) => exit(2),
            _ => exit(3),
        };
        let drain = self.queue.events().drain_rate();
        let retry_after = backpressure::retry_after(depth, capacity, exit_util, n, drain);
        EngineError::Rejected(Rejection { reason, retry_after, level })
    }
}

/// A sampled-series source reading `read` from a live space; `None` once it is dropped or gone
/// (which removes the source from its series).
fn space_source(space: &Arc<Space>, read: impl Fn(&Space) -> f64 + Send + Sync + 'static) -> Source {
    let weak: Weak<Space> = Arc::downgrade(space);
    Box::new(move || weak.upgrade().filter(|s| !s.dropped.load(Ordering::Acquire)).map(|s| read(&s)))
}

/// The ingest engine: memory spaces, the observation queue, the worker pool and backpressure.
///
/// Created with [`Engine::new`], which starts the worker and monitor threads. Admission
/// ([`Engine::submit`]) never blocks on insertion. [`Engine::shutdown`] stops admission and
/// drains; dropping the engine does the same without a time limit.
pub struct Engine {
    shared: Arc<Shared>,
    pool: Mutex<Option<Pool>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("workers", &self.shared.workers).finish_non_exhaustive()
    }
}

impl Engine {
    /// Validates `config`, registers the engine's series in `telemetry` and starts the pool.
    ///
    /// # Errors
    /// [`EngineError::InvalidArgument`] naming a bad config field; the OS error of a thread
    /// that could not be spawned is reported the same way, on field `engine.workers`.
    pub fn new(config: EngineConfig, telemetry: Arc<Telemetry>) -> Result<Self, EngineError> {
        config.validate()?;
        let workers = config.resolved_workers();
        let queue = LaneQueue::new(
            config.queue_capacity,
            config.queue_capacity_bytes,
            QueueEvents::register(&telemetry, config.queue_capacity, config.queue_capacity_bytes),
        );
        PoolEvents::register(&telemetry).workers(workers);
        let worker_events = (0..workers).map(|id| WorkerEvents::register(&telemetry, id)).collect();
        let shared = Arc::new(Shared {
            thresholds: Thresholds::from(&config.backpressure),
            config,
            telemetry,
            queue,
            spaces: RwLock::new(HashMap::new()),
            global: LevelCell::default(),
            global_level_log: LogThrottle::new(LEVEL_LOG_INTERVAL),
            space_count: AtomicUsize::new(0),
            workers,
            workers_alive: AtomicUsize::new(0),
            worker_events,
            closing: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            monitor_stop: AtomicBool::new(false),
            per_item_ns: AtomicF64::new(0.0),
            latency_window: Mutex::new((None, None)),
            idle_lock: Mutex::new(()),
            idle_cv: Condvar::new(),
            sleepers: AtomicUsize::new(0),
            monitor_lock: Mutex::new(()),
            monitor_cv: Condvar::new(),
        });
        // The queue's bytes and utilization are exported straight from the admission
        // accounting, read at scrape time.
        let weak = Arc::downgrade(&shared);
        let weak2 = weak.clone();
        QueueEvents::sample(
            &shared.telemetry,
            move || weak.upgrade().map(|s| s.queue.capacity().bytes() as f64),
            move || weak2.upgrade().map(|s| s.queue.capacity().utilization()),
        );
        let pool = Pool::start(&shared)
            .map_err(|e| EngineError::invalid("engine.workers", format!("cannot start worker threads: {e}")))?;
        tracing::info!(workers, capacity = shared.config.queue_capacity, "engine started");
        Ok(Self { shared, pool: Mutex::new(Some(pool)) })
    }

    /// The telemetry registry the engine records into.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.shared.telemetry
    }

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    fn space(&self, name: &str) -> Result<Arc<Space>, EngineError> {
        self.shared.spaces.read().get(name).cloned().ok_or_else(|| EngineError::SpaceNotFound(name.to_owned()))
    }

    /// Creates a memory space. Creating one that exists with the same parameters is a no-op
    /// (returns `created == false`), so clients can retry.
    ///
    /// # Errors
    /// [`EngineError::InvalidArgument`] for a bad name or parameter (including a `max_elements`
    /// over `engine.max_space_elements` or the memory budget), [`EngineError::SpaceExists`]
    /// when the name is taken with different parameters, [`EngineError::SpaceLimit`] when
    /// `engine.max_spaces` spaces exist.
    pub fn create_space(&self, name: &str, params: SpaceParams) -> Result<(SpaceInfo, bool), EngineError> {
        validate_space_name(name)?;
        params.validate(&self.shared.config)?;
        let mut spaces = self.shared.spaces.write();
        if let Some(existing) = spaces.get(name) {
            return if existing.params == params {
                Ok((existing.info(), false))
            } else {
                Err(EngineError::SpaceExists(name.to_owned()))
            };
        }
        if spaces.len() >= self.shared.config.max_spaces {
            return Err(EngineError::SpaceLimit { limit: self.shared.config.max_spaces });
        }
        let index = build_index(&params, self.shared.config.resolved_workers() + QUERY_THREADS)?;
        let events = SpaceEvents::register(&self.shared.telemetry, name);
        let space = Arc::new(Space::new(name.to_owned(), params, index, events));
        space.events.sample(
            &self.shared.telemetry,
            SpaceSources {
                state: space_source(&space, |s| f64::from(s.effective.load(Ordering::Acquire))),
                vectors: space_source(&space, |s| s.index.len() as f64),
                memory_bytes: space_source(&space, |s| s.memory_bytes() as f64),
            },
        );
        let info = space.info();
        spaces.insert(name.to_owned(), space);
        self.shared.space_count.store(spaces.len(), Ordering::Release);
        tracing::info!(
            memory_space = name,
            index = params.index.as_str(),
            dim = params.dim,
            metric = ?params.metric,
            m = params.m,
            "memory space created"
        );
        Ok((info, true))
    }

    /// Drops a memory space and its data. Observations of it still queued are discarded by the
    /// workers (counted as `space_dropped` batch failures; their indexed acks report them failed).
    ///
    /// # Errors
    /// [`EngineError::SpaceNotFound`].
    pub fn drop_space(&self, name: &str) -> Result<(), EngineError> {
        let mut spaces = self.shared.spaces.write();
        let space = spaces.remove(name).ok_or_else(|| EngineError::SpaceNotFound(name.to_owned()))?;
        space.dropped.store(true, Ordering::Release);
        self.shared.space_count.store(spaces.len(), Ordering::Release);
        // Under the registry lock, so a space of the same name created next registers afresh.
        space.events.release(&self.shared.telemetry);
        drop(spaces);
        tracing::info!(memory_space = name, "memory space dropped");
        Ok(())
    }

    /// Describes one memory space.
    ///
    /// # Errors
    /// [`EngineError::SpaceNotFound`].
    pub fn describe_space(&self, name: &str) -> Result<SpaceInfo, EngineError> {
        Ok(self.space(name)?.info())
    }

    /// The backpressure level of a memory space, or `None` when it does not exist. Cheaper than
    /// [`Engine::describe_space`] (no size estimate), for per-batch checks.
    pub fn space_level(&self, name: &str) -> Option<BackpressureLevel> {
        let space = self.shared.spaces.read().get(name).cloned()?;
        Some(BackpressureLevel::from_u8(space.effective.load(Ordering::Acquire)))
    }

    /// Describes every memory space, sorted by name.
    pub fn list_spaces(&self) -> Vec<SpaceInfo> {
        let mut all: Vec<SpaceInfo> = self.shared.spaces_snapshot().iter().map(|s| s.info()).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Admits a batch into `space`, all or nothing.
    ///
    /// The batch is validated whole first (any bad observation refuses the batch, naming it).
    /// Ids already accepted are acknowledged as duplicates and not queued again. The rest is
    /// admitted if the space's backpressure level admits the batch's priority and the queue has
    /// room for all of it; otherwise nothing is admitted and the error carries a retry-after.
    /// With `want_indexed`, [`Admission::indexed`] resolves when every admitted observation is
    /// searchable.
    ///
    /// # Errors
    /// [`EngineError::SpaceNotFound`], [`EngineError::InvalidArgument`] (field path such as
    /// `observations[3].embedding`), [`EngineError::Rejected`], [`EngineError::ShuttingDown`].
    pub fn submit(&self, space: &str, batch: Batch, want_indexed: bool) -> Result<Admission, EngineError> {
        let shared = &*self.shared;
        let space = self.space(space)?;
        let n = batch.observations.len();
        if shared.closing.load(Ordering::Acquire) {
            space.events.rejected(REJECT_SHUTTING_DOWN, n as u64);
            return Err(EngineError::ShuttingDown);
        }
        if let Err(e) = space.validate_batch(&batch, &shared.config) {
            space.events.rejected(REJECT_INVALID, n as u64);
            return Err(e);
        }
        let priority = batch.priority;
        let level = shared.evaluate(&space);
        let fresh: Vec<(usize, crate::observation::Observation)> =
            batch.observations.into_iter().enumerate().filter(|(_, o)| !space.ids.contains_key(&o.id)).collect();
        let mut duplicates = n - fresh.len();
        if fresh.is_empty() {
            space.events.duplicates(duplicates as u64);
            return Ok(Admission { accepted: 0, duplicates, level, indexed: want_indexed.then(|| BatchAck::new(0).1) });
        }
        if let Some(reason) = level.refuses(priority) {
            return Err(shared.reject(&space, priority, n, level, reason));
        }
        if priority == Priority::High
            && level >= BackpressureLevel::Warning
            && let Some(retry_after) = shared.high_lane_full(fresh.len())
        {
            space.events.rejected(RejectReason::HighLaneFull as usize, n as u64);
            let reason = RejectReason::HighLaneFull;
            return Err(EngineError::Rejected(Rejection { reason, retry_after, level }));
        }
        let dim = space.params.dim;
        let metric = space.params.metric;
        let now = Instant::now();
        let mut jobs = Vec::with_capacity(fresh.len());
        let mut bytes = 0;
        for (i, o) in fresh {
            let mut vector = o.embedding.into_boxed_slice();
            if let Err(reason) = metric.prepare(&mut vector) {
                space.events.rejected(REJECT_INVALID, n as u64);
                return Err(EngineError::invalid(format!("observations[{i}].embedding"), reason));
            }
            let content = o.content.map(String::into_boxed_str);
            let job_bytes = Job::footprint(dim, content.as_ref().map_or(0, |c| c.len()));
            bytes += job_bytes;
            jobs.push(Job {
                space: Arc::clone(&space),
                id: o.id,
                vector,
                content,
                lane: priority.index(),
                accepted_at: now,
                bytes: job_bytes,
                ack: None,
            });
        }
        if !shared.queue.capacity().try_reserve(jobs.len(), bytes) {
            return Err(shared.reject(&space, priority, n, level, RejectReason::QueueFull));
        }
        // Claim the ids; one that a concurrent batch claimed first becomes a duplicate and its
        // reserved room is returned.
        let reserved = (jobs.len(), bytes);
        jobs.retain(|j| space.ids.insert(j.id, ()).is_none());
        let kept_bytes: usize = jobs.iter().map(|j| j.bytes).sum();
        if jobs.len() < reserved.0 {
            shared.queue.capacity().release(reserved.0 - jobs.len(), reserved.1 - kept_bytes);
            duplicates += reserved.0 - jobs.len();
        }
        let accepted = jobs.len();
        let (ack, waiter) = if want_indexed {
            let (ack, waiter) = BatchAck::new(accepted);
            (ack, Some(waiter))
        } else {
            (None, None)
        };
        if let Some(ack) = &ack {
            jobs.iter_mut().for_each(|j| j.ack = Some(Arc::clone(ack)));
        }
        if accepted > 0 {
            space.pending.fetch_add(accepted, Ordering::AcqRel);
            space.events.admitted(priority.index(), accepted as u64);
            shared.queue.push(priority.index(), jobs);
            shared.wake_workers();
        }
        space.events.duplicates(duplicates as u64);
        let level = shared.evaluate(&space);
        Ok(Admission { accepted, duplicates, level, indexed: waiter })
    }

    /// The `k` observations most similar to `embedding` in `space`, best first, searching with
    /// `ef_search` (default: the space's) candidates.
    ///
    /// # Errors
    /// [`EngineError::SpaceNotFound`]; [`EngineError::InvalidArgument`] on `embedding` (length,
    /// finiteness), `k` (1 to 1000) or `ef_search` (1 to 4096).
    pub fn recall(
        &self,
        space: &str,
        mut embedding: Vec<f32>,
        k: usize,
        ef_search: Option<usize>,
    ) -> Result<Vec<RecallHit>, EngineError> {
        let started = Instant::now();
        let space = self.space(space)?;
        if !(1..=1000).contains(&k) {
            return Err(EngineError::invalid("k", format!("must be within 1 and 1000, got {k}")));
        }
        let ef = ef_search.unwrap_or(space.params.ef_search);
        if !(1..=4096).contains(&ef) {
            return Err(EngineError::invalid("ef_search", format!("must be within 1 and 4096, got {ef}")));
        }
        if let Some(reason) = embedding_problem(&embedding, space.params.dim) {
            return Err(EngineError::invalid("embedding", reason));
        }
        space.params.metric.prepare(&mut embedding).map_err(|r| EngineError::invalid("embedding", r))?;
        let hits = space
            .index
            .search(&embedding, k, ef.max(k))
            .into_iter()
            .map(|n| RecallHit { id: n.id, score: n.score, content: space.content.get(&n.id).map(|c| c.to_string()) })
            .collect();
        space.events.recalled(started.elapsed());
        Ok(hits)
    }

    /// A point-in-time status of the queue and pool.
    pub fn status(&self) -> EngineStatus {
        let s = &*self.shared;
        let cap = s.queue.capacity();
        let (queue_wait_p99_seconds, observation_latency_p99_seconds) = *s.latency_window.lock();
        EngineStatus {
            level: BackpressureLevel::from_u8(s.global.get()),
            queue_depth: cap.len(),
            lane_depth: s.queue.lane_lens(),
            queue_capacity: cap.max_count(),
            queue_bytes: cap.bytes(),
            queue_capacity_bytes: cap.max_bytes(),
            queue_utilization: cap.utilization(),
            drain_rate_per_s: s.queue.events().drain_rate(),
            queue_wait_p99_seconds,
            observation_latency_p99_seconds,
            in_flight: s.queue.in_flight(),
            workers: s.workers,
            workers_alive: s.workers_alive.load(Ordering::Acquire),
            worker_utilization: s.worker_events.iter().map(WorkerEvents::utilization_ratio).collect(),
            closing: s.closing.load(Ordering::Acquire),
        }
    }

    /// Pauses the workers: admission continues (the queue fills, backpressure engages) but
    /// nothing is inserted until [`Engine::resume`]. For maintenance windows and overload drills.
    pub fn pause(&self) {
        self.shared.paused.store(true, Ordering::Release);
        tracing::warn!("worker pool paused");
    }

    /// Resumes paused workers.
    pub fn resume(&self) {
        self.shared.paused.store(false, Ordering::Release);
        self.shared.wake_all_workers();
        tracing::info!("worker pool resumed");
    }

    /// True once shutdown has begun.
    pub fn is_closing(&self) -> bool {
        self.shared.closing.load(Ordering::Acquire)
    }

    /// Stops admission, waits until every accepted observation is inserted (or `timeout`
    /// passes), then stops the threads. Resumes paused workers so the queue can drain.
    /// Idempotent: later calls return at once.
    pub fn shutdown(&self, timeout: Option<Duration>) -> ShutdownReport {
        let s = &*self.shared;
        s.closing.store(true, Ordering::Release);
        let Some(pool) = self.pool.lock().take() else {
            return ShutdownReport { drained: true, remaining: 0 };
        };
        self.resume();
        let started = Instant::now();
        let drained = loop {
            // Capacity before in_flight: a job is counted in flight before it leaves the queue.
            let queued = s.queue.capacity().len();
            let in_flight = s.queue.in_flight();
            if queued == 0 && in_flight == 0 {
                break true;
            }
            if timeout.is_some_and(|t| started.elapsed() >= t) {
                break false;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let remaining = s.queue.capacity().len() + s.queue.in_flight();
        if !drained {
            s.abort.store(true, Ordering::Release);
            tracing::error!(remaining, "shutdown timed out: observations still queued are lost");
        }
        s.stop.store(true, Ordering::Release);
        s.monitor_stop.store(true, Ordering::Release);
        s.wake_all_workers();
        {
            let _g = s.monitor_lock.lock();
            s.monitor_cv.notify_all();
        }
        pool.join();
        tracing::info!(drained, remaining, "engine stopped");
        ShutdownReport { drained, remaining }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown(None);
    }
}
