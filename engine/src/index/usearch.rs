//! `usearch` backend (Unum's USearch 2.26, a single-header C++ HNSW through its `cxx` binding).
//!
//! USearch adds and searches through `&self` from many threads, but three of its rules have to
//! be kept by the caller, and this module keeps them so the engine does not have to:
//!
//! - **Capacity is reserved ahead.** An add past the reserved capacity fails ("Reserve capacity
//!   ahead of insertions!"), and `reserve` reallocates the node table, so it must not run
//!   concurrently with adds or searches. Each insert claims a slot with one atomic add; the
//!   claim that crosses the capacity takes the write lock and doubles it (`reserve` runs
//!   `log2(n)` times for `n` vectors). Adds and searches hold the read lock.
//! - **Thread slots are finite.** USearch keeps one search context per reserved thread and
//!   fails a call that finds none free. A counting semaphore admits at most that many callers.
//!   Contexts cost about 30 KB resident each (measured: 1,000 empty indexes with 10 contexts
//!   held 280 KB each, with 2 contexts 41 KB), so an index starts with [`INITIAL_THREADS`] and
//!   doubles them (under the write lock, like capacity) when a caller finds none free, up to
//!   the `threads` it was built for.
//! - **`ef_search` is per index, not per query** (`expansion_search` in USearch's config). A
//!   search at the current value runs under the read lock; one at another value takes the write
//!   lock, changes it, and downgrades to a read lock, so the value cannot change under it.
//!   Queries at the space's default `ef_search` never take the write lock.
//!
//! Metrics map onto USearch's kinds on prepared vectors: cosine and inner product are `IP`
//! (distance `1 - dot`), L2 is `L2sq` (squared distance; the score is `-sqrt`). Vectors are
//! stored as `f32`, like hnsw_rs, unless the space asks for a reduced scalar kind
//! ([`Quantization`]: USearch's `f16`, `bf16`, `i8`); USearch then converts each added and
//! queried `f32` vector, and the scores it returns are of the reduced vectors (the space
//! rescores them from the full ones). USearch reserves the key `u64::MAX` for removed entries; the engine refuses that id
//! for every space.
//!
//! While inserts run, USearch 2.26 occasionally answers a search with fewer than `min(k, len)`
//! hits; such a short answer is retried and, if still short, answered by exact search under
//! the write lock (exact search scans every slot up to the node count, so it must not run
//! beside an add).
//!
//! **No USearch routine that walks the graph runs while adds may run.** `memory_usage()` and
//! `stats()` walk the node table, and an add bumps the node count before it stores the node, so
//! calling them while adds run (even under the shared lock adds take) reads a null node and
//! segfaults (seen: scraping `/metrics` every 10 ms during a GloVe ingest). USearch's docs only
//! promise that `add` and `search` may run concurrently with each other; `reserve` and
//! `change_expansion_search` run under the write lock here, and sizes and memory come from this
//! module's own counters ([`UsearchIndex::len`], [`VectorIndex::memory_bytes`]), never from
//! USearch's `size()`, `capacity()`, `contains()`, `memory_usage()` or `stats()`.
//!
//! **Removal runs alone.** `remove` takes the write lock (no add or search beside it). USearch
//! marks the slot free and the next add re-links a node there; searches skip free slots.
//!
//! **Capacity is reserved lazily.** A new index reserves [`INITIAL_CAPACITY`] slots whatever
//! its `max_elements` hint, and doubles from there: an empty space costs kilobytes, not the
//! ~2.9 MB a 65,536-slot reservation kept resident (node table, vector table, key hash table).

use super::{IndexParams, Metric, Neighbor, Quantization, VectorIndex, kernels};
use ::usearch::{Index, IndexOptions, MetricKind, ScalarKind};
use parking_lot::{Condvar, Mutex, RwLock, RwLockWriteGuard};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Slots reserved at creation (fewer when `max_elements` is smaller); capacity doubles from
/// here as inserts claim slots, so an empty or small space costs kilobytes.
pub const INITIAL_CAPACITY: usize = 64;

/// Bytes USearch keeps per *reserved* slot: the node pointer table (8), the vector pointer
/// table (8), the key → slot hash table (a 16-byte entry at a load factor of about 1/2) and the
/// node lock bit (`index_dense.hpp` `try_reserve`, `index.hpp` `reserve`).
const SLOT_BYTES: usize = 8 + 8 + 32;

/// Thread contexts reserved at creation; more are reserved as concurrent callers need them.
pub const INITIAL_THREADS: usize = 2;

/// Resident bytes of an empty index per reserved thread context (measured: 41 KB per index with
/// 2 contexts, 280 KB with 10, over 1,000 indexes; the cast buffer, `dim × 4` per context, is
/// counted apart).
const CONTEXT_BYTES: usize = 20 * 1024;

/// Bytes of one node in USearch's graph tape at `m` links per upper layer: the key and level
/// head (10), the level-0 neighbour list (`2M` 4-byte slots and a 4-byte count) and, for the
/// expected `1 / (M - 1)` upper levels of a node (levels are geometric with ratio `1/M`), an
/// `M`-slot list each (`index.hpp` `node_bytes_`).
fn node_bytes(m: usize) -> f64 {
    let base = (10 + 4 + 2 * m * 4) as f64;
    let upper = (4 + m * 4) as f64;
    base + upper / (m.max(2) - 1) as f64
}

/// Bytes a usearch space of `dim` dimensions at `M = m` holds per vector once full (graph node,
/// the vector in `quantization`'s scalar kind, and its slot at a table filled to between half
/// and all of its capacity), for sizing against the memory budget before a space is created.
pub fn bytes_per_vector(dim: usize, m: usize, quantization: Quantization) -> f64 {
    node_bytes(m) + (dim * quantization.value_bytes()) as f64 + 1.5 * SLOT_BYTES as f64
}

/// An HNSW index from `usearch`.
pub struct UsearchIndex {
    /// Read: add and search. Write: grow capacity or change `expansion_search`.
    index: RwLock<Index>,
    metric: Metric,
    dim: usize,
    /// HNSW `M` (for the memory accounting).
    m: usize,
    /// Bytes a stored vector value takes (4 for `f32`; for the memory accounting).
    value_bytes: usize,
    /// Slots claimed by inserts (successful or in flight).
    claimed: AtomicUsize,
    /// Vectors reserved in the index; only changes under the write lock.
    capacity: AtomicUsize,
    /// Vectors inserted and searchable.
    inserted: AtomicUsize,
    /// The most USearch thread contexts this index may reserve.
    max_threads: usize,
    /// Contexts reserved, and free (the semaphore over them), under one lock.
    threads: Mutex<Threads>,
    thread_freed: Condvar,
}

impl std::fmt::Debug for UsearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsearchIndex")
            .field("dim", &self.dim)
            .field("metric", &self.metric)
            .field("len", &self.len())
            .field("capacity", &self.capacity.load(Ordering::Relaxed))
            .finish()
    }
}

impl UsearchIndex {
    /// A new index of `params.dim`-dimensional vectors held in `params.quantization`'s scalar
    /// kind. `m` is HNSW's `M` (USearch's `connectivity`; level 0 keeps `2M` links),
    /// `ef_construction` and `ef_search` are its `expansion_add` and `expansion_search`,
    /// `max_elements` a capacity hint (at most [`INITIAL_CAPACITY`] slots are reserved up
    /// front; the index doubles past it), and `threads` the most callers that may add or search
    /// at once (more wait).
    ///
    /// # Errors
    /// USearch's message when it cannot allocate the index.
    pub fn new(params: &IndexParams) -> Result<Self, String> {
        let mut me = Self::without_kernel(params)?;
        install_f32_kernel(me.index.get_mut(), params);
        Ok(me)
    }

    /// [`UsearchIndex::new`] with USearch's own distance function (`load` installs the
    /// engine's after reading the file, which resets it).
    fn without_kernel(params: &IndexParams) -> Result<Self, String> {
        let p = params;
        let options = IndexOptions {
            dimensions: p.dim,
            metric: match p.metric {
                Metric::Cosine | Metric::Dot => MetricKind::IP,
                Metric::L2 => MetricKind::L2sq,
            },
            quantization: match p.quantization {
                Quantization::None => ScalarKind::F32,
                Quantization::F16 => ScalarKind::F16,
                Quantization::Bf16 => ScalarKind::BF16,
                Quantization::I8 => ScalarKind::I8,
            },
            connectivity: p.m,
            expansion_add: p.ef_construction,
            expansion_search: p.ef_search,
            multi: false,
        };
        let index = Index::new(&options).map_err(|e| e.to_string())?;
        let max_threads = p.threads.max(1);
        let threads = max_threads.min(INITIAL_THREADS);
        let capacity = p.max_elements.clamp(1, INITIAL_CAPACITY);
        index.reserve_capacity_and_threads(capacity, threads).map_err(|e| e.to_string())?;
        Ok(Self {
            index: RwLock::new(index),
            metric: p.metric,
            dim: p.dim,
            m: p.m,
            value_bytes: p.quantization.value_bytes(),
            claimed: AtomicUsize::new(0),
            capacity: AtomicUsize::new(capacity),
            inserted: AtomicUsize::new(0),
            max_threads,
            threads: Mutex::new(Threads { reserved: threads, free: threads }),
            thread_freed: Condvar::new(),
        })
    }

    /// An index loaded from a checkpoint `path` written by [`VectorIndex::save`], with the
    /// parameters of [`UsearchIndex::new`] (the dimension, metric and scalar kind must match
    /// the file's; `max_elements` is not used).
    ///
    /// # Errors
    /// USearch's message when the file does not load, or a mismatch of dimension or metric.
    pub fn load(params: &IndexParams, path: &std::path::Path) -> Result<Self, String> {
        let me = Self::without_kernel(&IndexParams { max_elements: 1, ..*params })?;
        let (dim, ef_search, ef_construction) = (params.dim, params.ef_search, params.ef_construction);
        let path_str = path.to_str().ok_or_else(|| format!("{} is not UTF-8", path.display()))?;
        {
            let mut index = me.index.write();
            index.load(path_str).map_err(|e| e.to_string())?;
            // The file's dimension first: the kernel measures `dim` values.
            if index.dimensions() != dim {
                return Err(format!("the checkpoint holds vectors of dimension {}, not {dim}", index.dimensions()));
            }
            // Loading puts back USearch's built-in metric.
            install_f32_kernel(&mut index, params);
            let size = index.size();
            let capacity = index.capacity().max(size + 1).max(INITIAL_CAPACITY);
            let reserved = me.threads.lock().reserved;
            index.reserve_capacity_and_threads(capacity, reserved).map_err(|e| e.to_string())?;
            index.change_expansion_search(ef_search);
            index.change_expansion_add(ef_construction);
            me.claimed.store(size, Ordering::Release);
            me.inserted.store(size, Ordering::Release);
            me.capacity.store(capacity, Ordering::Release);
        }
        Ok(me)
    }

    /// Reserved capacity in vectors (grows by doubling).
    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Acquire)
    }

    /// Grows the reserved capacity to at least `needed` vectors.
    fn grow(&self, needed: usize) {
        // Read before the index lock (lock order: threads, then index). A stale, smaller count
        // is harmless: USearch never shrinks the contexts a reserve keeps.
        let threads = self.threads.lock().reserved;
        let index = self.index.write();
        let capacity = self.capacity.load(Ordering::Acquire);
        if capacity >= needed {
            return;
        }
        let target = needed.max(capacity.saturating_mul(2));
        if let Err(e) = index.reserve_capacity_and_threads(target, threads) {
            // Allocation failure: the worker pool catches this and fails the observation's ack.
            panic!("usearch could not reserve {target} vectors: {e}");
        }
        self.capacity.store(target, Ordering::Release);
    }

    /// Waits for a free USearch thread context (reserving more, up to `max_threads`, when none
    /// is free); it is returned when the permit drops.
    ///
    /// Lock order: the thread lock, then the index lock. No caller takes the thread lock while
    /// it holds the index lock (a permit is dropped after its index guard).
    fn permit(&self) -> Permit<'_> {
        let mut threads = self.threads.lock();
        if threads.free == 0 && threads.reserved < self.max_threads {
            let more = (threads.reserved * 2).min(self.max_threads);
            let index = self.index.write();
            let capacity = self.capacity.load(Ordering::Acquire);
            match index.reserve_capacity_and_threads(capacity, more) {
                Ok(()) => {
                    threads.free += more - threads.reserved;
                    threads.reserved = more;
                }
                // Out of memory for a context: wait for a free one instead.
                Err(e) => tracing::warn!("usearch could not reserve {more} thread contexts: {e}"),
            }
        }
        while threads.free == 0 {
            self.thread_freed.wait(&mut threads);
        }
        threads.free -= 1;
        Permit(self)
    }

    fn to_score(&self, distance: f32) -> f32 {
        match self.metric {
            Metric::Cosine | Metric::Dot => 1.0 - distance,
            Metric::L2 => -distance.max(0.0).sqrt(),
        }
    }
}

/// For `quantization = none`, replaces NumKong's `f32` kernel with [`kernels::kernel`] (see
/// there for why). Runs before the index is shared: USearch's `change_metric` must not run
/// beside an add or a search. It runs once per `Index`: the `usearch` crate frees only the last
/// closure it was given, when the index drops, so a second call would leak the first.
///
/// Setting the environment variable `ENGRAM_USEARCH_F32_KERNEL=numkong` keeps USearch's own
/// kernel, for measuring one against the other (`benches/scripts/f32-kernel.sh`).
fn install_f32_kernel(index: &mut Index, params: &IndexParams) {
    if params.quantization != Quantization::None
        || std::env::var_os("ENGRAM_USEARCH_F32_KERNEL").is_some_and(|v| v == "numkong")
    {
        return;
    }
    let kernel = kernels::kernel(match params.metric {
        Metric::Cosine | Metric::Dot => kernels::Kind::InnerProduct,
        Metric::L2 => kernels::Kind::L2sq,
    });
    let dim = params.dim;
    // SAFETY: USearch passes pointers to two vectors of the index's `dim` f32 values (stored
    // slots, or the query it was given, whose length the caller checked), 4-byte aligned.
    index.change_metric::<f32>(Box::new(move |a, b| unsafe {
        kernel(std::slice::from_raw_parts(a, dim), std::slice::from_raw_parts(b, dim))
    }));
}

/// Thread contexts reserved and free.
#[derive(Debug, Clone, Copy)]
struct Threads {
    reserved: usize,
    free: usize,
}

struct Permit<'a>(&'a UsearchIndex);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.threads.lock().free += 1;
        self.0.thread_freed.notify_one();
    }
}

impl VectorIndex for UsearchIndex {
    fn insert(&self, id: u64, vector: &[f32]) {
        debug_assert_eq!(vector.len(), self.dim);
        let slot = self.claimed.fetch_add(1, Ordering::AcqRel);
        if slot >= self.capacity.load(Ordering::Acquire) {
            self.grow(slot + 1);
        }
        let _permit = self.permit();
        let index = self.index.read();
        if let Err(e) = index.add(id, vector) {
            // Capacity and thread slots are ensured above and ids are unique (the engine's id
            // map), so only allocation failure remains; the pool counts it and fails the ack.
            panic!("usearch add of id {id} failed: {e}");
        }
        self.inserted.fetch_add(1, Ordering::Release);
    }

    /// Under the write lock: USearch's docs promise only that `add` and `search` run
    /// concurrently, and `remove` rewrites the slot's key and the key table. The slot goes on
    /// USearch's free list, and the next add reuses it (its node is re-linked in place), so the
    /// slot is no longer counted as claimed.
    fn remove(&self, id: u64) -> bool {
        let index = self.index.write();
        match index.remove(id) {
            Ok(0) => false,
            Ok(_) => {
                self.inserted.fetch_sub(1, Ordering::AcqRel);
                self.claimed.fetch_sub(1, Ordering::AcqRel);
                true
            }
            // Only a failed allocation of the free list; the pool counts it and fails the ack.
            Err(e) => panic!("usearch remove of id {id} failed: {e}"),
        }
    }

    fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<Neighbor> {
        if k == 0 || self.is_empty() {
            return Vec::new();
        }
        let ef = ef.max(k);
        let _permit = self.permit();
        let read = self.index.read();
        let index = if read.expansion_search() == ef {
            read
        } else {
            drop(read);
            let write = self.index.write();
            write.change_expansion_search(ef);
            RwLockWriteGuard::downgrade(write)
        };
        // Every vector counted in `len` is linked, so a complete answer has `min(k, len)` hits.
        // While inserts run, USearch 2.26 occasionally returns fewer (seen: 1 hit of 10 for about
        // one query in 500 during concurrent adds in `recall_is_correct_while_inserts_run`). A
        // short answer is retried, and answered exactly (brute force) if it stays short.
        let complete = k.min(self.len());
        // Same reasoning as in insert: only allocation failure is left.
        fn failed<T>(e: impl std::fmt::Display) -> T {
            panic!("usearch search failed: {e}")
        }
        let mut found = index.search(query, k).unwrap_or_else(failed);
        for attempt in 1..=2 {
            if found.keys.len() >= complete {
                break;
            }
            tracing::debug!(got = found.keys.len(), complete, attempt, "usearch returned a short answer");
            found = index.search(query, k).unwrap_or_else(failed);
        }
        if found.keys.len() < complete {
            // Exact search scans every slot up to the node count, which an add bumps before it
            // stores the node: it runs only under the write lock, with no add in progress.
            drop(index);
            let exclusive = self.index.write();
            found = exclusive.exact_search(query, k).unwrap_or_else(failed);
        }
        found.keys.iter().zip(&found.distances).map(|(&id, &d)| Neighbor { id, score: self.to_score(d) }).collect()
    }

    fn len(&self) -> usize {
        self.inserted.load(Ordering::Acquire)
    }

    /// USearch's serialisation walks the graph, which adds must not change meanwhile, so it
    /// runs under the write lock, with `consistent`; it serialises into memory
    /// (`save_to_buffer`: a copy, transiently as large as the index) and the file is written
    /// after the lock is released, so adds and searches wait for a memory copy, not for the
    /// disk (measured: a file `save` under the lock more than doubled p99 accepted → indexed
    /// on MiniLM at 70 % load; docs/benchmarks.md, "Checkpoints").
    fn save(&self, path: &std::path::Path, consistent: &mut dyn FnMut()) -> Result<bool, String> {
        let index = self.index.write();
        let locked = std::time::Instant::now();
        let mut buffer = vec![0u8; index.serialized_length()];
        index.save_to_buffer(&mut buffer).map_err(|e| e.to_string())?;
        let serialised = locked.elapsed();
        consistent();
        drop(index);
        tracing::debug!(
            bytes = buffer.len(),
            serialise_seconds = serialised.as_secs_f64(),
            locked_seconds = locked.elapsed().as_secs_f64(),
            "usearch checkpoint copied under the write lock"
        );
        std::fs::write(path, &buffer).map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(true)
    }

    fn holds(&self, id: u64) -> bool {
        self.index.read().contains(id)
    }

    /// The engine's accounting of what the index holds in use (never USearch's
    /// `memory_usage()`, which walks the node table and is unsafe while adds run, and counts
    /// the reserved but untouched tail of its 4 MiB-and-doubling arenas as used): reserved
    /// slots × [`SLOT_BYTES`], inserted vectors × (graph node + vector at its scalar kind), and the thread
    /// contexts. Checked against resident-memory growth in `engine/tests/memory.rs`.
    fn memory_bytes(&self) -> usize {
        let vectors = self.len() as f64 * (node_bytes(self.m) + (self.dim * self.value_bytes) as f64);
        let slots = self.capacity.load(Ordering::Acquire) * SLOT_BYTES;
        let contexts = self.threads.lock().reserved * (CONTEXT_BYTES + self.dim * 4);
        vectors as usize + slots + contexts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::IndexKind;
    use crate::index::testing::{lcg, top1_hits};
    use std::sync::Arc;

    /// Parameters of a usearch index for the tests.
    fn params(metric: Metric, dim: usize, m: usize, ef: (usize, usize), max_elements: usize) -> IndexParams {
        IndexParams {
            kind: IndexKind::Usearch,
            metric,
            dim,
            m,
            ef_construction: ef.0,
            ef_search: ef.1,
            quantization: Quantization::None,
            max_elements,
            threads: 2,
        }
    }

    #[test]
    fn each_metric_finds_exact_neighbours_and_scores_like_the_metric() {
        for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
            // A capacity hint of 10 forces several doublings on the way to 500.
            let idx = UsearchIndex::new(&params(metric, 16, 16, (100, 64), 10)).unwrap();
            let hits = top1_hits(&idx, metric, 7);
            assert!(hits >= 48, "{metric:?}: top-1 found for {hits}/50 queries");
            assert!(idx.capacity() >= 500);
        }
    }

    #[test]
    fn a_checkpoint_of_another_dimension_is_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let idx = UsearchIndex::new(&params(Metric::Cosine, 4, 8, (40, 16), 8)).unwrap();
        idx.insert(1, &[1.0, 0.0, 0.0, 0.0]);
        assert!(idx.save(&path, &mut || {}).unwrap());
        let e = UsearchIndex::load(&params(Metric::Cosine, 8, 8, (40, 16), 8), &path).err().unwrap();
        assert_eq!(e, "the checkpoint holds vectors of dimension 4, not 8");
        let back = UsearchIndex::load(&params(Metric::Cosine, 4, 8, (40, 16), 8), &path).unwrap();
        assert_eq!(back.search(&[1.0, 0.0, 0.0, 0.0], 1, 16)[0].id, 1);
    }

    #[test]
    fn concurrent_inserts_and_searches_at_several_ef_lose_nothing() {
        // More callers (6) than thread slots (2), growing from 8 slots, with searches that
        // alternate ef: every insert must land and every search must answer with min(k, len) hits.
        let idx = Arc::new(UsearchIndex::new(&params(Metric::Cosine, 8, 8, (40, 16), 8)).unwrap());
        let handles: Vec<_> = (0..6u64)
            .map(|t| {
                let idx = Arc::clone(&idx);
                std::thread::spawn(move || {
                    let mut next = lcg(t + 1);
                    for i in 0..300u64 {
                        let mut v: Vec<f32> = (0..8).map(|_| next()).collect();
                        Metric::Cosine.prepare(&mut v).unwrap();
                        if t % 2 == 0 {
                            idx.insert(t * 1000 + i, &v);
                        } else {
                            let complete = idx.len().min(5);
                            let ef = if i % 2 == 0 { 16 } else { 32 + t as usize };
                            assert!(idx.search(&v, 5, ef).len() >= complete, "a short answer while inserting");
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(idx.len(), 900);
        assert!(idx.memory_bytes() >= 900 * 8 * 4, "memory accounting covers at least the vectors");
    }

    /// The shared test (`index::testing::upserts_beside_searches`) on usearch.
    #[test]
    fn searches_beside_upserts_never_answer_an_id_twice() {
        let idx = UsearchIndex::new(&params(Metric::Cosine, 8, 16, (100, 64), 8)).unwrap();
        crate::index::testing::upserts_beside_searches(&idx);
    }
}
