//! The metric catalog: every metric Engram Stream exports, in one table.
//!
//! Names follow Prometheus conventions (base units, `_total` for counters, `_seconds`,
//! `_bytes`; see <https://prometheus.io/docs/practices/naming/>). Every histogram has fixed
//! buckets listed here; they are installed into the exporter once, so the exported bounds never
//! change between scrapes. Every label takes a bounded set of values (see [`crate::labels`]).
//!
//! `docs/metrics.md` is checked against [`CATALOG`] by `telemetry/tests/catalog_doc.rs`.

/// The Prometheus type of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic counter (`_total`).
    Counter,
    /// Value that goes up and down.
    Gauge,
    /// Histogram with the fixed buckets of [`MetricDef::buckets`].
    Histogram,
}

impl MetricKind {
    /// The type name used in the exposition format's `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// How a series fed by several sampled sources (see [`crate::Telemetry::sampled`]) combines
/// them: memory spaces folded into the `__other__` label share one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// Sum of the sources (sizes, counts).
    Sum,
    /// The largest source (levels: the worst space shows).
    Max,
}

/// One catalog entry.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// Full metric name as exported (histograms get `_bucket`, `_sum`, `_count` suffixes).
    pub name: &'static str,
    /// Prometheus type.
    pub kind: MetricKind,
    /// Label names, in the order the registry expects label values.
    pub labels: &'static [&'static str],
    /// Help text (the `# HELP` line).
    pub help: &'static str,
    /// Upper bounds of the histogram buckets (histograms only; `+Inf` is implicit).
    pub buckets: &'static [f64],
    /// Unit of the value (`seconds`, `bytes`, `observations`, ...).
    pub unit: &'static str,
    /// The code path that produces the value (crate, module, function).
    pub source: &'static str,
    /// The range the value is expected to take in normal operation.
    pub range: &'static str,
    /// How sampled sources sharing a series combine.
    pub fold: Fold,
}

const fn def(
    name: &'static str,
    kind: MetricKind,
    labels: &'static [&'static str],
    help: &'static str,
    buckets: &'static [f64],
) -> MetricDef {
    MetricDef { name, kind, labels, help, buckets, unit: "", source: "", range: "", fold: Fold::Sum }
}
const fn counter(name: &'static str, labels: &'static [&'static str], help: &'static str) -> MetricDef {
    def(name, MetricKind::Counter, labels, help, &[])
}
const fn gauge(name: &'static str, labels: &'static [&'static str], help: &'static str) -> MetricDef {
    def(name, MetricKind::Gauge, labels, help, &[])
}
const fn histogram(
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
    buckets: &'static [f64],
) -> MetricDef {
    def(name, MetricKind::Histogram, labels, help, buckets)
}

impl MetricDef {
    /// Sets the documented unit, producing code path and expected range.
    const fn doc(mut self, unit: &'static str, source: &'static str, range: &'static str) -> Self {
        self.unit = unit;
        self.source = source;
        self.range = range;
        self
    }

    /// Sets how sampled sources sharing a series combine.
    const fn fold(mut self, fold: Fold) -> Self {
        self.fold = fold;
        self
    }
}

/// Latency buckets for ingest (seconds): 0.5 ms to 30 s.
pub const INGEST_LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Latency buckets for queries and requests (seconds): 0.1 ms to 10 s.
pub const REQUEST_LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Buckets for index rebuilds (seconds): 0.1 s to 1 h.
pub const REBUILD_BUCKETS: &[f64] =
    &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];
/// Batch size buckets (observations): powers of two up to 1024.
pub const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];
/// Message size buckets (bytes): 64 B to 64 MiB, by powers of four.
pub const SIZE_BUCKETS: &[f64] =
    &[64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0];

/// Declares each metric as a `pub const` and [`CATALOG`] as the list of them, in table order,
/// from one table (as Vector's `all_metrics()`): a metric cannot be defined and left out of the
/// catalog, nor listed twice by hand.
macro_rules! catalog {
    ($($(#[$attr:meta])* $name:ident = $def:expr;)+) => {
        $($(#[$attr])* pub const $name: MetricDef = $def;)+
        /// Every metric we export, in table order (the order of docs/metrics.md).
        pub const CATALOG: &[MetricDef] = &[$($name),+];
    };
}

catalog! {
    // ---- streaming: admission and queue ------------------------------------------------------
    /// Observations admitted into the queue (new ids, and every upserted one), by space and
    /// priority.
    OBSERVATIONS = counter(
        "engram_streaming_observations_total",
        &["memory_space", "priority"],
        "Observations admitted into the observation queue (new ids, and upserts).",
    )
    .doc("observations", "engine update::admit::Admitter::submit", "monotonic; rate ≈ offered load minus rejections");
    /// Observations acknowledged as duplicates of an id already accepted (not inserted again).
    OBSERVATIONS_DUPLICATE = counter(
        "engram_streaming_observations_duplicate_total",
        &["memory_space"],
        "Observations whose id was already accepted: acknowledged without inserting twice.",
    )
    .doc("observations", "engine update::admit::Admitter::submit", "monotonic; 0 unless clients retry acknowledged ids");
    /// Upserted observations that replaced an id the space held (counted in `OBSERVATIONS` too).
    OBSERVATIONS_REPLACED = counter(
        "engram_streaming_observations_replaced_total",
        &["memory_space"],
        "Upserted observations whose id the space held: vector and content replaced.",
    )
    .doc("observations", "engine update::admit::Admitter::submit", "monotonic; 0 unless clients upsert");
    /// Observations deleted: ids a delete found in the space.
    OBSERVATIONS_DELETED = counter(
        "engram_streaming_observations_deleted_total",
        &["memory_space"],
        "Observations deleted (ids the space held when the delete was admitted).",
    )
    .doc("observations", "engine update::admit::Admitter::delete", "monotonic; 0 unless clients delete");
    /// Observations rejected, by reason. received = admitted + duplicate + rejected, exactly.
    OBSERVATIONS_REJECTED = counter(
        "engram_streaming_observations_rejected_total",
        &["memory_space", "reason"],
        "Observations rejected at admission, by reason (each rejection carries a retry-after).",
    )
    .doc("observations", "engine update::admit::Admitter::submit", "monotonic; rate 0 below Critical");
    /// Observations inserted into their space's index (searchable).
    OBSERVATIONS_INDEXED = counter(
        "engram_streaming_observations_indexed_total",
        &["memory_space"],
        "Observations inserted into the memory space's index (searchable).",
    )
    .doc("observations", "engine update::worker::WorkerLoop::process", "monotonic; rate ≈ admitted rate in steady state");
    /// Queue depth per priority lane.
    QUEUE_DEPTH = gauge(
        "engram_streaming_queue_depth",
        &["priority"],
        "Observations waiting in the queue, by priority lane.",
    )
    .doc("observations", "engine queue::LaneQueue::push / take (the engine's count, sampled at scrape)", "0 to queue capacity (all lanes together)");
    /// Queue capacity in observations (the hard cap).
    QUEUE_CAPACITY = gauge(
        "engram_streaming_queue_capacity",
        &[],
        "Capacity of the observation queue, in observations.",
    )
    .doc("observations", "engine queue (config queue_capacity)", "constant");
    /// Bytes held by queued observations.
    QUEUE_MEMORY_BYTES = gauge(
        "engram_streaming_queue_memory_bytes",
        &[],
        "Bytes held by queued observations (embedding, content and bookkeeping).",
    )
    .doc("bytes", "engine admission::Capacity (read at scrape)", "0 to queue capacity bytes");
    /// Queue capacity in bytes.
    QUEUE_CAPACITY_BYTES = gauge(
        "engram_streaming_queue_capacity_bytes",
        &[],
        "Capacity of the observation queue, in bytes.",
    )
    .doc("bytes", "engine queue (config queue_capacity_bytes)", "constant");
    /// Queue utilization, the value backpressure steers by.
    QUEUE_UTILIZATION = gauge(
        "engram_streaming_queue_utilization_ratio",
        &[],
        "Queue fill, 0 to 1: the larger of observations over capacity and bytes over capacity bytes.",
    )
    .doc(
        "ratio",
        "engine admission::Capacity (read at scrape)",
        "0 to 1; Warning at 0.6, Critical 0.8, Overloaded 0.9 by default",
    );
    /// The smoothed drain rate retry-after is computed from.
    QUEUE_DRAIN_RATE = gauge(
        "engram_streaming_queue_drain_rate_observations_per_second",
        &[],
        "Observations taken from the queue per second (exponentially smoothed; retry-after uses it).",
    )
    .doc(
        "observations per second",
        "engine update::scheduler::Scheduler::observe_drain (smoothed every 200 ms by the monitor; sampled at scrape)",
        "0 to the index insert rate; 0 when idle since start",
    );
    /// Time from admission to being taken by a worker.
    QUEUE_WAIT_TIME = histogram(
        "engram_streaming_queue_wait_time_seconds",
        &["priority"],
        "Time an observation waited in the queue before a worker took it.",
        INGEST_LATENCY_BUCKETS,
    )
    .doc("seconds", "engine queue::LaneQueue::take", "below batch_latency_target_ms when not backlogged");

    // ---- streaming: backpressure -------------------------------------------------------------
    /// Backpressure state per space (0 Normal, 1 Warning, 2 Critical, 3 Overloaded).
    BACKPRESSURE_STATE = gauge(
        "engram_streaming_backpressure_state",
        &["memory_space"],
        "Backpressure state of the memory space: 0 normal, 1 warning, 2 critical, 3 overloaded.",
    )
    .doc("level", "engine update::admit::Admitter::evaluate (read at scrape)", "0 to 3; 0 in normal operation")
    .fold(Fold::Max);
    /// Entries into a worse backpressure state.
    BACKPRESSURE_ACTIVATIONS = counter(
        "engram_streaming_backpressure_activations_total",
        &["memory_space", "level"],
        "Entries into a worse backpressure state, by the level entered.",
    )
    .doc("transitions", "engine update::admit::Admitter::evaluate", "monotonic; rare in normal operation");

    // ---- streaming: worker pool ---------------------------------------------------------------
    /// Worker threads in the pool.
    WORKERS = gauge("engram_streaming_workers", &[], "Worker threads in the insertion pool.").doc(
        "threads",
        "engine update::UpdateHandler::start",
        "constant (config workers)",
    );
    /// Batches inserted by each worker.
    BATCHES_PROCESSED = counter(
        "engram_streaming_batches_processed_total",
        &["worker_id"],
        "Batches of observations inserted by the worker.",
    )
    .doc("batches", "engine update::worker::WorkerLoop::run", "monotonic");
    /// Batch insertion failures by type.
    BATCH_FAILURES = counter(
        "engram_streaming_batch_failures_total",
        &["worker_id", "error_type"],
        "Observations of a batch that could not be inserted, by error type.",
    )
    .doc(
        "observations",
        "engine update::worker::WorkerLoop::process",
        "monotonic; 0 unless a space is dropped with work queued",
    );
    /// Observations stolen from other workers' local queues.
    WORK_STOLEN = counter(
        "engram_streaming_work_stolen_total",
        &["worker_id"],
        "Observations the worker stole from other workers' local queues.",
    )
    .doc("observations", "engine update::worker::WorkerLoop::fill", "monotonic; a small share of the indexed rate");
    /// Busy ratio of each worker over the last sampling interval.
    WORKER_UTILIZATION = gauge(
        "engram_streaming_worker_utilization",
        &["worker_id"],
        "Fraction of the last sampling interval the worker spent inserting (0 to 1).",
    )
    .doc(
        "ratio",
        "engine update::monitor::Monitor::close_window (the worker's busy time, every 1 s; sampled at scrape)",
        "0 to 1; near 1 under sustained load",
    );
    /// Time each worker spends inserting a batch; its sum is the worker's busy time.
    BATCH_DURATION = histogram(
        "engram_streaming_batch_duration_seconds",
        &["worker_id"],
        "Time the worker spent inserting one batch (its sum is the worker's busy time).",
        REQUEST_LATENCY_BUCKETS,
    )
    .doc("seconds", "engine update::worker::WorkerLoop::run", "up to about batch_latency_target_ms");
    /// Batch sizes chosen by the adaptive batcher.
    BATCH_SIZE = histogram(
        "engram_streaming_batch_size",
        &["worker_id"],
        "Observations per batch taken by the worker (adaptive batch size).",
        BATCH_SIZE_BUCKETS,
    )
    .doc("observations", "engine update::worker::WorkerLoop::run", "min_batch to max_batch");
    /// Accepted → indexed latency.
    OBSERVATION_LATENCY = histogram(
        "engram_streaming_observation_latency_seconds",
        &["memory_space"],
        "Time from admission (accepted) to insertion into the index (indexed).",
        INGEST_LATENCY_BUCKETS,
    )
    .doc("seconds", "engine update::worker::WorkerLoop::process", "p99 below 0.1 s at moderate load");

    // ---- recall and index ---------------------------------------------------------------------
    /// Recall query latency.
    RECALL_LATENCY = histogram(
        "engram_streaming_recall_latency_seconds",
        &["memory_space"],
        "Time to answer a recall query (index search and content lookup).",
        REQUEST_LATENCY_BUCKETS,
    )
    .doc("seconds", "engine space::Space::recall", "about 1 ms at ef 64 on 50 to 384 dimensions");
    /// Vectors in each space's index.
    INDEX_VECTORS = gauge(
        "engram_index_vectors",
        &["memory_space"],
        "Vectors inserted into the memory space's index.",
    )
    .doc("vectors", "engine index (read at scrape)", "0 to the space max_elements");
    /// Estimated memory of each space.
    INDEX_MEMORY_BYTES = gauge(
        "engram_index_memory_bytes",
        &["memory_space"],
        "Memory the memory space holds in use, from the engine's own accounting: index graph, vectors, reserved index slots, content and id map (not reserved address space).",
    )
    .doc(
        "bytes",
        "engine space::Space::memory_bytes (read at scrape)",
        "grows with vectors; checked against resident-memory growth (engine/tests/memory.rs)",
    );
    /// Removed points an index still keeps.
    INDEX_TOMBSTONES = gauge(
        "engram_index_tombstones",
        &["memory_space"],
        "Removed points the memory space's index still keeps: hnsw_rs cannot unlink a point, so a delete or upsert leaves a tombstone that routes searches but is never returned, until the index is compacted after a checkpoint. Always 0 for usearch, which removes in place.",
    )
    .doc(
        "points",
        "engine index::VectorIndex::tombstones (read at scrape)",
        "below 20 % of the index's points (a compaction starts past that, from 256 tombstones)",
    );
    /// Index compactions (rebuilds without tombstones), by outcome.
    INDEX_COMPACTIONS = counter(
        "engram_index_compactions_total",
        &["outcome"],
        "Index rebuilds without tombstones (hnsw_rs), started after a checkpoint once a space's tombstones reach 20 % of its points: outcome compacted (swapped in and checkpointed), or abandoned (stopped at shutdown or drop, or ingest wrote faster than the rebuild caught up; tried again after a later checkpoint).",
    )
    .doc("compactions", "engine update::checkpoint::Checkpointer::compact", "a few per day under heavy deletes; abandoned rare");
    /// Time one compaction took.
    INDEX_COMPACTION_DURATION = histogram(
        "engram_index_compaction_duration_seconds",
        &[],
        "Time one completed index compaction took: the live points collected, inserted into a new graph on one thread, the operations made meanwhile applied, the swap.",
        REBUILD_BUCKETS,
    )
    .doc("seconds", "engine update::checkpoint::Checkpointer::compact", "about as long as inserting the live points on one thread");

    // ---- sessions and API ---------------------------------------------------------------------
    /// Open client connections per listener.
    CONNECTIONS_OPEN = gauge(
        "engram_api_connections_open",
        &["protocol"],
        "Open client connections, by listener (HTTP or gRPC).",
    )
    .doc("connections", "server listen::ConnectionLimits::admit", "0 to max_connections (both listeners together)");
    /// Connections refused at the connection cap.
    CONNECTIONS_REFUSED = counter(
        "engram_api_connections_refused_total",
        &["protocol"],
        "Connections closed as soon as accepted because max_connections were open.",
    )
    .doc(
        "connections",
        "server listen::ConnectionLimits::admit",
        "monotonic; 0 unless clients open more connections than the cap",
    );
    /// Connections closed for idleness or a slow request head.
    CONNECTIONS_TIMED_OUT = counter(
        "engram_api_connections_timed_out_total",
        &["protocol"],
        "Connections closed because no byte moved for idle_timeout_secs, or an HTTP request head took longer than header_read_timeout_secs.",
    )
    .doc("connections", "server listen::IdleIo, listen::serve_http", "monotonic; a steady rate means clients hold connections open without using them");
    /// Open gRPC observation streams.
    ACTIVE_SESSIONS = gauge(
        "engram_streaming_active_sessions",
        &[],
        "Open gRPC StreamObservations streams.",
    )
    .doc("streams", "server grpc::EngramService::stream_observations", "0 to the number of connected clients");
    /// HTTP requests by route template and status.
    HTTP_REQUESTS = counter(
        "engram_http_requests_total",
        &["method", "route", "status"],
        "HTTP requests served, by method, route template and status code.",
    )
    .doc("requests", "server http::metrics_layer::track", "monotonic");
    /// HTTP request duration.
    HTTP_REQUEST_DURATION = histogram(
        "engram_http_request_duration_seconds",
        &["method", "route"],
        "Time to serve an HTTP request, by method and route template.",
        REQUEST_LATENCY_BUCKETS,
    )
    .doc("seconds", "server http::metrics_layer::track", "ms for ingest and recall; longer with ?wait=indexed");
    /// HTTP request body size.
    HTTP_REQUEST_SIZE =
        histogram("engram_http_request_size_bytes", &["method", "route"], "HTTP request body size.", SIZE_BUCKETS).doc(
            "bytes",
            "server http::metrics_layer::track",
            "up to http body_limit_bytes",
        );
    /// HTTP response body size.
    HTTP_RESPONSE_SIZE =
        histogram("engram_http_response_size_bytes", &["method", "route"], "HTTP response body size.", SIZE_BUCKETS).doc(
            "bytes",
            "server http::metrics_layer::track",
            "under 1 MiB",
        );
    /// HTTP requests being served.
    HTTP_IN_FLIGHT = gauge(
        "engram_http_requests_in_flight",
        &["method", "route"],
        "HTTP requests being served.",
    )
    .doc("requests", "server http::metrics_layer::track", "0 to the number of client connections");
    /// gRPC calls by method and status code.
    GRPC_REQUESTS = counter(
        "engram_grpc_requests_total",
        &["method", "code"],
        "gRPC calls completed, by method and status code (streams count once, when they end).",
    )
    .doc("calls", "server grpc::EngramService", "monotonic");
    /// gRPC call duration (stream lifetime for streams).
    GRPC_REQUEST_DURATION = histogram(
        "engram_grpc_request_duration_seconds",
        &["method"],
        "Duration of a gRPC call (for streams, the stream's lifetime).",
        REQUEST_LATENCY_BUCKETS,
    )
    .doc("seconds", "server grpc::EngramService", "ms for unary calls; stream lifetime for streams");
    /// gRPC request message size.
    GRPC_REQUEST_SIZE = histogram(
        "engram_grpc_request_size_bytes",
        &["method"],
        "Encoded size of each gRPC request message.",
        SIZE_BUCKETS,
    )
    .doc("bytes", "server grpc::EngramService", "up to grpc max_message_bytes");
    /// gRPC response message size.
    GRPC_RESPONSE_SIZE = histogram(
        "engram_grpc_response_size_bytes",
        &["method"],
        "Encoded size of each gRPC response message.",
        SIZE_BUCKETS,
    )
    .doc("bytes", "server grpc::EngramService", "under 1 MiB");
    /// gRPC calls in progress.
    GRPC_IN_FLIGHT = gauge(
        "engram_grpc_requests_in_flight",
        &["method"],
        "gRPC calls in progress (open streams included).",
    )
    .doc("calls", "server grpc::EngramService", "0 to the number of client calls and streams");
    /// API requests refused before reaching the engine's queue, by reason.
    API_REJECTED = counter(
        "engram_api_requests_rejected_total",
        &["protocol", "reason"],
        "API requests or stream batches refused, by protocol and reason (malformed, invalid_argument, payload_too_large, unknown_space, unknown_route, overloaded, shutting_down, space_limit, storage, recovering).",
    )
        .doc("requests", "server api_error::ApiError (HTTP metrics layer, gRPC handlers)", "monotonic; sustained malformed or oversized traffic is worth a look");
    /// Composite health score (see `docs/metrics.md#health-score`).
    HEALTH_SCORE = gauge(
        "engram_health_score",
        &[],
        "Health, 0 to 100: 100 minus weighted penalties for errors (40), backpressure (30), queue utilization (15) and resource use (15).",
    )
        .doc("score", "telemetry health::HealthSampler::tick (every 5 s)", "0 to 100; 100 healthy, below 70 degraded, below 50 failing");
    /// Build information.
    BUILD_INFO = gauge(
        "engram_build_info",
        &["version"],
        "Always 1; the version label names the running build.",
    )
    .doc("1", "telemetry registry::Telemetry::new", "always 1");

    // ---- storage: the durable log ------------------------------------------------------------
    /// Observations appended to the durable log.
    STORAGE_APPENDED_RECORDS = counter(
        "engram_storage_appended_records_total",
        &[],
        "Observations appended to the durable log (each batch is one log record holding them).",
    )
    .doc("observations", "engine storage::Store::append", "monotonic; follows the admitted rate when durability is not none");
    /// Bytes appended to the durable log.
    STORAGE_APPENDED_BYTES = counter(
        "engram_storage_appended_bytes_total",
        &[],
        "Bytes of encoded log records appended to the durable log (before the store's compression).",
    )
    .doc("bytes", "engine storage::Store::append", "monotonic; about (4 × dim + 12 + content) bytes per observation");
    /// Group-commit syncs.
    STORAGE_SYNCS = counter(
        "engram_storage_syncs_total",
        &[],
        "Group-commit syncs of the log (fsync, or the journal buffer written to the OS with durability os).",
    )
    .doc("syncs", "engine storage::commit::GroupCommit::run", "monotonic; at most one sync in flight, so fewer than appends under load");
    /// Duration of one group-commit sync.
    STORAGE_SYNC_DURATION = histogram(
        "engram_storage_sync_duration_seconds",
        &[],
        "Time one group-commit sync of the log took.",
        REQUEST_LATENCY_BUCKETS,
    )
    .doc("seconds", "engine storage::commit::GroupCommit::run", "fsync on SSD: 0.1 to 10 ms; above 50 ms the disk is slow");
    /// Observations one sync made durable.
    STORAGE_SYNC_RECORDS = histogram(
        "engram_storage_sync_observations",
        &[],
        "Observations one group-commit sync made durable (the group commit's batching).",
        BATCH_SIZE_BUCKETS,
    )
    .doc("observations", "engine storage::commit::GroupCommit::run", "grows with concurrent writers");
    /// Failed storage operations by kind.
    STORAGE_ERRORS = counter(
        "engram_storage_errors_total",
        &["kind"],
        "Log writes or syncs that failed, by kind (storage_full: ENOSPC; storage_error: any other I/O error). Nothing they covered was acknowledged durable.",
    )
    .doc("errors", "engine storage::Store::append, storage::commit::GroupCommit::run", "0; any increase needs a look (disk full or failing)");
    /// Bytes the store holds on disk.
    STORAGE_DISK_BYTES = gauge(
        "engram_storage_disk_bytes",
        &[],
        "Bytes the data directory takes on disk (allocated blocks: journal, tables, content), read at scrape time.",
    )
    .doc("bytes", "engine storage::Store::disk_bytes (sampled)", "grows with stored observations");
    /// Bytes available on the data directory's filesystem.
    STORAGE_FILESYSTEM_FREE_BYTES = gauge(
        "engram_storage_filesystem_free_bytes",
        &[],
        "Bytes available to the server on the data directory's filesystem (statvfs f_bavail × f_frsize, as node_filesystem_avail_bytes), read at scrape time.",
    )
    .doc("bytes", "engine storage::Store::free_bytes (sampled)", "falls as the store grows; at 0 every write is refused with storage_full");
    /// Index checkpoints written.
    STORAGE_CHECKPOINTS = counter(
        "engram_storage_checkpoints_total",
        &[],
        "Index checkpoints written (index file and id states as of a log position), after which the log before the older live checkpoint is compacted away.",
    )
    .doc("checkpoints", "engine update::checkpoint::Checkpointer::checkpoint", "one per space with new operations per storage.checkpoint_interval_s, and after storage.checkpoint_after_operations on one space");
    /// Inserts deferred while a checkpoint copied their space's index.
    STORAGE_CHECKPOINT_DEFERRED = counter(
        "engram_storage_checkpoint_deferred_inserts_total",
        &[],
        "Inserts of new ids that arrived while a checkpoint copied their space's index: put in the space's tail (searchable, acknowledged) instead of waiting for the copy, and in the index right after it.",
    )
    .doc("observations", "engine update::checkpoint::Checkpointer::checkpoint", "about the insert rate times the copy's duration per checkpoint (tens of ms for 100k usearch vectors)");
    /// Checkpoints that failed, by reason.
    STORAGE_CHECKPOINT_FAILURES = counter(
        "engram_storage_checkpoint_failures_total",
        &["reason"],
        "Checkpoints that could not be written (reason write) or that did not verify at start and were moved aside (reason corrupt).",
    )
    .doc("checkpoints", "engine update::checkpoint::Checkpointer::checkpoint, update::recovery::Recovery::load_checkpoint", "0; any increase needs a look");
    /// Snapshots written and restored, by operation and outcome.
    STORAGE_SNAPSHOTS = counter(
        "engram_storage_snapshots_total",
        &["operation", "outcome"],
        "Snapshot calls: operation create (a snapshot file written) or restore (a space created from one); outcome ok, or failed (refused or not completed: a bad file, an existing space, a write error).",
    )
    .doc("snapshots", "engine update::snapshot::create_snapshot, update::snapshot::restore_snapshot", "as often as backups run; failed 0 outside operator mistakes");
    /// Times the store healed by itself after a failed write or sync.
    STORAGE_HEALS = counter(
        "engram_storage_heals_total",
        &[],
        "Times the store healed by itself after a failed write or sync (disk full, I/O error): the database reopened, the writes no sync had covered written again, writes accepted again. Writes are refused between the failure and the heal.",
    )
    .doc("heals", "engine storage::commit::GroupCommit::heal", "0; each one follows storage errors: free disk space or check the device");
    /// Time one checkpoint took.
    STORAGE_CHECKPOINT_DURATION = histogram(
        "engram_storage_checkpoint_duration_seconds",
        &[],
        "Time one checkpoint took: the index written under its lock, the states, syncs, the manifest and the log compaction.",
        INGEST_LATENCY_BUCKETS,
    )
    .doc("seconds", "engine update::checkpoint::Checkpointer::checkpoint", "tens of milliseconds per 100k vectors; the index lock is held for the write of the index file");
    /// Seconds since a space's newest checkpoint.
    STORAGE_CHECKPOINT_AGE = gauge(
        "engram_storage_checkpoint_age_seconds",
        &["memory_space"],
        "Seconds since the space's checkpoint was last current (written, or found with nothing new to cover; or since the space was created or recovered), read at scrape time.",
    )
    .doc("seconds", "engine update::checkpoint (sampled)", "below 2 × storage.checkpoint_interval_s while the space takes writes");
    /// Seconds the last recovery took until ready (checkpoints loaded, the log after them read;
    /// the catch-up into the graph after it is not counted).
    RECOVERY_DURATION = gauge(
        "engram_storage_recovery_duration_seconds",
        &[],
        "Seconds the last start took until ready: checkpoints loaded and the log after them read (0 while it runs, and with durability none); the catch-up of the replayed observations into the graph after it is not counted.",
    )
    .doc("seconds", "engine update::recovery::Recovery::start", "under 0.2 s for 100,000 GloVe vectors, from a checkpoint or from the whole log");
    /// Observations replayed from the log at start.
    RECOVERY_REPLAYED = counter(
        "engram_storage_recovery_replayed_observations_total",
        &[],
        "Observations replayed from the log into the indexes at start.",
    )
    .doc("observations", "engine update::recovery::Recovery::run", "the stored observations, once per start");
    /// Log records that did not decode at replay.
    RECOVERY_CORRUPT = counter(
        "engram_storage_recovery_corrupt_records_total",
        &[],
        "Log records that did not decode at start; each ends its space's replay at the last whole record before it.",
    )
    .doc("records", "engine update::recovery::Recovery::run", "0; any is a torn or corrupt log (see the runbook)");

    // ---- traces: OpenTelemetry spans exported over OTLP ---------------------------------------
    /// Batches and recalls whose spans were exported, by why.
    TRACES_SAMPLED = counter(
        "engram_traces_sampled_total",
        &["reason"],
        "Requests (batches, recalls) whose spans were handed to the OTLP exporter, by why: sampler (the configured sampler chose it, parent-based by default) or forced (rejected or failed: always traced).",
    )
    .doc("traces", "server trace::Tracer::finish", "about the sampler ratio times the request rate, plus every rejected or failed batch; 0 while tracing is off");
    /// Spans the OTLP collector acknowledged.
    TRACE_SPANS_EXPORTED = counter(
        "engram_trace_spans_exported_total",
        &[],
        "Spans the OTLP endpoint accepted (an export call that returned OK).",
    )
    .doc("spans", "server trace::export::CountingExporter::export", "about 8 per traced batch, 5 per traced recall");
    /// Spans lost on the way to the collector.
    TRACE_SPANS_DROPPED = counter(
        "engram_trace_spans_dropped_total",
        &["reason"],
        "Spans that never reached the OTLP endpoint, by reason: queue_full (the export queue held tracing.export_queue_spans already: the collector is slow or down) or export_failed (the export call failed after its retries). Ingest never waits for the exporter.",
    )
    .doc("spans", "server trace::export::Gate::submit, trace::export::CountingExporter::export", "0; a steady rate means the collector is down or too slow");

    // ---- authentication ------------------------------------------------------------------------
    /// Requests refused by authentication or authorization.
    AUTH_FAILURES = counter(
        "engram_auth_failures_total",
        &["transport", "reason"],
        "Requests refused by API-key authentication or authorization, by transport (http, grpc) and reason: missing (no key sent: 401 / UNAUTHENTICATED), invalid (a key no configured key matches: 401 / UNAUTHENTICATED) or forbidden (a known key without the grant the request needs: 403 / PERMISSION_DENIED).",
    )
    .doc("requests", "server auth::Auth::authenticate, auth::Principal::require", "0 while auth is off; a few from misconfigured clients; a spike means a leaked, revoked or guessed key");
    /// Whether API-key authentication is on.
    AUTH_ENABLED = gauge(
        "engram_auth_enabled",
        &[],
        "1 when API-key authentication is on (keys or a keys file configured), 0 when every client may do everything.",
    )
    .doc("boolean", "server auth::Auth::new, auth::Auth::reload", "1 in production; 0 only on a loopback-only development server");
    /// API keys in force.
    AUTH_KEYS = gauge(
        "engram_auth_keys",
        &[],
        "API keys in force: those in the config file plus those in the keys file as last read.",
    )
    .doc("keys", "server auth::Auth::new, auth::Auth::reload", "constant between key rotations");
    /// Listeners open to the network with auth off.
    AUTH_OPEN_LISTENERS = gauge(
        "engram_auth_open_listeners",
        &[],
        "Listeners (http, grpc) bound to an address other than loopback while API-key authentication is off: anyone who can reach them may read, write and drop every memory space.",
    )
    .doc("listeners", "server auth::Auth::listeners_bound", "0 in production (auth on, or loopback only); 1 or 2 needs keys configured");
    /// Requests refused by a per-key rate limit.
    RATE_LIMITED = counter(
        "engram_rate_limited_total",
        &["key", "limit"],
        "Requests refused by a per-key rate limit (429 / RESOURCE_EXHAUSTED, reason rate_limited), by key name (- for limits per client address while auth is off) and limit (requests, observations). Apart from backpressure: the server had room, the key had spent its rate.",
    )
    .doc("requests", "server auth::limits::Limiter::request / observations, auth::limits::PeerLimiter", "0 unless [rate_limits] or a key sets a limit; a steady rate means a client sends more than its limit");
    /// Re-reads of the keys file.
    AUTH_KEY_RELOADS = counter(
        "engram_auth_key_reloads_total",
        &["outcome"],
        "Re-reads of auth.keys_file (on change or SIGHUP), by outcome: ok (the file's keys are in force) or error (unreadable or invalid: the keys in force before stay).",
    )
    .doc("reloads", "server auth::Auth::reload", "one per key rotation; any error needs the file fixed");

    // ---- TLS ---------------------------------------------------------------------------------------
    /// TLS handshakes that failed.
    TLS_HANDSHAKE_FAILURES = counter(
        "engram_tls_handshake_failures_total",
        &["protocol", "reason"],
        "TLS handshakes that failed, by listener (http, grpc) and reason: certificate (a client certificate refused under mTLS, or the client refused ours: unknown CA, wrong host, expired), protocol (not TLS, e.g. plaintext to a TLS port, or no common version, cipher suite or ALPN protocol), timeout (not finished within tls.handshake_timeout_secs) or closed (closed or reset during the handshake).",
    )
    .doc("handshakes", "server tls::Tls::accept", "0 while TLS is off; a few from scanners and health checks; a rise in certificate after a renewal means clients do not trust the new chain");
    /// Whether TLS is on.
    TLS_ENABLED = gauge(
        "engram_tls_enabled",
        &[],
        "1 when both listeners serve TLS (tls.cert_file and tls.key_file set), 0 when they serve plaintext.",
    )
    .doc("boolean", "server tls::Tls::new", "1 in production unless TLS ends at a proxy in front");
    /// When the served certificate expires.
    TLS_CERTIFICATE_EXPIRY = gauge(
        "engram_tls_certificate_expiry_timestamp_seconds",
        &[],
        "The notAfter time of the certificate the listeners serve (the first in tls.cert_file), as Unix seconds; 0 while TLS is off.",
    )
    .doc("seconds (Unix time)", "server tls::Tls::new, tls::Tls::reload", "weeks to months ahead; renewed (the file replaced) before 14 days are left");
    /// Re-reads of the certificate files.
    TLS_CERTIFICATE_RELOADS = counter(
        "engram_tls_certificate_reloads_total",
        &["outcome"],
        "Re-reads of tls.cert_file and tls.key_file (on change or SIGHUP), by outcome: ok (new handshakes get the new certificate) or error (unreadable, invalid or mismatched files: the certificate in force stays).",
    )
    .doc("reloads", "server tls::Tls::reload", "one per renewal; any error needs the files fixed before the old certificate expires");

    // ---- process (Prometheus client library standard names) ----------------------------------
    /// Process CPU time.
    PROCESS_CPU = counter(
        "process_cpu_seconds_total",
        &[],
        "Total user and system CPU time spent in seconds.",
    )
    .doc("seconds", "telemetry events::process (metrics-process, read at scrape)", "monotonic; rate ≤ cores");
    /// Resident memory.
    PROCESS_RSS = gauge("process_resident_memory_bytes", &[], "Resident memory size in bytes.").doc(
        "bytes",
        "telemetry events::process (metrics-process, read at scrape)",
        "grows with indexed vectors",
    );
    /// Virtual memory.
    PROCESS_VIRTUAL = gauge("process_virtual_memory_bytes", &[], "Virtual memory size in bytes.").doc(
        "bytes",
        "telemetry events::process (metrics-process, read at scrape)",
        "larger than resident",
    );
    /// Open file descriptors.
    PROCESS_OPEN_FDS = gauge("process_open_fds", &[], "Number of open file descriptors.").doc(
        "descriptors",
        "telemetry events::process (metrics-process, read at scrape)",
        "tens, plus one per connection",
    );
    /// File descriptor limit.
    PROCESS_MAX_FDS = gauge(
        "process_max_fds",
        &[],
        "Maximum number of open file descriptors (0: unlimited).",
    )
    .doc("descriptors", "telemetry events::process (metrics-process, read at scrape)", "constant (RLIMIT_NOFILE)");
    /// OS threads.
    PROCESS_THREADS = gauge("process_threads", &[], "Number of OS threads in the process.").doc(
        "threads",
        "telemetry events::process (metrics-process, read at scrape)",
        "workers + tokio threads + a few",
    );
    /// Start time.
    PROCESS_START = gauge(
        "process_start_time_seconds",
        &[],
        "Start time of the process since the Unix epoch, in seconds.",
    )
    .doc("seconds", "telemetry events::process (metrics-process, read at scrape)", "constant (Unix time)");

    /// The memory the process may use: the cgroup limit, or physical memory when there is none.
    MEMORY_LIMIT = gauge(
        "engram_memory_limit_bytes",
        &[],
        "Memory the process may use: the cgroup v2 memory.max, or physical memory when unlimited.",
    )
    .doc("bytes", "telemetry events::process (read at scrape)", "constant; resident memory should stay below 0.9 of it");
}

impl MetricDef {
    /// Resolution at which a histogram keeps its sum: 1 ns for `_seconds` metrics, else 1
    /// (counts and bytes are whole numbers).
    pub fn sum_resolution(&self) -> f64 {
        if self.name.ends_with("_seconds") { 1e-9 } else { 1.0 }
    }
}

/// The catalog as a Markdown table (the one in `docs/metrics.md`, checked by a test).
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| name | type | unit | labels | meaning | produced by | expected range | buckets |\n|---|---|---|---|---|---|---|---|\n",
    );
    for m in CATALOG {
        let buckets = m.buckets.iter().map(f64::to_string).collect::<Vec<_>>().join(", ");
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | `{}` | {} | {} |\n",
            m.name,
            m.kind.as_str(),
            m.unit,
            m.labels.join(", "),
            m.help,
            m.source,
            m.range,
            buckets
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = HashSet::new();
        for m in CATALOG {
            assert!(seen.insert(m.name), "{} listed twice", m.name);
            assert!(m.name.starts_with("engram_") || m.name.starts_with("process_"), "{}", m.name);
            assert!(!m.unit.is_empty() && !m.source.is_empty() && !m.range.is_empty(), "{} needs its docs", m.name);
            match m.kind {
                MetricKind::Counter => assert!(m.name.ends_with("_total"), "{}", m.name),
                _ => assert!(!m.name.ends_with("_total"), "{} is not a counter", m.name),
            }
            if m.kind == MetricKind::Histogram {
                assert!(!m.buckets.is_empty(), "{} needs buckets", m.name);
                assert!(m.buckets.windows(2).all(|w| w[0] < w[1]), "{} buckets must increase", m.name);
            } else {
                assert!(m.buckets.is_empty(), "{} is not a histogram", m.name);
            }
        }
    }
}
