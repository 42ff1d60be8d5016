//! The index seam: a small trait every backend implements, and the metrics it searches by.
//!
//! Backends receive vectors already *prepared* by [`Metric::prepare`] (unit length for cosine),
//! hold no ids or content of their own beyond the `u64` id they return, and must be safe to
//! search while inserts and removals run. The engine keeps the id map, dedupes ids, orders the
//! operations on each id and stores content.
//!
//! Both backends build the same graph (Malkov & Yashunin, "Efficient and robust approximate
//! nearest neighbor search using Hierarchical Navigable Small World graphs", TPAMI 2018) from the
//! same parameters (`M`, `ef_construction`, `ef_search`); a space picks one with [`IndexKind`]:
//!
//! - [`hnsw`]: the pure-Rust `hnsw_rs` backend.
//! - [`usearch`]: the `usearch` backend (C++ through `cxx`); its reserve and memory accounting
//!   are used inside the backend, so the trait stays the same for both. For `f32` vectors it
//!   measures with the private `kernels` module's distance kernels, not NumKong's.
//!
//! - [`engram`]: our own graph core (hnswlib 0.8's algorithm, searches that never lock), in
//!   Rust; `f32` vectors only.
//!
//! [`build`] makes the index a space's parameters ask for.

pub mod engram;
// Our own graph core, behind `engram`: public with `internals` (its raw benchmark and stress
// test).
#[cfg(feature = "internals")]
pub mod graph;
#[cfg(not(feature = "internals"))]
#[allow(unreachable_pub)]
mod graph;
pub mod hnsw;
mod kernels;
mod rebuild;
pub mod usearch;

use serde::{Deserialize, Serialize};

/// Similarity metric of a memory space.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Cosine similarity: vectors are normalised to unit length on admission; score in [-1, 1].
    #[default]
    Cosine,
    /// Euclidean distance; score is the negative distance (higher is closer).
    L2,
    /// Inner product, unnormalised; score is the dot product.
    Dot,
}

impl Metric {
    /// Prepares a vector for insertion or search in place (normalises it for cosine).
    ///
    /// # Errors
    /// A reason string when the vector cannot be used with this metric (zero vector under
    /// cosine has no direction).
    pub fn prepare(self, v: &mut [f32]) -> Result<(), &'static str> {
        if self == Metric::Cosine {
            let norm = dot(v, v).sqrt();
            if !(norm > 0.0 && norm.is_finite()) {
                return Err("zero or non-finite norm: a cosine embedding needs a direction");
            }
            let inv = 1.0 / norm;
            v.iter_mut().for_each(|x| *x *= inv);
        }
        Ok(())
    }

    /// The score of `v` for `query` (both prepared, one length), as both backends score a hit:
    /// the inner product for cosine (on unit vectors: the cosine similarity) and dot, the
    /// negative Euclidean distance for L2. Higher is closer.
    pub(crate) fn score(self, query: &[f32], v: &[f32]) -> f32 {
        match self {
            Metric::Cosine | Metric::Dot => dot(query, v),
            Metric::L2 => -query.iter().zip(v).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt(),
        }
    }
}

/// Which index implementation a memory space uses (`"index"` in its parameters).
///
/// The default depends on the dimension (`SpaceParams::index`): engram below 256 dimensions,
/// usearch (with `i8` vectors) from 256; hnsw_rs only when asked for (on this project's
/// benchmarks, docs/benchmarks.md, it inserts several times slower than either at the same
/// recall@10).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IndexKind {
    /// `hnsw_rs` 0.3 ([`hnsw::HnswIndex`]).
    #[serde(rename = "hnsw_rs")]
    HnswRs,
    /// `usearch` 2.26 ([`usearch::UsearchIndex`]).
    #[serde(rename = "usearch")]
    Usearch,
    /// Our own graph core ([`engram::EngramIndex`]); `f32` vectors only.
    #[serde(rename = "engram")]
    Engram,
}

impl IndexKind {
    /// Every kind, in a fixed order (for benches and reports).
    pub const ALL: [IndexKind; 3] = [IndexKind::HnswRs, IndexKind::Usearch, IndexKind::Engram];

    /// The name used in parameters, reports and docs: `hnsw_rs`, `usearch` or `engram`.
    pub fn as_str(self) -> &'static str {
        match self {
            IndexKind::HnswRs => "hnsw_rs",
            IndexKind::Usearch => "usearch",
            IndexKind::Engram => "engram",
        }
    }

    /// True when the backend can hold reduced vectors (`quantization` other than `none`):
    /// usearch only.
    pub fn quantizes(self) -> bool {
        self == IndexKind::Usearch
    }
}

impl std::str::FromStr for IndexKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown index {s:?}: expected \"hnsw_rs\", \"usearch\" or \"engram\""))
    }
}

/// The scalar type of the vectors an index holds (`"quantization"` in a space's parameters).
///
/// With anything but `none` the index holds a reduced copy of each vector and the full `f32`
/// vector is kept beside the content (in the store, or on the heap without one); recall
/// searches the reduced graph for `k × rescore_factor` candidates and rescores them exactly
/// from the full vectors, as Qdrant's `rescore` does with quantized vectors
/// (<https://qdrant.tech/documentation/guides/quantization/#searching-with-quantization>).
/// The kinds are USearch's scalar kinds (`ScalarKind`); hnsw_rs and engram hold `f32` only.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// `f32`: 4 bytes a value, exact scores from the graph. The default.
    #[default]
    None,
    /// IEEE 754 half precision: 2 bytes a value (11-bit significand, range ±65,504).
    F16,
    /// bfloat16: 2 bytes a value (8-bit significand, the range of `f32`).
    Bf16,
    /// Signed 8-bit: 1 byte a value, `round(x × 127)` clamped to ±127, so only for unit vectors
    /// (cosine spaces).
    I8,
}

impl Quantization {
    /// Every kind, in a fixed order (for benches and reports).
    pub const ALL: [Quantization; 4] = [Quantization::None, Quantization::F16, Quantization::Bf16, Quantization::I8];

    /// The name used in parameters, reports and docs: `none`, `f16`, `bf16` or `i8`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
            Self::I8 => "i8",
        }
    }

    /// Bytes the index holds per vector value.
    pub fn value_bytes(self) -> usize {
        match self {
            Self::None => 4,
            Self::F16 | Self::Bf16 => 2,
            Self::I8 => 1,
        }
    }

    /// True when the index holds a reduced copy (and the full vector is kept beside it).
    pub fn is_reduced(self) -> bool {
        self != Self::None
    }
}

impl std::str::FromStr for Quantization {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|q| q.as_str() == s)
            .ok_or_else(|| format!("unknown quantization {s:?}: expected \"none\", \"f16\", \"bf16\" or \"i8\""))
    }
}

/// Parameters shared by every backend: the space's [`crate::SpaceParams`] minus its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexParams {
    /// Which backend.
    pub kind: IndexKind,
    /// Similarity metric; vectors arrive prepared by [`Metric::prepare`].
    pub metric: Metric,
    /// Vector dimension.
    pub dim: usize,
    /// HNSW `M` (2 to 256).
    pub m: usize,
    /// HNSW `ef_construction`.
    pub ef_construction: usize,
    /// Default HNSW `ef_search`.
    pub ef_search: usize,
    /// The scalar type the index holds its vectors in (usearch only; the others hold `f32`).
    pub quantization: Quantization,
    /// Capacity hint in vectors; backends reserve only a small part of it up front and grow.
    pub max_elements: usize,
    /// The most threads that insert or search at once (the engine's workers plus queries).
    pub threads: usize,
}

/// Estimated bytes a full index of `kind` holds per vector of `dim` dimensions at HNSW `M = m`
/// with values of `quantization` (graph links, the vector, per-slot tables), for checking a
/// space's `max_elements` against the memory budget before anything is allocated.
pub fn bytes_per_vector(kind: IndexKind, dim: usize, m: usize, quantization: Quantization) -> f64 {
    match kind {
        IndexKind::HnswRs => hnsw::bytes_per_vector(dim, m),
        IndexKind::Usearch => usearch::bytes_per_vector(dim, m, quantization),
        IndexKind::Engram => engram::bytes_per_vector(dim, m),
    }
}

/// Builds the index `params` ask for.
///
/// # Errors
/// The backend's message when it cannot allocate the index.
pub fn build(params: &IndexParams) -> Result<Box<dyn VectorIndex>, String> {
    let p = params;
    refuse_reduced(p)?;
    Ok(match p.kind {
        IndexKind::HnswRs => Box::new(hnsw::HnswIndex::new(p.metric, p.dim, p.m, p.ef_construction, p.max_elements)),
        IndexKind::Usearch => Box::new(usearch::UsearchIndex::new(p)?),
        IndexKind::Engram => Box::new(engram::EngramIndex::new(p)?),
    })
}

/// hnsw_rs and engram store `f32` values only.
fn refuse_reduced(p: &IndexParams) -> Result<(), String> {
    if !p.kind.quantizes() && p.quantization.is_reduced() {
        return Err(format!(
            "{} holds f32 vectors only: quantization {} needs the usearch index",
            p.kind.as_str(),
            p.quantization.as_str()
        ));
    }
    Ok(())
}

/// One search result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    /// The observation id.
    pub id: u64,
    /// Similarity, higher is better: cosine similarity, inner product, or negative L2 distance.
    pub score: f32,
}

/// An approximate nearest-neighbour index of one memory space.
///
/// Implementations are internally synchronised: `insert`, `remove` and `search` take `&self`
/// and may run concurrently from every worker and query thread. The engine never runs two
/// calls on the same id at once.
pub trait VectorIndex: Send + Sync {
    /// Inserts a prepared vector of the space's dimension under `id`. The engine guarantees the
    /// index does not hold `id` (it removes an id before inserting it again).
    fn insert(&self, id: u64, vector: &[f32]);
    /// Removes `id`: once this returns, no search returns it. True if the index held it.
    /// usearch frees the slot for reuse; hnsw_rs cannot unlink a point, so its backend keeps
    /// the point as a tombstone that searches filter out.
    fn remove(&self, id: u64) -> bool;
    /// The (approximately) `k` nearest neighbours of a prepared `query`, best first, exploring
    /// `ef` candidates (`ef >= k`; HNSW's `ef_search`).
    fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<Neighbor>;
    /// Vectors held (inserted and not removed).
    fn len(&self) -> usize;
    /// True when the index holds no vector.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes held by the index (graph and vectors): the backend's own accounting where it has
    /// one (usearch), an estimate from its layout otherwise (hnsw_rs).
    fn memory_bytes(&self) -> usize;
    /// Writes the index to `path` (a checkpoint) and, while no insert, removal or search runs,
    /// calls `consistent` once (so the caller reads its own per-id state as of the file).
    /// `Ok(false)` when the backend cannot checkpoint (both backends can: usearch's
    /// `save_to_buffer`, hnsw_rs's dump).
    ///
    /// # Errors
    /// The backend's message when the file cannot be written.
    fn save(&self, path: &std::path::Path, consistent: &mut dyn FnMut()) -> Result<bool, String>;
    /// True when the index holds `id`. Only while nothing inserts or removes (recovery, after
    /// loading a checkpoint): usearch's key lookup is not documented as safe beside adds.
    fn holds(&self, id: u64) -> bool;
    /// Removed points the index still keeps (tombstones that route searches but are never
    /// returned). usearch removes in place: always 0. hnsw_rs cannot unlink a point: its
    /// removals stay as tombstones until [`VectorIndex::compact`].
    fn tombstones(&self) -> usize {
        0
    }
    /// Rebuilds the index without its tombstones, on the calling thread, while inserts,
    /// removals and searches go on; `stop` is polled and, once true, the rebuild is abandoned
    /// and the index left as it was. At most one runs per index. Returns how many tombstones
    /// were dropped (usearch: 0, it has none).
    ///
    /// # Errors
    /// Why the rebuild was abandoned (`stop`, another compaction running, or ingest writing
    /// faster than the rebuild catches up); the index is unchanged and usable.
    fn compact(&self, stop: &dyn Fn() -> bool) -> Result<usize, String> {
        let _ = stop;
        Ok(0)
    }
}

/// Loads an index of `params` from a checkpoint written by [`VectorIndex::save`].
///
/// # Errors
/// The backend's message when the file does not load or does not match `params` (dimension,
/// metric).
pub fn load(params: &IndexParams, path: &std::path::Path) -> Result<Box<dyn VectorIndex>, String> {
    let p = params;
    refuse_reduced(p)?;
    match p.kind {
        IndexKind::HnswRs => Ok(Box::new(hnsw::HnswIndex::load(p.metric, p.dim, p.m, p.ef_construction, path)?)),
        IndexKind::Usearch => Ok(Box::new(usearch::UsearchIndex::load(p, path)?)),
        IndexKind::Engram => Ok(Box::new(engram::EngramIndex::load(p, path)?)),
    }
}

/// Dot product of two equal-length slices, in four independent lanes so it vectorises.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Fixtures both backends' tests share.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Metric, VectorIndex};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Deterministic pseudo-random values in [-0.5, 0.5) (a 64-bit LCG).
    pub(crate) fn lcg(seed: u64) -> impl FnMut() -> f32 {
        let mut s = seed;
        move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        }
    }

    /// A checkpoint of `index` (cosine, L2 or dot as `metric`; 16 dimensions) written while
    /// four threads insert and remove (the dump lock holds them off for the write), loaded back
    /// with `load`: the same ids live (as many as `consistent` counted, with as many graph
    /// nodes as `nodes` counted then), the same answers, and it takes inserts after the load.
    /// Returns the directory and the checkpoint's path, for checks of bad files.
    pub(crate) fn checkpoint_beside_ingest<I: VectorIndex>(
        metric: Metric,
        index: I,
        load: impl Fn(&std::path::Path) -> Result<I, String>,
        nodes: impl Fn(&I) -> usize,
    ) -> (tempfile::TempDir, std::path::PathBuf) {
        let dim = 16;
        for id in 0..1_000 {
            index.insert(id, &unit_vector(dim, id));
        }
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("index.tmp");
        let mut seen = None;
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let index = &index;
                s.spawn(move || {
                    for id in (1_000 + t..3_000).step_by(4) {
                        index.insert(id, &unit_vector(dim, id));
                        if id % 10 == 0 {
                            index.remove(id - 1_000);
                        }
                    }
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
            // `consistent` runs with no insert or removal in flight: what it sees is what the
            // file holds.
            let saved = index.save(&path, &mut || seen = Some((index.len(), nodes(&index)))).unwrap();
            assert!(saved);
        });
        let (len, points) = seen.expect("consistent was called");
        let loaded = load(&path).unwrap();
        assert_eq!((loaded.len(), nodes(&loaded)), (len, points), "{metric:?}");
        // Every point of the file is one of the first `points` inserts; each is live or a
        // tombstone exactly as saved, and search answers agree on the live ones.
        let mut held = 0;
        for id in 0..3_000u64 {
            if loaded.holds(id) {
                held += 1;
                let top = loaded.search(&unit_vector(dim, id), 1, 64);
                assert_eq!(top[0].id, id, "{metric:?}: {id} not found first after the load");
            }
        }
        assert_eq!(held, len, "{metric:?}: ids held after the load");
        loaded.insert(9_999, &unit_vector(dim, 9_999));
        assert_eq!(loaded.search(&unit_vector(dim, 9_999), 1, 64)[0].id, 9_999, "{metric:?}: an insert after the load");
        assert_eq!(loaded.len(), len + 1);
        (tmp, path)
    }

    /// Unit vectors of `dim` from `id`: each is its own nearest neighbour under every metric.
    pub(crate) fn unit_vector(dim: usize, id: u64) -> Vec<f32> {
        let mut next = lcg(id + 1);
        let v: Vec<f32> = (0..dim).map(|_| next()).collect();
        let norm = super::dot(&v, &v).sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }

    /// Half the points removed, then a compaction while four threads insert new ids and remove
    /// old and new ones, and a fifth searches: afterwards the tombstones are gone (only removals
    /// made after the swap could leave new ones, and none are), the index holds exactly the ids
    /// inserted and not removed, each is found first for its own vector, and no removed id is
    /// ever returned, during the rebuild or after it.
    pub(crate) fn compaction_beside_ingest<I: VectorIndex>(make: impl Fn(Metric) -> I, nodes: impl Fn(&I) -> usize) {
        let dim = 16;
        for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
            let index = make(metric);
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
            let points = nodes(&index);
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
    /// graph on. `make` gives an empty cosine index of 16 dimensions.
    pub(crate) fn search_after_len<I: VectorIndex>(make: impl Fn() -> I) {
        let dim = 16;
        for round in 0..300u64 {
            let index = make();
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

    /// Two threads upsert (remove, then insert the id again with a vector close to its old one,
    /// as the engine's worker does) 1,000 ids each, six rounds, while two threads search
    /// next to those vectors without pause: no answer holds an id twice (an upsert's old
    /// point, passed before its removal, beside the new one). `index` is an empty cosine index
    /// of 8 dimensions.
    pub(crate) fn upserts_beside_searches<I: VectorIndex>(index: &I) {
        const DIM: usize = 8;
        const N: u64 = 2_000;
        const ROUNDS: u64 = 6;
        // Round `r`'s vector of `id`: the id's own unit vector nudged by about 1 %, so an
        // upsert's old and new vectors are each other's neighbours.
        let vector = |id: u64, r: u64| {
            let nudge = unit_vector(DIM, (1 << 40) + r * N + id);
            let mut v: Vec<f32> = unit_vector(DIM, id).iter().zip(&nudge).map(|(b, x)| b + 0.01 * x).collect();
            Metric::Cosine.prepare(&mut v).unwrap();
            v
        };
        for id in 0..N {
            index.insert(id, &vector(id, 0));
        }
        let (done, searches) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let (index, done) = (&index, &done);
                s.spawn(move || {
                    for r in 1..=ROUNDS {
                        for id in (t..N).step_by(2) {
                            assert!(index.remove(id), "id {id} was held");
                            index.insert(id, &vector(id, r));
                        }
                    }
                    done.fetch_add(1, Ordering::AcqRel);
                });
            }
            for t in 0..2u64 {
                let (index, done, searches) = (&index, &done, &searches);
                s.spawn(move || {
                    let mut seen = std::collections::HashSet::new();
                    let mut n = 0u64;
                    while done.load(Ordering::Acquire) < 2 {
                        seen.clear();
                        for h in index.search(&unit_vector(DIM, (n * 7919 + t) % N), 10, 32) {
                            assert!(seen.insert(h.id), "id {} twice in one answer", h.id);
                        }
                        n += 1;
                    }
                    searches.fetch_add(n as usize, Ordering::AcqRel);
                });
            }
        });
        let searches = searches.load(Ordering::Acquire);
        assert!(searches > 100, "the readers ran {searches} searches");
        assert_eq!(index.len(), N as usize);
    }

    /// When inserts made during a rebuild overflow the side log (the caller set `index`'s to
    /// eight 16-dimensional vectors), the compaction is abandoned: the index keeps its
    /// tombstones and every insert, and a later compaction succeeds. `index` is an empty cosine
    /// index of 16 dimensions.
    pub(crate) fn compaction_outrun<I: VectorIndex>(index: &I) {
        let dim = 16;
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
        assert_eq!(index.compact(&|| false), Ok(1_500));
        assert_eq!(index.tombstones(), 0);
        assert_eq!(index.search(&unit_vector(dim, 10_001), 1, 64)[0].id, 10_001);
    }

    /// Inserts 500 prepared 16-dimensional vectors into an empty `idx`, runs 50 queries at ef 64,
    /// checks each answer is best first and scored like `metric` (cosine and dot: the inner
    /// product; L2: the negative distance), and returns how many found the exact nearest first.
    pub(crate) fn top1_hits(idx: &dyn VectorIndex, metric: Metric, seed: u64) -> usize {
        let mut next = lcg(seed);
        let mut data = Vec::new();
        for id in 0..500u64 {
            let mut v: Vec<f32> = (0..16).map(|_| next()).collect();
            metric.prepare(&mut v).unwrap();
            idx.insert(id, &v);
            data.push(v);
        }
        assert_eq!(idx.len(), 500);
        let mut hits = 0;
        for _ in 0..50 {
            let mut q: Vec<f32> = (0..16).map(|_| next()).collect();
            metric.prepare(&mut q).unwrap();
            let score = |v: &Vec<f32>| metric.score(&q, v);
            let best = (0..data.len()).max_by(|&a, &b| score(&data[a]).total_cmp(&score(&data[b]))).unwrap();
            let got = idx.search(&q, 3, 64);
            assert_eq!(got.len(), 3);
            assert!(got.windows(2).all(|w| w[0].score >= w[1].score), "{metric:?}: not best first");
            let want = score(&data[got[0].id as usize]);
            assert!((got[0].score - want).abs() < 1e-3, "{metric:?}: score {} vs {want}", got[0].score);
            if got[0].id == best as u64 {
                hits += 1;
            }
        }
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both backends: removed ids never come back, a removed id can be inserted again with a
    /// new vector, and searches running beside inserts and removals only see held ids.
    #[test]
    fn removal_hides_ids_and_reinsertion_replaces_the_vector_on_both_backends() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        for kind in IndexKind::ALL {
            let idx: Arc<dyn VectorIndex> = Arc::from(
                build(&IndexParams {
                    kind,
                    metric: Metric::Cosine,
                    dim: 8,
                    m: 8,
                    ef_construction: 64,
                    ef_search: 64,
                    quantization: Quantization::None,
                    max_elements: 16,
                    threads: 6,
                })
                .unwrap(),
            );
            let vector = |seed: u64| {
                let mut next = testing::lcg(seed);
                let mut v: Vec<f32> = (0..8).map(|_| next()).collect();
                Metric::Cosine.prepare(&mut v).unwrap();
                v
            };
            for id in 0..400u64 {
                idx.insert(id, &vector(id));
            }
            // Even ids are removed while readers search: a reader may see an even id only
            // before its removal returned, which it checks against a published watermark.
            let removed_below = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let done = Arc::new(AtomicBool::new(false));
            let readers: Vec<_> = (0..3u64)
                .map(|t| {
                    let (idx, removed_below, done) = (Arc::clone(&idx), Arc::clone(&removed_below), Arc::clone(&done));
                    std::thread::spawn(move || {
                        let mut n = 0u64;
                        while !done.load(Ordering::Acquire) || n < 200 {
                            let below = removed_below.load(Ordering::Acquire);
                            for hit in idx.search(&vector(1000 + t * 7919 + n), 10, 64) {
                                assert!(
                                    hit.id % 2 == 1 || hit.id >= below,
                                    "{kind:?}: removed id {} returned (removed below {below})",
                                    hit.id
                                );
                            }
                            n += 1;
                        }
                    })
                })
                .collect();
            for id in (0..400u64).step_by(2) {
                assert!(idx.remove(id), "{kind:?}: {id} was held");
                removed_below.store(id + 1, Ordering::Release);
            }
            done.store(true, Ordering::Release);
            for r in readers {
                r.join().unwrap();
            }
            assert!(!idx.remove(0), "{kind:?}: removing twice");
            assert_eq!(idx.len(), 200, "{kind:?}");
            // Id 1 gets the vector of id 3 (a replacement): the query for that vector finds id
            // 1 with a perfect score, and 3 too, and nothing removed.
            assert!(idx.remove(1));
            idx.insert(1, &vector(3));
            let hits = idx.search(&vector(3), 5, 64);
            assert!(hits.iter().any(|h| h.id == 1 && h.score > 0.999), "{kind:?}: {hits:?}");
            assert!(hits.iter().any(|h| h.id == 3), "{kind:?}: {hits:?}");
            assert!(hits.iter().all(|h| h.id % 2 == 1), "{kind:?}: {hits:?}");
            assert_eq!(hits.iter().filter(|h| h.id == 1).count(), 1, "{kind:?}: one vector per id");
            // Removed ids may be inserted again: usearch reuses their slots.
            for id in (0..400u64).step_by(2) {
                idx.insert(id, &vector(id));
            }
            assert_eq!(idx.len(), 400, "{kind:?}");
            let hits = idx.search(&vector(10), 1, 64);
            assert_eq!(hits[0].id, 10, "{kind:?}");
        }
    }

    #[test]
    fn cosine_prepare_normalises_and_refuses_zero() {
        let mut v = vec![3.0, 4.0];
        Metric::Cosine.prepare(&mut v).unwrap();
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert!(Metric::Cosine.prepare(&mut [0.0, 0.0]).is_err());
        let mut w = vec![3.0, 4.0];
        Metric::L2.prepare(&mut w).unwrap();
        assert_eq!(w, vec![3.0, 4.0]);
    }

    #[test]
    fn dot_matches_naive_for_odd_lengths() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.1).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }
}
