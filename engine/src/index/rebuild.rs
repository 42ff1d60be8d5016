//! Tombstone compaction beside ingest, for backends whose removals leave tombstones (hnsw_rs,
//! which cannot unlink a point, and our own graph core, which keeps removed nodes routing
//! searches as hnswlib does).
//!
//! A backend keeps its graph and id maps in a [`Generation`] and wraps it in a [`Rebuilt`],
//! which owns the swap: [`Rebuilt::compact`] builds a new generation from the live points of
//! the current one on the calling thread, while inserts, removals and searches go on against
//! the current one. The live points are collected under the dump lock held exclusively; each
//! insert and removal made meanwhile is also kept in a side log (bounded by bytes of vectors),
//! applied to the new generation in catch-up rounds, and the new generation is swapped in under
//! the dump lock with the last few side-log operations. Until then both graphs are in memory.
//!
//! The dump lock is also the checkpoint's: inserts and removals hold it shared (they still run
//! in parallel with each other), [`Rebuilt::frozen`] holds it exclusively, so a checkpoint sees
//! no half-inserted point. Searches never take it.

use parking_lot::{Mutex, RwLock};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// One graph and its id maps, as a backend keeps them; [`Rebuilt`] swaps whole generations.
pub(crate) trait Generation: Send + Sync {
    /// A live point as [`Generation::live_points`] collects it (a node number, a shared
    /// pointer): cheap to hold while the rebuild runs.
    type Point: Send;
    /// Inserts a prepared vector under `id` (not held: the engine removes an id first).
    fn insert(&self, id: u64, vector: &[f32]);
    /// Removes `id`; true if it was held.
    fn remove(&self, id: u64) -> bool;
    /// Removed points the generation still keeps.
    fn tombstones(&self) -> usize;
    /// Every live point with its id. Called only with inserts and removals held off.
    fn live_points(&self) -> Vec<(u64, Self::Point)>;
    /// The vector of `point` (from [`Generation::live_points`]) if it is still live: `None`
    /// once removed.
    fn live_vector<'a>(&'a self, point: &'a Self::Point) -> Option<&'a [f32]>;
}

/// An insert or removal that arrived while [`Rebuilt::compact`] built a new generation: applied
/// to it, in arrival order, before it is swapped in.
enum SideOp {
    Insert(u64, Vec<f32>),
    Remove(u64),
}

impl SideOp {
    /// Bytes of vector data it holds (what the side log's bound counts).
    fn bytes(&self) -> usize {
        match self {
            SideOp::Insert(_, v) => std::mem::size_of_val(v.as_slice()),
            SideOp::Remove(_) => 0,
        }
    }
}

/// The most bytes of vectors the side log of a compaction holds at once; past it the side log
/// stops taking operations and the compaction is abandoned (ingest outruns the one thread that
/// builds) and tried again later.
pub(crate) const MAX_SIDE_BYTES: usize = 64 << 20;

/// Side-log operations at most applied with inserts held off (the last step of a compaction);
/// more left after [`MAX_CATCH_UP_ROUNDS`] abandons it.
const MAX_FINAL_SIDE_OPS: usize = 512;

/// Rounds in which a compaction applies the side log while inserts go on.
const MAX_CATCH_UP_ROUNDS: usize = 64;

/// Inserts between two polls of a compaction's `stop`.
const STOP_POLL_EVERY: usize = 256;

/// The current [`Generation`] of an index, its dump lock and the state of a compaction.
pub(crate) struct Rebuilt<G> {
    /// The generation searches, inserts and removals act on; replaced by [`Rebuilt::compact`]
    /// (only while `dump_lock` is held exclusively).
    current: RwLock<Arc<G>>,
    /// Shared by inserts and removals, exclusive for a checkpoint ([`Rebuilt::frozen`]) and
    /// for the two instants of a compaction (collecting the live points, swapping in).
    dump_lock: RwLock<()>,
    /// True while a compaction builds: inserts and removals also go to `side`.
    compacting: AtomicBool,
    /// Operations since the compaction collected its points, in arrival order.
    side: Mutex<Vec<SideOp>>,
    /// Bytes of vectors in `side`; past `side_limit` `side` stops growing and the compaction
    /// is abandoned.
    side_bytes: AtomicUsize,
    /// Set when the side log refused an operation: the compaction must be abandoned, since the
    /// new generation would lack it.
    side_overflowed: AtomicBool,
    /// [`MAX_SIDE_BYTES`] (smaller in tests).
    pub(crate) side_limit: usize,
    /// Points in the generation a compaction is building (memory it holds beside the current).
    building: AtomicUsize,
}

impl<G: Generation> Rebuilt<G> {
    /// `generation` as the current one, no compaction running.
    pub(crate) fn new(generation: G) -> Self {
        Self {
            current: RwLock::new(Arc::new(generation)),
            dump_lock: RwLock::new(()),
            compacting: AtomicBool::new(false),
            side: Mutex::new(Vec::new()),
            side_bytes: AtomicUsize::new(0),
            side_overflowed: AtomicBool::new(false),
            side_limit: MAX_SIDE_BYTES,
            building: AtomicUsize::new(0),
        }
    }

    /// The current generation (a search holds it while it runs; a swap does not wait for it).
    pub(crate) fn current(&self) -> Arc<G> {
        Arc::clone(&self.current.read())
    }

    /// Inserts into the current generation (and the side log while a compaction builds).
    pub(crate) fn insert(&self, id: u64, vector: &[f32]) {
        let _no_dump = self.dump_lock.read();
        self.current.read().insert(id, vector);
        if self.compacting.load(Ordering::Acquire) {
            self.record_side(SideOp::Insert(id, vector.to_vec()));
        }
    }

    /// Removes from the current generation (and records it while a compaction builds).
    pub(crate) fn remove(&self, id: u64) -> bool {
        let _no_dump = self.dump_lock.read();
        let removed = self.current.read().remove(id);
        if removed && self.compacting.load(Ordering::Acquire) {
            self.record_side(SideOp::Remove(id));
        }
        removed
    }

    /// Runs `f` on the current generation with inserts and removals held off (a checkpoint);
    /// searches go on. A compaction in progress builds beside it and is not part of it.
    pub(crate) fn frozen<R>(&self, f: impl FnOnce(&G) -> R) -> R {
        let _no_inserts = self.dump_lock.write();
        let generation = self.current();
        f(&generation)
    }

    /// Points in the generation a compaction is building (0 when none runs).
    pub(crate) fn building(&self) -> usize {
        self.building.load(Ordering::Acquire)
    }

    /// True when no compaction builds and the side log is empty (tests).
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        !self.compacting.load(Ordering::Acquire) && self.side.lock().is_empty()
    }

    /// Builds a new generation (`fresh(live points)` makes it empty) from the live points of
    /// the current one on the calling thread while inserts, removals and searches go on; what
    /// they change meanwhile is kept in a side log, applied to the new generation, and the new
    /// generation is swapped in with inserts held off for the last few side-log operations
    /// only. Returns the tombstones dropped (0, and nothing built, when there are none).
    ///
    /// # Errors
    /// Why the rebuild was abandoned: `stop` turned true, another compaction runs, or ingest
    /// kept more than the side log's bound ahead of the rebuild. The current generation stays,
    /// unchanged and usable.
    pub(crate) fn compact(&self, stop: &dyn Fn() -> bool, fresh: impl FnOnce(usize) -> G) -> Result<usize, String> {
        if self.compacting.swap(true, Ordering::AcqRel) {
            return Err("a compaction of this index is already running".into());
        }
        let (old, points, dropped) = {
            let _no_inserts = self.dump_lock.write();
            // What inserts and removals recorded between `compacting` and this lock is in the
            // points collected now: the side log starts empty here.
            self.reset_side();
            let old = self.current();
            let dropped = old.tombstones();
            if dropped == 0 {
                self.compacting.store(false, Ordering::Release);
                return Ok(0);
            }
            let points = old.live_points();
            (old, points, dropped)
        };
        let next = fresh(points.len());
        for (n, (id, point)) in points.into_iter().enumerate() {
            if n % STOP_POLL_EVERY == 0 {
                if stop() {
                    return self.abandon("stopped".into());
                }
                self.building.store(n, Ordering::Release);
            }
            // Removed since the points were collected: left out rather than inserted and then
            // made a tombstone by the side log's removal (which then finds nothing to remove).
            if let Some(v) = old.live_vector(&point) {
                next.insert(id, v);
            }
        }
        drop(old);
        let overflowed = || self.side_overflowed.load(Ordering::Acquire);
        for _ in 0..MAX_CATCH_UP_ROUNDS {
            if stop() {
                return self.abandon("stopped".into());
            }
            if overflowed() {
                return self.abandon(format!(
                    "ingest kept more than {} bytes of vectors ahead of the rebuild",
                    self.side_limit
                ));
            }
            if self.side.lock().len() <= MAX_FINAL_SIDE_OPS {
                break; // few enough to apply with inserts held off
            }
            let ops = self.drain_side();
            if !apply(&next, ops, stop) {
                return self.abandon("stopped".into());
            }
        }
        let no_inserts = self.dump_lock.write();
        let ops = self.drain_side();
        if ops.len() > MAX_FINAL_SIDE_OPS || overflowed() {
            drop(no_inserts);
            return self.abandon(format!("ingest kept {} operations ahead of the rebuild", ops.len()));
        }
        // Few enough to apply with inserts held off (each one insert on this thread).
        apply(&next, ops, &|| false);
        *self.current.write() = Arc::new(next);
        self.compacting.store(false, Ordering::Release);
        self.reset_side();
        self.building.store(0, Ordering::Release);
        Ok(dropped)
    }

    /// Records an operation for the generation a compaction is building (called with the dump
    /// lock held shared, after the operation reached the current generation).
    fn record_side(&self, op: SideOp) {
        if self.side_overflowed.load(Ordering::Acquire) {
            return; // the compaction is abandoned: nothing more is needed
        }
        let size = op.bytes();
        if self.side_bytes.fetch_add(size, Ordering::AcqRel) + size > self.side_limit {
            self.side_bytes.fetch_sub(size, Ordering::AcqRel);
            self.side_overflowed.store(true, Ordering::Release);
            return;
        }
        self.side.lock().push(op);
    }

    /// Takes every operation in the side log, in arrival order, and releases their bytes.
    fn drain_side(&self) -> Vec<SideOp> {
        let ops = std::mem::take(&mut *self.side.lock());
        let bytes: usize = ops.iter().map(SideOp::bytes).sum();
        self.side_bytes.fetch_sub(bytes, Ordering::AcqRel);
        ops
    }

    /// Empties the side log and clears its overflow (with the dump lock held exclusively).
    fn reset_side(&self) {
        self.side.lock().clear();
        self.side_bytes.store(0, Ordering::Release);
        self.side_overflowed.store(false, Ordering::Release);
    }

    /// Ends a compaction without a swap: the current generation stays, unchanged.
    fn abandon(&self, why: String) -> Result<usize, String> {
        let _no_inserts = self.dump_lock.write();
        self.compacting.store(false, Ordering::Release);
        self.reset_side();
        self.building.store(0, Ordering::Release);
        Err(why)
    }
}

/// Applies side-log operations to `generation` in order; false (the rest not applied) once
/// `stop` is true, polled every [`STOP_POLL_EVERY`] operations.
fn apply<G: Generation>(generation: &G, ops: Vec<SideOp>, stop: &dyn Fn() -> bool) -> bool {
    for (n, op) in ops.into_iter().enumerate() {
        if n > 0 && n % STOP_POLL_EVERY == 0 && stop() {
            return false;
        }
        match op {
            SideOp::Insert(id, v) => generation.insert(id, &v),
            SideOp::Remove(id) => {
                generation.remove(id);
            }
        }
    }
    true
}
