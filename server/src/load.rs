//! `engram-stream load`: stream a TEXMEX data set into a running server, wait until every
//! observation is indexed, run every query, score recall@10, and write a JSON report.
//!
//! Row `i` of `base.fvecs` is sent as observation id `i` (with line `i` of `base.txt` as
//! content when present), so ground-truth row numbers are ids. Rejected batches are retried,
//! so nothing is lost, and a rejection's retry-after pauses every send of the client (with
//! jitter, growing while rejections repeat; see `Pacer`); `sent = accepted + rejected` counts
//! every attempt, and `sent_per_accepted` what the refusals cost. With `--limit N` only the first N rows are sent and the ground truth is recomputed
//! exactly over them (brute force, cosine = dot on the data sets' unit vectors).

use crate::proto::{self, engram_client::EngramClient};
use anyhow::{Context, bail};
use engram_engine::dataset::{self, Vectors};
use engram_engine::{IndexKind, SpaceParams};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Protocol used by the load generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// `engram.v1.Engram/StreamObservations` with INDEXED acks, and unary `Recall`.
    Grpc,
    /// `POST /v1/spaces/{space}/observations?wait=indexed` and `POST .../recall`.
    Http,
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
    /// Batches in flight (sent, not yet indexed).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Send only the first N base vectors (ground truth is recomputed over them).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Run only the first N queries.
    #[arg(long)]
    pub queries: Option<usize>,
    /// Do not send base.txt as content.
    #[arg(long)]
    pub no_content: bool,
    /// Index backend of the space the load creates: usearch or hnsw_rs (default: the engine's).
    #[arg(long, default_value_t = IndexKind::default().as_str().to_owned())]
    pub index: String,
    /// The server's Prometheus endpoint (e.g. `http://127.0.0.1:8080/metrics`). When given, the
    /// report gains `server` (workers, resident memory before and after, index memory, and the
    /// cost of one scrape), which `engram-stream capacity` needs.
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// Where to write the JSON report.
    #[arg(long)]
    pub report: PathBuf,
}

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
    /// Observations confirmed indexed by INDEXED acks (gRPC) or `wait=indexed` responses (HTTP).
    pub indexed: u64,
    /// Vectors the server reports in the space after the run.
    pub space_vectors: u64,
    /// Observations not confirmed indexed: `observations - indexed`.
    pub lost: u64,
    /// Seconds from the first send to the last indexed confirmation.
    pub duration_s: f64,
    /// `observations / duration_s`.
    pub ingest_rate_per_s: f64,
    /// Rate over the second half of the run (half indexed → last indexed): what the larger index
    /// sustains; the paced runs and `capacity` use it, since inserts slow as the graph grows.
    pub ingest_rate_second_half_per_s: f64,
    /// Send → ACCEPTED ack, per batch (HTTP acknowledges once, when indexed: same as index).
    pub ack_latency_seconds: Quantiles,
    /// Send → INDEXED ack, per batch.
    pub index_latency_seconds: Quantiles,
    /// ACCEPTED ack → INDEXED ack, per batch (gRPC only; HTTP acknowledges once).
    pub accepted_to_indexed_seconds: Option<Quantiles>,
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
}

/// Every sample of a Prometheus text exposition: (series with its labels, value). Comments and
/// lines that do not end in a number are skipped.
fn samples(body: &str) -> impl Iterator<Item = (&str, f64)> {
    body.lines().filter(|l| !l.starts_with('#')).filter_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        Some((series, value.parse().ok()?))
    })
}

/// The space's cumulative `engram_streaming_observation_latency_seconds` buckets: (le, count).
fn latency_buckets(body: &str, space: &str) -> Vec<(f64, f64)> {
    let label = format!("memory_space=\"{space}\"");
    let mut buckets: Vec<(f64, f64)> = samples(body)
        .filter(|(series, _)| {
            series.starts_with("engram_streaming_observation_latency_seconds_bucket{") && series.contains(&label)
        })
        .filter_map(|(series, count)| {
            let le = series.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// `after - before`, bucket by bucket (a bucket missing before counts as 0).
fn bucket_delta(after: &[(f64, f64)], before: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after.iter().map(|&(le, n)| (le, n - before.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1))).collect()
}

/// The `q` quantile of cumulative buckets, as PromQL's `histogram_quantile` computes it: linear
/// within the bucket that holds the rank; the highest finite bound when it falls in `+Inf`.
fn bucket_quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let Some(&(_, total)) = buckets.last() else { return f64::NAN };
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, n) in buckets {
        if n >= rank {
            if le.is_infinite() {
                return prev.0;
            }
            return prev.0 + (le - prev.0) * (rank - prev.1) / (n - prev.1).max(f64::MIN_POSITIVE);
        }
        prev = (le, n);
    }
    prev.0
}

/// `MemTotal` of /proc/meminfo in bytes (Linux), if readable.
fn machine_memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Reads `/metrics` once: (body, seconds).
async fn scrape(url: &str) -> anyhow::Result<(String, f64)> {
    let t0 = Instant::now();
    let resp = reqwest::get(url).await.with_context(|| format!("scraping {url}"))?;
    if !resp.status().is_success() {
        bail!("scraping {url}: {}", resp.status());
    }
    let body = resp.text().await?;
    Ok((body, t0.elapsed().as_secs_f64()))
}

/// The value of the first sample of `name` whose labels contain `label` (`""`: any).
fn sample(body: &str, name: &str, label: &str) -> Option<f64> {
    samples(body).find_map(|(series, value)| {
        let bare = series.split('{').next()?;
        (bare == name && series.contains(label)).then_some(value)
    })
}

/// What is read from `/metrics` before the run: resident memory and the latency buckets.
struct Before {
    rss: u64,
    buckets: Vec<(f64, f64)>,
}

async fn before(url: &str, space: &str) -> anyhow::Result<Before> {
    let (body, _) = scrape(url).await?;
    let rss = sample(&body, "process_resident_memory_bytes", "")
        .map(|v| v as u64)
        .with_context(|| format!("{url} has no process_resident_memory_bytes"))?;
    Ok(Before { rss, buckets: latency_buckets(&body, space) })
}

async fn server_stats(url: &str, space: &str, before: Before) -> anyhow::Result<ServerStats> {
    let mut times = Vec::new();
    let mut body = String::new();
    for _ in 0..5 {
        let (b, secs) = scrape(url).await?;
        times.push(secs);
        body = b;
    }
    times.sort_by(f64::total_cmp);
    let delta = bucket_delta(&latency_buckets(&body, space), &before.buckets);
    let count = delta.last().map_or(0.0, |b| b.1);
    let within_50ms = delta.iter().find(|b| b.0 == 0.05).map_or(f64::NAN, |b| b.1 / count.max(1.0));
    let get = |name: &str, label: &str| {
        sample(&body, name, label).with_context(|| format!("{url} has no sample of {name}{{{label}}}"))
    };
    Ok(ServerStats {
        workers: get("engram_streaming_workers", "")? as u64,
        rss_bytes_before: before.rss,
        rss_bytes_after: get("process_resident_memory_bytes", "")? as u64,
        index_memory_bytes: get("engram_index_memory_bytes", &format!("memory_space=\"{space}\""))? as u64,
        scrape_bytes: body.len() as u64,
        scrape_samples: body.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count() as u64,
        scrape_seconds: times[times.len() / 2],
        observation_latency_p99_seconds: bucket_quantile(&delta, 0.99),
        observation_latency_share_within_50ms: within_50ms,
    })
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
            (0..queries.len()).map(|q| dataset::exact_top_k(&base, base.len(), queries.row(q), 10)).collect()
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

/// Counters shared by both protocols.
#[derive(Default)]
struct Tally {
    sent: u64,
    accepted: u64,
    duplicates: u64,
    rejected: BTreeMap<String, u64>,
    retried: u64,
    indexed: u64,
    ack_latency: Vec<f64>,
    index_latency: Vec<f64>,
    accepted_to_indexed: Vec<f64>,
    /// When `indexed` first reached half the run's observations, and when it last grew.
    half_indexed_at: Option<Instant>,
    last_indexed_at: Option<Instant>,
}

impl Tally {
    /// Counts `n` more observations confirmed indexed out of `total`.
    fn add_indexed(&mut self, n: u64, total: usize) {
        self.indexed += n;
        let now = Instant::now();
        self.last_indexed_at = Some(now);
        if self.half_indexed_at.is_none() && self.indexed >= (total / 2) as u64 {
            self.half_indexed_at = Some(now);
        }
    }

    /// Observations per second over the second half of the run (from half indexed to the last
    /// indexed confirmation): the rate at the larger index, which a growing index sets.
    fn second_half_rate(&self, total: usize) -> f64 {
        match (self.half_indexed_at, self.last_indexed_at) {
            (Some(half), Some(last)) if last > half => {
                (self.indexed as f64 - (total / 2) as f64) / last.duration_since(half).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

struct Progress {
    started: Instant,
    last: Instant,
    total: usize,
}

impl Progress {
    fn tick(&mut self, t: &Tally) {
        if self.last.elapsed() >= Duration::from_secs(2) {
            self.last = Instant::now();
            let rejected: u64 = t.rejected.values().sum();
            let secs = self.started.elapsed().as_secs_f64();
            eprintln!(
                "load: {:>6.1}s indexed {}/{} ({:.0}/s), sent {}, rejected {}, retried {}",
                secs,
                t.indexed,
                self.total,
                t.indexed as f64 / secs.max(1e-9),
                t.sent,
                rejected,
                t.retried
            );
        }
    }
}

/// Backoff jitter: a pause is the retry-after times a factor drawn from [1, 1 + JITTER).
const JITTER: f64 = 0.25;
/// Refusals in a row (no acceptance between) after which the pause is doubled: the server's
/// retry-after was too short for this client's traffic.
const REFUSALS_BEFORE_GROWTH: u32 = 4;

/// Paces sends to `rate` observations per second, and holds every send back while the server
/// asked the client to back off.
///
/// Backoff is global: a REJECTED batch's retry-after pauses *all* sends of this client (new
/// batches and retries), not just the refused batch, since the server is telling the client
/// its queue is full, not that one batch was bad. The pause is the retry-after stretched by a
/// random factor in [1, 1.25) (jitter, so clients that were refused together do not return
/// together), doubled once [`REFUSALS_BEFORE_GROWTH`] refusals came in a row without an
/// acceptance (the server's estimate was too short for this client), and back to 1× at the
/// next acceptance. A steeper growth (doubling per refusal, up to 8×) overshot: four clients
/// left one worker idle and took 150 s for what they sent in 51 s storming. Without this, a client with 16 batches in flight refilled
/// each refused slot at once: 323 sends per accepted observation against a refusing server
/// (docs/benchmarks.md).
struct Pacer {
    rate: Option<f64>,
    next: tokio::time::Instant,
    /// No send before this instant (the server's retry-after, with jitter and growth).
    paused_until: tokio::time::Instant,
    /// Rejections since the last acceptance.
    strikes: u32,
    jitter: Jitter,
}

/// The send loops never sleep in the pacer: they send while [`Pacer::ready`], and otherwise
/// wait for acks, retries *or* [`Pacer::until_ready`] in one `select!`, so acks are read (and
/// timed) while the pacer holds the next batch back.
impl Pacer {
    fn new(rate: Option<f64>) -> Self {
        let now = tokio::time::Instant::now();
        Self { rate, next: now, paused_until: now, strikes: 0, jitter: Jitter::seeded() }
    }

    /// The earliest instant the next batch may be sent.
    fn next_send(&self) -> tokio::time::Instant {
        if self.rate.is_some() { self.next.max(self.paused_until) } else { self.paused_until }
    }

    /// True when the next batch may be sent now.
    fn ready(&self) -> bool {
        tokio::time::Instant::now() >= self.next_send()
    }

    /// The server refused a batch and asked to wait `retry_after`: pause every send.
    fn back_off(&mut self, retry_after: Duration) {
        let growth = if self.strikes >= REFUSALS_BEFORE_GROWTH { 2.0 } else { 1.0 };
        self.strikes = self.strikes.saturating_add(1);
        let wait = retry_after.mul_f64(growth * (1.0 + JITTER * self.jitter.next_unit()));
        self.paused_until = self.paused_until.max(tokio::time::Instant::now() + wait);
    }

    /// The server accepted a batch: rejections no longer compound.
    fn accepted(&mut self) {
        self.strikes = 0;
    }

    /// True when a rate is set and the next batch has to wait for it.
    fn holding(&self) -> bool {
        !self.ready()
    }

    /// Records a batch of `n` observations sent now.
    fn sent(&mut self, n: usize) {
        if let Some(rate) = self.rate {
            self.next = self.next.max(tokio::time::Instant::now()) + Duration::from_secs_f64(n as f64 / rate);
        }
    }

    /// Resolves when the next batch may be sent.
    async fn until_ready(&self) {
        tokio::time::sleep_until(self.next_send()).await;
    }
}

/// Uniform values in [0, 1) for backoff jitter (xorshift64*, seeded from the clock and the
/// process id: decorrelated across clients, no cryptographic use).
struct Jitter(u64);

impl Jitter {
    fn seeded() -> Self {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Self((nanos ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    fn next_unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn batch_ranges(n: usize, size: usize) -> Vec<(usize, usize)> {
    (0..n).step_by(size).map(|s| (s, (s + size).min(n))).collect()
}

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
    let index: IndexKind = args.index.parse().map_err(|e: String| anyhow::anyhow!("--index: {e}"))?;
    let before = match &args.metrics_url {
        Some(url) => Some(before(url, &space).await?),
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
    let (tally, duration, hits, mut recall_latency, space_vectors) = match args.protocol {
        Protocol::Grpc => grpc::run(&args, &data, &space, index, mix).await?,
        Protocol::Http => http::run(&args, &data, &space, index, mix).await?,
    };
    let server_stats = match (&args.metrics_url, before) {
        (Some(url), Some(before)) => Some(server_stats(url, &space, before).await?),
        _ => None,
    };
    let k = 10;
    let recall = if hits.is_empty() {
        0.0
    } else {
        hits.iter().zip(&data.truth).map(|(got, truth)| dataset::recall_at_k(got, truth, k)).sum::<f64>()
            / hits.len() as f64
    };
    let mut t = tally;
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
        indexed: t.indexed,
        space_vectors,
        lost: n.saturating_sub(t.indexed),
        duration_s: duration.as_secs_f64(),
        ingest_rate_per_s: n as f64 / duration.as_secs_f64().max(1e-9),
        ingest_rate_second_half_per_s: t.second_half_rate(data.base.len()),
        ack_latency_seconds: Quantiles::of(&mut t.ack_latency),
        index_latency_seconds: Quantiles::of(&mut t.index_latency),
        accepted_to_indexed_seconds: (args.protocol == Protocol::Grpc)
            .then(|| Quantiles::of(&mut t.accepted_to_indexed)),
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
        index,
        target_rate_per_s: args.rate,
        server_stats,
    };
    write_report(&args.report, &report)?;
    eprintln!(
        "load: {} indexed in {:.1}s ({:.0}/s), lost {}, {:.2} sends per accepted, recall@10 {:.4} at ef_search {}; report: {}",
        report.indexed,
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
        bail!("{} observations were not confirmed indexed", report.lost);
    }
    Ok(())
}

fn write_report(path: &Path, report: &LoadReport) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(report)?).with_context(|| format!("writing {}", path.display()))
}

type RunResult = (Tally, Duration, Vec<Vec<u64>>, Vec<f64>, u64);

mod grpc {
    use super::*;

    fn priority(i: usize) -> i32 {
        [proto::Priority::High, proto::Priority::Normal, proto::Priority::Low][i] as i32
    }

    struct InFlight {
        batch: usize,
        sent_at: Instant,
        accepted_at: Option<Instant>,
    }

    pub(super) async fn run(
        args: &LoadArgs,
        data: &Data,
        space: &str,
        index: IndexKind,
        mix: [u32; 3],
    ) -> anyhow::Result<RunResult> {
        let channel = tonic::transport::Endpoint::from_shared(args.server.clone())
            .context("--server: not a valid URL")?
            .connect()
            .await
            .with_context(|| format!("connecting to {}", args.server))?;
        let mut client =
            EngramClient::new(channel).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20);
        match client.drop_space(proto::DropSpaceRequest { memory_space: space.to_owned() }).await {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => bail!("dropping space {space}: {s}"),
        }
        client
            .create_space(proto::CreateSpaceRequest {
                memory_space: space.to_owned(),
                params: Some(proto::SpaceParams {
                    dim: data.base.dim as u32,
                    metric: proto::Metric::Cosine as i32,
                    max_elements: data.base.len() as u64,
                    index: crate::grpc::index_backend(index) as i32,
                    ..Default::default()
                }),
            })
            .await
            .context("creating the space")?;

        let ranges = batch_ranges(data.base.len(), args.batch);
        let make = |b: usize, seq: u64| {
            let (s, e) = ranges[b];
            proto::ObservationBatch {
                sequence: seq,
                memory_space: space.to_owned(),
                priority: priority(priority_of(b, mix)),
                want_indexed: true,
                observations: (s..e)
                    .map(|i| proto::Observation {
                        id: i as u64,
                        embedding: data.base.row(i).to_vec(),
                        content: data.content.as_ref().map(|c| c[i].clone()),
                    })
                    .collect(),
            }
        };

        let (req_tx, req_rx) = mpsc::channel(args.concurrency * 2);
        let mut replies =
            client.stream_observations(ReceiverStream::new(req_rx)).await.context("opening the stream")?.into_inner();
        let mut ready: VecDeque<usize> = (0..ranges.len()).collect();
        let mut in_flight: HashMap<u64, InFlight> = HashMap::new();
        let mut done = 0usize;
        let mut seq = 0u64;
        let mut t = Tally::default();
        let started = Instant::now();
        let mut progress = Progress { started, last: started, total: data.base.len() };
        let mut pacer = Pacer::new(args.rate);
        while done < ranges.len() {
            while in_flight.len() < args.concurrency
                && pacer.ready()
                && let Some(b) = ready.pop_front()
            {
                let n = ranges[b].1 - ranges[b].0;
                pacer.sent(n);
                seq += 1;
                t.sent += n as u64;
                in_flight.insert(seq, InFlight { batch: b, sent_at: Instant::now(), accepted_at: None });
                req_tx.send(make(b, seq)).await.context("the server closed the stream")?;
            }
            tokio::select! {
                reply = replies.message() => {
                    let reply = reply.context("stream failed")?.context("the server ended the stream early")?;
                    let Some(proto::stream_reply::Reply::Ack(ack)) = reply.reply else { continue };
                    let Some(f) = in_flight.get_mut(&ack.sequence) else { bail!("ack for unknown sequence {}", ack.sequence) };
                    let n = (ranges[f.batch].1 - ranges[f.batch].0) as u64;
                    match proto::AckStatus::try_from(ack.status) {
                        Ok(proto::AckStatus::Accepted) => {
                            pacer.accepted();
                            t.accepted += u64::from(ack.accepted) + u64::from(ack.duplicates);
                            t.duplicates += u64::from(ack.duplicates);
                            t.ack_latency.push(f.sent_at.elapsed().as_secs_f64());
                            f.accepted_at = Some(Instant::now());
                        }
                        Ok(proto::AckStatus::Indexed) => {
                            let f = in_flight.remove(&ack.sequence).expect("present");
                            t.add_indexed(u64::from(ack.indexed), data.base.len());
                            t.index_latency.push(f.sent_at.elapsed().as_secs_f64());
                            if let Some(at) = f.accepted_at {
                                t.accepted_to_indexed.push(at.elapsed().as_secs_f64());
                            }
                            if ack.failed > 0 {
                                bail!("batch {} reports {} observations failed to index", ack.sequence, ack.failed);
                            }
                            done += 1;
                        }
                        Ok(proto::AckStatus::Rejected) => {
                            let f = in_flight.remove(&ack.sequence).expect("present");
                            *t.rejected.entry(ack.reason.clone()).or_default() += n;
                            t.retried += 1;
                            pacer.back_off(Duration::from_millis(ack.retry_after_ms.max(1)));
                            // Back in line at once; the pacer holds every send until the pause ends.
                            ready.push_front(f.batch);
                        }
                        _ => bail!("batch {} refused: {} ({})", ack.sequence, ack.message, ack.grpc_code),
                    }
                    progress.tick(&t);
                }
                () = pacer.until_ready(), if pacer.holding() && in_flight.len() < args.concurrency && !ready.is_empty() => {}
            }
        }
        let duration = started.elapsed();
        drop(req_tx);
        let info = client.get_space(proto::GetSpaceRequest { memory_space: space.to_owned() }).await?.into_inner();

        let mut hits = Vec::with_capacity(data.queries.len());
        let mut latency = Vec::with_capacity(data.queries.len());
        for q in 0..data.queries.len() {
            let req = proto::RecallRequest {
                memory_space: space.to_owned(),
                embedding: data.queries.row(q).to_vec(),
                k: 10,
                ef_search: args.ef_search.unwrap_or(0) as u32,
            };
            let t0 = Instant::now();
            let resp = client.recall(req).await.context("recall")?.into_inner();
            latency.push(t0.elapsed().as_secs_f64());
            hits.push(resp.hits.iter().map(|h| h.id).collect());
        }
        Ok((t, duration, hits, latency, info.vectors))
    }
}

mod http {
    use super::*;
    use serde_json::{Value, json};

    const PRIORITIES: [&str; 3] = ["high", "normal", "low"];

    enum Outcome {
        Indexed { accepted: u64, duplicates: u64, indexed: u64, latency: f64 },
        Rejected { reason: String, retry_after: Duration },
    }

    async fn post_batch(client: &reqwest::Client, url: &str, body: &Value) -> anyhow::Result<Outcome> {
        let t0 = Instant::now();
        let resp = client.post(url).json(body).send().await.context("POST observations")?;
        let status = resp.status();
        let v: Value = resp.json().await.context("reading the response")?;
        if status.as_u16() == 429 || status.as_u16() == 503 {
            let e = &v["error"];
            let reason = e["reason"].as_str().unwrap_or("unknown").to_owned();
            let retry_after = Duration::from_millis(e["retry_after_ms"].as_u64().unwrap_or(1000).max(1));
            return Ok(Outcome::Rejected { reason, retry_after });
        }
        if status.as_u16() != 200 {
            bail!("server answered {status}: {v}");
        }
        if v["failed"].as_u64().unwrap_or(0) > 0 {
            bail!("observations failed to index: {v}");
        }
        Ok(Outcome::Indexed {
            accepted: v["accepted"].as_u64().unwrap_or(0),
            duplicates: v["duplicates"].as_u64().unwrap_or(0),
            indexed: v["indexed"].as_u64().unwrap_or(0),
            latency: t0.elapsed().as_secs_f64(),
        })
    }

    pub(super) async fn run(
        args: &LoadArgs,
        data: &Data,
        space: &str,
        index: IndexKind,
        mix: [u32; 3],
    ) -> anyhow::Result<RunResult> {
        let base_url = args.server.trim_end_matches('/').to_owned();
        let client = reqwest::Client::builder().build()?;
        let space_url = format!("{base_url}/v1/spaces/{space}");
        let r = client.delete(&space_url).send().await.with_context(|| format!("connecting to {base_url}"))?;
        if !(r.status().is_success() || r.status().as_u16() == 404) {
            bail!("dropping space {space}: {}", r.status());
        }
        let r = client
            .put(&space_url)
            .json(&json!({"dim": data.base.dim, "metric": "cosine", "max_elements": data.base.len(), "index": index}))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("creating space {space}: {} {}", r.status(), r.text().await.unwrap_or_default());
        }
        let obs_url = format!("{space_url}/observations?wait=indexed");
        let ranges = batch_ranges(data.base.len(), args.batch);
        let body = |b: usize| {
            let (s, e) = ranges[b];
            let observations: Vec<Value> = (s..e)
                .map(|i| {
                    let mut o = json!({"id": i, "embedding": data.base.row(i)});
                    if let Some(c) = &data.content {
                        o["content"] = json!(c[i]);
                    }
                    o
                })
                .collect();
            json!({"priority": PRIORITIES[priority_of(b, mix)], "observations": observations})
        };

        let mut ready: VecDeque<usize> = (0..ranges.len()).collect();
        let mut tasks = FuturesUnordered::new();
        let mut t = Tally::default();
        let started = Instant::now();
        let mut progress = Progress { started, last: started, total: data.base.len() };
        let mut pacer = Pacer::new(args.rate);
        let mut done = 0;
        while done < ranges.len() {
            while tasks.len() < args.concurrency
                && pacer.ready()
                && let Some(b) = ready.pop_front()
            {
                let n = ranges[b].1 - ranges[b].0;
                pacer.sent(n);
                t.sent += n as u64;
                let (client, url, payload) = (client.clone(), obs_url.clone(), body(b));
                tasks.push(async move { (b, n as u64, post_batch(&client, &url, &payload).await) });
            }
            tokio::select! {
                Some((b, n, outcome)) = tasks.next(), if !tasks.is_empty() => match outcome? {
                    Outcome::Indexed { accepted, duplicates, indexed, latency } => {
                        pacer.accepted();
                        t.accepted += accepted + duplicates;
                        t.duplicates += duplicates;
                        t.add_indexed(indexed, data.base.len());
                        t.ack_latency.push(latency);
                        t.index_latency.push(latency);
                        done += 1;
                    }
                    Outcome::Rejected { reason, retry_after } => {
                        *t.rejected.entry(reason).or_default() += n;
                        t.retried += 1;
                        pacer.back_off(retry_after);
                        ready.push_front(b);
                    }
                },
                () = pacer.until_ready(), if pacer.holding() && tasks.len() < args.concurrency && !ready.is_empty() => {}
            }
            progress.tick(&t);
        }
        let duration = started.elapsed();
        let info: Value = client.get(&space_url).send().await?.json().await?;

        let recall_url = format!("{space_url}/recall");
        let mut hits = Vec::with_capacity(data.queries.len());
        let mut latency = Vec::with_capacity(data.queries.len());
        for q in 0..data.queries.len() {
            let body = json!({"embedding": data.queries.row(q), "k": 10, "ef_search": args.ef_search});
            let t0 = Instant::now();
            let resp = client.post(&recall_url).json(&body).send().await?;
            if !resp.status().is_success() {
                bail!("recall answered {}: {}", resp.status(), resp.text().await.unwrap_or_default());
            }
            let v: Value = resp.json().await?;
            latency.push(t0.elapsed().as_secs_f64());
            hits.push(
                v["hits"].as_array().map(|a| a.iter().filter_map(|h| h["id"].as_u64()).collect()).unwrap_or_default(),
            );
        }
        Ok((t, duration, hits, latency, info["vectors"].as_u64().unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_refusal_pauses_every_send_for_the_retry_after_with_jitter() {
        let mut pacer = Pacer::new(None);
        assert!(pacer.ready(), "an unpaced client sends at once");
        pacer.back_off(Duration::from_millis(400));
        // Every send waits, not just the refused batch's.
        assert!(pacer.holding());
        tokio::time::advance(Duration::from_millis(399)).await;
        assert!(pacer.holding(), "no send before the retry-after");
        tokio::time::advance(Duration::from_millis(101)).await;
        assert!(pacer.ready(), "jitter stretches the pause by less than a quarter");
        // Refusals in a row double the pause once the server's estimate keeps falling short.
        for _ in 0..REFUSALS_BEFORE_GROWTH {
            pacer.back_off(Duration::from_millis(100));
        }
        tokio::time::advance(Duration::from_millis(125)).await;
        pacer.back_off(Duration::from_millis(100));
        tokio::time::advance(Duration::from_millis(199)).await;
        assert!(pacer.holding(), "the fifth refusal in a row waits twice the retry-after");
        pacer.accepted();
        tokio::time::advance(Duration::from_millis(51)).await;
        pacer.back_off(Duration::from_millis(100));
        tokio::time::advance(Duration::from_millis(125)).await;
        assert!(pacer.ready(), "an acceptance resets the growth");
    }

    #[test]
    fn quantiles_nearest_rank() {
        let mut v: Vec<f64> = (1..=1000).map(f64::from).collect();
        let q = Quantiles::of(&mut v);
        assert_eq!((q.p50, q.p99, q.p999), (500.0, 990.0, 999.0));
        assert_eq!(Quantiles::of(&mut []), Quantiles::default());
    }

    #[test]
    fn bucket_quantile_interpolates_like_promql() {
        let body = "# TYPE x histogram\n\
            engram_streaming_observation_latency_seconds_bucket{memory_space=\"s\",le=\"0.025\"} 50\n\
            engram_streaming_observation_latency_seconds_bucket{memory_space=\"s\",le=\"0.05\"} 90\n\
            engram_streaming_observation_latency_seconds_bucket{memory_space=\"s\",le=\"0.1\"} 100\n\
            engram_streaming_observation_latency_seconds_bucket{memory_space=\"s\",le=\"+Inf\"} 100\n\
            engram_streaming_observation_latency_seconds_bucket{memory_space=\"t\",le=\"+Inf\"} 7\n";
        let b = latency_buckets(body, "s");
        assert_eq!(b.len(), 4);
        // Rank 99 of 100 falls in (0.05, 0.1]: 0.05 + 0.05 × (99 - 90) / (100 - 90).
        assert!((bucket_quantile(&b, 0.99) - 0.095).abs() < 1e-12);
        // Rank 50 is the 0.025 bound exactly.
        assert!((bucket_quantile(&b, 0.5) - 0.025).abs() < 1e-12);
        let before = vec![(0.025, 10.0), (0.05, 10.0), (0.1, 10.0), (f64::INFINITY, 10.0)];
        assert_eq!(bucket_delta(&b, &before)[1], (0.05, 80.0));
        assert!(bucket_quantile(&[], 0.99).is_nan());
    }

    #[test]
    fn priority_mix_round_robin() {
        let mix = parse_mix("1:2:1").unwrap();
        let got: Vec<usize> = (0..8).map(|i| priority_of(i, mix)).collect();
        assert_eq!(got, vec![0, 1, 1, 2, 0, 1, 1, 2]);
        assert!(parse_mix("0:0:0").is_err());
        assert!(parse_mix("1:x:1").is_err());
    }
}
