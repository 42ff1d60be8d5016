//! The update path and its owner, [`UpdateHandler`] (in the spirit of Qdrant's
//! `lib/collection/src/update_handler.rs`: one owner of everything that changes state, with
//! named workers).
//!
//! Calls go one way, top to bottom:
//!
//! - [`admit`]: [`Admitter`] validates, dedupes, decides the level and reserves queue room,
//!   turns a batch into an [`Operation`](crate::Operation) and hands its jobs to the scheduler.
//! - [`worker`] and [`monitor`]: the pool's threads; workers apply jobs to the index and
//!   re-evaluate levels through the admitter; the monitor samples rates and levels.
//! - [`scheduler`]: [`Scheduler`] holds the queue, the lifecycle flags, sleep and wake-up and
//!   the adaptive batch size.
//! - [`registry`]: [`Registry`], the spaces by name.
//! - [`job`]: [`Job`], one admitted observation in the queue.
//! - [`recovery`]: [`Recovery`], the start-up replay of the store's log through the same queue
//!   and workers.
//!
//! The durable log ([`crate::storage`]) sits between admission and the scheduler: admission
//! appends the operation (and the group commit syncs it) as its jobs are queued; the DURABLE
//! ack waits for the sync.

mod admit;
mod checkpoint;
mod job;
mod monitor;
mod recovery;
mod registry;
mod scheduler;
mod snapshot;
mod worker;

pub use admit::{Admission, AdmitTimes, Deletion};
pub use job::queued_bytes;
pub use recovery::RecoveryStatus;
pub use snapshot::{SnapshotInfo, SnapshotSource};

use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::observation::Batch;
use crate::operation::AckLevel;
use crate::queue::LaneQueue;
use crate::space::{Space, SpaceInfo, SpaceParams, build_index, validate_space_name};
use crate::storage::{Durability, StorageConfig, Store};
use crate::sync::{Mutex, Ordering};
use admit::Admitter;
use engram_telemetry::Telemetry;
use engram_telemetry::events::space::SpaceSources;
use engram_telemetry::events::{PoolEvents, QueueEvents, QueueSources, SpaceEvents, StorageEvents, WorkerEvents};
use engram_telemetry::registry::Source;
use recovery::{Recovery, Replay};
use registry::Registry;
use scheduler::Scheduler;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use worker::Pool;

/// Concurrent recall queries an index admits beyond one insert per worker; more wait their turn
/// (the server runs queries on tokio's blocking pool, which can hold hundreds).
pub(crate) const QUERY_THREADS: usize = 8;

/// Result of [`Engine::shutdown`](crate::Engine::shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// True when every accepted observation was inserted before the workers stopped.
    pub drained: bool,
    /// Observations still queued or in flight when the workers stopped (0 when drained).
    pub remaining: usize,
}

/// The owner of the update path: the space registry, admission, scheduling and the pool.
pub(crate) struct UpdateHandler {
    pub(crate) config: Arc<EngineConfig>,
    pub(crate) telemetry: Arc<Telemetry>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) scheduler: Arc<Scheduler>,
    pub(crate) admitter: Arc<Admitter>,
    /// The durable log; `None` with `durability = none`.
    pub(crate) store: Option<Arc<Store>>,
    pub(crate) recovery: Arc<Recovery>,
    /// Index checkpoints; `None` without a store.
    checkpointer: Option<Arc<checkpoint::Checkpointer>>,
    /// `storage.max_snapshot_bytes`.
    max_snapshot_bytes: u64,
    pool: Mutex<Option<Pool>>,
}

impl UpdateHandler {
    /// Opens the store (unless `durability = none`), registers the queue and pool series in
    /// `telemetry`, starts the workers and monitor, and starts recovery from the store;
    /// `config` is validated by the caller.
    pub(crate) fn start(
        config: EngineConfig,
        storage: &StorageConfig,
        telemetry: Arc<Telemetry>,
    ) -> Result<Self, EngineError> {
        let config = Arc::new(config);
        let store = match storage.durability {
            Durability::None => None,
            _ => {
                let store = Arc::new(Store::open(storage, StorageEvents::register(&telemetry))?);
                let weak = Arc::downgrade(&store);
                StorageEvents::sample_disk_bytes(
                    &telemetry,
                    Box::new(move || weak.upgrade().map(|s| s.disk_bytes() as f64)),
                );
                let weak = Arc::downgrade(&store);
                StorageEvents::sample_free_bytes(
                    &telemetry,
                    Box::new(move || weak.upgrade().and_then(|s| s.free_bytes()).map(|b| b as f64)),
                );
                Some(store)
            }
        };
        let workers = config.resolved_workers();
        let queue = LaneQueue::new(
            config.queue_capacity,
            config.queue_capacity_bytes,
            QueueEvents::register(&telemetry, config.queue_capacity, config.queue_capacity_bytes),
        );
        PoolEvents::register(&telemetry).workers(workers);
        let worker_events = (0..workers).map(|id| WorkerEvents::register(&telemetry, id)).collect();
        let scheduler = Arc::new(Scheduler::new(Arc::clone(&config), queue, worker_events));
        let registry = Arc::new(Registry::default());
        let admitter =
            Arc::new(Admitter::new(Arc::clone(&config), Arc::clone(&registry), Arc::clone(&scheduler), store.clone()));
        // What the engine steers by is exported straight from the engine's own state, read at
        // scrape time: the queue's accounting, lane depths and drain rate, each worker's
        // utilization.
        let source = |read: fn(&Scheduler) -> f64| scheduler_source(&scheduler, read);
        QueueEvents::sample(
            &telemetry,
            QueueSources {
                bytes: source(|s| s.queue.capacity().bytes() as f64),
                utilization: source(|s| s.queue.capacity().utilization()),
                depth: [
                    source(|s| s.queue.depth(0).max(0) as f64),
                    source(|s| s.queue.depth(1).max(0) as f64),
                    source(|s| s.queue.depth(2).max(0) as f64),
                ],
                drain_rate: source(Scheduler::drain_rate),
            },
        );
        for id in 0..workers {
            let utilization = scheduler_source(&scheduler, move |s| s.worker_stats[id].utilization());
            WorkerEvents::sample_utilization(&telemetry, id, utilization);
        }
        let pool = Pool::start(&scheduler, &admitter, &registry)
            .map_err(|e| EngineError::invalid("engine.workers", format!("cannot start worker threads: {e}")))?;
        let recovery = match &store {
            None => Recovery::done(),
            Some(store) => {
                Recovery::start(Replay::new(&config, &telemetry, &registry, &scheduler, store)).map_err(|e| {
                    EngineError::invalid("engine.workers", format!("cannot start the recovery thread: {e}"))
                })?
            }
        };
        let checkpointer = match &store {
            None => None,
            Some(store) => {
                let recovering = Arc::clone(&recovery);
                Some(
                    checkpoint::Checkpointer::start(
                        Arc::clone(store),
                        Arc::clone(&registry),
                        Duration::from_secs(storage.checkpoint_interval_s),
                        storage.checkpoint_after_operations,
                        move || !recovering.is_active(),
                    )
                    .map_err(|e| {
                        EngineError::invalid("engine.workers", format!("cannot start the checkpoint thread: {e}"))
                    })?,
                )
            }
        };
        tracing::info!(
            workers,
            capacity = config.queue_capacity,
            durability = storage.durability.as_str(),
            data_dir = %storage.data_dir.display(),
            "engine started"
        );
        Ok(Self {
            config,
            telemetry,
            registry,
            scheduler,
            admitter,
            store,
            recovery,
            checkpointer,
            max_snapshot_bytes: storage.max_snapshot_bytes,
            pool: Mutex::new(Some(pool)),
        })
    }

    /// `Err(Recovering)` while recovery runs (or failed).
    pub(crate) fn serving(&self) -> Result<(), EngineError> {
        if self.recovery.is_active() { Err(EngineError::Recovering) } else { Ok(()) }
    }

    /// See [`Engine::create_space`](crate::Engine::create_space).
    pub(crate) fn create_space(&self, name: &str, params: SpaceParams) -> Result<(SpaceInfo, bool), EngineError> {
        self.serving()?;
        validate_space_name(name)?;
        params.validate(&self.config)?;
        // The space stores, describes and compares its index and quantization made explicit.
        let params = params.resolved();
        let created = self.registry.update(|spaces| {
            if let Some(existing) = spaces.get(name) {
                return if existing.params == params {
                    Ok((existing.info(), false))
                } else {
                    Err(EngineError::SpaceExists(name.to_owned()))
                };
            }
            if spaces.len() >= self.config.max_spaces {
                return Err(EngineError::SpaceLimit { limit: self.config.max_spaces });
            }
            // Build the index first (it may refuse the parameters), then record the space.
            let index = build_index(&params, self.config.resolved_workers() + QUERY_THREADS)?;
            let uid = match &self.store {
                Some(store) => {
                    store.create_space(name, serde_json::to_value(params).expect("space parameters serialise"))?
                }
                None => 0,
            };
            let space = new_space(&self.telemetry, name, uid, params, index, self.store.clone());
            let info = space.info();
            spaces.insert(name.to_owned(), space);
            Ok((info, true))
        })?;
        if created.1 {
            tracing::info!(
                memory_space = name,
                index = params.index().as_str(),
                dim = params.dim,
                metric = ?params.metric,
                m = params.m,
                "memory space created"
            );
        }
        Ok(created)
    }

    /// See [`Engine::drop_space`](crate::Engine::drop_space).
    pub(crate) fn drop_space(&self, name: &str) -> Result<(), EngineError> {
        self.serving()?;
        let uid = self.registry.update(|spaces| {
            if !spaces.contains_key(name) {
                return Err(EngineError::SpaceNotFound(name.to_owned()));
            }
            // The drop is durable before it takes effect: a crash after this finishes it at the
            // next start (the log records of a uid no space has are removed then).
            if let Some(store) = &self.store {
                store.forget_space(name)?;
            }
            let space = spaces.remove(name).expect("present under the lock");
            space.dropped.store(true, Ordering::Release);
            // Under the registry lock, so a space of the same name created next registers afresh.
            space.events.release(&self.telemetry);
            Ok::<_, EngineError>(space.uid)
        })?;
        if let Some(store) = &self.store
            && let Err(e) = store.purge_log(uid)
        {
            // The definition is gone, so the next start removes what is left.
            tracing::warn!(memory_space = name, error = %e, "removing a dropped space's log records failed; the next start finishes it");
        }
        tracing::info!(memory_space = name, "memory space dropped");
        Ok(())
    }

    /// See [`Engine::submit`](crate::Engine::submit).
    pub(crate) fn submit(&self, space: &str, batch: Batch, ack: AckLevel) -> Result<Admission, EngineError> {
        self.serving()?;
        let space = self.registry.get(space)?;
        self.admitter.submit(&space, batch, ack)
    }

    /// See [`Engine::delete`](crate::Engine::delete).
    pub(crate) fn delete(&self, space: &str, ids: Vec<u64>, ack: AckLevel) -> Result<Deletion, EngineError> {
        self.serving()?;
        let space = self.registry.get(space)?;
        self.admitter.delete(&space, ids, ack)
    }

    /// See [`Engine::pause`](crate::Engine::pause).
    pub(crate) fn pause(&self) {
        self.scheduler.lifecycle.paused.store(true, Ordering::Release);
        tracing::warn!("worker pool paused");
    }

    /// See [`Engine::resume`](crate::Engine::resume).
    pub(crate) fn resume(&self) {
        self.scheduler.lifecycle.paused.store(false, Ordering::Release);
        self.scheduler.wake_all_workers();
        tracing::info!("worker pool resumed");
    }

    /// See [`Engine::shutdown`](crate::Engine::shutdown).
    pub(crate) fn shutdown(&self, timeout: Option<Duration>) -> ShutdownReport {
        let s = &*self.scheduler;
        s.lifecycle.closing.store(true, Ordering::Release);
        self.recovery.stop();
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
            s.lifecycle.abort.store(true, Ordering::Release);
            tracing::error!(remaining, "shutdown timed out: observations still queued are lost");
        }
        s.lifecycle.stop.store(true, Ordering::Release);
        s.stop_monitor();
        s.wake_all_workers();
        pool.join();
        if let Some(c) = &self.checkpointer {
            c.stop();
            // Drained and recovered: a checkpoint now covers everything, so the next start
            // replays (almost) nothing.
            if drained && !self.recovery.is_active() {
                c.checkpoint_all();
            }
        }
        if let Some(store) = &self.store {
            // The last sync: every DURABLE waiter still open is resolved.
            store.close();
        }
        tracing::info!(drained, remaining, "engine stopped");
        ShutdownReport { drained, remaining }
    }
}

/// A space over `index`, its series registered and sampled in `telemetry`.
fn new_space(
    telemetry: &Arc<Telemetry>,
    name: &str,
    uid: u64,
    params: SpaceParams,
    index: Box<dyn crate::index::VectorIndex>,
    store: Option<Arc<Store>>,
) -> Arc<Space> {
    let events = SpaceEvents::register(telemetry, name);
    let checkpointed = store.is_some();
    let space = Arc::new(Space::new(name.to_owned(), uid, params, index, events, store));
    if checkpointed {
        StorageEvents::sample_checkpoint_age(
            telemetry,
            space.events.label(),
            space_source(&space, |s| s.checkpointed_at.lock().elapsed().as_secs_f64()),
        );
    }
    space.events.sample(
        telemetry,
        SpaceSources {
            state: space_source(&space, |s| f64::from(s.effective.load(Ordering::Acquire))),
            vectors: space_source(&space, |s| s.index.len() as f64),
            memory_bytes: space_source(&space, |s| s.memory_bytes() as f64),
            tombstones: space_source(&space, |s| s.index.tombstones() as f64),
        },
    );
    space
}

/// A stored space built again at start (recovery): over the index `index` gives (loaded from a
/// checkpoint, or new), once the stored parameters pass this configuration's limits; its
/// content read from `store`.
///
/// # Errors
/// [`EngineError::InvalidArgument`] when the stored parameters no longer pass this
/// configuration's limits or the index cannot be built.
pub(crate) fn register_space(
    config: &EngineConfig,
    telemetry: &Arc<Telemetry>,
    name: &str,
    uid: u64,
    params: SpaceParams,
    store: &Arc<Store>,
    index: impl FnOnce(&SpaceParams) -> Result<Box<dyn crate::index::VectorIndex>, EngineError>,
) -> Result<Arc<Space>, EngineError> {
    params.validate(config).map_err(|e| EngineError::invalid(format!("stored space `{name}`"), e.to_string()))?;
    let index = index(&params)?;
    Ok(new_space(telemetry, name, uid, params, index, Some(Arc::clone(store))))
}

/// A sampled-series source reading `read` from a live space; `None` once it is dropped or gone
/// (which removes the source from its series).
fn space_source(space: &Arc<Space>, read: impl Fn(&Space) -> f64 + Send + Sync + 'static) -> Source {
    let weak: Weak<Space> = Arc::downgrade(space);
    Box::new(move || weak.upgrade().filter(|s| !s.dropped.load(Ordering::Acquire)).map(|s| read(&s)))
}

/// A sampled-series source reading `read` from the scheduler while it lives; `None` once the
/// engine is gone (which removes the source from its series).
fn scheduler_source(scheduler: &Arc<Scheduler>, read: impl Fn(&Scheduler) -> f64 + Send + Sync + 'static) -> Source {
    let weak: Weak<Scheduler> = Arc::downgrade(scheduler);
    Box::new(move || weak.upgrade().map(|s| read(&s)))
}
