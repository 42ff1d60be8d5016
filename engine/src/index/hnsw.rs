//! `hnsw_rs` backend.
//!
//! hnsw_rs (0.3.5) inserts concurrently through `&self` with per-point locks and searches
//! while inserting. It requires distances `>= 0`, so the metrics map to non-negative distances:
//! cosine is `1 - dot` on unit vectors (clamped at 0), L2 is the Euclidean distance, and the
//! inner product goes through an order-preserving map of `-dot` onto non-negative floats
//! ([`ip_to_distance`]) instead of `DistDot`, which panics on unnormalised input.
//! `M` above 256 makes hnsw_rs exit the process: the engine validates `m <= 256` first.
//!
//! Two of hnsw_rs's behaviours are kept in check here:
//!
//! - **The first insert is serialised.** hnsw_rs stores a point, then reads the entry point,
//!   and a point that finds none becomes the entry point with no neighbours. When two inserts
//!   race into an empty graph, the second can see no entry point yet and make itself the entry,
//!   while the first (rank 1) returns as "the first point" without links: it is never reachable
//!   again (seen: id 0 of a fresh space missing from recall at k = 1000, ef 4096). The first
//!   insert into an empty graph therefore runs alone, under [`HnswIndex`]'s seed lock, and every
//!   later insert finds the entry point set.
//! - **Points cannot be removed.** hnsw_rs has no removal, and a point inserted twice under one
//!   id would be found twice. So every insert gets a fresh internal id (the `DataId` hnsw_rs
//!   stores), the index maps internal ids to the engine's ids and back, and a removal only
//!   drops the mapping: the point stays in the graph as a tombstone, still routing searches,
//!   and searches filter it out *inside* the graph walk (`search_filter`), so `k` live hits
//!   still come back. Tombstones cost memory until [`VectorIndex::compact`] rebuilds the graph
//!   without them (see **Compaction** below).
//! - **Nothing is pre-allocated from the capacity hint.** hnsw_rs reserves its per-layer point
//!   tables from `max_elements` (about `0.94 × max_elements × 8` bytes; `2^32` aborted the
//!   process asking for 32 GB), so the hint passed on is capped at [`INITIAL_CAPACITY`]; the
//!   tables grow by doubling.
//!
//! **Checkpoints** use hnsw_rs's dump (`file_dump`: a `.hnsw.graph` and a `.hnsw.data` file),
//! written while the dump lock is held exclusively: inserts and removals hold it shared (they
//! still run in parallel with each other), so the dump sees no half-inserted point, and the
//! engine's `consistent` callback reads the ids' states at the same instant. Searches go on.
//! The two files and the id maps (internal id → engine id, live or tombstone) are bundled into
//! the one checkpoint file ([`HnswIndex::load`] reads it back). hnsw_rs's reload
//! (`HnswIo::load_hnsw_with_dist`) returns a graph that borrows its loader for as long as the
//! graph lives, so each load leaks its small `HnswIo` (a path, a name, options; no data: the
//! points are read into memory, not mapped): one per load of a space, at start or restore.
//! Tombstones are kept across a checkpoint (hnsw_rs cannot drop points); they are filtered as
//! before.
//!
//! **Compaction** ([`VectorIndex::compact`], started by the engine after a checkpoint) builds a
//! new `Generation` (graph and id maps) from the live points of the current one, on the
//! calling thread, while inserts, removals and searches go on against the current one: the
//! points are collected under the dump lock held exclusively (hnsw_rs's point iterator holds a
//! read guard on its point table and takes a second one, which deadlocks beside a waiting
//! insert), each insert and removal made meanwhile is also kept in a side log, applied to the
//! new generation in rounds, and the new generation is swapped in under the dump lock with the
//! last few side-log operations. Until then both graphs are in memory. hnsw_rs reloads a dump only under the distance's full type name, so [`UnitCosine`],
//! [`Euclidean`] and [`InnerProduct`] must keep theirs (a test pins them).

use super::{Metric, Neighbor, VectorIndex, dot};
use dashmap::DashMap;
use hnsw_rs::prelude::{DataId, Distance, Hnsw, Point};
use parking_lot::{Mutex, RwLock};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// First bytes of a checkpoint file of this backend (format 1).
const MAGIC: &[u8; 8] = b"ENGHNSW1";

/// The message of a caught panic (hnsw_rs panics with a `&str` or a `String`).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic".into())
}

/// Most layers hnsw_rs builds (its `NB_LAYER_MAX`).
const MAX_LAYERS: usize = 16;

/// The most `max_elements` passed on to hnsw_rs, which pre-allocates its point tables from it.
pub const INITIAL_CAPACITY: usize = 1024;

/// Estimated bytes per point (see [`VectorIndex::memory_bytes`] of [`HnswIndex`]).
pub fn bytes_per_vector(dim: usize, m: usize) -> f64 {
    (4 * dim + 24 + MAX_LAYERS * 24 + 2 * m * 48 + 96 + 48) as f64
}

/// `1 - cos` on unit vectors.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnitCosine;
impl Distance<f32> for UnitCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

/// Euclidean distance.
#[derive(Debug, Default, Clone, Copy)]
pub struct Euclidean;
impl Distance<f32> for Euclidean {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt()
    }
}

/// Inner product as an order-reversing, non-negative distance.
#[derive(Debug, Default, Clone, Copy)]
pub struct InnerProduct;
impl Distance<f32> for InnerProduct {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        ip_to_distance(dot(a, b))
    }
}

/// Maps an inner product to a non-negative distance that decreases as the product grows: the
/// IEEE-754 bits of `-ip` are turned into an unsigned key that sorts like the float, then cast to
/// `f32` (keeping its 24 most significant bits, so order is preserved, with ties only between
/// products within about 2^-15 relative of each other).
pub fn ip_to_distance(ip: f32) -> f32 {
    let bits = (-ip).to_bits();
    let key = if bits & 0x8000_0000 != 0 { !bits } else { bits | 0x8000_0000 };
    key as f32
}

/// Inverse of [`ip_to_distance`], up to its precision.
pub fn distance_to_ip(d: f32) -> f32 {
    let key = d as u32;
    let bits = if key & 0x8000_0000 != 0 { key & 0x7fff_ffff } else { !key };
    -f32::from_bits(bits)
}

enum Graph {
    Cosine(Hnsw<'static, f32, UnitCosine>),
    L2(Hnsw<'static, f32, Euclidean>),
    Dot(Hnsw<'static, f32, InnerProduct>),
}

impl Graph {
    fn new(metric: Metric, m: usize, ef_construction: usize, max_elements: usize) -> Self {
        let max_elements = max_elements.clamp(1, INITIAL_CAPACITY);
        match metric {
            Metric::Cosine => Graph::Cosine(Hnsw::new(m, max_elements, MAX_LAYERS, ef_construction, UnitCosine)),
            Metric::L2 => Graph::L2(Hnsw::new(m, max_elements, MAX_LAYERS, ef_construction, Euclidean)),
            Metric::Dot => Graph::Dot(Hnsw::new(m, max_elements, MAX_LAYERS, ef_construction, InnerProduct)),
        }
    }

    /// Every point in the graph (live and tombstones). hnsw_rs's iterator holds a read guard on
    /// the point table and takes a second one per layer: call it only while no insert runs
    /// (under the dump lock held exclusively), or a waiting insert deadlocks the two.
    fn points(&self) -> Vec<Arc<Point<'static, f32>>> {
        match self {
            Graph::Cosine(h) => h.get_point_indexation().into_iter().collect(),
            Graph::L2(h) => h.get_point_indexation().into_iter().collect(),
            Graph::Dot(h) => h.get_point_indexation().into_iter().collect(),
        }
    }
}

/// One graph and its id maps. [`HnswIndex::compact`] builds a new generation from the live
/// points of the current one and swaps it in.
struct Generation {
    graph: Graph,
    /// True once the first point (the entry point) is in the graph.
    seeded: AtomicBool,
    /// Held by the first insert into the empty graph (see the module docs).
    seed_lock: Mutex<()>,
    /// The next internal id (hnsw_rs's `DataId`); one per insert, never reused.
    next_internal: AtomicUsize,
    /// Engine id → the internal id of its live point.
    live: DashMap<u64, DataId>,
    /// Internal id → engine id, for every point in the graph (tombstones too).
    owner: DashMap<DataId, u64>,
    /// Points removed (tombstones); while 0 (and `inflight` is), searches need no filter.
    tombstones: AtomicUsize,
    /// Inserts whose point may be in the graph but is not live yet.
    inflight: AtomicUsize,
}

impl Generation {
    fn new(metric: Metric, m: usize, ef_construction: usize, max_elements: usize) -> Self {
        Self {
            graph: Graph::new(metric, m, ef_construction, max_elements),
            seeded: AtomicBool::new(false),
            seed_lock: Mutex::new(()),
            next_internal: AtomicUsize::new(0),
            live: DashMap::new(),
            owner: DashMap::new(),
            tombstones: AtomicUsize::new(0),
            inflight: AtomicUsize::new(0),
        }
    }

    /// Inserts `vector` as `id`. The point is named (`owner`) before it enters the graph, so a
    /// search that meets it can map it back, and made live only once it is in the graph, so
    /// `len` never counts a point a search cannot find yet; meanwhile `inflight` makes searches
    /// filter (a point met but not yet live must not take a live one's place in the answer).
    fn insert(&self, id: u64, vector: &[f32]) {
        let internal = self.next_internal.fetch_add(1, Ordering::AcqRel);
        self.owner.insert(internal, id);
        self.inflight.fetch_add(1, Ordering::AcqRel);
        let mut seeding = None;
        if !self.seeded.load(Ordering::Acquire) {
            let seed = self.seed_lock.lock();
            if self.seeded.load(Ordering::Acquire) {
                drop(seed);
            } else {
                // Alone in an empty graph: this point becomes the entry point before any other
                // insert can look for one.
                seeding = Some(seed);
            }
        }
        self.insert_unchecked(internal, vector);
        self.live.insert(id, internal);
        self.inflight.fetch_sub(1, Ordering::AcqRel);
        if seeding.is_some() {
            self.seeded.store(true, Ordering::Release);
        }
    }

    fn insert_unchecked(&self, internal: DataId, vector: &[f32]) {
        match &self.graph {
            Graph::Cosine(h) => h.insert_slice((vector, internal)),
            Graph::L2(h) => h.insert_slice((vector, internal)),
            Graph::Dot(h) => h.insert_slice((vector, internal)),
        }
    }

    fn remove(&self, id: u64) -> bool {
        let removed = self.live.remove(&id).is_some();
        if removed {
            self.tombstones.fetch_add(1, Ordering::AcqRel);
        }
        removed
    }

    fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<Neighbor> {
        if k == 0 || self.live.is_empty() {
            return Vec::new();
        }
        let ef = ef.max(k);
        // Tombstones (and points not live yet) route the walk but never enter the answer.
        let filter = |internal: &DataId| self.live_owner(*internal).is_some();
        let walk = |filtered: bool| {
            let f: Option<&dyn hnsw_rs::prelude::FilterT> = if filtered { Some(&filter) } else { None };
            let (found, to_score): (_, fn(f32) -> f32) = match &self.graph {
                Graph::Cosine(h) => (h.search_filter(query, k, ef, f), |d| 1.0 - d),
                Graph::L2(h) => (h.search_filter(query, k, ef, f), |d| -d),
                Graph::Dot(h) => (h.search_filter(query, k, ef, f), distance_to_ip),
            };
            let met = found.len();
            // A point removed (or inserted) after the walk passed it is dropped here.
            let hits: Vec<Neighbor> = found
                .into_iter()
                .filter_map(|n| Some(Neighbor { id: self.live_owner(n.d_id)?, score: to_score(n.distance) }))
                .collect();
            (hits, met)
        };
        let filtered = self.tombstones.load(Ordering::Acquire) > 0 || self.inflight.load(Ordering::Acquire) > 0;
        let (hits, met) = walk(filtered);
        if !filtered && hits.len() < met {
            // An insert began after the check and its point took a place in the answer.
            return walk(true).0;
        }
        hits
    }

    /// The engine id of internal id `internal` if its point is live (not a tombstone).
    fn live_owner(&self, internal: DataId) -> Option<u64> {
        let id = *self.owner.get(&internal)?;
        self.live.get(&id).is_some_and(|i| *i == internal).then_some(id)
    }

    /// Dumps the graph with hnsw_rs into `dir` (basename `index`). hnsw_rs panics when it
    /// cannot create its files (a full disk): that is an error here, not a dead checkpointer
    /// (the dump only reads the graph, so nothing is left half-changed).
    fn dump(&self, dir: &Path) -> Result<(), String> {
        let dumped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &self.graph {
            Graph::Cosine(h) => hnsw_rs::api::AnnT::file_dump(h, dir, "index"),
            Graph::L2(h) => hnsw_rs::api::AnnT::file_dump(h, dir, "index"),
            Graph::Dot(h) => hnsw_rs::api::AnnT::file_dump(h, dir, "index"),
        }));
        match dumped {
            Ok(result) => result.map(drop).map_err(|e| format!("hnsw_rs could not dump the graph: {e}")),
            Err(panic) => Err(format!("hnsw_rs panicked dumping the graph: {}", panic_message(&panic))),
        }
    }
}

/// An insert or removal that arrived while [`HnswIndex::compact`] built a new generation: applied
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
const MAX_SIDE_BYTES: usize = 64 << 20;

/// Side-log operations at most applied with inserts held off (the last step of a compaction);
/// more left after [`MAX_CATCH_UP_ROUNDS`] abandons it.
const MAX_FINAL_SIDE_OPS: usize = 512;

/// Rounds in which a compaction applies the side log while inserts go on.
const MAX_CATCH_UP_ROUNDS: usize = 64;

/// Inserts between two polls of a compaction's `stop`.
const STOP_POLL_EVERY: usize = 256;

/// An HNSW index from `hnsw_rs`.
pub struct HnswIndex {
    /// The graph searches, inserts and removals act on; replaced by [`HnswIndex::compact`]
    /// (only while `dump_lock` is held exclusively).
    current: RwLock<Arc<Generation>>,
    metric: Metric,
    dim: usize,
    m: usize,
    ef_construction: usize,
    /// Shared by inserts and removals, exclusive for a checkpoint's dump and for the two
    /// instants of a compaction (collecting the live points, swapping the new graph in).
    dump_lock: RwLock<()>,
    /// True while a compaction builds: inserts and removals also go to `side`.
    compacting: AtomicBool,
    /// Operations since the compaction collected its points, in arrival order.
    side: Mutex<Vec<SideOp>>,
    /// Bytes of vectors in `side`; past [`MAX_SIDE_BYTES`] `side` stops growing and the
    /// compaction is abandoned.
    side_bytes: AtomicUsize,
    /// Set when the side log refused an operation (past [`MAX_SIDE_BYTES`]): the compaction
    /// must be abandoned, since the new generation would lack it.
    side_overflowed: AtomicBool,
    /// [`MAX_SIDE_BYTES`] (smaller in tests).
    side_limit: usize,
    /// Points in the generation a compaction is building (memory it holds beside the current).
    building: AtomicUsize,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex").field("dim", &self.dim).field("m", &self.m).field("len", &self.len()).finish()
    }
}

impl HnswIndex {
    /// A new index. `m` is HNSW's `M` (max links per node and layer; must be `<= 256`, checked by
    /// the engine), `ef_construction` the candidate list size while building, `max_elements` a
    /// capacity hint (at most [`INITIAL_CAPACITY`] of it is pre-allocated).
    pub fn new(metric: Metric, dim: usize, m: usize, ef_construction: usize, max_elements: usize) -> Self {
        assert!((2..=256).contains(&m), "m must be within 2..=256 (validated by the engine)");
        Self::around(Generation::new(metric, m, ef_construction, max_elements), metric, dim, m, ef_construction)
    }

    fn around(generation: Generation, metric: Metric, dim: usize, m: usize, ef_construction: usize) -> Self {
        Self {
            current: RwLock::new(Arc::new(generation)),
            metric,
            dim,
            m,
            ef_construction,
            dump_lock: RwLock::new(()),
            compacting: AtomicBool::new(false),
            side: Mutex::new(Vec::new()),
            side_bytes: AtomicUsize::new(0),
            side_overflowed: AtomicBool::new(false),
            side_limit: MAX_SIDE_BYTES,
            building: AtomicUsize::new(0),
        }
    }

    /// Loads an index written by [`VectorIndex::save`] at `path`, for a space of `metric` and
    /// `dim` (`m`, `ef_construction` as in [`HnswIndex::new`]; the graph keeps its own).
    ///
    /// # Errors
    /// A message when the file is not such a checkpoint (magic, a length past the end), its
    /// dimension is not `dim`, or hnsw_rs cannot reload the graph (a different distance).
    pub fn load(metric: Metric, dim: usize, m: usize, ef_construction: usize, path: &Path) -> Result<Self, String> {
        let fail = |e: std::io::Error| format!("reading {}: {e}", path.display());
        let mut f = std::io::BufReader::new(std::fs::File::open(path).map_err(fail)?);
        let len = f.get_ref().metadata().map_err(fail)?.len();
        let mut magic = [0u8; 8];
        f.read_exact(&mut magic).map_err(fail)?;
        if &magic != MAGIC {
            return Err(format!("{} is not an hnsw_rs checkpoint (magic {magic:02x?})", path.display()));
        }
        let u64_at = |f: &mut std::io::BufReader<std::fs::File>| -> Result<u64, String> {
            let mut b = [0u8; 8];
            f.read_exact(&mut b).map_err(fail)?;
            Ok(u64::from_le_bytes(b))
        };
        let saved_dim = u64_at(&mut f)?;
        if saved_dim != dim as u64 {
            return Err(format!("the checkpoint holds vectors of dimension {saved_dim}, not {dim}"));
        }
        let next_internal = u64_at(&mut f)? as usize;
        let tombstones = u64_at(&mut f)? as usize;
        let entries = u64_at(&mut f)?;
        // 17 bytes per entry: a count the file cannot hold is an error, not an allocation.
        if entries.saturating_mul(17) > len {
            return Err(format!("{} names {entries} ids, more than its {len} bytes hold", path.display()));
        }
        let me = Generation::new(metric, m, ef_construction, INITIAL_CAPACITY);
        for _ in 0..entries {
            let internal = u64_at(&mut f)? as usize;
            let id = u64_at(&mut f)?;
            let mut live = [0u8; 1];
            f.read_exact(&mut live).map_err(fail)?;
            me.owner.insert(internal, id);
            if live[0] == 1 {
                me.live.insert(id, internal);
            }
        }
        let graph_len = u64_at(&mut f)?;
        if graph_len == 0 {
            return Ok(Self::around(me, metric, dim, m, ef_construction)); // an empty index
        }
        // hnsw_rs reloads from its two files: written back out next to the checkpoint.
        let dir = path.with_extension("hnsw-load");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let unpacked = (|| -> Result<(), String> {
            let copy_out = |name: &str, n: u64, f: &mut std::io::BufReader<std::fs::File>| -> Result<(), String> {
                let to = dir.join(name);
                let mut out = std::fs::File::create(&to).map_err(|e| format!("creating {}: {e}", to.display()))?;
                let copied = std::io::copy(&mut f.by_ref().take(n), &mut out).map_err(fail)?;
                if copied != n {
                    return Err(format!("{} ends inside its hnsw_rs dump", path.display()));
                }
                Ok(())
            };
            copy_out("index.hnsw.graph", graph_len, &mut f)?;
            let data_len = u64_at(&mut f)?;
            copy_out("index.hnsw.data", data_len, &mut f)
        })();
        let graph = unpacked.and_then(|()| {
            // The loader must outlive the graph it returns (see the module docs).
            let io: &'static hnsw_rs::hnswio::HnswIo = Box::leak(Box::new(hnsw_rs::hnswio::HnswIo::new(&dir, "index")));
            let reload = |e: String| format!("hnsw_rs could not reload {}: {e}", path.display());
            // hnsw_rs asserts on what it reads (magic, dimension) and unwraps its description:
            // a file it cannot read is an error here (the checkpoint is moved aside), never a
            // panic in the recovery thread.
            let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<Graph, String> {
                Ok(match metric {
                    Metric::Cosine => {
                        Graph::Cosine(io.load_hnsw_with_dist(UnitCosine).map_err(|e| reload(e.to_string()))?)
                    }
                    Metric::L2 => Graph::L2(io.load_hnsw_with_dist(Euclidean).map_err(|e| reload(e.to_string()))?),
                    Metric::Dot => Graph::Dot(io.load_hnsw_with_dist(InnerProduct).map_err(|e| reload(e.to_string()))?),
                })
            }));
            loaded.unwrap_or_else(|panic| Err(reload(format!("it panicked: {}", panic_message(&panic)))))
        });
        let _ = std::fs::remove_dir_all(&dir);
        let generation = Generation {
            graph: graph?,
            seeded: AtomicBool::new(next_internal > 0),
            next_internal: AtomicUsize::new(next_internal),
            tombstones: AtomicUsize::new(tombstones),
            inflight: AtomicUsize::new(0),
            ..me
        };
        Ok(Self::around(generation, metric, dim, m, ef_construction))
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
fn apply(generation: &Generation, ops: Vec<SideOp>, stop: &dyn Fn() -> bool) -> bool {
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

impl VectorIndex for HnswIndex {
    fn insert(&self, id: u64, vector: &[f32]) {
        debug_assert_eq!(vector.len(), self.dim);
        let _no_dump = self.dump_lock.read();
        self.current.read().insert(id, vector);
        if self.compacting.load(Ordering::Acquire) {
            self.record_side(SideOp::Insert(id, vector.to_vec()));
        }
    }

    fn remove(&self, id: u64) -> bool {
        let _no_dump = self.dump_lock.read();
        let removed = self.current.read().remove(id);
        if removed && self.compacting.load(Ordering::Acquire) {
            self.record_side(SideOp::Remove(id));
        }
        removed
    }

    fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<Neighbor> {
        let generation = Arc::clone(&self.current.read());
        generation.search(query, k, ef)
    }

    fn len(&self) -> usize {
        self.current.read().live.len()
    }

    /// Estimate from hnsw_rs's layout: per point, the vector (`4 × dim` plus a `Vec` header), one
    /// `Vec` header per possible layer for its neighbour lists (16 × 24 bytes), about `2M` level-0
    /// links of an `Arc` pointer plus its pointee (≈ 48 bytes each), the point's `Arc` and lock
    /// (≈ 96 bytes), and upper-layer links for the 1/M of points that reach layer 1.
    fn save(&self, path: &std::path::Path, consistent: &mut dyn FnMut()) -> Result<bool, String> {
        let dir = path.with_extension("hnsw-dump");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let written = (|| -> Result<(), String> {
            let fail = |e: std::io::Error| format!("writing {}: {e}", path.display());
            let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(fail)?);
            let points = {
                let _no_inserts = self.dump_lock.write();
                // A compaction in progress builds beside this one; the file holds the current
                // generation, which is what `consistent` sees too.
                let generation = Arc::clone(&self.current.read());
                consistent();
                let points = generation.next_internal.load(Ordering::Acquire);
                out.write_all(MAGIC).map_err(fail)?;
                out.write_all(&(self.dim as u64).to_le_bytes()).map_err(fail)?;
                out.write_all(&(points as u64).to_le_bytes()).map_err(fail)?;
                out.write_all(&(generation.tombstones.load(Ordering::Acquire) as u64).to_le_bytes()).map_err(fail)?;
                out.write_all(&(generation.owner.len() as u64).to_le_bytes()).map_err(fail)?;
                for e in &generation.owner {
                    let (internal, id) = (*e.key(), *e.value());
                    let live = generation.live.get(&id).is_some_and(|i| *i == internal);
                    out.write_all(&(internal as u64).to_le_bytes()).map_err(fail)?;
                    out.write_all(&id.to_le_bytes()).map_err(fail)?;
                    out.write_all(&[u8::from(live)]).map_err(fail)?;
                }
                if points > 0 {
                    generation.dump(&dir)?;
                }
                points
            };
            if points == 0 {
                out.write_all(&0u64.to_le_bytes()).map_err(fail)?;
            } else {
                for name in ["index.hnsw.graph", "index.hnsw.data"] {
                    let from = dir.join(name);
                    let mut file =
                        std::fs::File::open(&from).map_err(|e| format!("reading {}: {e}", from.display()))?;
                    let n = file.metadata().map_err(|e| format!("reading {}: {e}", from.display()))?.len();
                    out.write_all(&n.to_le_bytes()).map_err(fail)?;
                    let copied = std::io::copy(&mut file, &mut out).map_err(fail)?;
                    if copied != n {
                        return Err(format!("{} changed while it was copied", from.display()));
                    }
                }
            }
            out.flush().map_err(fail)
        })();
        let _ = std::fs::remove_dir_all(&dir);
        written.map(|()| true)
    }

    fn holds(&self, id: u64) -> bool {
        self.current.read().live.contains_key(&id)
    }

    /// Tombstones count like live points (they stay in the graph), plus both id maps, plus the
    /// generation a compaction is building.
    fn memory_bytes(&self) -> usize {
        let points = self.current.read().next_internal.load(Ordering::Acquire) + self.building.load(Ordering::Acquire);
        let live = self.len();
        (points as f64 * (bytes_per_vector(self.dim, self.m) + 32.0) + live as f64 * 32.0) as usize
    }

    fn tombstones(&self) -> usize {
        self.current.read().tombstones.load(Ordering::Acquire)
    }

    /// Builds a new graph from the live points on the calling thread while inserts, removals
    /// and searches go on against the current one; what they change meanwhile is kept in a
    /// side log, applied to the new graph, and the new graph is swapped in with inserts held
    /// off for the last few side-log operations only. Until the swap both graphs are in memory.
    fn compact(&self, stop: &dyn Fn() -> bool) -> Result<usize, String> {
        if self.compacting.swap(true, Ordering::AcqRel) {
            return Err("a compaction of this index is already running".into());
        }
        let (old, points, dropped) = {
            let _no_inserts = self.dump_lock.write();
            // What inserts and removals recorded between `compacting` and this lock is in the
            // points collected now: the side log starts empty here.
            self.reset_side();
            let old = Arc::clone(&self.current.read());
            let dropped = old.tombstones.load(Ordering::Acquire);
            if dropped == 0 {
                self.compacting.store(false, Ordering::Release);
                return Ok(0);
            }
            let points: Vec<(u64, Arc<Point<'static, f32>>)> =
                old.graph.points().into_iter().filter_map(|p| Some((old.live_owner(p.get_origin_id())?, p))).collect();
            (old, points, dropped)
        };
        let fresh = Generation::new(self.metric, self.m, self.ef_construction, points.len());
        for (n, (id, point)) in points.into_iter().enumerate() {
            if n % STOP_POLL_EVERY == 0 {
                if stop() {
                    return self.abandon("stopped".into());
                }
                self.building.store(n, Ordering::Release);
            }
            // Removed since the points were collected: left out rather than inserted and then
            // made a tombstone by the side log's removal (which then finds nothing to remove).
            if old.live_owner(point.get_origin_id()).is_some() {
                fresh.insert(id, point.get_v());
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
            if !apply(&fresh, ops, stop) {
                return self.abandon("stopped".into());
            }
        }
        let _no_inserts = self.dump_lock.write();
        let ops = self.drain_side();
        if ops.len() > MAX_FINAL_SIDE_OPS || overflowed() {
            drop(_no_inserts);
            return self.abandon(format!("ingest kept {} operations ahead of the rebuild", ops.len()));
        }
        // Few enough to apply with inserts held off (each an hnsw_rs insert on this thread).
        apply(&fresh, ops, &|| false);
        *self.current.write() = Arc::new(fresh);
        self.compacting.store(false, Ordering::Release);
        self.reset_side();
        self.building.store(0, Ordering::Release);
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_mapping_is_order_reversing_non_negative_and_invertible() {
        let ips = [-1e6f32, -3.5, -1.0, -1e-6, 0.0, 1e-6, 0.25, 1.0, 2.0, 1e6];
        let ds: Vec<f32> = ips.iter().map(|&x| ip_to_distance(x)).collect();
        assert!(ds.iter().all(|&d| d >= 0.0 && d.is_finite()));
        assert!(ds.windows(2).all(|w| w[0] > w[1]), "{ds:?}");
        for &x in &ips {
            let back = distance_to_ip(ip_to_distance(x));
            assert!((back - x).abs() <= x.abs() * 1e-4 + 1e-30, "{x} -> {back}");
        }
    }

    #[test]
    fn each_metric_finds_exact_neighbours_on_small_data() {
        for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
            let hits = crate::index::testing::top1_hits(&HnswIndex::new(metric, 16, 16, 100, 500), metric, 12345);
            assert!(hits >= 48, "{metric:?}: top-1 found for {hits}/50 queries");
        }
    }

    /// A checkpoint written while four threads insert and remove (the dump lock holds them off
    /// for the dump), loaded back: the same ids live and tombstoned, the same answers, and it
    /// takes inserts after the load.
    #[test]
    fn a_checkpoint_written_beside_inserts_loads_back_the_same_index_and_takes_inserts_after() {
        let dim = 16;
        for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
            let index = HnswIndex::new(metric, dim, 16, 100, 500);
            // Unit vectors: then each one is its own nearest under every metric.
            let vector = |id: u64| {
                let mut next = crate::index::testing::lcg(id + 1);
                let v: Vec<f32> = (0..dim).map(|_| next()).collect();
                let norm = dot(&v, &v).sqrt();
                v.into_iter().map(|x| x / norm).collect::<Vec<f32>>()
            };
            for id in 0..1_000 {
                index.insert(id, &vector(id));
            }
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("index.tmp");
            let mut seen = None;
            std::thread::scope(|s| {
                for t in 0..4u64 {
                    let (index, vector) = (&index, &vector);
                    s.spawn(move || {
                        for id in (1_000 + t..3_000).step_by(4) {
                            index.insert(id, &vector(id));
                            if id % 10 == 0 {
                                index.remove(id - 1_000);
                            }
                        }
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
                // `consistent` runs with no insert or removal in flight: what it sees is what
                // the file holds.
                let saved = index
                    .save(&path, &mut || {
                        seen = Some((index.len(), index.current.read().next_internal.load(Ordering::Acquire)))
                    })
                    .unwrap();
                assert!(saved);
            });
            let (len, points) = seen.expect("consistent was called");
            let loaded = HnswIndex::load(metric, dim, 16, 100, &path).unwrap();
            assert_eq!(
                (loaded.len(), loaded.current.read().next_internal.load(Ordering::Acquire)),
                (len, points),
                "{metric:?}"
            );
            // Every point of the file is one of the first `points` inserts; each is live or a
            // tombstone exactly as the mapping says, and search answers agree on the live ones.
            for id in 0..3_000u64 {
                if loaded.holds(id) {
                    let top = loaded.search(&vector(id), 1, 64);
                    assert_eq!(top[0].id, id, "{metric:?}: {id} not found first after the load");
                }
            }
            loaded.insert(9_999, &vector(9_999));
            assert_eq!(loaded.search(&vector(9_999), 1, 64)[0].id, 9_999, "{metric:?}: an insert after the load");
            assert_eq!(loaded.len(), len + 1);
            // Not a checkpoint: a clear error, no panic.
            std::fs::write(&path, b"not a checkpoint").unwrap();
            assert!(HnswIndex::load(metric, dim, 16, 100, &path).is_err());
            // A well-formed bundle around dump files hnsw_rs cannot read (it would assert or
            // unwrap on them): an error too, no panic.
            let mut bundle = MAGIC.to_vec();
            for v in [dim as u64, 1, 0, 0, 16] {
                bundle.extend_from_slice(&v.to_le_bytes());
            }
            bundle.extend_from_slice(&[0xAB; 16]);
            bundle.extend_from_slice(&16u64.to_le_bytes());
            bundle.extend_from_slice(&[0xCD; 16]);
            std::fs::write(&path, &bundle).unwrap();
            let e = HnswIndex::load(metric, dim, 16, 100, &path).map(|_| ()).expect_err("garbage dump files");
            assert!(e.contains("hnsw_rs could not reload"), "{e}");
        }
    }

    /// Unit vectors of `dim` from `id`: each is its own nearest neighbour under every metric.
    fn unit_vector(dim: usize, id: u64) -> Vec<f32> {
        let mut next = crate::index::testing::lcg(id + 1);
        let v: Vec<f32> = (0..dim).map(|_| next()).collect();
        let norm = dot(&v, &v).sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }

    /// Half the points removed, then a compaction while four threads insert new ids and remove
    /// old and new ones, and a fifth searches: afterwards the tombstones are gone (only removals
    /// made after the swap could leave new ones, and none are), the index holds exactly the ids
    /// inserted and not removed, each is found first for its own vector, and no removed id is
    /// ever returned, during the rebuild or after it.
    #[test]
    fn a_compaction_beside_inserts_removals_and_searches_drops_the_tombstones_and_loses_nothing() {
        let dim = 16;
        for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
            let index = HnswIndex::new(metric, dim, 16, 100, 500);
            for id in 0..2_000 {
                index.insert(id, &unit_vector(dim, id));
            }
            for id in (0..2_000).step_by(2) {
                assert!(index.remove(id));
            }
            assert_eq!(index.tombstones(), 1_000);
            let removed_during = std::sync::Mutex::new(Vec::new());
            let done = AtomicBool::new(false);
            let inserted = AtomicUsize::new(0);
            let dropped = std::thread::scope(|s| {
                for t in 0..4u64 {
                    let (index, removed_during, inserted) = (&index, &removed_during, &inserted);
                    s.spawn(move || {
                        for id in (2_000 + t..6_000).step_by(4) {
                            index.insert(id, &unit_vector(dim, id));
                            inserted.fetch_add(1, Ordering::AcqRel);
                            // One old odd id and one of the new ones removed now and then.
                            if id % 8 == 1 && id < 4_000 {
                                let old = (id - 2_000) | 1;
                                if index.remove(old) {
                                    removed_during.lock().unwrap().push(old);
                                }
                            }
                            if id % 10 == 0 && id >= 2_004 {
                                assert!(index.remove(id - 4));
                                removed_during.lock().unwrap().push(id - 4);
                            }
                        }
                    });
                }
                let (index, done) = (&index, &done);
                s.spawn(move || {
                    let mut q = 0u64;
                    while !done.load(Ordering::Acquire) {
                        for n in index.search(&unit_vector(dim, q % 2_000), 10, 64) {
                            assert!(n.id % 2 == 1 || n.id >= 2_000, "{metric:?}: removed id {} returned", n.id);
                        }
                        q += 1;
                    }
                });
                std::thread::sleep(std::time::Duration::from_millis(20));
                let before = inserted.load(Ordering::Acquire);
                let dropped = index.compact(&|| false).expect("the compaction completes");
                let after = inserted.load(Ordering::Acquire);
                done.store(true, Ordering::Release);
                // The side log was exercised: inserts went on while the new graph was built.
                assert!(
                    before < 4_000 && after > before,
                    "{metric:?}: inserts {before} → {after} during the compaction"
                );
                dropped
            });
            assert!(dropped >= 1_000, "{metric:?}: {dropped} tombstones dropped");
            let removed: std::collections::HashSet<u64> =
                removed_during.into_inner().unwrap().into_iter().chain((0..2_000).step_by(2)).collect();
            // Removals after the swap leave tombstones in the new graph; before it, none do.
            let expected: Vec<u64> = (0..6_000).filter(|id| !removed.contains(id)).collect();
            assert_eq!(index.len(), expected.len(), "{metric:?}");
            assert!(index.tombstones() < 1_000, "{metric:?}: {} tombstones left", index.tombstones());
            // Every point of the new graph is live or counted as a tombstone: an operation both
            // collected and replayed from the side log would leave an uncounted orphan.
            let points = index.current.read().next_internal.load(Ordering::Acquire);
            assert_eq!(points, index.len() + index.tombstones(), "{metric:?}: points neither live nor tombstones");
            let mut first = 0;
            for &id in &expected {
                assert!(index.holds(id), "{metric:?}: {id} lost by the compaction");
                let top = index.search(&unit_vector(dim, id), 10, 64);
                assert!(top.iter().all(|n| !removed.contains(&n.id)), "{metric:?}: a removed id returned");
                first += usize::from(top.first().is_some_and(|n| n.id == id));
            }
            assert!(first * 100 >= expected.len() * 99, "{metric:?}: {first}/{} found first", expected.len());
            for &id in &removed {
                assert!(!index.holds(id), "{metric:?}: removed {id} came back");
            }
            // A stopped compaction leaves the index as it was.
            let (len, tombstones) = (index.len(), index.tombstones());
            if tombstones > 0 {
                assert!(index.compact(&|| true).is_err());
                assert_eq!((index.len(), index.tombstones()), (len, tombstones));
            }
            index.insert(9_999, &unit_vector(dim, 9_999));
            assert_eq!(index.search(&unit_vector(dim, 9_999), 1, 64)[0].id, 9_999);
        }
    }

    /// `len` counts only points a search can find: a reader that reads `len` and then searches
    /// gets at least `min(len, k)` hits while inserts run, from the first insert into an empty
    /// graph on (in the engine's concurrency test under ASan, 9 hits came back with 10 counted).
    #[test]
    fn a_search_after_len_finds_as_many_as_len_counted_while_inserts_run() {
        let dim = 16;
        for round in 0..300u64 {
            let index = HnswIndex::new(Metric::Cosine, dim, 16, 100, 64);
            let done = AtomicUsize::new(0);
            std::thread::scope(|s| {
                for t in 0..2u64 {
                    let (index, done) = (&index, &done);
                    s.spawn(move || {
                        for id in (t..24).step_by(2) {
                            index.insert(id, &unit_vector(dim, round * 100 + id));
                        }
                        done.fetch_add(1, Ordering::AcqRel);
                    });
                }
                let query = unit_vector(dim, 7);
                while done.load(Ordering::Acquire) < 2 {
                    let counted = index.len();
                    let hits = index.search(&query, 10, 64).len();
                    assert!(hits >= counted.min(10), "round {round}: {hits} hits with {counted} counted");
                }
            });
        }
    }

    /// When inserts made during a rebuild overflow the side log, the compaction is abandoned:
    /// the index keeps its tombstones and every insert, and a later compaction succeeds.
    #[test]
    fn a_compaction_outrun_by_inserts_is_abandoned_and_the_index_keeps_everything() {
        let dim = 16;
        let mut index = HnswIndex::new(Metric::Cosine, dim, 16, 100, 500);
        index.side_limit = 4 * dim * 8; // eight vectors
        for id in 0..3_000 {
            index.insert(id, &unit_vector(dim, id));
        }
        for id in (0..3_000).step_by(2) {
            assert!(index.remove(id));
        }
        let done = AtomicBool::new(false);
        let result = std::thread::scope(|s| {
            let (index, done) = (&index, &done);
            // Inserts all through the compaction (and at least 200).
            let writer = s.spawn(move || {
                let mut id = 10_000;
                while !done.load(Ordering::Acquire) || id < 10_200 {
                    index.insert(id, &unit_vector(dim, id));
                    id += 1;
                }
                id
            });
            let result = index.compact(&|| false);
            done.store(true, Ordering::Release);
            (result, writer.join().unwrap())
        });
        let (result, end) = result;
        let why = result.expect_err("inserts during the rebuild overflow an 8-vector side log");
        assert!(why.contains("ahead of the rebuild"), "{why}");
        assert_eq!(index.tombstones(), 1_500);
        assert_eq!(index.len(), 1_500 + (end - 10_000) as usize);
        for id in (1..3_000).step_by(2).chain(10_000..end) {
            assert!(index.holds(id), "{id} lost");
        }
        assert!(!index.compacting.load(Ordering::Acquire) && index.side.lock().is_empty());
        assert_eq!(index.compact(&|| false), Ok(1_500));
        assert_eq!(index.tombstones(), 0);
        assert_eq!(index.search(&unit_vector(dim, 10_001), 1, 64)[0].id, 10_001);
    }

    /// hnsw_rs reloads a dump only under the full type name of the distance it was dumped with
    /// (`load_hnsw_with_dist` compares `type_name`): renaming or moving these types would make
    /// every existing hnsw_rs checkpoint unloadable (moved aside at start, the space rebuilt
    /// from what its compacted log still holds). A rename must fail here first.
    #[test]
    fn the_distance_type_names_hnsw_rs_checkpoints_depend_on_are_pinned() {
        assert_eq!(std::any::type_name::<UnitCosine>(), "engram_engine::index::hnsw::UnitCosine");
        assert_eq!(std::any::type_name::<Euclidean>(), "engram_engine::index::hnsw::Euclidean");
        assert_eq!(std::any::type_name::<InnerProduct>(), "engram_engine::index::hnsw::InnerProduct");
    }
}
