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
//! new `Generation` (graph and id maps) from the live points of the current one beside ingest,
//! as `index/rebuild.rs` describes; hnsw_rs's points are collected with inserts held off
//! (its point iterator holds a read guard on its point table and takes a second one, which
//! deadlocks beside a waiting insert). Until the swap both graphs are in memory.
//!
//! hnsw_rs reloads a dump only under the distance's full type name, so [`UnitCosine`],
//! [`Euclidean`] and [`InnerProduct`] must keep theirs (a test pins them).

use super::rebuild::{self, Rebuilt};
use super::{Metric, Neighbor, VectorIndex, dot};
use dashmap::DashMap;
use hnsw_rs::prelude::{DataId, Distance, Hnsw, Point};
use parking_lot::Mutex;
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

/// An HNSW index from `hnsw_rs`.
pub struct HnswIndex {
    /// The current generation, the dump lock and compaction (`index/rebuild.rs`).
    generations: Rebuilt<Generation>,
    metric: Metric,
    dim: usize,
    m: usize,
    ef_construction: usize,
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
        Self { generations: Rebuilt::new(generation), metric, dim, m, ef_construction }
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
}

impl rebuild::Generation for Generation {
    type Point = Arc<Point<'static, f32>>;

    fn insert(&self, id: u64, vector: &[f32]) {
        Generation::insert(self, id, vector);
    }

    fn remove(&self, id: u64) -> bool {
        Generation::remove(self, id)
    }

    fn tombstones(&self) -> usize {
        self.tombstones.load(Ordering::Acquire)
    }

    /// hnsw_rs's point iterator: only with inserts held off (see [`Graph::points`]).
    fn live_points(&self) -> Vec<(u64, Self::Point)> {
        self.graph.points().into_iter().filter_map(|p| Some((self.live_owner(p.get_origin_id())?, p))).collect()
    }

    fn live_vector<'a>(&'a self, point: &'a Self::Point) -> Option<&'a [f32]> {
        self.live_owner(point.get_origin_id()).map(|_| point.get_v())
    }
}

impl VectorIndex for HnswIndex {
    fn insert(&self, id: u64, vector: &[f32]) {
        debug_assert_eq!(vector.len(), self.dim);
        self.generations.insert(id, vector);
    }

    fn remove(&self, id: u64) -> bool {
        self.generations.remove(id)
    }

    fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<Neighbor> {
        self.generations.current().search(query, k, ef)
    }

    fn len(&self) -> usize {
        self.generations.current().live.len()
    }

    /// The dump and the id maps of the current generation, with inserts and removals held off
    /// ([`Rebuilt::frozen`]); a compaction in progress builds beside it.
    fn save(&self, path: &std::path::Path, consistent: &mut dyn FnMut()) -> Result<bool, String> {
        let dir = path.with_extension("hnsw-dump");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let written = (|| -> Result<(), String> {
            let fail = |e: std::io::Error| format!("writing {}: {e}", path.display());
            let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(fail)?);
            let points = self.generations.frozen(|generation| -> Result<usize, String> {
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
                Ok(points)
            })?;
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
        self.generations.current().live.contains_key(&id)
    }

    /// Estimate from hnsw_rs's layout: per point, the vector (`4 × dim` plus a `Vec` header), one
    /// `Vec` header per possible layer for its neighbour lists (16 × 24 bytes), about `2M` level-0
    /// links of an `Arc` pointer plus its pointee (≈ 48 bytes each), the point's `Arc` and lock
    /// (≈ 96 bytes), and upper-layer links for the 1/M of points that reach layer 1. Tombstones
    /// count like live points (they stay in the graph), plus both id maps, plus the generation a
    /// compaction is building.
    fn memory_bytes(&self) -> usize {
        let points = self.generations.current().next_internal.load(Ordering::Acquire) + self.generations.building();
        let live = self.len();
        (points as f64 * (bytes_per_vector(self.dim, self.m) + 32.0) + live as f64 * 32.0) as usize
    }

    fn tombstones(&self) -> usize {
        self.generations.current().tombstones.load(Ordering::Acquire)
    }

    /// [`Rebuilt::compact`] with an empty hnsw_rs generation sized for the live points.
    fn compact(&self, stop: &dyn Fn() -> bool) -> Result<usize, String> {
        let (metric, m, ef_construction) = (self.metric, self.m, self.ef_construction);
        self.generations.compact(stop, |points| Generation::new(metric, m, ef_construction, points))
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

    /// The shared test (`index::testing::checkpoint_beside_ingest`) on hnsw_rs, then files it
    /// cannot load: a clear error, no panic.
    #[test]
    fn a_checkpoint_written_beside_inserts_loads_back_the_same_index_and_takes_inserts_after() {
        let dim = 16;
        let nodes = |index: &HnswIndex| index.generations.current().next_internal.load(Ordering::Acquire);
        for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
            let (_dir, path) = crate::index::testing::checkpoint_beside_ingest(
                metric,
                HnswIndex::new(metric, dim, 16, 100, 500),
                |path| HnswIndex::load(metric, dim, 16, 100, path),
                nodes,
            );
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

    /// The shared test (`index::testing::compaction_beside_ingest`) on hnsw_rs.
    #[test]
    fn a_compaction_beside_inserts_removals_and_searches_drops_the_tombstones_and_loses_nothing() {
        crate::index::testing::compaction_beside_ingest(
            |metric| HnswIndex::new(metric, 16, 16, 100, 500),
            |index| index.generations.current().next_internal.load(Ordering::Acquire),
        );
    }

    /// The shared test (`index::testing::search_after_len`) on hnsw_rs (in the engine's
    /// concurrency test under ASan, 9 hits came back with 10 counted before the seed lock).
    #[test]
    fn a_search_after_len_finds_as_many_as_len_counted_while_inserts_run() {
        crate::index::testing::search_after_len(|| HnswIndex::new(Metric::Cosine, 16, 16, 100, 64));
    }

    /// The shared test (`index::testing::upserts_beside_searches`) on hnsw_rs.
    #[test]
    fn searches_beside_upserts_never_answer_an_id_twice() {
        crate::index::testing::upserts_beside_searches(&HnswIndex::new(Metric::Cosine, 8, 16, 100, 64));
    }

    /// The shared test (`index::testing::compaction_outrun`) on hnsw_rs.
    #[test]
    fn a_compaction_outrun_by_inserts_is_abandoned_and_the_index_keeps_everything() {
        let mut index = HnswIndex::new(Metric::Cosine, 16, 16, 100, 500);
        index.generations.side_limit = 4 * 16 * 8; // eight vectors
        crate::index::testing::compaction_outrun(&index);
        assert!(index.generations.is_idle());
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
