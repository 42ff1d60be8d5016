//! The JSON report of a load, and the server's view of it read from `/metrics`.

use super::{Protocol, Wait};
use engram_engine::{IndexKind, Quantization};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// p50 / p99 / p99.9 of a latency sample, in seconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq)]
pub struct Quantiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
}

impl Quantiles {
    /// Nearest-rank quantiles of `samples` (zeros for an empty sample).
    pub fn of(samples: &mut [f64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
        Self { p50: at(0.5), p99: at(0.99), p999: at(0.999) }
    }
}

fn wait_indexed() -> Wait {
    Wait::Indexed
}

/// The JSON report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    /// Data set name (directory name).
    pub dataset: String,
    /// Protocol used.
    pub protocol: Protocol,
    /// Server URL.
    pub server: String,
    /// Memory space loaded.
    pub memory_space: String,
    /// Embedding dimension.
    pub dim: usize,
    /// Distinct observations in the run (base rows sent).
    pub observations: usize,
    /// Observations per batch.
    pub batch: usize,
    /// Observations sent, counting every attempt.
    pub sent: u64,
    /// Observations acknowledged as accepted (new or duplicate).
    pub accepted: u64,
    /// Observations acknowledged as duplicates (included in `accepted`).
    pub duplicates: u64,
    /// Observations rejected, by reason (every one was retried).
    pub rejected: BTreeMap<String, u64>,
    /// Batches re-sent after a rejection.
    pub retried: u64,
    /// `sent / accepted`: observation sends per accepted observation (1 when nothing was
    /// refused; what a refusing server costs in traffic).
    #[serde(default)]
    pub sent_per_accepted: f64,
    /// The acknowledgement each batch waited for (`--wait`; reports from before it waited for
    /// indexed).
    #[serde(default = "wait_indexed")]
    pub wait: Wait,
    /// Observations confirmed at the `wait` level (new or duplicate).
    #[serde(default)]
    pub confirmed: u64,
    /// Observations confirmed indexed by INDEXED acks (gRPC) or `wait=indexed` responses
    /// (HTTP); below `--wait indexed`, the vectors the space held once it had them all.
    pub indexed: u64,
    /// Vectors the server reports in the space after the run.
    pub space_vectors: u64,
    /// Observations not confirmed at the `wait` level: `observations - confirmed`.
    pub lost: u64,
    /// Seconds from the first send to the last confirmation at the `wait` level.
    pub duration_s: f64,
    /// `observations / duration_s`.
    pub ingest_rate_per_s: f64,
    /// Rate over the second half of the run (half indexed → last indexed): what the larger index
    /// sustains; the paced runs and `capacity` use it, since inserts slow as the graph grows.
    pub ingest_rate_second_half_per_s: f64,
    /// Send → ACCEPTED ack, per batch (HTTP acknowledges once, when indexed: same as index).
    pub ack_latency_seconds: Quantiles,
    /// Send → INDEXED ack, per batch (with `--wait indexed`).
    pub index_latency_seconds: Option<Quantiles>,
    /// ACCEPTED ack → INDEXED ack, per batch (gRPC only; HTTP acknowledges once).
    pub accepted_to_indexed_seconds: Option<Quantiles>,
    /// Send → DURABLE ack, per batch (gRPC, and HTTP with `--wait durable`; absent in reports
    /// from before the durable log).
    #[serde(default)]
    pub durable_latency_seconds: Option<Quantiles>,
    /// ACCEPTED ack → DURABLE ack, per batch: the group commit's wait (gRPC only).
    #[serde(default)]
    pub accepted_to_durable_seconds: Option<Quantiles>,
    /// Recall query round trip, per query.
    pub recall_latency_seconds: Quantiles,
    /// ef_search of the queries.
    pub ef_search: usize,
    /// Queries run.
    pub queries: usize,
    /// Mean recall@10 over the queries.
    pub recall_at_10: f64,
    /// Client machine's available parallelism.
    pub client_cores: usize,
    /// Client machine's memory (`MemTotal` of /proc/meminfo), bytes.
    pub machine_memory_bytes: Option<u64>,
    /// Mean content bytes per observation sent (0 with --no-content or no base.txt).
    pub content_bytes_mean: f64,
    /// Index backend of the space.
    pub index: IndexKind,
    /// Scalar type of the space's index vectors (absent in reports before it existed: none).
    #[serde(default)]
    pub quantization: Quantization,
    /// Candidates per hit rescored (used with a reduced quantization).
    #[serde(default = "default_rescore_factor")]
    pub rescore_factor: usize,
    /// Target rate asked for with `--rate`, observations per second (None: as fast as admitted).
    pub target_rate_per_s: Option<f64>,
    /// What the server's `/metrics` said, when `--metrics-url` was given.
    pub server_stats: Option<ServerStats>,
}

/// The server seen through its `/metrics` endpoint before and after a load.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerStats {
    /// `engram_streaming_workers`: insert worker threads.
    pub workers: u64,
    /// `process_resident_memory_bytes` before the space was created.
    pub rss_bytes_before: u64,
    /// `process_resident_memory_bytes` after every observation was indexed.
    pub rss_bytes_after: u64,
    /// `engram_index_vectors` of the space at the first reading, during the load, that found it
    /// holding at least half the load's observations (read every 200 ms; `None`: the load ended
    /// first, or an older report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vectors_half: Option<u64>,
    /// `process_resident_memory_bytes` at that reading: with `rss_bytes_ingested`, the resident
    /// cost of one more vector once the fixed parts (the store's memtables, the process itself)
    /// are mostly paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes_half: Option<u64>,
    /// `process_resident_memory_bytes` once every observation was in, before the recall queries
    /// (which fill the store's block cache: `rss_bytes_after` holds that too). Taken with the
    /// half-way reading: both or neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes_ingested: Option<u64>,
    /// `engram_index_memory_bytes` of the loaded space after the load (the backend's accounting).
    pub index_memory_bytes: u64,
    /// Size of one `/metrics` response after the load, bytes.
    pub scrape_bytes: u64,
    /// Samples (non-comment lines) in that response.
    pub scrape_samples: u64,
    /// Time to fetch it, seconds (median of 5).
    pub scrape_seconds: f64,
    /// Per-observation accepted → indexed p99 over the run, seconds, from the space's
    /// `engram_streaming_observation_latency_seconds` buckets (after minus before), interpolated
    /// as PromQL's `histogram_quantile` does.
    pub observation_latency_p99_seconds: f64,
    /// Share of the run's observations indexed within 50 ms of acceptance (exact: 0.05 s is a
    /// bucket bound), so `>= 0.99` means p99 <= 50 ms.
    pub observation_latency_share_within_50ms: f64,
    /// `engram_storage_disk_bytes` before the space was created (`None`: the server keeps no
    /// store, `storage.durability = none`, or an older report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes_before: Option<u64>,
    /// `engram_storage_disk_bytes` after every observation was confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes_after: Option<u64>,
}

fn default_rescore_factor() -> usize {
    engram_engine::DEFAULT_RESCORE_FACTOR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_nearest_rank() {
        let mut v: Vec<f64> = (1..=1000).map(f64::from).collect();
        let q = Quantiles::of(&mut v);
        assert_eq!((q.p50, q.p99, q.p999), (500.0, 990.0, 999.0));
        assert_eq!(Quantiles::of(&mut []), Quantiles::default());
    }
}
