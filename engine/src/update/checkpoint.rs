//! [`Checkpointer`]: the background thread (`engram-checkpoint`) that checkpoints each
//! space's index every `storage.checkpoint_interval_s`, and once more at shutdown after the
//! queue drained, so the next start loads the index and replays only the log after it.
//!
//! A checkpoint of a space covers log position `P`, the newest position through which every
//! operation on the space is applied ([`Space::applied_through`]). The backend writes its index
//! under its own lock (usearch: the write lock, so adds and searches wait for the write of the
//! file) and, under the same lock, the ids' states are read, so the file and the states agree.
//! Operations past `P` may be in the files too: replay from `P + 1` sets each id's state in log
//! order again and applies them (an id's latest operation wins, as live). Then the log records
//! up to the older of the two live checkpoints are removed (`Store::compact_log`). Both
//! backends checkpoint: usearch with `save_to_buffer`, hnsw_rs with its dump (`index::hnsw`).
//!
//! **Compaction.** hnsw_rs keeps removed points as tombstones. After a space's checkpoint, when
//! its tombstones reach [`COMPACT_MIN_TOMBSTONES`] and [`COMPACT_TOMBSTONE_PERCENT`] % of its
//! points, one thread (`engram-compact`, one at a time for the whole engine, so at most one
//! space holds two graphs) rebuilds the index without them ([`VectorIndex::compact`]) while
//! ingest and recall go on, then checkpoints the space again at once, so a restart loads the
//! compacted graph. Shutdown and a drop of the space stop it (the index stays as it was).
//!
//! [`VectorIndex::compact`]: crate::index::VectorIndex::compact

use super::registry::Registry;
use crate::space::{PENDING, Space};
use crate::storage::Store;
use crate::storage::checkpoint::{self, SavedState};
use crate::sync::{AtomicBool, Ordering};
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the thread checks the count trigger.
const COUNT_TICK: Duration = Duration::from_secs(1);

/// How long after a failed checkpoint the count trigger leaves a space alone.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);

/// Fewest tombstones that start a compaction of a space's index.
pub(crate) const COMPACT_MIN_TOMBSTONES: usize = 256;

/// Share of a space's index points (live and tombstones), in percent, that tombstones must
/// reach to start a compaction.
pub(crate) const COMPACT_TOMBSTONE_PERCENT: usize = 20;

/// The checkpoint thread and what it needs.
pub(crate) struct Checkpointer {
    store: Arc<Store>,
    registry: Arc<Registry>,
    interval: Duration,
    /// Jobs sequenced on a space since its last checkpoint that trigger the next one (0: off).
    after_jobs: u64,
    stop: AtomicBool,
    /// Wakes the thread early to stop.
    wake: (Mutex<()>, Condvar),
    /// Serialises checkpoints (the thread's and the shutdown's).
    running: Mutex<()>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The compaction thread, while one runs (or has ended and is not yet joined).
    compaction: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Starts the thread: it checkpoints every space every `interval`, and a space as soon as
    /// `after_jobs` jobs were sequenced on it since its last checkpoint (checked every second),
    /// which bounds what a start after a crash replays. Both zero starts none (checkpoints only
    /// at shutdown). `ready` tells when recovery has read the log (no checkpoint runs
    /// before; during the catch-up after it, checkpoints cover what is applied).
    pub(crate) fn start(
        store: Arc<Store>,
        registry: Arc<Registry>,
        interval: Duration,
        after_jobs: u64,
        ready: impl Fn() -> bool + Send + 'static,
    ) -> std::io::Result<Arc<Self>> {
        let me = Arc::new(Self {
            store,
            registry,
            interval,
            after_jobs,
            stop: AtomicBool::new(false),
            wake: (Mutex::new(()), Condvar::new()),
            running: Mutex::new(()),
            thread: Mutex::new(None),
            compaction: Mutex::new(None),
        });
        if !interval.is_zero() || after_jobs > 0 {
            let c = Arc::clone(&me);
            let tick = if interval.is_zero() { COUNT_TICK } else { interval.min(COUNT_TICK) };
            let handle = std::thread::Builder::new().name("engram-checkpoint".into()).spawn(move || {
                let mut last_all = Instant::now();
                loop {
                    {
                        let mut guard = c.wake.0.lock();
                        if !c.stop.load(Ordering::Acquire) {
                            c.wake.1.wait_for(&mut guard, tick);
                        }
                    }
                    if c.stop.load(Ordering::Acquire) {
                        return;
                    }
                    if !ready() {
                        continue;
                    }
                    if !c.interval.is_zero() && last_all.elapsed() >= c.interval {
                        last_all = Instant::now();
                        c.checkpoint_all();
                    } else if c.after_jobs > 0 {
                        c.checkpoint_due();
                    }
                }
            })?;
            *me.thread.lock() = Some(handle);
        }
        Ok(me)
    }

    /// Stops the thread (a checkpoint in progress finishes first) and a compaction (abandoned:
    /// the index stays as it was).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        {
            let _guard = self.wake.0.lock();
            self.wake.1.notify_all();
        }
        if let Some(h) = self.thread.lock().take() {
            let _ = h.join();
        }
        let compaction = self.compaction.lock().take();
        if let Some(h) = compaction {
            let _ = h.join();
        }
    }

    /// Holds off checkpoints (and so log compaction) while the guard lives: a snapshot reads
    /// the log after the position its index covers.
    pub(crate) fn exclusive(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.running.lock()
    }

    /// Checkpoints every space with operations past its last checkpoint; failures are logged
    /// and counted, and the space is tried again next time.
    pub(crate) fn checkpoint_all(self: &Arc<Self>) {
        self.checkpoint_where(|_| true);
    }

    /// Checkpoints the spaces with at least `after_jobs` jobs sequenced since their last
    /// checkpoint, unless one failed in the last [`RETRY_AFTER_FAILURE`] (the interval retries
    /// it in any case).
    fn checkpoint_due(self: &Arc<Self>) {
        self.checkpoint_where(|space| {
            let since = space
                .sequenced_jobs
                .load(Ordering::Acquire)
                .saturating_sub(space.checkpointed_jobs.load(Ordering::Acquire));
            since >= self.after_jobs
                && space.checkpoint_failed_at.lock().is_none_or(|t| t.elapsed() >= RETRY_AFTER_FAILURE)
        });
    }

    fn checkpoint_where(self: &Arc<Self>, due: impl Fn(&Space) -> bool) {
        let _running = self.running.lock();
        for space in self.registry.snapshot() {
            if space.dropped.load(Ordering::Acquire) || !due(&space) {
                continue;
            }
            match self.checkpoint(&space, false) {
                Ok(()) => self.compact_if_due(&space),
                Err(e) => self.checkpoint_failed(&space, &e),
            }
        }
    }

    fn checkpoint_failed(&self, space: &Space, e: &crate::error::EngineError) {
        *space.checkpoint_failed_at.lock() = Some(Instant::now());
        self.store.events.checkpoint_failed(false);
        tracing::error!(memory_space = %space.name, error = %e, "checkpoint failed; the log keeps everything since the last one");
    }

    /// Starts a compaction of `space`'s index when its tombstones are due
    /// ([`COMPACT_MIN_TOMBSTONES`], [`COMPACT_TOMBSTONE_PERCENT`]) and no other compaction runs.
    fn compact_if_due(self: &Arc<Self>, space: &Arc<Space>) {
        let tombstones = space.index.tombstones();
        let points = space.index.len() + tombstones;
        if tombstones < COMPACT_MIN_TOMBSTONES || tombstones * 100 < points * COMPACT_TOMBSTONE_PERCENT {
            return;
        }
        let mut slot = self.compaction.lock();
        if slot.as_ref().is_some_and(|h| !h.is_finished()) || self.stop.load(Ordering::Acquire) {
            return; // one at a time; this space is due again after its next checkpoint
        }
        if let Some(h) = slot.take() {
            let _ = h.join();
        }
        let (me, space) = (Arc::clone(self), Arc::clone(space));
        let name = space.name.clone();
        match std::thread::Builder::new().name("engram-compact".into()).spawn(move || me.compact(&space)) {
            Ok(h) => *slot = Some(h),
            Err(e) => tracing::warn!(memory_space = %name, error = %e, "cannot start the compaction thread"),
        }
    }

    /// Rebuilds `space`'s index without its tombstones (on this thread, beside ingest), then
    /// checkpoints the space so the file holds the compacted graph.
    fn compact(&self, space: &Space) {
        let started = Instant::now();
        let stop = || self.stop.load(Ordering::Acquire) || space.dropped.load(Ordering::Acquire);
        tracing::info!(memory_space = %space.name, tombstones = space.index.tombstones(), vectors = space.index.len(), "index compaction started");
        match space.index.compact(&stop) {
            Ok(0) => {}
            Ok(dropped) => {
                self.store.events.compaction(true, started.elapsed());
                tracing::info!(
                    memory_space = %space.name,
                    dropped,
                    vectors = space.index.len(),
                    seconds = started.elapsed().as_secs_f64(),
                    "index compacted"
                );
                let _running = self.running.lock();
                if !stop()
                    && let Err(e) = self.checkpoint(space, true)
                {
                    // The next checkpoint writes the compacted graph; a restart before it loads
                    // the previous one, tombstones and all.
                    self.checkpoint_failed(space, &e);
                }
            }
            Err(why) => {
                self.store.events.compaction(false, started.elapsed());
                tracing::warn!(memory_space = %space.name, reason = %why, "index compaction abandoned; tried again after a later checkpoint");
            }
        }
    }

    /// Checkpoints `space` if it has applied operations past its last checkpoint, or in any
    /// case when `force` (its index was compacted: the same position, a smaller file).
    fn checkpoint(&self, space: &Space, force: bool) -> Result<(), crate::error::EngineError> {
        let started = Instant::now();
        // Jobs still queued are past the checkpoint's position and are replayed after a crash,
        // but do not count towards the next checkpoint: under a backlog the trigger would fire
        // every second. Time to ready does not depend on the replay's length (the log is read,
        // and what it holds searched exactly, before it is indexed: `update::recovery`).
        let jobs = space.sequenced_jobs.load(Ordering::Acquire);
        let seq = space.applied_through();
        if !force && seq <= space.checkpointed.load(Ordering::Acquire) {
            // Nothing applied since: the checkpoint is current (its age measures staleness,
            // not idleness).
            if space.pending.load(Ordering::Acquire) == 0 {
                *space.checkpointed_at.lock() = Instant::now();
            }
            return Ok(());
        }
        let dir = self.store.checkpoint_dir(space.uid)?;
        let index_tmp = dir.join("index.tmp");
        let mut states = Vec::new();
        // Inserts of new ids that arrive while the index is copied do not wait for it: they go
        // to the space's tail (searchable, acknowledged) and into the index right after.
        space.start_deferring();
        let saved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            space.index.save(&index_tmp, &mut || states = saved_states(space))
        }))
        .unwrap_or_else(|_| Err("the index backend panicked while saving".to_owned()));
        let deferred = space.stop_deferring();
        let deferred_inserts = deferred.len();
        self.store.events.checkpoint_deferred(deferred_inserts as u64);
        super::worker::apply_deferred(space, deferred);
        let saved = saved.map_err(|e| crate::error::EngineError::Storage {
            kind: crate::error::StorageErrorKind::Io,
            message: format!("writing the index checkpoint of `{}`: {e}", space.name),
        })?;
        if !saved {
            // The backend does not checkpoint: leave no directory behind (removes only an
            // empty one).
            let _ = std::fs::remove_file(&index_tmp);
            let _ = std::fs::remove_dir(&dir);
            space.checkpointed_jobs.store(jobs, Ordering::Release);
            return Ok(());
        }
        let manifest = checkpoint::commit(&dir, seq, &index_tmp, &states)?;
        space.checkpointed.store(seq, Ordering::Release);
        space.checkpointed_jobs.store(jobs, Ordering::Release);
        *space.checkpointed_at.lock() = Instant::now();
        *space.checkpoint_failed_at.lock() = None;
        // The log is needed only past the oldest checkpoint kept (the fallback if the newest
        // does not verify at the next start).
        let oldest = manifest.checkpoints.last().map_or(0, |c| c.seq);
        let compacted = self.store.compact_log(space.uid, oldest)?;
        self.store.events.checkpointed(started.elapsed());
        tracing::debug!(
            memory_space = %space.name,
            seq,
            ids = states.len(),
            vectors = space.index.len(),
            tombstones = space.index.tombstones(),
            deferred_inserts,
            compacted,
            seconds = started.elapsed().as_secs_f64(),
            "checkpoint written"
        );
        Ok(())
    }
}

/// The states of `space`'s ids as a checkpoint keeps them; read under the index's lock in
/// [`crate::index::VectorIndex::save`], so they agree with the saved index.
pub(crate) fn saved_states(space: &Space) -> Vec<SavedState> {
    space
        .ids
        .iter()
        .map(|e| {
            let s = *e.value();
            // A claim not yet given its position: its record (if it gets one) is past the
            // checkpoint's position and replayed; until then the id is not live.
            if s.seq == PENDING {
                SavedState { id: *e.key(), seq: 0, live: false }
            } else {
                SavedState { id: *e.key(), seq: s.seq, live: s.live }
            }
        })
        .collect()
}
