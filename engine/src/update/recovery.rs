//! Recovery: at start, the spaces the store defines are created again (each over its newest
//! usable checkpoint) and their log after it is read, in sequence order. Until that is done
//! the engine serves nothing but health and space listings ([`EngineError::Recovering`]).
//!
//! **Ready before the graph has caught up.** Reading the log is fast; inserting what it holds
//! into the graph runs at the index's insert rate. So each replayed insert or upsert is put in
//! its space's tail ([`crate::tail`]), which recall scans exactly, as well as turned into a job;
//! once every space's log is read the engine is ready, and the jobs are then fed to the same
//! queue and workers as live admission (so replay inserts on every worker, in adaptive
//! batches), beside live traffic, while [`RecoveryStatus::catching_up`]. Checkpoints run
//! during the catch-up too, covering what is applied by then, so a crash in the middle of a
//! long one replays less the next time.
//!
//! Replay applies each record's inserts, upserts and deletes to the ids' states in log order,
//! exactly as admission did, so a deleted id stays deleted and an upserted one keeps its latest
//! vector whatever order the workers apply the jobs in. A record that does not decode ends
//! that space's replay at the last whole record before it (logged and counted); the records
//! stay on disk, nothing is deleted.

use super::job::Job;
use super::registry::Registry;
use super::scheduler::Scheduler;
use super::{QUERY_THREADS, register_space};
use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::observation::Priority;
use crate::operation::Operation;
use crate::space::IdState;
use crate::space::build_index;
use crate::storage::{Store, checkpoint};
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering};
use engram_telemetry::Telemetry;
use serde::Serialize;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Recovery progress, for `/health/detailed`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecoveryStatus {
    /// True until every space is replayed and indexed.
    pub recovering: bool,
    /// Spaces the store defines.
    pub spaces: usize,
    /// Spaces whose log has been read to the end.
    pub spaces_replayed: usize,
    /// Operations on observations (inserts, upserts, deletes) replayed into the queue so far.
    pub replayed_observations: u64,
    /// Log records that did not decode (each ended its space's replay).
    pub corrupt_records: u64,
    /// Seconds since recovery began, or that it took once done (until ready: the catch-up
    /// after it is not counted).
    pub seconds: f64,
    /// True from ready until every replayed observation is in its space's index (until then
    /// recall scans the rest exactly).
    pub catching_up: bool,
    /// Replayed inserts and upserts not yet in their space's index.
    pub unindexed_observations: u64,
    /// Why recovery could not run, if it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A checkpoint loaded at start: the index, the log position it covers and the ids' states.
type LoadedCheckpoint =
    Option<(Box<dyn crate::index::VectorIndex>, crate::operation::Seq, Vec<checkpoint::SavedState>)>;

/// Replayed jobs of one space not yet queued, one group per log record, with their lane.
type Backlog = Vec<(Priority, Vec<Job>)>;

/// Shared recovery state.
pub(crate) struct Recovery {
    active: AtomicBool,
    /// Ready, with replayed jobs not yet all applied.
    catching_up: AtomicBool,
    /// The spaces being caught up (their tails count what is left).
    catch_up: Mutex<Vec<Arc<crate::space::Space>>>,
    stop: AtomicBool,
    spaces: AtomicUsize,
    spaces_replayed: AtomicUsize,
    replayed: AtomicU64,
    corrupt: AtomicU64,
    started: Instant,
    took: Mutex<Option<f64>>,
    error: Mutex<Option<String>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What the replay thread needs of the update path.
pub(crate) struct Replay {
    pub(crate) config: Arc<EngineConfig>,
    pub(crate) telemetry: Arc<Telemetry>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) scheduler: Arc<Scheduler>,
    pub(crate) store: Arc<Store>,
}

impl Replay {
    /// What a replay needs, shared with the update path that owns each part.
    pub(crate) fn new(
        config: &Arc<EngineConfig>,
        telemetry: &Arc<Telemetry>,
        registry: &Arc<Registry>,
        scheduler: &Arc<Scheduler>,
        store: &Arc<Store>,
    ) -> Self {
        Self {
            config: Arc::clone(config),
            telemetry: Arc::clone(telemetry),
            registry: Arc::clone(registry),
            scheduler: Arc::clone(scheduler),
            store: Arc::clone(store),
        }
    }
}

impl Recovery {
    /// Nothing to recover (no store).
    pub(crate) fn done() -> Arc<Self> {
        let r = Self::new();
        r.active.store(false, Ordering::Release);
        *r.took.lock() = Some(0.0);
        Arc::new(r)
    }

    /// Counters for a replay outside start-up (a snapshot restore).
    pub(crate) fn new() -> Self {
        Self {
            active: AtomicBool::new(true),
            catching_up: AtomicBool::new(false),
            catch_up: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            spaces: AtomicUsize::new(0),
            spaces_replayed: AtomicUsize::new(0),
            replayed: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            started: Instant::now(),
            took: Mutex::new(None),
            error: Mutex::new(None),
            thread: Mutex::new(None),
        }
    }

    /// Starts replaying on a background thread.
    pub(crate) fn start(replay: Replay) -> std::io::Result<Arc<Self>> {
        let me = Arc::new(Self::new());
        let r = Arc::clone(&me);
        let handle = std::thread::Builder::new().name("engram-recovery".into()).spawn(move || {
            let backlogs = match r.run(&replay) {
                Ok(Some(backlogs)) => backlogs,
                Ok(None) => return, // stopping
                Err(e) => {
                    tracing::error!(error = %e, "recovery failed: the engine stays not ready");
                    *r.error.lock() = Some(e.to_string());
                    return;
                }
            };
            let took = r.started.elapsed().as_secs_f64();
            replay.store.events.recovered(r.started.elapsed());
            *r.took.lock() = Some(took);
            *r.catch_up.lock() = backlogs.iter().map(|(space, _)| Arc::clone(space)).collect();
            r.catching_up.store(true, Ordering::Release);
            r.active.store(false, Ordering::Release);
            tracing::info!(
                seconds = took,
                spaces = r.spaces.load(Ordering::Acquire),
                observations = r.replayed.load(Ordering::Acquire),
                unindexed = r.unindexed(),
                corrupt_records = r.corrupt.load(Ordering::Acquire),
                "recovery finished: ready (the replayed tail is searched exactly until indexed)"
            );
            let caught_up = r.catch_up(&replay, backlogs);
            r.catching_up.store(false, Ordering::Release);
            r.catch_up.lock().clear();
            if caught_up {
                tracing::info!(seconds = r.started.elapsed().as_secs_f64(), "replayed observations all indexed");
            }
        })?;
        *me.thread.lock() = Some(handle);
        Ok(me)
    }

    /// True while the engine is not yet serving (replaying, or recovery failed).
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Replayed inserts and upserts not yet in their space's index.
    fn unindexed(&self) -> u64 {
        self.catch_up.lock().iter().map(|s| s.tail.len() as u64).sum()
    }

    /// Stops a replay in progress and joins its thread.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.thread.lock().take() {
            let _ = h.join();
        }
    }

    /// True once asked to stop or the engine is closing (its workers may be gone).
    fn stopping(&self, r: &Replay) -> bool {
        self.stop.load(Ordering::Acquire) || r.scheduler.lifecycle.closing.load(Ordering::Acquire)
    }

    pub(crate) fn status(&self) -> RecoveryStatus {
        RecoveryStatus {
            recovering: self.is_active(),
            spaces: self.spaces.load(Ordering::Acquire),
            spaces_replayed: self.spaces_replayed.load(Ordering::Acquire),
            replayed_observations: self.replayed.load(Ordering::Acquire),
            corrupt_records: self.corrupt.load(Ordering::Acquire),
            seconds: self.took.lock().unwrap_or_else(|| self.started.elapsed().as_secs_f64()),
            catching_up: self.catching_up.load(Ordering::Acquire),
            unindexed_observations: self.unindexed(),
            error: self.error.lock().clone(),
        }
    }

    /// The newest checkpoint of space `uid` that verifies and loads: its index, position and
    /// states. One that does not is moved aside (named in the log, counted) and the one before
    /// it tried; `None` when there is none (the space is rebuilt from the whole log, or from
    /// what is left of it when checkpoints it was compacted behind were all unusable).
    fn load_checkpoint(
        &self,
        r: &Replay,
        name: &str,
        uid: u64,
        params: &crate::space::SpaceParams,
        threads: usize,
    ) -> Result<LoadedCheckpoint, EngineError> {
        let dir = checkpoint::space_dir(&r.store.checkpoints_root(), uid);
        let mut manifest = checkpoint::read_manifest(&dir)?;
        let index_params = params.index_params(threads);
        while let Some(c) = manifest.checkpoints.first().cloned() {
            let loaded = checkpoint::verify(&dir, &c)
                .and_then(|states| crate::index::load(&index_params, &dir.join(&c.index_file)).map(|i| (i, states)));
            match loaded {
                Ok((index, states)) => {
                    tracing::info!(
                        memory_space = name,
                        seq = c.seq,
                        vectors = index.len(),
                        "loaded the space's checkpoint"
                    );
                    return Ok(Some((index, c.seq, states)));
                }
                Err(reason) => {
                    let moved = checkpoint::move_aside(&dir, &c);
                    r.store.events.checkpoint_failed(true);
                    tracing::error!(
                        memory_space = name,
                        seq = c.seq,
                        reason = %reason,
                        moved_to = ?moved,
                        "a checkpoint does not verify: moved aside, trying the one before it"
                    );
                    manifest.checkpoints.remove(0);
                    checkpoint::rewrite_manifest(&dir, &manifest)?;
                }
            }
        }
        Ok(None)
    }

    /// Opens every stored space and reads its log into its tail and a backlog of jobs; `None`
    /// when it stopped early.
    #[allow(clippy::type_complexity)]
    fn run(&self, r: &Replay) -> Result<Option<Vec<(Arc<crate::space::Space>, Backlog)>>, EngineError> {
        let stored = r.store.spaces()?;
        self.spaces.store(stored.len(), Ordering::Release);
        let mut spaces = Vec::with_capacity(stored.len());
        for (name, s) in stored {
            let params = crate::SpaceParams::from_stored(s.params).map_err(|e| EngineError::Storage {
                kind: crate::error::StorageErrorKind::Io,
                message: format!("the stored parameters of space `{name}` do not parse: {e}"),
            })?;
            let (space, from) = self.open_space(r, &name, s.uid, params)?;
            r.registry.update(|all| all.insert(name.clone(), Arc::clone(&space)));
            spaces.push((space, from));
        }
        let mut backlogs = Vec::with_capacity(spaces.len());
        for (space, from) in spaces {
            let Some(backlog) = self.read_space(r, &space, from) else { return Ok(None) };
            self.spaces_replayed.fetch_add(1, Ordering::AcqRel);
            backlogs.push((space, backlog));
        }
        Ok(Some(backlogs))
    }

    /// Feeds the replayed jobs to the workers (beside live traffic, as the queue has room) and
    /// waits until they are applied: each space's applied position reaches the last one its
    /// replay queued (live operations come after it, so a steady stream of writes does not
    /// hold the catch-up open); false when it stopped early.
    fn catch_up(&self, r: &Replay, backlogs: Vec<(Arc<crate::space::Space>, Backlog)>) -> bool {
        let mut replayed_through = Vec::with_capacity(backlogs.len());
        for (space, backlog) in backlogs {
            // The backlog is in log order: its last group holds the newest replayed position.
            let last = backlog.last().and_then(|(_, jobs)| jobs.first()).map_or(0, |j| j.seq);
            if !self.queue_backlog(r, &space, backlog) {
                return false;
            }
            replayed_through.push((space, last));
        }
        while replayed_through.iter().any(|(s, last)| s.applied_through() < *last && !s.dropped.load(Ordering::Acquire))
        {
            if self.stopping(r) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Builds stored space `name` (uid `uid`) again, over its newest usable checkpoint when it
    /// has one (with the ids' states it saved); returns it, not yet registered, and the log
    /// position its replay starts after.
    pub(crate) fn open_space(
        &self,
        r: &Replay,
        name: &str,
        uid: u64,
        params: crate::space::SpaceParams,
    ) -> Result<(Arc<crate::space::Space>, crate::operation::Seq), EngineError> {
        let threads = r.config.resolved_workers() + QUERY_THREADS;
        let loaded = self.load_checkpoint(r, name, uid, &params, threads)?;
        let (index, from) = match loaded {
            Some((index, seq, states)) => (Some((index, states)), seq),
            None => (None, 0),
        };
        let (index, states) = index.map_or((None, Vec::new()), |(i, s)| (Some(i), s));
        let space = register_space(&r.config, &r.telemetry, name, uid, params, &r.store, |p| match index {
            Some(index) => Ok(index),
            None => build_index(p, threads),
        })?;
        if from > 0 {
            // The checkpoint's states, with what the loaded index holds; ids neither live
            // nor held need no state.
            for st in states {
                let indexed = space.index.holds(st.id);
                if st.live || indexed {
                    space.ids.insert(st.id, IdState { seq: st.seq, live: st.live, indexed });
                }
            }
            space.sequenced(from, 0);
            space.checkpointed.store(from, Ordering::Release);
        }
        Ok((space, from))
    }

    /// Replays the log of `space` after position `from` into the queue (its tail filled as it
    /// goes, emptied as the jobs apply); false when it stopped early (the engine is stopping).
    pub(crate) fn replay_space(
        &self,
        r: &Replay,
        space: &Arc<crate::space::Space>,
        from: crate::operation::Seq,
    ) -> bool {
        self.read_space(r, space, from).is_some_and(|backlog| self.queue_backlog(r, space, backlog))
    }

    /// Reads the log of `space` after position `from`: sets each id's state in log order, puts
    /// each insert's and upsert's vector in the space's tail, and returns the jobs that apply
    /// them; `None` when it stopped early. A record that does not decode ends it (logged,
    /// counted).
    fn read_space(&self, r: &Replay, space: &Arc<crate::space::Space>, from: crate::operation::Seq) -> Option<Backlog> {
        let dim = space.params.dim;
        let mut backlog = Backlog::new();
        for item in r.store.replay(&space.name, space.uid, dim, from + 1) {
            if self.stopping(r) {
                return None;
            }
            let (seq, op) = match item {
                Ok(item) => item,
                Err(e) => {
                    // Ends this space's replay at the last whole record; the rest stays on disk.
                    self.corrupt.fetch_add(1, Ordering::AcqRel);
                    r.store.events.corrupt_record();
                    tracing::error!(memory_space = %space.name, error = %e, "log replay stopped at a record that does not decode");
                    break;
                }
            };
            // Each id's state changes in log order, as admission changed it; the jobs then
            // apply (on any worker, in any order) only while they are the latest on their id.
            let now = Instant::now();
            let (lane, jobs): (_, Vec<Job>) = match op {
                Operation::Insert(batch) => {
                    for rec in &batch.records {
                        space
                            .ids
                            .entry(rec.id)
                            .and_modify(|st| {
                                st.seq = seq;
                                st.live = true;
                            })
                            .or_insert(IdState { seq, live: true, indexed: false });
                        space.tail.put(rec.id, seq, rec.vector.clone());
                    }
                    let jobs =
                        batch.records.into_iter().map(|rec| Job::new(space, seq, rec, batch.priority, now, None));
                    (batch.priority, jobs.collect())
                }
                Operation::Delete(batch) => {
                    let mut found = Vec::with_capacity(batch.ids.len());
                    for id in batch.ids {
                        if let Some(mut st) = space.ids.get_mut(&id) {
                            st.seq = seq;
                            st.live = false;
                            found.push(id);
                        }
                        space.tail.remove(id);
                    }
                    let lane = Priority::Normal;
                    (lane, found.into_iter().map(|id| Job::remove(space, seq, id, lane, now, None)).collect())
                }
            };
            space.sequenced(seq, jobs.len());
            if jobs.is_empty() {
                continue;
            }
            self.replayed.fetch_add(jobs.len() as u64, Ordering::AcqRel);
            r.store.events.replayed(jobs.len() as u64);
            backlog.push((lane, jobs));
        }
        Some(backlog)
    }

    /// Queues `backlog`, the jobs [`Recovery::read_space`] returned for `space`, as the queue
    /// has room; false when it stopped early. A space dropped meanwhile gets no more jobs.
    fn queue_backlog(&self, r: &Replay, space: &Arc<crate::space::Space>, backlog: Backlog) -> bool {
        let cap = r.scheduler.queue.capacity();
        for (lane, jobs) in backlog {
            if space.dropped.load(Ordering::Acquire) {
                return true;
            }
            let n = jobs.len();
            let bytes: usize = jobs.iter().map(|j| j.bytes).sum();
            while !cap.try_reserve(n, bytes) {
                if self.stopping(r) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            space.pending.fetch_add(n, Ordering::AcqRel);
            r.scheduler.queue.push(lane.index(), jobs);
            r.scheduler.wake_workers();
        }
        true
    }
}
