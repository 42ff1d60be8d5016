//! Our own HNSW graph core (Malkov & Yashunin, "Efficient and robust approximate nearest
//! neighbor search using Hierarchical Navigable Small World graphs", TPAMI 2018), laid out and
//! searched the way hnswlib 0.8 does (`hnswlib/hnswalg.h`: `addPoint`, `searchBaseLayer`,
//! `getNeighborsByHeuristic2`, `mutuallyConnectNewElement`), with one difference that matters
//! to this engine: a search never takes a lock, so recall runs beside inserts.
//!
//! **Why it exists.** Issue 14 asks for indexed ingest at least as fast as hnswlib's raw
//! 2-thread build and queries as fast at equal recall. USearch 2.26 falls short of both on
//! GloVe-50 (docs/benchmarks.md: raw insert ~0.65 of hnswlib, queries 1.7–2.3 × slower at equal
//! recall; three patches to USearch measured without effect). hnswlib itself is documented as
//! not safe for `add_items` beside `knn_query` (its README, "Thread-safe with other add_items
//! calls, but not with knn_query"), so it cannot sit behind a seam that searches while it
//! inserts. The `engram` backend ([`super::engram`]) puts it behind the index seam; measured raw
//! with `benches/examples/graph_raw.rs`.
//!
//! **Layout.** Nodes live in buckets that double in size (256, 512, 1,024, … nodes) and never
//! move, so a reader never sees a reallocation. Per node: the `f32` vector (`dim` values), the
//! level-0 links (`1 + M0` words: count, then up to `M0 = 2·M` node numbers), the upper links
//! for a node above level 0 (`level × (1 + M)` words), its level, its id and a lock.
//!
//! **Concurrency.** A node number comes from an atomic counter; its vector, id, level and upper
//! links are written by the inserting thread alone, before any other thread can learn the
//! number. A number is published only by a `Release` store into a link list (or into the entry
//! point), and every reader loads links and the entry point with `Acquire`, so whatever reaches
//! a node sees its vector. Link lists change only under the node's lock, one lock at a time (no
//! lock order, no deadlock), slots first and the count last; a reader that races a rewrite
//! reads a mix of old and new neighbours, each of them a published node, which can only make
//! that one step of its search slightly worse.
//!
//! The publication order is modelled with loom (`loom-tests/tests/graph.rs`: a search beside
//! an insert that moves the entry point, two inserts beside each other across a bucket
//! boundary, a removal beside an insert), with every vector read checked against its write.

use super::kernels::{self, Kernel};
#[cfg(engram_loom)]
use crate::sync::VectorAccess;
use crate::sync::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Mutex, OnceLock, Ordering};
use std::cell::RefCell;
#[cfg(engram_loom)]
use std::cell::UnsafeCell;
use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;

/// Nodes in the first bucket (a power of two); bucket `b` holds `FIRST << b`. Under loom 4, so
/// a model of a few nodes crosses into a second bucket.
const FIRST_BITS: u32 = if cfg!(engram_loom) { 2 } else { 8 };
const FIRST: usize = 1 << FIRST_BITS;
/// Buckets: `FIRST × (2^BUCKETS − 1)` nodes in all, more than `u32` node numbers reach.
const BUCKETS: usize = 33 - FIRST_BITS as usize;
/// Bytes the id map (`DashMap<u64, u32>`) holds per id: the entry (16 bytes with padding)
/// and its share of hashbrown's control bytes and spare capacity.
const ID_MAP_ENTRY_BYTES: usize = 32;
/// The entry point of an empty graph.
const EMPTY: u64 = u64::MAX;
/// The highest level a node may draw (hnswlib draws unbounded; at `M = 16` level 16 needs a
/// draw below 16⁻¹⁶).
const MAX_LEVEL: usize = 16;

/// Which distance the graph orders by (lower is closer): `1 − a·b` on prepared vectors (cosine
/// and dot) or the squared Euclidean distance.
pub use kernels::Kind as DistanceKind;

/// Bucket `b` and the offset in it of node `n`.
#[inline]
fn locate(n: u32) -> (usize, usize) {
    let j = n as usize + FIRST;
    let b = (usize::BITS - 1 - j.leading_zeros()) as usize - FIRST_BITS as usize;
    (b, j - (FIRST << b))
}

/// One bucket of nodes.
struct Bucket {
    /// Per node `1 + M0 + dim` words, hnswlib's level-0 layout: the node's level-0 link count,
    /// its links, then its vector's `f32` values (written once, before publication). One block
    /// per node: a search expands a node soon after it read the node's vector, and finds the
    /// list in the cache lines beside it.
    #[cfg(not(engram_loom))]
    level0: Box<[AtomicU32]>,
    /// Under loom: `cap × dim` values; node `o`'s vector at `o × dim`.
    #[cfg(engram_loom)]
    vectors: Box<[UnsafeCell<f32>]>,
    /// Per node, what stands for its vector in a loom model.
    #[cfg(engram_loom)]
    vector_access: Box<[VectorAccess]>,
    /// Under loom: `cap × (1 + M0)` words, per node its level-0 link count, then its links.
    #[cfg(engram_loom)]
    links0: Box<[AtomicU32]>,
    /// Per node its links above level 0: `level × (1 + M)` words, set once before publication.
    upper: Box<[OnceLock<Box<[AtomicU32]>>]>,
    levels: Box<[AtomicU8]>,
    ids: Box<[AtomicU64]>,
    deleted: Box<[AtomicBool]>,
    locks: Box<[Mutex<()>]>,
}

// SAFETY: under loom `vectors` is the only field that is not `Sync` on its own (outside loom
// every field is). A node's values are written by the one thread that drew the node's number
// from `Graph::next`, before the number is published with a `Release` store; every other thread
// reads them only after an `Acquire` load that saw the number, and nothing writes them again
// (`Bucket::vector_ptr`).
#[cfg(engram_loom)]
unsafe impl Sync for Bucket {}

impl Bucket {
    #[cfg(not(engram_loom))]
    fn new(cap: usize, dim: usize, m0: usize) -> Self {
        // SAFETY: all-zero bytes are a valid `AtomicU32`, `AtomicU8`, `AtomicU64` and
        // `AtomicBool` (each has its integer's representation; std docs), and the bits of
        // `0.0f32` where `level0` holds a vector.
        unsafe {
            Self {
                level0: zeroed(cap * (1 + m0 + dim)),
                upper: (0..cap).map(|_| OnceLock::new()).collect(),
                levels: zeroed(cap),
                ids: zeroed(cap),
                deleted: zeroed(cap),
                locks: (0..cap).map(|_| Mutex::new(())).collect(),
            }
        }
    }

    /// Under loom every atomic is made one by one (loom's are not valid as zeroed memory).
    #[cfg(engram_loom)]
    fn new(cap: usize, dim: usize, m0: usize) -> Self {
        fn each<T>(n: usize, f: impl Fn() -> T) -> Box<[T]> {
            (0..n).map(|_| f()).collect()
        }
        Self {
            vectors: each(cap * dim, || UnsafeCell::new(0.0)),
            vector_access: each(cap, || VectorAccess::new(())),
            links0: each(cap * (1 + m0), || AtomicU32::new(0)),
            upper: each(cap, OnceLock::new),
            levels: each(cap, || AtomicU8::new(0)),
            ids: each(cap, || AtomicU64::new(0)),
            deleted: each(cap, || AtomicBool::new(false)),
            locks: each(cap, || Mutex::new(())),
        }
    }

    /// Node `o`'s level-0 list, `[count, link…]` (`1 + m0` words), in a graph of `dim`
    /// dimensions.
    #[inline]
    fn links0(&self, o: usize, dim: usize, m0: usize) -> &[AtomicU32] {
        #[cfg(not(engram_loom))]
        {
            let start = o * (1 + m0 + dim);
            &self.level0[start..start + 1 + m0]
        }
        #[cfg(engram_loom)]
        {
            let _ = dim;
            &self.links0[o * (1 + m0)..(o + 1) * (1 + m0)]
        }
    }

    /// Where node `o`'s `dim` values start. They are written through it only by the thread
    /// that drew the node's number, before the number is published, and only read after that
    /// (see `Graph::vector` and `Graph::write_vector`). `AtomicU32` has the in-memory
    /// representation of `u32` and `UnsafeCell<f32>` the layout of `f32` (std docs), both
    /// allow writes through a pointer from a shared reference, and `f32` has `u32`'s size and
    /// alignment.
    #[inline]
    fn vector_ptr(&self, o: usize, dim: usize, m0: usize) -> *mut f32 {
        #[cfg(not(engram_loom))]
        {
            let start = o * (1 + m0 + dim) + 1 + m0;
            self.level0[start..start + dim].as_ptr().cast::<f32>().cast_mut()
        }
        #[cfg(engram_loom)]
        {
            let _ = m0;
            self.vectors[o * dim..(o + 1) * dim].as_ptr().cast::<f32>().cast_mut()
        }
    }

    /// Runs `f`, which writes node `o`'s vector; under loom, recorded as a write of it.
    #[inline]
    fn writing_vector(&self, o: usize, f: impl FnOnce()) {
        #[cfg(engram_loom)]
        self.vector_access[o].with_mut(|_| f());
        #[cfg(not(engram_loom))]
        {
            let _ = o;
            f();
        }
    }

    /// Under loom, records a read of node `o`'s vector; nothing otherwise.
    #[inline]
    fn reading_vector(&self, o: usize) {
        #[cfg(engram_loom)]
        self.vector_access[o].with(|_| ());
        #[cfg(not(engram_loom))]
        let _ = o;
    }
}

/// `n > 0` zero-filled `T`s from the allocator's zeroed memory: for a large bucket that is
/// fresh pages, which stay out of resident memory until a node is written to them (a bucket
/// doubles the one before it, so it starts mostly empty).
///
/// # Safety
/// All-zero bytes must be a valid `T`.
#[cfg(not(engram_loom))]
unsafe fn zeroed<T>(n: usize) -> Box<[T]> {
    let layout = std::alloc::Layout::array::<T>(n).expect("a bucket fits in isize::MAX bytes");
    assert!(layout.size() > 0, "zeroed: an empty or zero-sized allocation");
    // SAFETY: the layout has a non-zero size; the caller vouches for zero bytes being valid
    // `T`s, and `Box<[T]>` frees with `Layout::array::<T>(n)`, the layout allocated here.
    unsafe {
        let p = std::alloc::alloc_zeroed(layout).cast::<T>();
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, n))
    }
}

/// A candidate: distance to the query (lower is closer) and node number, ordered by distance.
#[derive(Clone, Copy, Debug)]
struct Cand {
    d: f32,
    n: u32,
}
impl PartialEq for Cand {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == CmpOrdering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> CmpOrdering {
        self.d.total_cmp(&o.d).then(self.n.cmp(&o.n))
    }
}
/// The same, ordered nearest first in a max-heap.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Near(std::cmp::Reverse<Cand>);

/// A per-thread visited set: one tag per node, a search's tag bumped instead of clearing.
struct Visited {
    tags: Vec<u16>,
    tag: u16,
    /// Scratch for one step's unvisited neighbours (kept to reuse its allocation).
    batch: Vec<u32>,
}

#[cfg(not(engram_loom))]
thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { tags: Vec::new(), tag: 0, batch: Vec::new() }) };
}
// Loom runs its threads on one OS thread: a std thread-local would be shared between them.
#[cfg(engram_loom)]
loom::thread_local! {
    static VISITED: RefCell<Visited> = RefCell::new(Visited { tags: Vec::new(), tag: 0, batch: Vec::new() });
}

impl Visited {
    /// Starts a search; `n` is the node count it expects to reach (tags grow past it).
    fn start(&mut self, n: usize) {
        if self.tags.len() < n {
            self.tags.resize(n.next_power_of_two(), 0);
        }
        self.tag = self.tag.wrapping_add(1);
        if self.tag == 0 {
            self.tags.iter_mut().for_each(|t| *t = 0);
            self.tag = 1;
        }
    }
    /// Marks `n`; true when it was not marked in this search. A node published after the
    /// search started grows the tags, so no node is visited twice.
    #[inline]
    fn insert(&mut self, n: u32) -> bool {
        let i = n as usize;
        if i >= self.tags.len() {
            self.tags.resize((i + 1).next_power_of_two(), 0);
        }
        let t = &mut self.tags[i];
        if *t == self.tag {
            return false;
        }
        *t = self.tag;
        true
    }
}

/// One search result of [`Graph::search`]: the id inserted with the vector and its distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// The id given to [`Graph::insert`].
    pub id: u64,
    /// The distance [`DistanceKind`] orders by (lower is closer).
    pub distance: f32,
}

/// An HNSW graph of `f32` vectors of one dimension (see the module docs).
pub struct Graph {
    dim: usize,
    m: usize,
    m0: usize,
    ef_construction: usize,
    kind: DistanceKind,
    kernel: Kernel,
    /// `1 / ln M`: a node's level is `⌊−ln(U) × level_mult⌋` for `U` uniform in (0, 1].
    level_mult: f64,
    buckets: Box<[OnceLock<Bucket>]>,
    /// Node numbers drawn (inserted or being inserted).
    next: AtomicU32,
    /// Inserts finished, minus removals.
    live: AtomicUsize,
    /// Removed nodes still in the graph.
    removed: AtomicUsize,
    /// Words of upper link lists allocated.
    upper_words: AtomicUsize,
    /// The entry point: `level << 32 | node`, or [`EMPTY`].
    entry: AtomicU64,
    /// Held to set the entry point (the first node, or a node above the top level).
    entry_lock: Mutex<()>,
    /// Id → node number of every held vector.
    nodes: dashmap::DashMap<u64, u32>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph").field("dim", &self.dim).field("m", &self.m).field("len", &self.len()).finish()
    }
}

impl Graph {
    /// An empty graph of `dim`-dimensional vectors, HNSW `M = m` (`M0 = 2·m` at level 0) and
    /// `ef_construction`, ordered by `kind`. Allocates nothing per node until the first insert.
    ///
    /// # Errors
    /// When `dim` is 0 or `m` is outside 2..=256.
    pub fn new(dim: usize, m: usize, ef_construction: usize, kind: DistanceKind) -> Result<Self, String> {
        if dim == 0 {
            return Err("dim: must be at least 1".into());
        }
        if !(2..=256).contains(&m) {
            return Err(format!("m: {m} is outside 2..=256"));
        }
        Ok(Self {
            dim,
            m,
            m0: 2 * m,
            ef_construction: ef_construction.max(m),
            kind,
            kernel: kernels::kernel(kind),
            level_mult: 1.0 / (m as f64).ln(),
            buckets: (0..BUCKETS).map(|_| OnceLock::new()).collect(),
            next: AtomicU32::new(0),
            live: AtomicUsize::new(0),
            removed: AtomicUsize::new(0),
            upper_words: AtomicUsize::new(0),
            entry: AtomicU64::new(EMPTY),
            entry_lock: Mutex::new(()),
            nodes: dashmap::DashMap::new(),
        })
    }

    /// Vectors inserted and not removed.
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// True when no vector is held.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))] // the backend asks `len`
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removed nodes the graph still routes through (tombstones).
    pub fn tombstones(&self) -> usize {
        self.removed.load(Ordering::Acquire)
    }

    /// Resident bytes of the nodes: per slot of every bucket the parts written when the bucket
    /// is made (the upper-list cell and the lock), per node drawn the parts written when it is
    /// inserted (vector, level-0 list, level, id, removed flag) and its id-map entry, plus the
    /// upper link lists. A bucket's other parts come from the allocator zeroed and stay out of
    /// resident memory until a node is written to them.
    pub fn memory_bytes(&self) -> usize {
        let per_slot = std::mem::size_of::<OnceLock<Box<[AtomicU32]>>>() + std::mem::size_of::<Mutex<()>>();
        let per_node = self.dim * 4 + (1 + self.m0) * 4 + 1 + 8 + 1 + ID_MAP_ENTRY_BYTES;
        let slots: usize = (0..BUCKETS).filter(|&b| self.buckets[b].get().is_some()).map(|b| FIRST << b).sum();
        let drawn = self.next.load(Ordering::Acquire) as usize;
        slots * per_slot + drawn * per_node + self.upper_words.load(Ordering::Acquire) * 4
    }

    #[inline]
    fn bucket(&self, b: usize) -> &Bucket {
        self.buckets[b].get_or_init(|| Bucket::new(FIRST << b, self.dim, self.m0))
    }

    /// The bucket and offset of a published node (its bucket exists).
    #[inline]
    fn node(&self, n: u32) -> (&Bucket, usize) {
        let (b, o) = locate(n);
        (self.bucket(b), o)
    }

    #[inline]
    fn vector(&self, n: u32) -> &[f32] {
        let (bk, o) = self.node(n);
        bk.reading_vector(o);
        // SAFETY: `dim` values of the node's block (`Bucket::vector_ptr`); a published node's
        // values are never written again.
        unsafe { std::slice::from_raw_parts(bk.vector_ptr(o, self.dim, self.m0), self.dim) }
    }

    /// Writes node `n`'s vector.
    ///
    /// # Safety
    /// No other thread may read or write node `n`'s vector meanwhile: `n` is not published yet.
    unsafe fn write_vector(&self, n: u32, vector: &[f32]) {
        let (bk, o) = self.node(n);
        let len = vector.len().min(self.dim);
        // SAFETY: `len` values of the node's block (`Bucket::vector_ptr`), which the caller
        // vouches nothing else touches; `vector` is another allocation.
        bk.writing_vector(o, || unsafe {
            std::ptr::copy_nonoverlapping(vector.as_ptr(), bk.vector_ptr(o, self.dim, self.m0), len)
        });
    }

    /// Node `n`'s links at `level`: `[count, link…]`; empty when `n` has no such level.
    #[inline]
    fn links(&self, n: u32, level: usize) -> &[AtomicU32] {
        let (bk, o) = self.node(n);
        if level == 0 {
            bk.links0(o, self.dim, self.m0)
        } else {
            match bk.upper[o].get() {
                Some(u) if u.len() >= level * (1 + self.m) => &u[(level - 1) * (1 + self.m)..level * (1 + self.m)],
                _ => &[],
            }
        }
    }

    #[inline]
    fn distance(&self, a: &[f32], b: &[f32]) -> f32 {
        (self.kernel)(a, b)
    }

    /// The level node `n` draws: hnswlib's `−ln(U) / ln M`, `U` from a hash of `n`.
    fn level_of(&self, n: u32) -> usize {
        let mut z = (n as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // Uniform in (0, 1]: the top 53 bits, plus one, over 2^53.
        let u = ((z >> 11) + 1) as f64 / (1u64 << 53) as f64;
        ((-u.ln() * self.level_mult) as usize).min(MAX_LEVEL)
    }

    /// Inserts `vector` (prepared: unit length for cosine) under `id`. Inserts run
    /// concurrently with each other, with searches and with removals. The caller keeps ids
    /// unique among held vectors (the engine does).
    ///
    /// # Errors
    /// When `vector` is not `dim` long or the graph holds `u32::MAX − 1` nodes.
    pub fn insert(&self, id: u64, vector: &[f32]) -> Result<(), String> {
        if vector.len() != self.dim {
            return Err(format!("vector: {} values where the graph holds {}", vector.len(), self.dim));
        }
        // Node numbers stop below `u32::MAX` (never wrapping onto node 0).
        let n = self
            .next
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |x| x.checked_add(1).filter(|&y| y < u32::MAX))
            .map_err(|_| format!("the graph holds {} nodes, its most", u32::MAX - 1))?;
        let level = self.level_of(n);
        {
            // SAFETY: node `n` is this thread's alone until published below.
            unsafe { self.write_vector(n, vector) };
            let (bk, o) = self.node(n);
            bk.ids[o].store(id, Ordering::Relaxed);
            bk.levels[o].store(level as u8, Ordering::Relaxed);
            if level > 0 {
                let words = level * (1 + self.m);
                let _ = bk.upper[o].set((0..words).map(|_| AtomicU32::new(0)).collect());
                self.upper_words.fetch_add(words, Ordering::AcqRel);
            }
        }
        self.nodes.insert(id, n);
        let mut entry = self.entry.load(Ordering::Acquire);
        if entry == EMPTY {
            let _g = self.entry_lock.lock();
            entry = self.entry.load(Ordering::Acquire);
            if entry == EMPTY {
                self.entry.store(((level as u64) << 32) | n as u64, Ordering::Release);
                self.live.fetch_add(1, Ordering::AcqRel);
                return Ok(());
            }
        }
        let (mut cur, top) = ((entry & 0xFFFF_FFFF) as u32, (entry >> 32) as usize);
        let mut cur_d = self.distance(vector, self.vector(cur));
        for l in (level + 1..=top).rev() {
            (cur, cur_d) = self.greedy(vector, cur, cur_d, l);
        }
        // Every level's candidates first, top down; then the links, bottom up. Linked top down
        // (as hnswlib does), the node would be reachable at an upper level while its level-0
        // list is still empty, and a search descending through it would find it alone: seen
        // as 1 hit of 21 in `index::testing::search_after_len`, and as worse links for the
        // inserts that descended through it.
        let mut levels = Vec::with_capacity(level.min(top) + 1);
        VISITED.with(|v| {
            let mut visited = v.borrow_mut();
            for l in (0..=level.min(top)).rev() {
                let found = self.search_layer(vector, cur, cur_d, self.ef_construction, l, &mut visited);
                if let Some(c) = found.iter().min() {
                    (cur, cur_d) = (c.n, c.d);
                }
                levels.push((l, found));
            }
        });
        for (l, found) in levels.into_iter().rev() {
            self.connect(n, found, l);
        }
        if level > top {
            let _g = self.entry_lock.lock();
            if level > (self.entry.load(Ordering::Acquire) >> 32) as usize {
                self.entry.store(((level as u64) << 32) | n as u64, Ordering::Release);
            }
        }
        self.live.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Removes `id`: once this returns no search returns it; the node stays in the graph as a
    /// tombstone that searches route through. True if the graph held `id`.
    pub fn remove(&self, id: u64) -> bool {
        let Some((_, n)) = self.nodes.remove(&id) else { return false };
        let (bk, o) = self.node(n);
        bk.deleted[o].store(true, Ordering::Release);
        self.live.fetch_sub(1, Ordering::AcqRel);
        self.removed.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// True when the graph holds `id` (inserted, not removed).
    pub fn holds(&self, id: u64) -> bool {
        self.nodes.contains_key(&id)
    }

    /// Every held (not removed) node with its id, in node order. Complete only while nothing
    /// inserts (a backend holds its inserts off); beside an insert, its node may be missed.
    pub(crate) fn live_nodes(&self) -> Vec<(u64, u32)> {
        let nodes = self.next.load(Ordering::Acquire).min(u32::MAX - 1);
        (0..nodes)
            .filter(|&n| !self.is_removed(n))
            .map(|n| {
                let (bk, o) = self.node(n);
                (bk.ids[o].load(Ordering::Acquire), n)
            })
            .collect()
    }

    /// Node `n`'s vector unless it was removed. `n` must come from [`Graph::live_nodes`] (a
    /// published node).
    pub(crate) fn live_vector(&self, n: u32) -> Option<&[f32]> {
        (!self.is_removed(n)).then(|| self.vector(n))
    }

    /// Greedy descent at `level` from `cur`: the closest node a walk of improving steps reaches.
    fn greedy(&self, q: &[f32], mut cur: u32, mut cur_d: f32, level: usize) -> (u32, f32) {
        loop {
            let mut changed = false;
            let links = self.links(cur, level);
            let count = links.first().map_or(0, |c| c.load(Ordering::Acquire) as usize);
            for slot in links.iter().skip(1).take(count) {
                let c = slot.load(Ordering::Acquire);
                let d = self.distance(q, self.vector(c));
                if d < cur_d {
                    (cur, cur_d, changed) = (c, d, true);
                }
            }
            if !changed {
                return (cur, cur_d);
            }
        }
    }

    /// hnswlib's `searchBaseLayer`: the `ef` nearest nodes to `q` at `level` reachable from
    /// `ep`, removed nodes routed through but left out; a max-heap (farthest on top).
    fn search_layer(
        &self,
        q: &[f32],
        ep: u32,
        ep_d: f32,
        ef: usize,
        level: usize,
        visited: &mut Visited,
    ) -> BinaryHeap<Cand> {
        visited.start(self.next.load(Ordering::Acquire) as usize);
        let mut top = BinaryHeap::with_capacity(ef + 1);
        let mut cands = BinaryHeap::with_capacity(ef * 2);
        visited.insert(ep);
        let mut bound = f32::INFINITY;
        if !self.is_removed(ep) {
            top.push(Cand { d: ep_d, n: ep });
            bound = ep_d;
        }
        cands.push(Near(std::cmp::Reverse(Cand { d: ep_d, n: ep })));
        let mut batch = std::mem::take(&mut visited.batch);
        while let Some(Near(std::cmp::Reverse(c))) = cands.pop() {
            if c.d > bound && top.len() >= ef {
                break;
            }
            // The unvisited neighbours first, their vectors prefetched, then the distances: the
            // loads of all of them overlap instead of one cache miss after another.
            let links = self.links(c.n, level);
            let count = links.first().map_or(0, |x| x.load(Ordering::Acquire) as usize);
            batch.clear();
            for slot in links.iter().skip(1).take(count) {
                let n = slot.load(Ordering::Acquire);
                if visited.insert(n) {
                    batch.push(n);
                    self.prefetch(n);
                }
            }
            for &n in &batch {
                let d = self.distance(q, self.vector(n));
                if top.len() < ef || d < bound {
                    cands.push(Near(std::cmp::Reverse(Cand { d, n })));
                    if !self.is_removed(n) {
                        top.push(Cand { d, n });
                        if top.len() > ef {
                            top.pop();
                        }
                    }
                    if let Some(f) = top.peek() {
                        bound = f.d;
                    }
                }
            }
        }
        visited.batch = batch;
        top
    }

    /// Asks the CPU to start loading node `n`'s vector (every cache line of it).
    #[inline]
    fn prefetch(&self, n: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let v = self.vector(n);
            for line in (0..v.len()).step_by(16) {
                // SAFETY: a prefetch is a hint with no effect on memory; the address is inside
                // `v`.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(v.as_ptr().add(line).cast::<i8>()) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = n;
    }

    #[inline]
    fn is_removed(&self, n: u32) -> bool {
        let (bk, o) = self.node(n);
        bk.deleted[o].load(Ordering::Acquire)
    }

    /// hnswlib's `getNeighborsByHeuristic2`: from `cands` (any order), nearest first, keeps a
    /// candidate unless a kept one is closer to it than the base is; at most `max`.
    fn heuristic(&self, mut cands: Vec<Cand>, max: usize) -> Vec<Cand> {
        cands.sort_unstable();
        if cands.len() < max {
            return cands;
        }
        let mut kept: Vec<Cand> = Vec::with_capacity(max);
        for c in cands {
            if kept.len() >= max {
                break;
            }
            let v = self.vector(c.n);
            if kept.iter().all(|k| self.distance(v, self.vector(k.n)) >= c.d) {
                kept.push(c);
            }
        }
        kept
    }

    /// hnswlib's `mutuallyConnectNewElement` at `level`: node `n` links to the heuristic's
    /// choice of `found` (at most `M`), and each of them links back, re-running the heuristic
    /// when its list is full.
    fn connect(&self, n: u32, found: BinaryHeap<Cand>, level: usize) {
        let chosen = self.heuristic(found.into_vec(), self.m);
        let max = if level == 0 { self.m0 } else { self.m };
        {
            let (bk, o) = self.node(n);
            let _g = bk.locks[o].lock();
            let links = self.links(n, level);
            for (slot, c) in links.iter().skip(1).zip(&chosen) {
                slot.store(c.n, Ordering::Release);
            }
            if let Some(count) = links.first() {
                count.store(chosen.len().min(links.len() - 1) as u32, Ordering::Release);
            }
        }
        let v = self.vector(n);
        for c in &chosen {
            let (bk, o) = self.node(c.n);
            let _g = bk.locks[o].lock();
            let links = self.links(c.n, level);
            let Some(count) = links.first() else { continue };
            let len = (count.load(Ordering::Acquire) as usize).min(links.len() - 1);
            if links[1..=len].iter().any(|s| s.load(Ordering::Acquire) == n) {
                continue;
            }
            if len < max {
                links[1 + len].store(n, Ordering::Release);
                count.store(len as u32 + 1, Ordering::Release);
                continue;
            }
            let base = self.vector(c.n);
            let mut cands: Vec<Cand> = links[1..=len]
                .iter()
                .map(|s| {
                    let x = s.load(Ordering::Acquire);
                    Cand { d: self.distance(base, self.vector(x)), n: x }
                })
                .collect();
            cands.push(Cand { d: self.distance(base, v), n });
            let kept = self.heuristic(cands, max);
            for (slot, k) in links[1..].iter().zip(&kept) {
                slot.store(k.n, Ordering::Release);
            }
            count.store(kept.len() as u32, Ordering::Release);
        }
    }

    /// The `k` nearest held vectors to `query` (prepared like the inserts), nearest first,
    /// exploring `max(ef, k)` candidates at level 0 (HNSW's `ef_search`). Never blocks. Beside
    /// an upsert (the id removed, then inserted again) the answer holds the id once, at its old
    /// or its new vector; a node removed before the answer is made is left out.
    ///
    /// # Errors
    /// When `query` is not `dim` long.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<Hit>, String> {
        if query.len() != self.dim {
            return Err(format!("query: {} values where the graph holds {}", query.len(), self.dim));
        }
        let entry = self.entry.load(Ordering::Acquire);
        if entry == EMPTY || k == 0 {
            return Ok(Vec::new());
        }
        let (mut cur, top) = ((entry & 0xFFFF_FFFF) as u32, (entry >> 32) as usize);
        let mut cur_d = self.distance(query, self.vector(cur));
        for l in (1..=top).rev() {
            (cur, cur_d) = self.greedy(query, cur, cur_d, l);
        }
        let found = VISITED.with(|v| self.search_layer(query, cur, cur_d, ef.max(k), 0, &mut v.borrow_mut()));
        // A node removed while the layer was searched is left out now. An upsert removes the
        // id's old node before it inserts the new one, so once the new node was reached (its
        // link read with `Acquire`), the old one reads as removed here: without this check an
        // answer could hold the id twice (seen within seconds in
        // `index::testing::upserts_beside_searches`).
        Ok(found
            .into_sorted_vec()
            .into_iter()
            .filter(|c| !self.is_removed(c.n))
            .take(k)
            .map(|c| {
                let (bk, o) = self.node(c.n);
                Hit { id: bk.ids[o].load(Ordering::Relaxed), distance: c.d }
            })
            .collect())
    }
}

/// The first bytes of a graph written by [`Graph::write`] (format version 1).
const MAGIC: &[u8; 8] = b"ENGRAPH1";

impl Graph {
    /// Writes the graph to `out` (little-endian): [`MAGIC`], `dim`, `M`, `ef_construction`, the
    /// distance kind, the node count, the entry point and the tombstone count, then per node
    /// its id, level, removed flag, vector (`dim` × `f32`), level-0 list (`1 + M0` words) and
    /// upper lists (`level × (1 + M)` words). [`Graph::read`] reads it back.
    ///
    /// Call it only while nothing inserts or removes (a backend holds its inserts off);
    /// searches may run. Beside an insert the file would still read back as a valid graph, but
    /// its counts could disagree with its nodes.
    ///
    /// # Errors
    /// `out`'s error.
    pub fn write(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let nodes = self.next.load(Ordering::Acquire).min(u32::MAX - 1);
        out.write_all(MAGIC)?;
        for v in [self.dim, self.m, self.ef_construction] {
            out.write_all(&(v as u64).to_le_bytes())?;
        }
        out.write_all(&[u8::from(self.kind == DistanceKind::L2sq)])?;
        out.write_all(&(nodes as u64).to_le_bytes())?;
        out.write_all(&self.entry.load(Ordering::Acquire).to_le_bytes())?;
        out.write_all(&(self.removed.load(Ordering::Acquire) as u64).to_le_bytes())?;
        let word =
            |out: &mut dyn std::io::Write, a: &AtomicU32| out.write_all(&a.load(Ordering::Acquire).to_le_bytes());
        for n in 0..nodes {
            let (bk, o) = self.node(n);
            out.write_all(&bk.ids[o].load(Ordering::Acquire).to_le_bytes())?;
            let level = bk.levels[o].load(Ordering::Acquire);
            out.write_all(&[level, u8::from(bk.deleted[o].load(Ordering::Acquire))])?;
            for x in self.vector(n) {
                out.write_all(&x.to_le_bytes())?;
            }
            for a in self.links(n, 0) {
                word(out, a)?;
            }
            for l in 1..=level as usize {
                let links = self.links(n, l);
                for i in 0..1 + self.m {
                    // A node's upper lists exist from before it was published; a missing one
                    // (never seen) is written empty.
                    word(out, links.get(i).unwrap_or(&AtomicU32::new(0)))?;
                }
            }
        }
        Ok(())
    }

    /// Reads a graph written by [`Graph::write`] from `input`, `len` bytes long, for vectors of
    /// `dim` dimensions measured by `kind`.
    ///
    /// # Errors
    /// A message naming what does not match: the magic, the dimension or distance kind, a
    /// count the `len` bytes cannot hold (nothing is allocated past what the input can fill),
    /// a level above 16, a list longer than its capacity, a link or entry point to a node that
    /// does not exist, or a read error.
    pub fn read(input: &mut impl std::io::Read, len: u64, dim: usize, kind: DistanceKind) -> Result<Self, String> {
        let fail = |e: std::io::Error| format!("reading the graph: {e}");
        let mut b8 = [0u8; 8];
        input.read_exact(&mut b8).map_err(fail)?;
        if &b8 != MAGIC {
            return Err(format!("not a graph checkpoint (magic {b8:02x?})"));
        }
        let mut u64_in = |input: &mut dyn std::io::Read| -> Result<u64, String> {
            input.read_exact(&mut b8).map_err(fail)?;
            Ok(u64::from_le_bytes(b8))
        };
        let (saved_dim, m, ef_construction) = (u64_in(input)?, u64_in(input)?, u64_in(input)?);
        if saved_dim != dim as u64 {
            return Err(format!("the graph holds vectors of dimension {saved_dim}, not {dim}"));
        }
        let mut b1 = [0u8; 1];
        input.read_exact(&mut b1).map_err(fail)?;
        let saved_l2 = b1[0] == 1;
        if saved_l2 != (kind == DistanceKind::L2sq) {
            return Err(format!(
                "the graph was built for the {} distance",
                if saved_l2 { "L2" } else { "inner-product" }
            ));
        }
        let m = usize::try_from(m).map_err(|_| format!("m: {m} does not fit"))?;
        let ef_construction = usize::try_from(ef_construction.min(1 << 20)).unwrap_or(1 << 20);
        let g = Graph::new(dim, m, ef_construction, kind)?;
        let (nodes, entry, removed) = (u64_in(input)?, u64_in(input)?, u64_in(input)?);
        let per_node_min = 8 + 2 + 4 * dim as u64 + 4 * (1 + g.m0 as u64);
        if nodes >= u32::MAX as u64 || nodes.saturating_mul(per_node_min) > len {
            return Err(format!("the graph names {nodes} nodes, more than its {len} bytes hold"));
        }
        let nodes = nodes as u32;
        let check = |x: u32| if x < nodes { Ok(x) } else { Err(format!("a link to node {x} of {nodes}")) };
        let mut b4 = [0u8; 4];
        let mut u32_in = |input: &mut dyn std::io::Read| -> Result<u32, String> {
            input.read_exact(&mut b4).map_err(fail)?;
            Ok(u32::from_le_bytes(b4))
        };
        let mut live = 0usize;
        let mut vector = vec![0f32; dim];
        for n in 0..nodes {
            let mut head = [0u8; 10];
            input.read_exact(&mut head).map_err(fail)?;
            let id = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
            let (level, deleted) = (head[8] as usize, head[9] != 0);
            if level > MAX_LEVEL {
                return Err(format!("node {n} has level {level}, above {MAX_LEVEL}"));
            }
            for x in vector.iter_mut() {
                *x = f32::from_bits(u32_in(input)?);
            }
            // SAFETY: the graph is not shared yet: this thread is its only user.
            unsafe { g.write_vector(n, &vector) };
            let (bk, o) = g.node(n);
            bk.ids[o].store(id, Ordering::Relaxed);
            bk.levels[o].store(level as u8, Ordering::Relaxed);
            bk.deleted[o].store(deleted, Ordering::Relaxed);
            if level > 0 {
                let words = level * (1 + g.m);
                let _ = bk.upper[o].set((0..words).map(|_| AtomicU32::new(0)).collect());
                g.upper_words.fetch_add(words, Ordering::Relaxed);
            }
            for l in 0..=level {
                let links = g.links(n, l);
                let count = u32_in(input)?;
                if count as usize >= links.len() {
                    return Err(format!("node {n} has {count} links at level {l}, more than {}", links.len() - 1));
                }
                links[0].store(count, Ordering::Relaxed);
                for (i, slot) in links[1..].iter().enumerate() {
                    let x = u32_in(input)?;
                    // Slots past the count may hold stale numbers of real nodes, or 0.
                    slot.store(
                        if i < count as usize { check(x)? } else { x.min(nodes.saturating_sub(1)) },
                        Ordering::Relaxed,
                    );
                }
            }
            if !deleted {
                g.nodes.insert(id, n);
                live += 1;
            }
        }
        if entry != EMPTY {
            let (node, level) = ((entry & 0xFFFF_FFFF) as u32, (entry >> 32) as usize);
            check(node)?;
            let (bk, o) = g.node(node);
            if bk.levels[o].load(Ordering::Relaxed) as usize != level {
                return Err(format!("the entry point names level {level} for node {node}"));
            }
        } else if nodes > 0 {
            return Err(format!("{nodes} nodes and no entry point"));
        }
        g.next.store(nodes, Ordering::Release);
        g.entry.store(entry, Ordering::Release);
        g.live.store(live, Ordering::Release);
        // Every removed node is a tombstone; the saved count is informational.
        let _ = removed;
        g.removed.store(nodes as usize - live, Ordering::Release);
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::unit_vector;
    use super::*;
    use std::sync::Arc;

    #[test]
    fn buckets_cover_node_numbers_without_gaps() {
        let mut expect = (0usize, 0usize);
        for n in 0..100_000u32 {
            let (b, o) = locate(n);
            assert_eq!((b, o), expect, "node {n}");
            expect = if o + 1 == FIRST << b { (b + 1, 0) } else { (b, o + 1) };
        }
        let (b, _) = locate(u32::MAX - 1);
        assert!(b < BUCKETS);
    }

    #[test]
    fn bad_shapes_are_refused_with_the_field() {
        assert!(Graph::new(0, 16, 100, DistanceKind::L2sq).unwrap_err().starts_with("dim"));
        assert!(Graph::new(4, 1, 100, DistanceKind::L2sq).unwrap_err().starts_with("m:"));
        let g = Graph::new(4, 16, 100, DistanceKind::L2sq).unwrap();
        assert!(g.insert(1, &[0.0; 3]).unwrap_err().starts_with("vector"));
        assert!(g.search(&[0.0; 5], 1, 10).unwrap_err().starts_with("query"));
        assert!(g.search(&[0.0; 4], 1, 10).unwrap().is_empty());
    }

    /// Recall@10 at ef 64 against brute force on 3,000 random unit vectors of 32 dimensions.
    #[test]
    fn finds_the_exact_neighbours_of_most_queries() {
        let (dim, n) = (32, 3_000);
        let g = Graph::new(dim, 16, 100, DistanceKind::InnerProduct).unwrap();
        let data: Vec<Vec<f32>> = (0..n).map(|i| unit_vector(dim, i as u64)).collect();
        for (i, v) in data.iter().enumerate() {
            g.insert(1000 + i as u64, v).unwrap();
        }
        assert_eq!(g.len(), n);
        let (mut hit, mut total) = (0, 0);
        for q in 0..100 {
            let q = unit_vector(dim, 1_000_000 + q);
            let mut exact: Vec<(f32, u64)> =
                data.iter().enumerate().map(|(i, v)| (1.0 - super::super::dot(&q, v), 1000 + i as u64)).collect();
            exact.sort_by(|a, b| a.0.total_cmp(&b.0));
            let truth: Vec<u64> = exact[..10].iter().map(|e| e.1).collect();
            let got = g.search(&q, 10, 64).unwrap();
            assert_eq!(got.len(), 10);
            assert!(got.windows(2).all(|w| w[0].distance <= w[1].distance), "nearest first");
            hit += got.iter().filter(|h| truth.contains(&h.id)).count();
            total += 10;
        }
        let recall = hit as f64 / total as f64;
        assert!(recall >= 0.95, "recall@10 {recall}");
    }

    #[test]
    fn a_removed_id_is_never_returned_and_its_neighbours_stay_reachable() {
        let (dim, n) = (16, 2_000);
        let g = Graph::new(dim, 8, 64, DistanceKind::L2sq).unwrap();
        let data: Vec<Vec<f32>> = (0..n).map(|i| unit_vector(dim, i as u64)).collect();
        for (i, v) in data.iter().enumerate() {
            g.insert(i as u64, v).unwrap();
        }
        for i in (0..n).step_by(2) {
            assert!(g.remove(i as u64));
            assert!(!g.holds(i as u64));
        }
        assert!(!g.remove(0), "a second removal finds nothing");
        assert_eq!((g.len(), g.tombstones()), (n / 2, n / 2));
        let mut own_first = 0;
        for (i, v) in data.iter().enumerate() {
            let hits = g.search(v, 10, 64).unwrap();
            assert!(hits.iter().all(|h| h.id % 2 == 1), "a removed id came back");
            own_first += usize::from(i % 2 == 1 && hits[0].id == i as u64);
        }
        assert!(own_first * 100 >= (n / 2) * 98, "{own_first} of {} found themselves", n / 2);
    }

    #[test]
    fn a_written_graph_reads_back_answering_alike_and_takes_inserts_after() {
        let (dim, n) = (24, 3_000);
        let g = Graph::new(dim, 12, 80, DistanceKind::InnerProduct).unwrap();
        let data: Vec<Vec<f32>> = (0..n).map(|i| unit_vector(dim, i as u64)).collect();
        for (i, v) in data.iter().enumerate() {
            g.insert(i as u64 * 3, v).unwrap();
        }
        for i in (0..n).step_by(7) {
            g.remove(i as u64 * 3);
        }
        let mut file = Vec::new();
        g.write(&mut file).unwrap();
        let back = Graph::read(&mut file.as_slice(), file.len() as u64, dim, DistanceKind::InnerProduct).unwrap();
        assert_eq!((back.len(), back.tombstones()), (g.len(), g.tombstones()));
        assert!(!back.holds(0) && back.holds(3));
        for q in data.iter().step_by(50) {
            assert_eq!(back.search(q, 10, 40).unwrap(), g.search(q, 10, 40).unwrap());
        }
        let mut again = Vec::new();
        back.write(&mut again).unwrap();
        assert!(again == file, "a read graph writes the same bytes");
        let extra = unit_vector(dim, 1_000_000);
        back.insert(1, &extra).unwrap();
        assert_eq!(back.search(&extra, 1, 40).unwrap()[0].id, 1);

        let read = |bytes: &[u8], dim, kind| Graph::read(&mut &bytes[..], bytes.len() as u64, dim, kind).map(|_| ());
        let err = |r: Result<(), String>| r.unwrap_err();
        assert!(err(read(&file, 25, DistanceKind::InnerProduct)).contains("dimension 24, not 25"));
        assert!(err(read(&file, 24, DistanceKind::L2sq)).contains("inner-product"));
        assert!(err(read(b"NOTAGRAPH......", 24, DistanceKind::InnerProduct)).contains("magic"));
        for cut in [4, 40, file.len() / 2, file.len() - 1] {
            assert!(read(&file[..cut], 24, DistanceKind::InnerProduct).is_err(), "cut at {cut}");
        }
        // A node count the bytes cannot hold is refused before anything is allocated for it.
        let mut huge = file.clone();
        huge[33..41].copy_from_slice(&(u32::MAX as u64 - 2).to_le_bytes());
        assert!(err(read(&huge, 24, DistanceKind::InnerProduct)).contains("more than its"));
        // A link to a node past the end.
        let mut bad = file.clone();
        let first_links = 8 + 24 + 1 + 24 + 10 + 4 * dim;
        bad[first_links..first_links + 4].copy_from_slice(&1u32.to_le_bytes());
        bad[first_links + 4..first_links + 8].copy_from_slice(&(n as u32 + 5).to_le_bytes());
        assert!(err(read(&bad, 24, DistanceKind::InnerProduct)).contains("a link to node"));
    }

    /// Two threads insert 20,000 vectors while two search without pause; every search answers
    /// only ids already handed to `insert`, nearest first, and the finished graph finds each
    /// vector's own id first for nearly all of them.
    #[test]
    fn searches_beside_inserts_see_only_inserted_ids_and_the_graph_stays_searchable() {
        let (dim, n) = (16, 20_000usize);
        let g = Arc::new(Graph::new(dim, 8, 64, DistanceKind::L2sq).unwrap());
        let data: Arc<Vec<Vec<f32>>> = Arc::new((0..n).map(|i| unit_vector(dim, i as u64)).collect());
        let issued = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|t| {
                let (g, data, issued) = (g.clone(), data.clone(), issued.clone());
                std::thread::spawn(move || {
                    for i in (t..n).step_by(2) {
                        issued.fetch_max(i + 1, Ordering::AcqRel);
                        g.insert(i as u64, &data[i]).unwrap();
                    }
                })
            })
            .collect();
        let readers: Vec<_> = (0..2)
            .map(|t| {
                let (g, data, issued, done) = (g.clone(), data.clone(), issued.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut searches = 0usize;
                    while !done.load(Ordering::Acquire) {
                        let q = &data[(searches * 7919 + t) % n];
                        let hits = g.search(q, 10, 32).unwrap();
                        // Read after the search: it may return ids handed to insert while it ran.
                        let bound = issued.load(Ordering::Acquire);
                        assert!(hits.iter().all(|h| (h.id as usize) < bound), "an id never inserted");
                        assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
                        searches += 1;
                    }
                    searches
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
        let searches: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
        assert!(searches > 100, "readers ran {searches} searches");
        assert_eq!(g.len(), n);
        let own_first = (0..n).step_by(10).filter(|&i| g.search(&data[i], 1, 32).unwrap()[0].id == i as u64).count();
        assert!(own_first * 100 >= (n / 10) * 99, "{own_first} of {} found themselves", n / 10);
    }
}
