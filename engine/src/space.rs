//! Memory spaces: parameters, the index, the id map and stored content, and recall (the read
//! path: [`Space::recall`]).

use crate::admission::LevelCell;
use crate::backpressure::BackpressureLevel;
use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::index::{self, IndexKind, IndexParams, Metric, Quantization, VectorIndex};
use crate::observation::Batch;
use crate::operation::Seq;
use crate::storage::Store;
use crate::sync::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use crate::tail::Tail;
use dashmap::DashMap;
use engram_telemetry::events::SpaceEvents;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

/// Parameters of a memory space, fixed at creation.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceParams {
    /// Embedding dimension (1 to the engine's `max_dim`).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 4096))]
    pub dim: usize,
    /// Similarity metric. Default cosine.
    #[serde(default)]
    pub metric: Metric,
    /// Index backend: `"usearch"`, `"hnsw_rs"` or `"engram"` (our own graph core). All take
    /// the parameters below. Absent (`None`): the default for the dimension and quantization,
    /// [`SpaceParams::index`]; a created space stores and describes the resolved value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexKind>,
    /// HNSW `M`: links per node and layer (2 to 256). Default 16.
    #[serde(default = "default_m")]
    #[cfg_attr(feature = "openapi", schema(minimum = 2, maximum = 256))]
    pub m: usize,
    /// HNSW `ef_construction` (1 to 4096). Default 200.
    #[serde(default = "default_ef_construction")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 4096))]
    pub ef_construction: usize,
    /// Default HNSW `ef_search` for recall (1 to 4096). Default 128: the smallest of the values
    /// measured (32, 64, 96, 128, ...) that gives recall@10 of at least 0.95 with margin on both
    /// shared data sets with the default backend (docs/benchmarks.md).
    #[serde(default = "default_ef_search")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 4096))]
    pub ef_search: usize,
    /// Capacity hint for the index (1 to the engine's `max_space_elements`, and no more than
    /// the memory budget holds at this space's dimension and `M`). Default 100,000. Only a
    /// small part is reserved up front; the index grows as vectors arrive.
    #[serde(default = "default_max_elements")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub max_elements: usize,
    /// The scalar type the index holds vectors in: `"none"` (`f32`), `"f16"`, `"bf16"` or
    /// `"i8"` (usearch only; `i8` only with cosine). With a reduced type the full `f32` vector
    /// is kept beside the content and recall rescores from it (see [`Quantization`]). Absent
    /// (`None`): the default for the index and metric, [`SpaceParams::quantization`]; a
    /// created space stores and describes the resolved value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<Quantization>,
    /// With a reduced `quantization`, how many candidates per wanted hit recall takes from the
    /// graph and rescores exactly (1 to 16): `k × rescore_factor`. Default
    /// [`DEFAULT_RESCORE_FACTOR`]. Ignored with `"none"`.
    #[serde(default = "default_rescore_factor")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 16))]
    pub rescore_factor: usize,
}

/// The fewest dimensions at which a usearch space holds reduced vectors by default
/// ([`SpaceParams::quantization`]). Measured at 50 dimensions (GloVe: `f32` answers faster at
/// equal recall@10) and at 384 (MiniLM: `i8` is faster to ingest and to query); interpolating
/// the query-time difference between the two puts the break-even near 210 dimensions, and 256
/// is the next common embedding size (docs/benchmarks.md, "Quantization").
pub const REDUCED_DEFAULT_MIN_DIM: usize = 256;

/// Default of [`SpaceParams::rescore_factor`] (docs/benchmarks.md, "Quantization").
pub const DEFAULT_RESCORE_FACTOR: usize = 3;

fn default_m() -> usize {
    16
}
fn default_ef_construction() -> usize {
    200
}
fn default_ef_search() -> usize {
    128
}
fn default_max_elements() -> usize {
    100_000
}
fn default_rescore_factor() -> usize {
    DEFAULT_RESCORE_FACTOR
}

impl SpaceParams {
    /// The index's parameters for this space, admitting `threads` concurrent calls.
    pub(crate) fn index_params(&self, threads: usize) -> IndexParams {
        IndexParams {
            kind: self.index(),
            metric: self.metric,
            dim: self.dim,
            m: self.m,
            ef_construction: self.ef_construction,
            ef_search: self.ef_search,
            quantization: self.quantization(),
            max_elements: self.max_elements,
            threads,
        }
    }

    /// The scalar type the index holds vectors in: the one asked for, or the default for the
    /// index, metric and dimension: on usearch with at least [`REDUCED_DEFAULT_MIN_DIM`]
    /// dimensions, `i8` for cosine (unit vectors fit its ±1 range) and `bf16` for L2 and dot
    /// (the range of `f32`, unlike `f16`); `none` below that and on hnsw_rs and engram (they
    /// hold `f32` only). Why: docs/benchmarks.md, "Quantization" (at 384 dimensions `i8` with rescoring
    /// ingests faster, answers faster at equal recall@10 and holds less than `f32`; at 50, `f32`
    /// answers 1.7–2.3 × faster at equal recall, with more recall at the same `ef_search` and
    /// no more memory).
    pub fn quantization(&self) -> Quantization {
        self.quantization.unwrap_or(match (self.index(), self.metric) {
            (IndexKind::HnswRs | IndexKind::Engram, _) => Quantization::None,
            (IndexKind::Usearch, _) if self.dim < REDUCED_DEFAULT_MIN_DIM => Quantization::None,
            (IndexKind::Usearch, Metric::Cosine) => Quantization::I8,
            (IndexKind::Usearch, Metric::L2 | Metric::Dot) => Quantization::Bf16,
        })
    }

    /// The index backend: the one asked for, or the default for the dimension: `engram` (our
    /// own graph core, `f32` vectors) below [`REDUCED_DEFAULT_MIN_DIM`] dimensions unless a
    /// reduced `quantization` is asked for (engram holds `f32` only), `usearch` otherwise
    /// (with `i8` or `bf16` vectors by default, [`SpaceParams::quantization`]). Why: at 50
    /// dimensions engram ingests and answers faster than usearch at `f32` and than hnswlib;
    /// at 384, usearch with `i8` ingests fastest (docs/benchmarks.md, "The default index").
    pub fn index(&self) -> IndexKind {
        self.index.unwrap_or(match self.quantization {
            Some(q) if q.is_reduced() => IndexKind::Usearch,
            _ if self.dim < REDUCED_DEFAULT_MIN_DIM => IndexKind::Engram,
            _ => IndexKind::Usearch,
        })
    }

    /// These parameters with the default index and quantization made explicit (what a
    /// created space stores and describes).
    pub fn resolved(self) -> Self {
        Self { index: Some(self.index()), quantization: Some(self.quantization()), ..self }
    }

    /// Parameters as stored with a space (or in a snapshot's header). A space stored before
    /// quantization existed has no `quantization` and holds `f32` vectors: it reads as
    /// `"none"`, not as today's default. Likewise one without `index` is a usearch space.
    ///
    /// # Errors
    /// serde's, when the value is not a space's parameters.
    pub(crate) fn from_stored(mut value: serde_json::Value) -> Result<Self, serde_json::Error> {
        if let Some(map) = value.as_object_mut() {
            map.entry("quantization").or_insert_with(|| serde_json::Value::from("none"));
            map.entry("index").or_insert_with(|| serde_json::Value::from("usearch"));
        }
        serde_json::from_value(value)
    }

    /// Parameters with the documented defaults for a dimension.
    pub fn with_dim(dim: usize) -> Self {
        Self {
            dim,
            metric: Metric::Cosine,
            index: None,
            m: default_m(),
            ef_construction: default_ef_construction(),
            ef_search: default_ef_search(),
            max_elements: default_max_elements(),
            quantization: None,
            rescore_factor: DEFAULT_RESCORE_FACTOR,
        }
    }

    /// Checks every parameter against the engine's limits: `dim` against `max_dim`,
    /// `max_elements` against `max_space_elements` and against the memory budget (the
    /// backend's estimated bytes per vector at this `dim` and `M`, times `max_elements`).
    ///
    /// # Errors
    /// [`EngineError::InvalidArgument`] naming the field (`dim`, `m`, `max_elements`, ...).
    pub fn validate(&self, config: &EngineConfig) -> Result<(), EngineError> {
        let range = |field: &str, v: usize, lo: usize, hi: usize| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(EngineError::invalid(field, format!("must be within {lo} and {hi}, got {v}")))
            }
        };
        range("dim", self.dim, 1, config.max_dim)?;
        range("m", self.m, 2, 256)?;
        range("ef_construction", self.ef_construction, 1, 4096)?;
        range("ef_search", self.ef_search, 1, 4096)?;
        range("max_elements", self.max_elements, 1, config.max_space_elements)?;
        range("rescore_factor", self.rescore_factor, 1, 16)?;
        let quantization = self.quantization();
        let index = self.index();
        if quantization.is_reduced() && !index.quantizes() {
            return Err(EngineError::invalid(
                "quantization",
                format!(
                    "{} needs the usearch index: {} holds f32 vectors only (use \"none\")",
                    quantization.as_str(),
                    index.as_str()
                ),
            ));
        }
        if quantization == Quantization::I8 && self.metric != Metric::Cosine {
            return Err(EngineError::invalid(
                "quantization",
                "i8 holds values in [-1, 1] (x × 127), so it needs unit vectors: the cosine metric",
            ));
        }
        let per_vector = index::bytes_per_vector(index, self.dim, self.m, quantization);
        let needed = self.max_elements as f64 * per_vector;
        let budget = config.resolved_memory_budget();
        if needed > budget as f64 {
            return Err(EngineError::invalid(
                "max_elements",
                format!(
                    "{} vectors of dim {} at m {} would need about {:.1} GiB in a {} index, more than the \
                     memory budget of {:.1} GiB (engine.memory_budget_bytes)",
                    self.max_elements,
                    self.dim,
                    self.m,
                    needed / f64::from(1 << 30),
                    index.as_str(),
                    budget as f64 / f64::from(1 << 30),
                ),
            ));
        }
        Ok(())
    }
}

/// Validates a space name: 1 to 64 characters of `[A-Za-z0-9_.-]`.
///
/// # Errors
/// [`EngineError::InvalidArgument`] on field `memory_space`.
pub fn validate_space_name(name: &str) -> Result<(), EngineError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(EngineError::invalid("memory_space", "must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '.', '-'"))
    }
}

/// Builds the index of a space with `params`, admitting `threads` concurrent inserts and searches.
///
/// # Errors
/// [`EngineError::InvalidArgument`] on `params` when the backend cannot allocate the index.
pub(crate) fn build_index(params: &SpaceParams, threads: usize) -> Result<Box<dyn VectorIndex>, EngineError> {
    index::build(&params.index_params(threads)).map_err(|e| {
        EngineError::invalid("params", format!("the {} index could not be built: {e}", params.index().as_str()))
    })
}

/// The most hits a recall asks the index for when deleted ids (not yet removed from the
/// index) crowd its answer.
const MAX_OVERFETCH: usize = 4096;

/// Hits a recall returns when the request names no `k`.
pub const DEFAULT_RECALL_K: usize = 10;

/// One recall result.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct RecallHit {
    /// Observation id.
    pub id: u64,
    /// Similarity (cosine similarity, inner product, or negative L2 distance).
    pub score: f32,
    /// The observation's content, if it had any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One observation as the space holds it (see [`Engine::get_observation`](crate::Engine::get_observation)).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StoredObservation {
    /// Observation id.
    pub id: u64,
    /// Its content, if it had any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// A description of a memory space.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct SpaceInfo {
    /// The space's name.
    pub name: String,
    /// Its parameters.
    pub params: SpaceParams,
    /// Vectors inserted and searchable.
    pub vectors: usize,
    /// Observations accepted and still queued or being inserted.
    pub pending: usize,
    /// Estimated memory: index, content and id map, in bytes.
    pub memory_bytes: usize,
    /// The space's backpressure level.
    pub backpressure: BackpressureLevel,
}

/// A hit on its way out of recall, with its content where it was read already (`Some`: while
/// rescoring, from the same read as the full vector).
type Hit = (index::Neighbor, Option<Option<String>>);

/// What a space knows of one id: the latest operation admitted on it and whether the index
/// holds a vector for it. Admission sets `seq` and `live` (in log order, under the log's append
/// lock); workers set `indexed`, under the id's stripe lock ([`Space::stripe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdState {
    /// The latest operation admitted on the id; [`PENDING`] while an insert has claimed it and
    /// not yet been given its position.
    pub(crate) seq: Seq,
    /// The latest operation inserts or upserts it (false: deletes it).
    pub(crate) live: bool,
    /// The index holds a vector for the id (the latest one applied).
    pub(crate) indexed: bool,
}

/// An insert of a new id (not an upsert: that removes the old vector, which waits for the
/// index) that arrived while a checkpoint copied the space's index; see [`Space::deferred`].
pub(crate) struct DeferredPut {
    pub(crate) id: u64,
    pub(crate) seq: Seq,
    /// Prepared, as the index takes it.
    pub(crate) vector: Box<[f32]>,
    pub(crate) content: Option<Box<str>>,
}

/// The `seq` of an id claimed by an insert that is not yet sequenced: no job has it, so every
/// job on the id admitted before the claim finds itself superseded.
pub(crate) const PENDING: Seq = Seq::MAX;

/// Stripe locks per space: a job holds its id's stripe while it checks whether it is still the
/// latest operation on the id and changes the index, so two operations on one id never apply
/// at once (and apply in sequence order: an older one finds itself superseded).
const STRIPES: usize = 64;

/// Where a space keeps its observations' content (and, when its index holds reduced vectors,
/// their full vectors for rescoring).
enum Contents {
    /// In memory (no store: `durability = none`), with the content bytes held; `vectors` holds
    /// the full vector of each indexed id when the index holds reduced ones (empty otherwise).
    Heap { map: DashMap<u64, Box<str>>, bytes: AtomicUsize, vectors: DashMap<u64, Box<[f32]>> },
    /// In the store's `content` keyspace, written with each batch's log record (with the full
    /// vector when the index holds reduced ones: `storage::codec::encode_kept`).
    Stored(Arc<Store>),
}

pub(crate) struct Space {
    pub(crate) name: String,
    /// The store's id of this space (0 without a store): its log records are keyed by it.
    pub(crate) uid: u64,
    pub(crate) params: SpaceParams,
    pub(crate) index: Box<dyn VectorIndex>,
    /// Every id with an operation admitted and not yet fully applied, or live: the dedupe set
    /// (live ids), the order of operations per id, and what the index holds.
    pub(crate) ids: DashMap<u64, IdState>,
    /// Replayed at start, or put while a checkpoint copied the index, and not yet in the
    /// index: searched exactly until it is.
    pub(crate) tail: Tail,
    /// True while a checkpoint copies the index: new inserts are then deferred (below).
    pub(crate) deferring: AtomicBool,
    /// Inserts deferred while a checkpoint copies the index (`Some` while one does): each is
    /// in [`Space::tail`], searchable, and acknowledged INDEXED; the checkpoint thread puts
    /// them in the index once the copy is done.
    pub(crate) deferred: Mutex<Option<Vec<DeferredPut>>>,
    /// See [`STRIPES`].
    stripes: Box<[Mutex<()>]>,
    /// Jobs not yet applied, per operation (sequence number → jobs left): the checkpoint
    /// position is the last sequence number before the oldest one ([`Space::applied_through`]).
    outstanding: Mutex<BTreeMap<Seq, usize>>,
    /// The newest sequence number of an operation on this space.
    last_seq: AtomicU64,
    /// Jobs (inserts, upserts, deletes of one id each) sequenced on this space since it was
    /// opened: monotonic.
    pub(crate) sequenced_jobs: AtomicU64,
    /// [`Space::sequenced_jobs`] when the newest checkpoint began: the difference is what a
    /// start after a crash would replay, less the jobs that were queued then (the count
    /// trigger of checkpoints).
    pub(crate) checkpointed_jobs: AtomicU64,
    /// The log position the space's newest checkpoint covers (0: none).
    pub(crate) checkpointed: AtomicU64,
    /// When the newest checkpoint was written (or the space was created or recovered).
    pub(crate) checkpointed_at: Mutex<Instant>,
    /// When a checkpoint of the space last failed (`None`: none since the last success).
    pub(crate) checkpoint_failed_at: Mutex<Option<Instant>>,
    /// Where content is kept: the store's `content` keyspace, or the heap without a store.
    contents: Contents,
    /// Accepted but not yet inserted.
    pub(crate) pending: AtomicUsize,
    /// The space's own level (its share of the queue).
    pub(crate) own: LevelCell,
    /// The exported level: max(global, own).
    pub(crate) effective: AtomicU8,
    pub(crate) dropped: AtomicBool,
    pub(crate) events: SpaceEvents,
}

impl Space {
    /// A new, empty space over an index made by [`build_index`].
    pub(crate) fn new(
        name: String,
        uid: u64,
        params: SpaceParams,
        index: Box<dyn VectorIndex>,
        events: SpaceEvents,
        store: Option<Arc<Store>>,
    ) -> Self {
        let contents = match store {
            Some(store) => Contents::Stored(store),
            None => Contents::Heap { map: DashMap::new(), bytes: AtomicUsize::new(0), vectors: DashMap::new() },
        };
        Self {
            name,
            uid,
            params,
            index,
            ids: DashMap::new(),
            tail: Tail::default(),
            deferring: AtomicBool::new(false),
            deferred: Mutex::new(None),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            outstanding: Mutex::new(BTreeMap::new()),
            last_seq: AtomicU64::new(0),
            sequenced_jobs: AtomicU64::new(0),
            checkpointed_jobs: AtomicU64::new(0),
            checkpointed: AtomicU64::new(0),
            checkpointed_at: Mutex::new(Instant::now()),
            checkpoint_failed_at: Mutex::new(None),
            contents,
            pending: AtomicUsize::new(0),
            own: LevelCell::default(),
            effective: AtomicU8::new(0),
            dropped: AtomicBool::new(false),
            events,
        }
    }

    /// Operation `seq` on this space was given its position with `jobs` jobs to apply. Called
    /// under the lock that orders operations, so positions arrive in order.
    pub(crate) fn sequenced(&self, seq: Seq, jobs: usize) {
        if jobs > 0 {
            *self.outstanding.lock().entry(seq).or_default() += jobs;
            self.sequenced_jobs.fetch_add(jobs as u64, Ordering::AcqRel);
        }
        self.last_seq.fetch_max(seq, Ordering::AcqRel);
    }

    /// One job of operation `seq` was applied (or skipped, or failed).
    pub(crate) fn job_done(&self, seq: Seq) {
        let mut outstanding = self.outstanding.lock();
        if let Some(left) = outstanding.get_mut(&seq) {
            *left -= 1;
            if *left == 0 {
                outstanding.remove(&seq);
            }
        }
    }

    /// The newest log position through which every operation on this space is applied to its
    /// index: what a checkpoint taken now covers.
    pub(crate) fn applied_through(&self) -> Seq {
        // Read the newest position first: one sequenced after this read is not covered anyway.
        let last = self.last_seq.load(Ordering::Acquire);
        match self.outstanding.lock().first_key_value() {
            Some((&oldest, _)) => oldest.saturating_sub(1).min(last),
            None => last,
        }
    }

    /// From now until [`Space::stop_deferring`], inserts of new ids are deferred instead of
    /// waiting for the index (a checkpoint is about to copy it).
    pub(crate) fn start_deferring(&self) {
        *self.deferred.lock() = Some(Vec::new());
        self.deferring.store(true, Ordering::Release);
    }

    /// Ends deferring; returns what was deferred, in arrival order, for the index.
    pub(crate) fn stop_deferring(&self) -> Vec<DeferredPut> {
        self.deferring.store(false, Ordering::Release);
        self.deferred.lock().take().unwrap_or_default()
    }

    /// Defers the insert of `id` by operation `seq` while a checkpoint copies the index, if it
    /// is the latest operation on a new id: its vector goes in the tail (searchable at once)
    /// and the item in the deferred list. Returns the vector and content back when it is not
    /// deferred (no checkpoint copying, an upsert, or a later operation admitted).
    #[allow(clippy::type_complexity)]
    pub(crate) fn defer_put(
        &self,
        id: u64,
        seq: Seq,
        vector: Box<[f32]>,
        content: Option<Box<str>>,
    ) -> Result<(), (Box<[f32]>, Option<Box<str>>)> {
        if !self.deferring.load(Ordering::Acquire) {
            return Err((vector, content));
        }
        let mut deferred = self.deferred.lock();
        let Some(list) = deferred.as_mut() else { return Err((vector, content)) };
        let _stripe = self.stripe(id);
        if !self.ids.get(&id).is_some_and(|s| s.seq == seq && !s.indexed) {
            return Err((vector, content));
        }
        // Content first, as a put does: a recall that finds the vector also finds its content.
        // A store holds it already (written with the log record), so only the heap needs it.
        if matches!(self.contents, Contents::Heap { .. }) {
            self.set_content(id, Some(&vector), content.clone());
        }
        self.tail.put(id, seq, vector.clone());
        list.push(DeferredPut { id, seq, vector, content });
        Ok(())
    }

    /// The stripe lock of `id` (see [`STRIPES`]).
    pub(crate) fn stripe(&self, id: u64) -> parking_lot::MutexGuard<'_, ()> {
        // Fibonacci hashing: sequential ids spread over every stripe.
        let i = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % STRIPES;
        self.stripes[i].lock()
    }

    /// True when the latest operation admitted on `id` inserts or upserts it.
    pub(crate) fn is_live(&self, id: u64) -> bool {
        self.ids.get(&id).is_some_and(|s| s.live)
    }

    /// True when the latest operation admitted on `id` is the one at `seq` (a tail entry's: so
    /// the id is live, and its current vector is the tail's).
    fn is_latest(&self, id: u64, seq: Seq) -> bool {
        self.ids.get(&id).is_some_and(|s| s.seq == seq)
    }

    /// True when a graph hit for `id` is to be returned: the id is live and its current vector
    /// is not the tail's (after an upsert in the tail the graph may still hold the old one).
    fn graph_hit_counts(&self, id: u64) -> bool {
        match self.ids.get(&id).map(|s| *s) {
            Some(s) if s.live => self.tail.seq_of(id) != Some(s.seq),
            _ => false,
        }
    }

    /// Sets the content of `id` for recall (`None` removes it), and its full `vector` when the
    /// index holds reduced ones (`None` with a removal): on the heap without a store (with a
    /// store both were written with the operation's log record, and this is a no-op).
    pub(crate) fn set_content(&self, id: u64, vector: Option<&[f32]>, content: Option<Box<str>>) {
        if let Contents::Heap { map, bytes, vectors } = &self.contents {
            if self.params.quantization().is_reduced() {
                match vector {
                    Some(v) => vectors.insert(id, v.into()),
                    None => vectors.remove(&id).map(|(_, v)| v),
                };
            }
            let old = match content {
                Some(c) => {
                    bytes.fetch_add(c.len(), Ordering::Relaxed);
                    map.insert(id, c)
                }
                None => map.remove(&id).map(|(_, c)| c),
            };
            if let Some(old) = old {
                bytes.fetch_sub(old.len(), Ordering::Relaxed);
            }
        }
    }

    /// The content of `id`, if it has any.
    fn content(&self, id: u64) -> Result<Option<String>, EngineError> {
        match &self.contents {
            Contents::Heap { map, .. } => Ok(map.get(&id).map(|c| c.to_string())),
            Contents::Stored(store) if self.params.quantization().is_reduced() => {
                store.kept_content(self.uid, id, self.params.dim)
            }
            Contents::Stored(store) => store.content(self.uid, id),
        }
    }

    /// The full vector of `id` (into `vector`) and its content, in a space whose index holds
    /// reduced vectors; `None` when the id is not held (deleted since it was found).
    fn kept(&self, id: u64, vector: &mut Vec<f32>) -> Result<Option<Option<String>>, EngineError> {
        match &self.contents {
            Contents::Heap { map, vectors, .. } => {
                let Some(v) = vectors.get(&id) else { return Ok(None) };
                vector.clear();
                vector.extend_from_slice(&v);
                Ok(Some(map.get(&id).map(|c| c.to_string())))
            }
            Contents::Stored(store) => store.kept(self.uid, id, self.params.dim, vector),
        }
    }

    /// Rescores `candidates` (hits of the reduced graph) exactly from their full vectors, best
    /// first, with the content read alongside; candidates no longer held are left out.
    fn rescore(&self, query: &[f32], candidates: Vec<index::Neighbor>) -> Result<Vec<Hit>, EngineError> {
        let mut vector = Vec::with_capacity(self.params.dim);
        let mut out = Vec::with_capacity(candidates.len());
        for n in candidates {
            if let Some(content) = self.kept(n.id, &mut vector)? {
                let score = self.params.metric.score(query, &vector);
                out.push((index::Neighbor { id: n.id, score }, Some(content)));
            }
        }
        out.sort_by(|a, b| b.0.score.total_cmp(&a.0.score));
        Ok(out)
    }

    /// Estimated bytes: index, heap content (with map entry overhead) and the id map.
    pub(crate) fn memory_bytes(&self) -> usize {
        let content = match &self.contents {
            Contents::Heap { map, bytes, vectors } => {
                bytes.load(Ordering::Relaxed) + map.len() * 48 + vectors.len() * (self.params.dim * 4 + 48)
            }
            Contents::Stored(_) => 0,
        };
        let tail = self.tail.len() * (self.params.dim * 4 + 64);
        self.index.memory_bytes() + content + tail + self.ids.len() * (8 + std::mem::size_of::<IdState>())
    }

    pub(crate) fn info(&self) -> SpaceInfo {
        SpaceInfo {
            name: self.name.clone(),
            params: self.params,
            vectors: self.index.len(),
            pending: self.pending.load(Ordering::Acquire),
            memory_bytes: self.memory_bytes(),
            backpressure: BackpressureLevel::from_u8(self.effective.load(Ordering::Acquire)),
        }
    }

    /// Validates a whole batch against this space and the engine limits: all or nothing.
    pub(crate) fn validate_batch(&self, batch: &Batch, config: &EngineConfig) -> Result<(), EngineError> {
        let n = batch.observations.len();
        if n == 0 {
            return Err(EngineError::invalid("observations", "must hold at least one observation"));
        }
        if n > config.max_batch_observations {
            return Err(EngineError::invalid(
                "observations",
                format!("holds {n} observations, more than the limit of {}", config.max_batch_observations),
            ));
        }
        let mut seen = HashSet::with_capacity(n);
        for (i, o) in batch.observations.iter().enumerate() {
            if o.id == u64::MAX {
                return Err(EngineError::invalid(
                    format!("observations[{i}].id"),
                    "18446744073709551615 (u64::MAX) is reserved; ids are 0 to 2^64 - 2",
                ));
            }
            if !seen.insert(o.id) {
                return Err(EngineError::invalid(
                    format!("observations[{i}].id"),
                    format!("id {} appears twice in the batch", o.id),
                ));
            }
            if let Some(reason) = embedding_problem(&o.embedding, self.params.dim) {
                return Err(EngineError::invalid(format!("observations[{i}].embedding"), reason));
            }
            if self.params.metric == Metric::Cosine && o.embedding.iter().all(|&x| x == 0.0) {
                return Err(EngineError::invalid(
                    format!("observations[{i}].embedding"),
                    "all zeros: a cosine embedding needs a direction",
                ));
            }
            if let Some(c) = &o.content
                && c.len() > config.max_content_bytes
            {
                return Err(EngineError::invalid(
                    format!("observations[{i}].content"),
                    format!("is {} bytes, more than the limit of {} bytes", c.len(), config.max_content_bytes),
                ));
            }
        }
        Ok(())
    }
}

impl Space {
    /// Validates the ids of a delete against the engine limits: 1 to `max_batch_observations`,
    /// unique, none `u64::MAX`.
    ///
    /// # Errors
    /// [`EngineError::InvalidArgument`] naming `ids` or `ids[i]`.
    pub(crate) fn validate_delete(ids: &[u64], config: &EngineConfig) -> Result<(), EngineError> {
        if ids.is_empty() {
            return Err(EngineError::invalid("ids", "must hold at least one id"));
        }
        if ids.len() > config.max_batch_observations {
            return Err(EngineError::invalid(
                "ids",
                format!("holds {} ids, more than the limit of {}", ids.len(), config.max_batch_observations),
            ));
        }
        let mut seen = HashSet::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            if id == u64::MAX {
                return Err(EngineError::invalid(format!("ids[{i}]"), "18446744073709551615 (u64::MAX) is reserved"));
            }
            if !seen.insert(id) {
                return Err(EngineError::invalid(format!("ids[{i}]"), format!("id {id} appears twice")));
            }
        }
        Ok(())
    }

    /// Observation `id` if the space has accepted it.
    ///
    /// # Errors
    /// [`EngineError::Storage`] when its content cannot be read from the store.
    pub(crate) fn get(&self, id: u64) -> Result<Option<StoredObservation>, EngineError> {
        if !self.is_live(id) {
            return Ok(None);
        }
        Ok(Some(StoredObservation { id, content: self.content(id)? }))
    }

    /// The `k` observations most similar to `embedding`, best first, each with its content when
    /// `with_content`, and when each stage ended; see [`Engine::recall`](crate::Engine::recall)
    /// for the errors.
    pub(crate) fn recall(
        &self,
        mut embedding: Vec<f32>,
        k: usize,
        ef_search: Option<usize>,
        with_content: bool,
    ) -> Result<(Vec<RecallHit>, RecallTimes), EngineError> {
        let started = Instant::now();
        if !(1..=1000).contains(&k) {
            return Err(EngineError::invalid("k", format!("must be within 1 and 1000, got {k}")));
        }
        let ef = ef_search.unwrap_or(self.params.ef_search);
        if !(1..=4096).contains(&ef) {
            return Err(EngineError::invalid("ef_search", format!("must be within 1 and 4096, got {ef}")));
        }
        if let Some(reason) = embedding_problem(&embedding, self.params.dim) {
            return Err(EngineError::invalid("embedding", reason));
        }
        self.params.metric.prepare(&mut embedding).map_err(|r| EngineError::invalid("embedding", r))?;
        let validated = Instant::now();
        // The index may still hold ids deleted since (their delete is queued): they are left
        // out, and the search asks for more while it came back full but short of `k` live hits.
        // While the tail holds vectors not yet in the index (a start's replay, or inserts that
        // came during a checkpoint's copy), the graph's answer is merged with an exact scan of
        // the tail (`crate::tail`).
        let tail = !self.tail.is_empty();
        let counts = |id: u64| if tail { self.graph_hit_counts(id) } else { self.is_live(id) };
        // A reduced index's hits are candidates: `rescore_factor` of them per wanted hit,
        // rescored from the full vectors.
        let reduced = self.params.quantization().is_reduced();
        let fetch = if reduced { (k * self.params.rescore_factor).min(MAX_OVERFETCH) } else { k };
        let mut want = fetch;
        let found = loop {
            let found = self.index.search(&embedding, want, ef.max(want));
            let full = found.len() >= want;
            let live: Vec<_> = found.into_iter().filter(|n| counts(n.id)).take(fetch).collect();
            if live.len() >= fetch || !full || want >= MAX_OVERFETCH {
                break live;
            }
            want = (want * 2).min(MAX_OVERFETCH);
        };
        // Each hit with its content where it was read already (`Some`).
        let mut hits = if reduced {
            let mut rescored = self.rescore(&embedding, found)?;
            rescored.truncate(k);
            rescored
        } else {
            found.into_iter().map(|n| (n, None)).collect()
        };
        if tail {
            let exact = self.tail.search(&embedding, k, self.params.metric, |id, seq| self.is_latest(id, seq));
            // An id in both (its job applied between the two reads) is kept once, with the
            // tail's exact score.
            hits.retain(|h| !exact.iter().any(|e| e.id == h.0.id));
            hits.extend(exact.into_iter().map(|n| (n, None)));
            hits.sort_by(|a, b| b.0.score.total_cmp(&a.0.score));
            hits.truncate(k);
        }
        let searched = Instant::now();
        let hits = hits
            .into_iter()
            .map(|(n, content)| {
                let content = match content {
                    _ if !with_content => None,
                    Some(c) => c,
                    None => self.content(n.id)?,
                };
                Ok(RecallHit { id: n.id, score: n.score, content })
            })
            .collect::<Result<_, EngineError>>()?;
        let fetched = Instant::now();
        self.events.recalled(fetched - started);
        Ok((hits, RecallTimes { validated, searched, fetched }))
    }
}

/// When the stages of one recall ended, read from the monotonic clock ([`Instant`]): the
/// validate, search and content-fetch spans of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecallTimes {
    /// `k`, `ef_search` and the embedding checked, the embedding normalised for cosine.
    pub validated: Instant,
    /// The graph searched (with the tail's exact scan and, for a reduced index, the rescoring
    /// from the stored vectors): the hits are known.
    pub searched: Instant,
    /// Each hit's content read from the store: the answer is complete.
    pub fetched: Instant,
}

/// What is wrong with an embedding's length or values, if anything. The caller names the field,
/// so a valid embedding costs no allocation.
fn embedding_problem(v: &[f32], dim: usize) -> Option<String> {
    if v.len() != dim {
        return Some(format!("expected {dim} values, got {}", v.len()));
    }
    let j = v.iter().position(|x| !x.is_finite())?;
    Some(format!("value [{j}] is {}: values must be finite", v[j]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use engram_telemetry::{Telemetry, TelemetryConfig};
    use std::sync::atomic::{AtomicBool as StdBool, AtomicU64 as StdU64, AtomicUsize as StdUsize};

    /// A space stored before quantization existed holds `f32` vectors: its stored parameters
    /// read as `none`, not as today's default; stored explicit values are kept.
    #[test]
    fn stored_parameters_without_quantization_read_as_f32() {
        let old = SpaceParams::from_stored(serde_json::json!({"dim": 4, "index": "usearch"})).unwrap();
        assert_eq!(old.quantization, Some(Quantization::None));
        let new = SpaceParams::from_stored(serde_json::json!({"dim": 4, "quantization": "i8"})).unwrap();
        assert_eq!(new.quantization(), Quantization::I8);
        assert_eq!(SpaceParams::with_dim(4).quantization(), Quantization::None, "the default below 256 dimensions");
        assert_eq!(SpaceParams::with_dim(384).quantization(), Quantization::I8, "the default for cosine on usearch");
        assert!(SpaceParams::from_stored(serde_json::json!({"dim": 4, "quantization": "i4"})).is_err());
    }

    /// The default index follows the dimension and the quantization asked for; one asked for
    /// is kept; stored parameters without `index` are a usearch space's.
    #[test]
    fn the_default_index_is_engram_below_256_dimensions_and_usearch_from_256() {
        let at = |dim| SpaceParams::with_dim(dim).resolved();
        for (dim, index, quantization) in [
            (4, IndexKind::Engram, Quantization::None),
            (255, IndexKind::Engram, Quantization::None),
            (256, IndexKind::Usearch, Quantization::I8),
            (384, IndexKind::Usearch, Quantization::I8),
        ] {
            assert_eq!((at(dim).index, at(dim).quantization), (Some(index), Some(quantization)), "dim {dim}");
        }
        let reduced = SpaceParams { quantization: Some(Quantization::F16), ..SpaceParams::with_dim(50) };
        assert_eq!(reduced.index(), IndexKind::Usearch, "engram holds f32 only");
        let f32_at_384 = SpaceParams { quantization: Some(Quantization::None), ..SpaceParams::with_dim(384) };
        assert_eq!(f32_at_384.index(), IndexKind::Usearch);
        let asked = SpaceParams { index: Some(IndexKind::HnswRs), ..SpaceParams::with_dim(50) };
        assert_eq!(asked.resolved().index, Some(IndexKind::HnswRs));
        let stored = SpaceParams::from_stored(serde_json::json!({"dim": 4, "quantization": "none"})).unwrap();
        assert_eq!(stored.index, Some(IndexKind::Usearch));
        let parsed: SpaceParams = serde_json::from_value(serde_json::json!({"dim": 4})).unwrap();
        assert_eq!((parsed.index, parsed.index()), (None, IndexKind::Engram));
    }

    /// The checkpoint position read while operations are sequenced and their jobs applied on
    /// two threads in any order: it never decreases and never covers an operation with a job
    /// still unapplied. Every 200 operations the writer waits for the reader's next read, so
    /// the reader reads at least 100 times between them however the threads are scheduled (a
    /// count it only hoped for failed, "the reader hardly ran: 5", with the index tests beside
    /// it keeping both cores busy).
    #[test]
    fn applied_through_never_covers_an_unapplied_job_while_jobs_finish_out_of_order() {
        const OPS: usize = 20_000;
        let telemetry = Telemetry::new(TelemetryConfig::default());
        let params = SpaceParams::with_dim(4);
        let index = build_index(&params, 2).unwrap();
        let space = Arc::new(Space::new("s".into(), 1, params, index, SpaceEvents::register(&telemetry, "s"), None));
        // Jobs left per operation, and whether all of them were applied (set before the last
        // job_done, so a position that covers the operation finds it set).
        let left: Arc<Vec<StdUsize>> = Arc::new((0..=OPS).map(|_| StdUsize::new(0)).collect());
        let done: Arc<Vec<StdBool>> = Arc::new((0..=OPS).map(|_| StdBool::new(false)).collect());
        let (tx, rx) = flume::bounded::<u64>(256);
        let order = Arc::new(Mutex::new(()));
        let reads = Arc::new(StdU64::new(0));
        let writer = {
            let (space, left, order, done, reads) =
                (Arc::clone(&space), Arc::clone(&left), Arc::clone(&order), Arc::clone(&done), Arc::clone(&reads));
            std::thread::spawn(move || {
                for seq in 1..=OPS as u64 {
                    if seq % 200 == 0 {
                        let seen = reads.load(Ordering::SeqCst);
                        while reads.load(Ordering::SeqCst) == seen {
                            std::thread::yield_now();
                        }
                    }
                    let jobs = (seq % 3) as usize; // 0, 1 or 2 jobs
                    let _ordered = order.lock();
                    left[seq as usize].store(jobs, Ordering::SeqCst);
                    if jobs == 0 {
                        done[seq as usize].store(true, Ordering::SeqCst);
                    }
                    space.sequenced(seq, jobs);
                    for _ in 0..jobs {
                        tx.send(seq).unwrap();
                    }
                }
            })
        };
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let (space, left, done, rx) = (Arc::clone(&space), Arc::clone(&left), Arc::clone(&done), rx.clone());
                std::thread::spawn(move || {
                    let mut held = Vec::new();
                    let finish = |seq: u64| {
                        if left[seq as usize].fetch_sub(1, Ordering::SeqCst) == 1 {
                            done[seq as usize].store(true, Ordering::SeqCst);
                        }
                        space.job_done(seq);
                    };
                    for (i, seq) in rx.iter().enumerate() {
                        // Hold some jobs back a while: jobs finish out of order.
                        if (i + w) % 7 == 0 {
                            held.push(seq);
                        } else {
                            finish(seq);
                        }
                        if held.len() > 20 {
                            finish(held.remove(0));
                        }
                    }
                    held.into_iter().for_each(finish);
                })
            })
            .collect();
        drop(rx);
        let reader = {
            let (space, done, reads) = (Arc::clone(&space), Arc::clone(&done), Arc::clone(&reads));
            std::thread::spawn(move || {
                let mut last = 0u64;
                while last < OPS as u64 {
                    let p = space.applied_through();
                    assert!(p >= last, "went back from {last} to {p}");
                    for s in last + 1..=p {
                        assert!(done[s as usize].load(Ordering::SeqCst), "position {p} covers unapplied {s}");
                    }
                    last = p;
                    reads.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        writer.join().unwrap();
        for w in workers {
            w.join().unwrap();
        }
        reader.join().unwrap();
        let reads = reads.load(Ordering::SeqCst);
        assert!(reads >= 100, "the reader hardly ran: {reads}");
        assert_eq!(space.applied_through(), OPS as u64);
    }
}
