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
}

impl Checkpointer {
    /// Starts the thread: it checkpoints every space every `interval`, and a space as soon as
    /// `after_jobs` jobs were sequenced on it since its last checkpoint (checked every second),
    /// which bounds what a start after a crash replays. Both zero starts none (checkpoints only
    /// at shutdown). `ready` tells when recovery has finished (no checkpoint runs before).
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

    /// Stops the thread (a checkpoint in progress finishes first).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        {
            let _guard = self.wake.0.lock();
            self.wake.1.notify_all();
        }
        if let Some(h) = self.thread.lock().take() {
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
    pub(crate) fn checkpoint_all(&self) {
        self.checkpoint_where(|_| true);
    }

    /// Checkpoints the spaces with at least `after_jobs` jobs sequenced since their last
    /// checkpoint, unless one failed in the last [`RETRY_AFTER_FAILURE`] (the interval retries
    /// it in any case).
    fn checkpoint_due(&self) {
        self.checkpoint_where(|space| {
            let since = space.sequenced_jobs.load(Ordering::Acquire) - space.checkpointed_jobs.load(Ordering::Acquire);
            since >= self.after_jobs
                && space.checkpoint_failed_at.lock().is_none_or(|t| t.elapsed() >= RETRY_AFTER_FAILURE)
        });
    }

    fn checkpoint_where(&self, due: impl Fn(&Space) -> bool) {
        let _running = self.running.lock();
        for space in self.registry.snapshot() {
            if space.dropped.load(Ordering::Acquire) || !due(&space) {
                continue;
            }
            if let Err(e) = self.checkpoint(&space) {
                *space.checkpoint_failed_at.lock() = Some(Instant::now());
                self.store.events.checkpoint_failed(false);
                tracing::error!(memory_space = %space.name, error = %e, "checkpoint failed; the log keeps everything since the last one");
            }
        }
    }

    /// Checkpoints `space` if it has applied operations past its last checkpoint.
    fn checkpoint(&self, space: &Space) -> Result<(), crate::error::EngineError> {
        let started = Instant::now();
        let jobs = space.sequenced_jobs.load(Ordering::Acquire);
        let seq = space.applied_through();
        if seq <= space.checkpointed.load(Ordering::Acquire) {
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
        let saved = space.index.save(&index_tmp, &mut || states = saved_states(space)).map_err(|e| {
            crate::error::EngineError::Storage {
                kind: crate::error::StorageErrorKind::Io,
                message: format!("writing the index checkpoint of `{}`: {e}", space.name),
            }
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
