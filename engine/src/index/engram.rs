//! The `engram` backend: our own HNSW graph core ([`super::graph`]) behind the index seam.
//!
//! The graph orders by `1 − a·b` for cosine and dot (vectors arrive prepared: unit length for
//! cosine) and by the squared Euclidean distance for L2; a hit's score is `1 − distance` (the
//! cosine similarity or inner product) or `−√distance` (the negative Euclidean distance), as
//! the other backends score. It holds `f32` vectors only: a reduced `quantization` is refused
//! when the space is created.
//!
//! Searches never lock. A removal marks the node as a tombstone that routes searches but is
//! never returned; [`VectorIndex::compact`] rebuilds the graph without them beside ingest
//! (`index/rebuild.rs`). A checkpoint is [`Graph::write`]'s file, written with inserts and
//! removals held off (the dump lock), searches going on.

use super::graph::{DistanceKind, Graph};
use super::rebuild::{self, Rebuilt};
use super::{IndexParams, Metric, Neighbor, VectorIndex};
use std::io::Write;
use std::path::Path;

/// Estimated resident bytes per vector of `dim` dimensions at HNSW `M = m`, as
/// [`Graph::memory_bytes`] counts them: the vector, the level-0 list (`1 + 2M` words), level,
/// id and removed flag, the id map's entry, upper lists for the `1 / (M − 1)` of nodes above
/// level 0 on average, and two slots' upper-list cell and lock (buckets double, so up to half
/// their slots wait for nodes).
pub fn bytes_per_vector(dim: usize, m: usize) -> f64 {
    let upper = 4.0 * (1 + m) as f64 / (m.max(2) - 1) as f64;
    let slot = std::mem::size_of::<std::sync::OnceLock<Box<[u32]>>>() + 1;
    (4 * dim + 4 * (1 + 2 * m) + 10 + 32 + 2 * slot) as f64 + upper
}

/// The distance the graph orders a space of `metric` by.
fn distance_kind(metric: Metric) -> DistanceKind {
    match metric {
        Metric::Cosine | Metric::Dot => DistanceKind::InnerProduct,
        Metric::L2 => DistanceKind::L2sq,
    }
}

impl rebuild::Generation for Graph {
    type Point = u32;

    /// # Panics
    /// When the graph already holds `u32::MAX − 1` nodes (far past any memory budget); the
    /// worker pool counts the panic and fails the batch's ack.
    fn insert(&self, id: u64, vector: &[f32]) {
        if let Err(e) = Graph::insert(self, id, vector) {
            panic!("engram insert of id {id} failed: {e}");
        }
    }

    fn remove(&self, id: u64) -> bool {
        Graph::remove(self, id)
    }

    fn tombstones(&self) -> usize {
        Graph::tombstones(self)
    }

    fn live_points(&self) -> Vec<(u64, u32)> {
        self.live_nodes()
    }

    fn live_vector<'a>(&'a self, node: &'a u32) -> Option<&'a [f32]> {
        Graph::live_vector(self, *node)
    }
}

/// An HNSW index of our own graph core.
pub struct EngramIndex {
    /// The current graph, the dump lock and compaction (`index/rebuild.rs`).
    generations: Rebuilt<Graph>,
    metric: Metric,
    dim: usize,
    m: usize,
    ef_construction: usize,
}

impl std::fmt::Debug for EngramIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngramIndex").field("dim", &self.dim).field("m", &self.m).field("len", &self.len()).finish()
    }
}

impl EngramIndex {
    /// An empty index of `params` (`metric`, `dim`, `m`, `ef_construction`; nothing is
    /// allocated per vector until the first insert).
    ///
    /// # Errors
    /// When `dim` is 0, `m` is outside 2..=256 (the engine validates both first) or
    /// `quantization` is not `none`.
    pub fn new(params: &IndexParams) -> Result<Self, String> {
        let graph = Graph::new(params.dim, params.m, params.ef_construction, distance_kind(params.metric))?;
        Ok(Self::around(graph, params))
    }

    fn around(graph: Graph, p: &IndexParams) -> Self {
        Self {
            generations: Rebuilt::new(graph),
            metric: p.metric,
            dim: p.dim,
            m: p.m,
            ef_construction: p.ef_construction,
        }
    }

    /// Loads an index written by [`VectorIndex::save`] at `path` for a space of `params`.
    ///
    /// # Errors
    /// A message when the file cannot be read or is not such a checkpoint: its magic, a
    /// dimension other than `params.dim`, a distance other than the metric's, or a count or
    /// link the file cannot hold ([`Graph::read`]).
    pub fn load(params: &IndexParams, path: &Path) -> Result<Self, String> {
        let fail = |e: std::io::Error| format!("reading {}: {e}", path.display());
        let file = std::fs::File::open(path).map_err(fail)?;
        let len = file.metadata().map_err(fail)?.len();
        let mut input = std::io::BufReader::with_capacity(1 << 20, file);
        let graph = Graph::read(&mut input, len, params.dim, distance_kind(params.metric))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self::around(graph, params))
    }
}

impl VectorIndex for EngramIndex {
    fn insert(&self, id: u64, vector: &[f32]) {
        debug_assert_eq!(vector.len(), self.dim);
        self.generations.insert(id, vector);
    }

    fn remove(&self, id: u64) -> bool {
        self.generations.remove(id)
    }

    /// The graph's hits scored like the other backends; empty for a query of another
    /// dimension (the engine checks dimensions before it searches).
    fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<Neighbor> {
        let hits = self.generations.current().search(query, k, ef).unwrap_or_default();
        let l2 = self.metric == Metric::L2;
        hits.into_iter()
            .map(|h| Neighbor { id: h.id, score: if l2 { -h.distance.max(0.0).sqrt() } else { 1.0 - h.distance } })
            .collect()
    }

    fn len(&self) -> usize {
        self.generations.current().len()
    }

    /// The graph's node buckets and upper lists, plus an estimate for the graph a compaction is
    /// building.
    fn memory_bytes(&self) -> usize {
        let building = self.generations.building() as f64 * bytes_per_vector(self.dim, self.m);
        self.generations.current().memory_bytes() + building as usize
    }

    /// [`Graph::write`] of the current graph with inserts and removals held off.
    fn save(&self, path: &Path, consistent: &mut dyn FnMut()) -> Result<bool, String> {
        let fail = |e: std::io::Error| format!("writing {}: {e}", path.display());
        let file = std::fs::File::create(path).map_err(fail)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        self.generations
            .frozen(|graph| {
                consistent();
                graph.write(&mut out)
            })
            .map_err(fail)?;
        out.flush().map_err(fail)?;
        Ok(true)
    }

    fn holds(&self, id: u64) -> bool {
        self.generations.current().holds(id)
    }

    fn tombstones(&self) -> usize {
        self.generations.current().tombstones()
    }

    /// [`Rebuilt::compact`] into an empty graph of the same parameters.
    fn compact(&self, stop: &dyn Fn() -> bool) -> Result<usize, String> {
        let (dim, m, ef, kind) = (self.dim, self.m, self.ef_construction, distance_kind(self.metric));
        self.generations.compact(stop, |_| {
            // The parameters made the current graph: they make this one.
            Graph::new(dim, m, ef, kind).expect("parameters a graph was built with")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::testing;
    use crate::index::{IndexKind, Quantization};

    fn params(metric: Metric) -> IndexParams {
        IndexParams {
            kind: IndexKind::Engram,
            metric,
            dim: 16,
            m: 16,
            ef_construction: 100,
            ef_search: 64,
            quantization: Quantization::None,
            max_elements: 500,
            threads: 4,
        }
    }

    #[test]
    fn each_metric_finds_exact_neighbours_on_small_data() {
        for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
            let hits = testing::top1_hits(&EngramIndex::new(&params(metric)).unwrap(), metric, 12345);
            assert!(hits >= 48, "{metric:?}: top-1 found for {hits}/50 queries");
        }
    }

    /// The graph's node count (live and tombstones).
    fn nodes(index: &EngramIndex) -> usize {
        let g = index.generations.current();
        g.len() + g.tombstones()
    }

    /// The shared test (`index::testing::checkpoint_beside_ingest`), then files that are not
    /// such a checkpoint: a clear error, no panic.
    #[test]
    fn a_checkpoint_written_beside_inserts_loads_back_the_same_index_and_takes_inserts_after() {
        for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
            let p = params(metric);
            let (_dir, path) = testing::checkpoint_beside_ingest(
                metric,
                EngramIndex::new(&p).unwrap(),
                |path| EngramIndex::load(&p, path),
                nodes,
            );
            let good = std::fs::read(&path).unwrap();
            let other_dim = IndexParams { dim: 8, ..p };
            let e = EngramIndex::load(&other_dim, &path).map(|_| ()).expect_err("another dimension");
            assert!(e.contains("dimension 16, not 8"), "{e}");
            for cut in [0, 7, 60, good.len() / 2, good.len() - 1] {
                std::fs::write(&path, &good[..cut]).unwrap();
                assert!(EngramIndex::load(&p, &path).is_err(), "{metric:?}: a file cut at {cut} loaded");
            }
        }
        // Written under cosine (the inner product), read as L2: refused.
        let (_dir, path) = testing::checkpoint_beside_ingest(
            Metric::Cosine,
            EngramIndex::new(&params(Metric::Cosine)).unwrap(),
            |path| EngramIndex::load(&params(Metric::Cosine), path),
            nodes,
        );
        let e = EngramIndex::load(&params(Metric::L2), &path).map(|_| ()).expect_err("another distance");
        assert!(e.contains("inner-product"), "{e}");
    }

    #[test]
    fn a_compaction_beside_inserts_removals_and_searches_drops_the_tombstones_and_loses_nothing() {
        testing::compaction_beside_ingest(|metric| EngramIndex::new(&params(metric)).unwrap(), nodes);
    }

    #[test]
    fn a_search_after_len_finds_as_many_as_len_counted_while_inserts_run() {
        testing::search_after_len(|| EngramIndex::new(&params(Metric::Cosine)).unwrap());
    }

    /// Without the graph's removal check at the end of a search, an answer held one id twice
    /// within seconds (and in the engine's `racing_writers_and_readers_engram` on CI).
    #[test]
    fn searches_beside_upserts_never_answer_an_id_twice() {
        testing::upserts_beside_searches(&EngramIndex::new(&IndexParams { dim: 8, ..params(Metric::Cosine) }).unwrap());
    }

    #[test]
    fn a_compaction_outrun_by_inserts_is_abandoned_and_the_index_keeps_everything() {
        let mut index = EngramIndex::new(&params(Metric::Cosine)).unwrap();
        index.generations.side_limit = 4 * 16 * 8; // eight vectors
        testing::compaction_outrun(&index);
        assert!(index.generations.is_idle());
    }

    #[test]
    fn scores_are_the_metric_s() {
        // Cosine: 1 − distance is the cosine similarity; L2: −√distance the negative distance.
        for metric in [Metric::Cosine, Metric::L2] {
            let index = EngramIndex::new(&IndexParams { dim: 2, ..params(metric) }).unwrap();
            let (a, b) = ([1.0f32, 0.0], [0.6f32, 0.8]);
            index.insert(1, &a);
            index.insert(2, &b);
            let hits = index.search(&a, 2, 16);
            assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![1, 2], "{metric:?}");
            let want = metric.score(&a, &b);
            assert!((hits[1].score - want).abs() < 1e-5, "{metric:?}: {} vs {want}", hits[1].score);
        }
    }
}
