//! `engram-tools load` (also `engram-stream load`): stream a TEXMEX data set into a running
//! server, wait until every observation is indexed, run every query, score recall@10, and write
//! a JSON report.
//!
//! Row `i` of `base.fvecs` is sent as observation id `i` (with line `i` of `base.txt` as
//! content when present), so ground-truth row numbers are ids. Rejected batches are retried,
//! so nothing is lost, and a rejection's retry-after pauses every send of the client (with
//! jitter, growing while rejections repeat; see `pacer::Pacer`); `sent = accepted + rejected`
//! counts every attempt, and `sent_per_accepted` what the refusals cost. With `--limit N` only
//! the first N rows are sent and the ground truth is recomputed exactly over them (brute force,
//! cosine = dot on the data sets' unit vectors).
//!
//! Submodules: `drive` (the send loop and tally, once for both protocols, over a
//! `drive::Transport`), `grpc` and `http` (the transports), `pacer` (pacing and backoff),
//! `report` (the JSON report), `scrape` (the server's view from `/metrics`).

mod drive;
mod grpc;
mod http;
mod pacer;
mod report;
mod scrape;

pub use report::{LoadReport, Quantiles, ServerStats};

use anyhow::{Context, bail};
use drive::{Plan, Tally, Transport};
use engram_dataset::{self as dataset, Vectors};
use engram_engine::{IndexKind, Quantization, SpaceParams};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Protocol used by the load generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// `engram.v1.Engram/StreamObservations` with INDEXED acks, and unary `Recall`.
    Grpc,
    /// `POST /v1/spaces/{space}/observations?wait=indexed` and `POST .../recall`.
    Http,
}

/// The last acknowledgement the load waits for per batch (`--wait`), as the server's
/// `?wait=` / `WaitFor`: a batch counts as confirmed at that level, and `lost` counts what
/// was not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Wait {
    /// Queued by the server.
    Accepted,
    /// Recorded in the server's durable log (per its `storage.durability`). The default.
    #[default]
    Durable,
    /// Searchable.
    Indexed,
}

impl Wait {
    /// The lowercase name, as in `?wait=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Durable => "durable",
            Self::Indexed => "indexed",
        }
    }
}

/// Arguments of `engram-stream load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Data set directory: base.fvecs, query.fvecs, groundtruth.ivecs, optional base.txt.
    #[arg(long)]
    pub dataset: PathBuf,
    /// Server URL: the gRPC address for --protocol grpc, the HTTP address for --protocol http.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    pub protocol: Protocol,
    /// Memory space to load into (dropped and re-created). Default: the data set's name.
    #[arg(long)]
    pub space: Option<String>,
    /// Target ingest rate in observations per second (default: as fast as the server admits).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Observations per batch.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Weights of high:normal:low priority, assigned to batches in that proportion.
    #[arg(long, default_value = "0:1:0")]
    pub priority_mix: String,
    /// ef_search for the recall queries (default: the space's, 128).
    #[arg(long)]
    pub ef_search: Option<usize>,
    /// Batches in flight (sent, not yet confirmed at the `--wait` level).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// The acknowledgement each batch waits for: accepted, durable (default) or indexed. Rates
    /// and latencies are measured to that level; below indexed the load then waits until the
    /// space holds every vector before it queries. `capacity` needs reports of `indexed`.
    #[arg(long, value_enum, default_value_t = Wait::Durable)]
    pub wait: Wait,
    /// Send only the first N base vectors (ground truth is recomputed over them).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Run only the first N queries.
    #[arg(long)]
    pub queries: Option<usize>,
    /// Do not send base.txt as content.
    #[arg(long)]
    pub no_content: bool,
    /// Index backend of the space the load creates: usearch, hnsw_rs or engram (default: the
    /// engine's for the dimension and quantization).
    #[arg(long)]
    pub index: Option<String>,
    /// Scalar type of the space's index vectors: none, f16, bf16 or i8 (usearch only; default:
    /// the engine's for the index and metric).
    #[arg(long)]
    pub quantization: Option<String>,
    /// Candidates per hit rescored with a reduced quantization (default: the engine's).
    #[arg(long)]
    pub rescore_factor: Option<usize>,
    /// The server's Prometheus endpoint (e.g. `http://127.0.0.1:8080/metrics`). When given, the
    /// report gains `server` (workers, resident memory before and after, index memory, and the
    /// cost of one scrape), which `engram-stream capacity` needs.
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// Send a sampled W3C `traceparent` with every batch (an HTTP header; over gRPC the
    /// batch's own field), so each batch is a trace of its own that can be followed through
    /// the server's stages when it exports traces (`[tracing]`). The first batch's trace id is
    /// printed.
    #[arg(long)]
    pub trace: bool,
    /// API key sent as `Authorization: Bearer KEY` on every request, to the server and to
    /// `--metrics-url` (a key with `write` and `admin` in the space, plus `metrics` for the
    /// scrape). Default: `$ENGRAM_API_KEY`, else none.
    #[arg(long, env = "ENGRAM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// PEM file of the CA that signed the server's certificate, for `https://` URLs (the
    /// server's `[tls]`); trusted in addition to none other (no system roots), for `--server`
    /// and `--metrics-url` alike.
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// Where to write the JSON report.
    #[arg(long)]
    pub report: PathBuf,
}

/// An HTTP client that sends `Authorization: Bearer KEY` with every request when `--api-key`
/// is given, and trusts `--cacert` for `https://` URLs.
///
/// # Errors
/// A key that is not a valid header value; a CA file that cannot be read or parsed.
pub(crate) fn http_client(args: &LoadArgs) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(k) = &args.api_key {
        let mut v: reqwest::header::HeaderValue =
            format!("Bearer {k}").parse().context("--api-key: not a valid header value")?;
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    let mut builder = reqwest::Client::builder().default_headers(headers);
    if let Some(path) = &args.cacert {
        let pem = std::fs::read(path).with_context(|| format!("--cacert: reading {}", path.display()))?;
        for cert in
            reqwest::Certificate::from_pem_bundle(&pem).with_context(|| format!("--cacert: {}", path.display()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder.build()?)
}

/// [`traceparent`] for batch `batch`, printing the first batch's.
pub(crate) fn traceparent_logged(batch: usize) -> String {
    let tp = traceparent();
    if batch == 0 {
        eprintln!("load --trace: batch 0 is trace {} (traceparent {tp})", &tp[3..35]);
    }
    tp
}

/// A fresh `traceparent` (W3C Trace Context) for one batch: a random trace id, a random
/// parent span id, sampled.
pub(crate) fn traceparent() -> String {
    use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
    let ids = RandomIdGenerator::default();
    format!("00-{:032x}-{:016x}-01", ids.new_trace_id(), ids.new_span_id())
}

/// `MemTotal` of /proc/meminfo in bytes (Linux), if readable.
fn machine_memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

struct Data {
    name: String,
    base: Vectors<f32>,
    content: Option<Vec<String>>,
    queries: Vectors<f32>,
    truth: Vec<Vec<i32>>,
}

fn load_data(args: &LoadArgs) -> anyhow::Result<Data> {
    let dir = &args.dataset;
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("dataset").to_owned();
    let mut base = dataset::read_fvecs(&dir.join("base.fvecs"))?;
    let mut queries = dataset::read_fvecs(&dir.join("query.fvecs"))?;
    if queries.dim != base.dim {
        bail!("query.fvecs has dimension {}, base.fvecs {}", queries.dim, base.dim);
    }
    let text = dir.join("base.txt");
    let mut content = if !args.no_content && text.exists() { Some(dataset::read_lines(&text)?) } else { None };
    if let Some(q) = args.queries {
        queries.data.truncate(q * queries.dim);
    }
    let truth = match args.limit {
        Some(n) if n < base.len() => {
            base.data.truncate(n * base.dim);
            if let Some(c) = content.as_mut() {
                c.truncate(n);
            }
            (0..queries.len()).map(|q| dataset::exact_top_k(&base, base.len(), queries.row(q), RECALL_K)).collect()
        }
        _ => {
            let gt = dataset::read_ivecs(&dir.join("groundtruth.ivecs"))?;
            if gt.len() < queries.len() {
                bail!("groundtruth.ivecs has {} rows for {} queries", gt.len(), queries.len());
            }
            (0..queries.len()).map(|i| gt.row(i).to_vec()).collect()
        }
    };
    if let Some(c) = &content
        && c.len() != base.len()
    {
        bail!("base.txt has {} lines for {} vectors", c.len(), base.len());
    }
    Ok(Data { name, base, content, queries, truth })
}

fn parse_mix(mix: &str) -> anyhow::Result<[u32; 3]> {
    let parts: Vec<u32> =
        mix.split(':').map(str::parse).collect::<Result<_, _>>().context("--priority-mix: expected H:N:L integers")?;
    match parts[..] {
        [h, n, l] if h + n + l > 0 => Ok([h, n, l]),
        _ => bail!("--priority-mix: expected three weights H:N:L with a positive sum, got `{mix}`"),
    }
}

/// Priority of batch `i` under weights `[h, n, l]` (a deterministic round-robin over the mix).
fn priority_of(i: usize, mix: [u32; 3]) -> usize {
    let total = (mix[0] + mix[1] + mix[2]) as usize;
    let slot = i % total;
    if slot < mix[0] as usize {
        0
    } else if slot < (mix[0] + mix[1]) as usize {
        1
    } else {
        2
    }
}

fn batch_ranges(n: usize, size: usize) -> Vec<Range<usize>> {
    (0..n).step_by(size).map(|s| s..(s + size).min(n)).collect()
}

/// What a run measured, whichever the protocol.
struct Run {
    tally: Tally,
    /// First send → last indexed batch.
    duration: Duration,
    /// Ids returned per query, nearest first.
    hits: Vec<Vec<u64>>,
    /// Round trip per query, seconds.
    recall_latency: Vec<f64>,
    /// Vectors the server reports in the space after the load.
    space_vectors: u64,
}

/// Sends every batch through `transport` until indexed, then runs every query.
async fn measure<T: Transport>(
    transport: &mut T,
    data: &Data,
    plan: &Plan<'_>,
    args: &LoadArgs,
    memory: Option<&mut scrape::HalfWay>,
) -> anyhow::Result<Run> {
    let (tally, duration) = drive::drive(transport, plan).await?;
    // Below indexed, the queries wait until the space holds every vector sent.
    let want = data.base.len() as u64;
    let settling = Instant::now();
    let mut space_vectors = transport.space_vectors().await?;
    while plan.wait < Wait::Indexed && space_vectors < want {
        if settling.elapsed() > Duration::from_secs(600) {
            bail!("the space holds {space_vectors} of {want} vectors 600 s after the last {} ack", plan.wait.as_str());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        space_vectors = transport.space_vectors().await?;
    }
    // Resident memory with every vector in, before the queries fill the store's block cache.
    if let Some(m) = memory {
        m.ingested().await;
    }
    let mut hits = Vec::with_capacity(data.queries.len());
    let mut recall_latency = Vec::with_capacity(data.queries.len());
    for q in 0..data.queries.len() {
        let t0 = Instant::now();
        hits.push(transport.recall(data.queries.row(q), RECALL_K, args.ef_search).await?);
        recall_latency.push(t0.elapsed().as_secs_f64());
    }
    Ok(Run { tally, duration, hits, recall_latency, space_vectors })
}

/// Neighbours per query: the report's recall@10.
const RECALL_K: usize = 10;

/// Runs the load and writes the report. Fails (after writing it) when any observation is lost.
///
/// # Errors
/// Unreadable data, an unreachable server, a batch the server calls invalid, or lost
/// observations.
pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.concurrency == 0 {
        bail!("--batch and --concurrency must be at least 1");
    }
    let mix = parse_mix(&args.priority_mix)?;
    let data = load_data(&args)?;
    let space = args.space.clone().unwrap_or_else(|| data.name.clone());
    let index: Option<IndexKind> =
        args.index.as_deref().map(str::parse).transpose().map_err(|e: String| anyhow::anyhow!("--index: {e}"))?;
    let quantization: Option<Quantization> = args
        .quantization
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e: String| anyhow::anyhow!("--quantization: {e}"))?;
    let defaults = SpaceParams::with_dim(data.base.dim);
    let params = SpaceParams {
        index,
        quantization,
        rescore_factor: args.rescore_factor.unwrap_or(defaults.rescore_factor),
        max_elements: data.base.len().max(1),
        ..defaults
    };
    let before = match &args.metrics_url {
        Some(url) => Some(scrape::before(url, &space, &args).await?),
        None => None,
    };
    eprintln!(
        "load: {} vectors of dim {} and {} queries from {} over {:?} to {}",
        data.base.len(),
        data.base.dim,
        data.queries.len(),
        args.dataset.display(),
        args.protocol,
        args.server
    );
    let plan = Plan {
        batches: &batch_ranges(data.base.len(), args.batch),
        mix,
        rate: args.rate,
        concurrency: args.concurrency,
        wait: args.wait,
    };
    let mut half = match &args.metrics_url {
        Some(url) => Some(scrape::half_way(url, &space, data.base.len(), &args)?),
        None => None,
    };
    let run = match args.protocol {
        Protocol::Grpc => {
            let mut grpc = grpc::Grpc::connect(&args, &data, &space, &params).await?;
            measure(&mut grpc, &data, &plan, &args, half.as_mut()).await?
        }
        Protocol::Http => {
            let mut http = http::Http::connect(&args, &data, &space, &params).await?;
            measure(&mut http, &data, &plan, &args, half.as_mut()).await?
        }
    };
    let server_stats = match (&args.metrics_url, before) {
        (Some(url), Some(before)) => Some(scrape::server_stats(url, &space, before, half, &args).await?),
        _ => None,
    };
    let recall = if run.hits.is_empty() {
        0.0
    } else {
        run.hits.iter().zip(&data.truth).map(|(got, truth)| dataset::recall_at_k(got, truth, RECALL_K)).sum::<f64>()
            / run.hits.len() as f64
    };
    let Run { tally: mut t, duration, hits, mut recall_latency, space_vectors } = run;
    let n = data.base.len() as u64;
    let report = LoadReport {
        dataset: data.name.clone(),
        protocol: args.protocol,
        server: args.server.clone(),
        memory_space: space,
        dim: data.base.dim,
        observations: data.base.len(),
        batch: args.batch,
        sent: t.sent,
        accepted: t.accepted,
        duplicates: t.duplicates,
        rejected: t.rejected.clone(),
        retried: t.retried,
        sent_per_accepted: t.sent as f64 / t.accepted.max(1) as f64,
        wait: args.wait,
        confirmed: t.confirmed,
        indexed: if args.wait == Wait::Indexed { t.indexed } else { space_vectors },
        space_vectors,
        lost: n.saturating_sub(t.confirmed),
        duration_s: duration.as_secs_f64(),
        ingest_rate_per_s: n as f64 / duration.as_secs_f64().max(1e-9),
        ingest_rate_second_half_per_s: t.second_half_rate(data.base.len()),
        ack_latency_seconds: Quantiles::of(&mut t.ack_latency),
        index_latency_seconds: (!t.index_latency.is_empty()).then(|| Quantiles::of(&mut t.index_latency)),
        accepted_to_indexed_seconds: (args.protocol == Protocol::Grpc && !t.accepted_to_indexed.is_empty())
            .then(|| Quantiles::of(&mut t.accepted_to_indexed)),
        durable_latency_seconds: (!t.durable_latency.is_empty()).then(|| Quantiles::of(&mut t.durable_latency)),
        accepted_to_durable_seconds: (!t.accepted_to_durable.is_empty())
            .then(|| Quantiles::of(&mut t.accepted_to_durable)),
        recall_latency_seconds: Quantiles::of(&mut recall_latency),
        ef_search: args.ef_search.unwrap_or(SpaceParams::with_dim(data.base.dim).ef_search),
        queries: hits.len(),
        recall_at_10: recall,
        client_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        machine_memory_bytes: machine_memory_bytes(),
        content_bytes_mean: data
            .content
            .as_ref()
            .map_or(0.0, |c| c.iter().map(|t| t.len() as f64).sum::<f64>() / c.len().max(1) as f64),
        index: params.index(),
        quantization: params.quantization(),
        rescore_factor: params.rescore_factor,
        target_rate_per_s: args.rate,
        server_stats,
    };
    write_report(&args.report, &report)?;
    eprintln!(
        "load: {} {} in {:.1}s ({:.0}/s), lost {}, {:.2} sends per accepted, recall@10 {:.4} at ef_search {}; report: {}",
        report.confirmed,
        args.wait.as_str(),
        report.duration_s,
        report.ingest_rate_per_s,
        report.lost,
        report.sent_per_accepted,
        report.recall_at_10,
        report.ef_search,
        args.report.display()
    );
    let rejected: u64 = report.rejected.values().sum();
    if report.sent != report.accepted + rejected {
        bail!("accounting mismatch: sent {} != accepted {} + rejected {}", report.sent, report.accepted, rejected);
    }
    if report.lost > 0 {
        bail!("{} observations were not confirmed {}", report.lost, args.wait.as_str());
    }
    Ok(())
}

fn write_report(path: &Path, report: &LoadReport) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(report)?).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_mix_round_robin() {
        let mix = parse_mix("1:2:1").unwrap();
        let got: Vec<usize> = (0..8).map(|i| priority_of(i, mix)).collect();
        assert_eq!(got, vec![0, 1, 1, 2, 0, 1, 1, 2]);
        assert!(parse_mix("0:0:0").is_err());
        assert!(parse_mix("1:x:1").is_err());
    }
}
