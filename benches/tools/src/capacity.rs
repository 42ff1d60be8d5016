//! `engram-tools capacity` (also `engram-stream capacity`): sizes a deployment from measured `load` reports.
//!
//! Every constant comes from a report given with `--from`, and the output names the report it
//! came from:
//!
//! | constant | from |
//! |---|---|
//! | indexed observations per second per worker | saturated runs (no `--rate`): `ingest_rate_second_half_per_s / server_stats.workers` (the rate at the larger index), the lowest |
//! | resident bytes per indexed vector | over the ingest's second half, `(rss_bytes_ingested - rss_bytes_half) / (observations - vectors_half)`, the highest; a report without a half-way reading (older ones) gives `(rss_bytes_after - rss_bytes_before) / observations` instead, which counts the fixed parts as per-vector cost |
//! | resident bytes of a node before any vector (the process, the store's memtables and block cache) | `rss_bytes_after - observations × that report's bytes per vector` (after the queries, so the block cache they filled counts), the highest; only reports with a half-way reading give it |
//! | content bytes per observation | `content_bytes_mean`, the highest |
//! | disk bytes per stored vector | `(disk_bytes_after - disk_bytes_before) / observations` (`engram_storage_disk_bytes`: log, content, checkpoints), the highest; only reports of a server with a store give it |
//! | queued bytes per observation | the engine's own queue accounting ([`engram_engine::queued_bytes`]) at that content size |
//! | p99 accepted → indexed below saturation | paced runs (`--rate`): `server_stats.observation_latency_p99_seconds` (per observation) and the run's share of the saturated rate |
//! | scrape size and time | `server_stats.scrape_*`, the highest |
//! | cores and memory of a node (defaults) | `client_cores`, `machine_memory_bytes` of the measuring machine |
//!
//! Only reports at the requested dimension and backend, with `server_stats` and nothing lost,
//! are used; with none, the command fails and says which runs to make.
//!
//! With `--criterion DIR` (criterion's JSON, e.g. `target/criterion` after `cargo bench -p
//! engram-benches`), the plan also sets the single-thread costs of admission, the queue and one
//! index insert beside a worker's time per observation ([`criterion`]): where a worker's core
//! goes. They explain the sizing; the sizing itself stays on the end-to-end rate.
//!
//! The sizing: the rate to provision is `target / (1 - headroom)`; workers are that over the
//! per-worker rate; the queue holds `buffer_seconds` of the target rate; memory is the index for
//! `vectors` plus the full queue, kept under `1 - headroom` of each node less its fixed resident
//! bytes; nodes are the larger of
//! what cores and memory need. Disk is the stored vectors (`--vectors`, or `--retention-days`
//! of the target rate) at the measured bytes per vector, kept under `1 - headroom` of each
//! node's disk; snapshots are extra (each about the size of the space's checkpoint and
//! content).

pub mod criterion;

use crate::load::{LoadReport, ServerStats};
use anyhow::{Context, bail};
use engram_engine::IndexKind;
use serde::Serialize;
use std::path::PathBuf;

/// Arguments of `engram-stream capacity`.
#[derive(Debug, Clone, clap::Args)]
pub struct CapacityArgs {
    /// A `load` report (JSON) to take constants from; repeat for several.
    #[arg(long = "from", required = true)]
    pub from: Vec<PathBuf>,
    /// Criterion's results directory (e.g. `target/criterion`): adds per-observation costs.
    #[arg(long)]
    pub criterion: Option<PathBuf>,
    /// Observations per second to sustain.
    #[arg(long)]
    pub target_rate: f64,
    /// Embedding dimension (reports at this dimension are used).
    #[arg(long)]
    pub dim: usize,
    /// Index backend (reports with this backend are used). Default: the engine's for `--dim`
    /// and `--quantization` (engram below 256 dimensions, usearch from 256).
    #[arg(long)]
    pub index: Option<String>,
    /// Scalar type of the index vectors (reports with this quantization are used): none, f16,
    /// bf16 or i8. Default: whatever the matching reports have, if they agree.
    #[arg(long)]
    pub quantization: Option<String>,
    /// Seconds of the target rate the queue must absorb while workers fall behind.
    #[arg(long, default_value_t = 30.0)]
    pub buffer_seconds: f64,
    /// Share of CPU and memory kept free (0 to 0.9).
    #[arg(long, default_value_t = 0.25)]
    pub headroom: f64,
    /// Vectors held in the indexes (default: one hour of ingest at the target rate).
    #[arg(long, conflicts_with = "retention_days")]
    pub vectors: Option<u64>,
    /// Days of ingest at the target rate that are kept (stored and indexed): sets the vectors
    /// held, for memory and disk alike, in place of `--vectors`.
    #[arg(long)]
    pub retention_days: Option<f64>,
    /// Cores of a node, one worker each (default: the measuring machine's).
    #[arg(long)]
    pub node_cores: Option<u64>,
    /// Memory of a node in bytes (default: the measuring machine's).
    #[arg(long)]
    pub node_memory_bytes: Option<u64>,
    /// Prometheus scrape interval, seconds.
    #[arg(long, default_value_t = 15.0)]
    pub scrape_interval_seconds: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Output format of `capacity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A human-readable table.
    Table,
    /// One JSON object.
    Json,
}

/// A constant and the report it came from.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Measured {
    /// The value.
    pub value: f64,
    /// The report file it was read from.
    pub source: String,
}

/// The constants a plan was computed from.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Constants {
    /// Indexed observations per second per worker (one worker per core).
    pub rate_per_worker: Measured,
    /// Resident bytes per indexed vector (index, content, id map): the marginal cost over a
    /// run's second half where a report has its half-way reading.
    pub rss_bytes_per_vector: Measured,
    /// Resident bytes of a node that do not grow with its vectors (the process, the store's
    /// memtable and block cache); None when no report has a half-way reading.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_fixed_bytes: Option<Measured>,
    /// Mean content bytes per observation.
    pub content_bytes_per_observation: Measured,
    /// Bytes on disk per stored vector (None: no report measured a store).
    pub disk_bytes_per_vector: Option<Measured>,
    /// Bytes the queue accounts per observation at that content size.
    pub queued_bytes_per_observation: f64,
    /// Per-observation p99 accepted → indexed, seconds, in the paced run with the highest share
    /// of the saturated rate (None without a paced run).
    pub p99_accepted_to_indexed_seconds: Option<Measured>,
    /// That run's rate as a share of the saturated rate.
    pub p99_at_utilization: Option<f64>,
    /// Bytes of one `/metrics` response.
    pub scrape_bytes: Measured,
    /// Samples in one `/metrics` response.
    pub scrape_samples: Measured,
    /// Seconds to serve one `/metrics` response.
    pub scrape_seconds: Measured,
    /// Cores of a node.
    pub node_cores: u64,
    /// Memory of a node, bytes.
    pub node_memory_bytes: u64,
}

/// What to provision for a target rate.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Plan {
    /// Observations per second to sustain.
    pub target_rate_per_s: f64,
    /// Embedding dimension.
    pub dim: usize,
    /// Index backend.
    pub index: IndexKind,
    /// Share of CPU and memory kept free.
    pub headroom: f64,
    /// Rate provisioned: `target / (1 - headroom)`.
    pub provisioned_rate_per_s: f64,
    /// Insert workers (cores) in total.
    pub workers: u64,
    /// Nodes: the larger of what cores and memory need.
    pub nodes: u64,
    /// Nodes needed for cores alone.
    pub nodes_for_cores: u64,
    /// Nodes needed for memory alone.
    pub nodes_for_memory: u64,
    /// Workers per node (`engine.workers`).
    pub workers_per_node: u64,
    /// Seconds of target rate the queue absorbs.
    pub buffer_seconds: f64,
    /// Queue capacity per node, observations (`engine.queue_capacity`).
    pub queue_capacity_per_node: u64,
    /// Queue capacity per node, bytes (`engine.queue_capacity_bytes`).
    pub queue_capacity_bytes_per_node: u64,
    /// Vectors held in total.
    pub vectors: u64,
    /// Index memory in total, bytes.
    pub index_memory_bytes: f64,
    /// Index memory per node, bytes.
    pub index_memory_bytes_per_node: f64,
    /// Disk the stored vectors take in total, bytes (None: not measured).
    pub disk_bytes: Option<f64>,
    /// Disk to provision per node, bytes: its share over `1 - headroom` (None: not measured).
    pub disk_bytes_per_node: Option<f64>,
    /// Samples Prometheus ingests per second from all nodes.
    pub scrape_samples_per_s: f64,
    /// Bytes Prometheus pulls per second from all nodes.
    pub scrape_bytes_per_s: f64,
    /// Share of one core each node spends serving scrapes.
    pub scrape_core_share_per_node: f64,
    /// The constants, with their reports.
    pub constants: Constants,
    /// Per-observation costs from criterion, when `--criterion` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub costs: Option<criterion::Costs>,
}

/// A usable report: its source, the report, and its server stats.
type Usable<'a> = (&'a str, &'a LoadReport, &'a ServerStats);

fn pick(
    reports: &[Usable<'_>],
    what: &str,
    value: impl Fn(&LoadReport, &ServerStats) -> Option<f64>,
    highest: bool,
) -> anyhow::Result<Measured> {
    reports
        .iter()
        .filter_map(|&(src, r, s)| value(r, s).map(|v| (v, src)))
        .reduce(|a, b| if (b.0 > a.0) == highest { b } else { a })
        .map(|(value, src)| Measured { value, source: src.to_owned() })
        .with_context(|| format!("no usable report gives {what}"))
}

/// Computes the plan from `load` reports (`(source, report)`) and, when given, criterion results.
///
/// # Errors
/// Bad arguments (named), no report that measures what the plan needs, or criterion results that
/// lack a benchmark the costs need.
pub fn plan(
    args: &CapacityArgs,
    reports: &[(String, LoadReport)],
    estimates: Option<&[criterion::Estimate]>,
) -> anyhow::Result<Plan> {
    if !(args.target_rate > 0.0 && args.target_rate.is_finite()) {
        bail!("--target-rate must be a positive number, got {}", args.target_rate);
    }
    if !(0.0..=0.9).contains(&args.headroom) {
        bail!("--headroom must be within 0 and 0.9, got {}", args.headroom);
    }
    if !(args.buffer_seconds > 0.0 && args.buffer_seconds.is_finite()) {
        bail!("--buffer-seconds must be a positive number, got {}", args.buffer_seconds);
    }
    let asked: Option<engram_engine::Quantization> = args
        .quantization
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e: String| anyhow::anyhow!("--quantization: {e}"))?;
    let kind: IndexKind = match args.index.as_deref() {
        Some(i) => i.parse().map_err(|e: String| anyhow::anyhow!("--index: {e}"))?,
        None => {
            engram_engine::SpaceParams { quantization: asked, ..engram_engine::SpaceParams::with_dim(args.dim) }.index()
        }
    };
    let usable: Vec<Usable<'_>> = reports
        .iter()
        .filter(|(_, r)| {
            r.dim == args.dim && r.index == kind && asked.is_none_or(|q| r.quantization == q) && r.lost == 0
        })
        .filter_map(|(src, r)| Some((src.as_str(), r, r.server_stats.as_ref()?)))
        .collect();
    let wanted = asked.map_or("any quantization", |q| q.as_str());
    if usable.is_empty() {
        let seen: Vec<String> = reports
            .iter()
            .map(|(s, r)| format!("{s} (dim {}, {}, {})", r.dim, r.index.as_str(), r.quantization.as_str()))
            .collect();
        bail!(
            "no report at dim {} with index {}, {wanted}, and server stats (run `engram-stream load --index {} \
             --metrics-url ...` on a data set of that dimension); given: {}",
            args.dim,
            kind.as_str(),
            kind.as_str(),
            seen.join(", ")
        );
    }
    let mut kinds: Vec<&str> = usable.iter().map(|(_, r, _)| r.quantization.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    if kinds.len() > 1 {
        bail!("the reports hold spaces of several quantizations ({}): pick one with --quantization", kinds.join(", "));
    }
    let saturated: Vec<Usable<'_>> = usable.iter().copied().filter(|(_, r, _)| r.target_rate_per_s.is_none()).collect();
    let rate_per_worker = pick(
        &saturated,
        "a saturated ingest rate (a run without --rate)",
        |r, s| Some(r.ingest_rate_second_half_per_s / s.workers.max(1) as f64),
        false,
    )?;
    // Over the second half the fixed parts are mostly paid; the whole run's growth (older
    // reports) would spread them over the vectors.
    let marginal = |r: &LoadReport, s: &ServerStats| {
        let (vectors, rss) = (s.vectors_half?, s.rss_bytes_half?);
        let (grew, more) = (s.rss_bytes_ingested?.checked_sub(rss)?, (r.observations as u64).checked_sub(vectors)?);
        (grew > 0 && more > 0).then(|| grew as f64 / more as f64)
    };
    let rss = match pick(&usable, "resident memory per vector over the second half", marginal, true) {
        Ok(m) => m,
        Err(_) => pick(
            &usable,
            "resident memory per vector",
            |r, s| Some(s.rss_bytes_after.saturating_sub(s.rss_bytes_before) as f64 / r.observations.max(1) as f64),
            true,
        )?,
    };
    let rss_fixed = pick(
        &usable,
        "fixed resident memory",
        |r, s| Some((s.rss_bytes_after as f64 - marginal(r, s)? * r.observations as f64).max(0.0)),
        true,
    )
    .ok();
    let content = pick(&usable, "content bytes per observation", |r, _| Some(r.content_bytes_mean), true)?;
    let disk = pick(
        &usable,
        "disk bytes per vector",
        |r, s| {
            let grew = s.disk_bytes_after?.saturating_sub(s.disk_bytes_before?);
            Some(grew as f64 / r.observations.max(1) as f64)
        },
        true,
    )
    .ok();
    let saturated_rate = rate_per_worker.value;
    let paced = usable
        .iter()
        .filter_map(|&(src, r, s)| {
            r.target_rate_per_s?;
            let p99 = s.observation_latency_p99_seconds;
            let share = r.ingest_rate_per_s / s.workers.max(1) as f64 / saturated_rate;
            p99.is_finite().then(|| (share, Measured { value: p99, source: src.to_owned() }))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let scrape_bytes = pick(&usable, "scrape size", |_, s| Some(s.scrape_bytes as f64), true)?;
    let scrape_samples = pick(&usable, "scrape samples", |_, s| Some(s.scrape_samples as f64), true)?;
    let scrape_seconds = pick(&usable, "scrape time", |_, s| Some(s.scrape_seconds), true)?;
    let node_cores = match args.node_cores {
        Some(c) => c,
        None => usable.iter().map(|(_, r, _)| r.client_cores as u64).min().unwrap_or(1),
    }
    .max(1);
    let node_memory_bytes = match args.node_memory_bytes {
        Some(m) => m,
        None => usable
            .iter()
            .filter_map(|(_, r, _)| r.machine_memory_bytes)
            .min()
            .context("the reports do not give the machine's memory (older reports): pass --node-memory-bytes")?,
    };

    let provisioned = args.target_rate / (1.0 - args.headroom);
    let workers = (provisioned / rate_per_worker.value).ceil().max(1.0) as u64;
    let nodes_for_cores = workers.div_ceil(node_cores);
    let queued_bytes = engram_engine::queued_bytes(args.dim, content.value.ceil() as usize) as f64;
    let queue_total = (args.target_rate * args.buffer_seconds).ceil();
    let vectors = match (args.vectors, args.retention_days) {
        (Some(_), Some(_)) => bail!("give --vectors or --retention-days, not both"),
        (Some(v), None) => v,
        (None, Some(days)) if days > 0.0 && days.is_finite() => (args.target_rate * 86_400.0 * days).ceil() as u64,
        (None, Some(days)) => bail!("--retention-days must be a positive number, got {days}"),
        (None, None) => (args.target_rate * 3600.0).ceil() as u64,
    };
    let index_memory = vectors as f64 * rss.value;
    let fixed = rss_fixed.as_ref().map_or(0.0, |f| f.value);
    let usable_memory = node_memory_bytes as f64 * (1.0 - args.headroom) - fixed;
    if usable_memory <= 0.0 {
        bail!(
            "a node's memory ({}) less the headroom holds no vectors: the server's fixed resident memory is {}",
            bytes(node_memory_bytes as f64),
            bytes(fixed)
        );
    }
    let nodes_for_memory = ((index_memory + queue_total * queued_bytes) / usable_memory).ceil().max(1.0) as u64;
    let nodes = nodes_for_cores.max(nodes_for_memory);
    let queue_per_node = (queue_total / nodes as f64).ceil() as u64;
    let costs = estimates.map(|e| criterion::costs(e, args.dim, kind, rate_per_worker.value)).transpose()?;
    Ok(Plan {
        target_rate_per_s: args.target_rate,
        dim: args.dim,
        index: kind,
        headroom: args.headroom,
        provisioned_rate_per_s: provisioned,
        workers,
        nodes,
        nodes_for_cores,
        nodes_for_memory,
        workers_per_node: workers.div_ceil(nodes),
        buffer_seconds: args.buffer_seconds,
        queue_capacity_per_node: queue_per_node,
        queue_capacity_bytes_per_node: (queue_per_node as f64 * queued_bytes).ceil() as u64,
        vectors,
        index_memory_bytes: index_memory,
        index_memory_bytes_per_node: index_memory / nodes as f64,
        disk_bytes: disk.as_ref().map(|d| vectors as f64 * d.value),
        disk_bytes_per_node: disk.as_ref().map(|d| vectors as f64 * d.value / nodes as f64 / (1.0 - args.headroom)),
        scrape_samples_per_s: nodes as f64 * scrape_samples.value / args.scrape_interval_seconds,
        scrape_bytes_per_s: nodes as f64 * scrape_bytes.value / args.scrape_interval_seconds,
        scrape_core_share_per_node: scrape_seconds.value / args.scrape_interval_seconds,
        constants: Constants {
            rate_per_worker,
            rss_bytes_per_vector: rss,
            rss_fixed_bytes: rss_fixed,
            content_bytes_per_observation: content,
            disk_bytes_per_vector: disk,
            queued_bytes_per_observation: queued_bytes,
            p99_at_utilization: paced.as_ref().map(|p| p.0),
            p99_accepted_to_indexed_seconds: paced.map(|p| p.1),
            scrape_bytes,
            scrape_samples,
            scrape_seconds,
            node_cores,
            node_memory_bytes,
        },
        costs,
    })
}

fn bytes(b: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// The plan as a Markdown table (also readable as plain text).
pub fn table(p: &Plan) -> String {
    let c = &p.constants;
    let mut rows = vec![
        ("target rate", format!("{:.0} obs/s at dim {} ({})", p.target_rate_per_s, p.dim, p.index.as_str())),
        ("provisioned rate", format!("{:.0} obs/s (headroom {:.0}%)", p.provisioned_rate_per_s, p.headroom * 100.0)),
        ("workers (cores)", format!("{}", p.workers)),
        (
            "nodes",
            format!(
                "{} ({} for cores at {} cores/node, {} for memory at {}/node)",
                p.nodes,
                p.nodes_for_cores,
                c.node_cores,
                p.nodes_for_memory,
                bytes(c.node_memory_bytes as f64)
            ),
        ),
        ("engine.workers per node", format!("{}", p.workers_per_node)),
        (
            "engine.queue_capacity per node",
            format!(
                "{} observations ({:.0} s of target rate over {} nodes)",
                p.queue_capacity_per_node, p.buffer_seconds, p.nodes
            ),
        ),
        (
            "engine.queue_capacity_bytes per node",
            format!("{} ({})", p.queue_capacity_bytes_per_node, bytes(p.queue_capacity_bytes_per_node as f64)),
        ),
        ("vectors", format!("{}", p.vectors)),
        (
            "index memory",
            format!("{} total, {} per node", bytes(p.index_memory_bytes), bytes(p.index_memory_bytes_per_node)),
        ),
        (
            "disk",
            match (p.disk_bytes, p.disk_bytes_per_node) {
                (Some(total), Some(node)) => format!(
                    "{} total; provision {} per node (headroom {:.0}%; snapshots extra)",
                    bytes(total),
                    bytes(node),
                    p.headroom * 100.0
                ),
                _ => "not measured: no report is of a server with a store (load --metrics-url against \
                      storage.durability fsync or os)"
                    .to_owned(),
            },
        ),
        (
            "scrape cost",
            format!(
                "{:.0} samples/s and {}/s into Prometheus; {:.3}% of a core per node",
                p.scrape_samples_per_s,
                bytes(p.scrape_bytes_per_s),
                p.scrape_core_share_per_node * 100.0
            ),
        ),
    ];
    rows.push(("— measured constants", String::new()));
    let m = |x: &Measured, unit: &str| format!("{:.1} {unit} ({})", x.value, x.source);
    rows.push(("rate per worker", m(&c.rate_per_worker, "obs/s")));
    rows.push(("resident bytes per vector", m(&c.rss_bytes_per_vector, "B")));
    if let Some(f) = &c.rss_fixed_bytes {
        rows.push(("resident bytes per node, fixed", m(f, "B")));
    }
    rows.push(("content bytes per observation", m(&c.content_bytes_per_observation, "B")));
    if let Some(d) = &c.disk_bytes_per_vector {
        rows.push(("disk bytes per vector", m(d, "B")));
    }
    rows.push(("queued bytes per observation", format!("{:.0} B (engine accounting)", c.queued_bytes_per_observation)));
    if let (Some(l), Some(u)) = (&c.p99_accepted_to_indexed_seconds, c.p99_at_utilization) {
        rows.push((
            "p99 accepted→indexed",
            format!("{:.1} ms at {:.0}% of saturation ({})", l.value * 1e3, u * 100.0, l.source),
        ));
    }
    rows.push((
        "scrape",
        format!(
            "{:.0} samples, {:.0} B, {:.2} ms ({})",
            c.scrape_samples.value,
            c.scrape_bytes.value,
            c.scrape_seconds.value * 1e3,
            c.scrape_bytes.source
        ),
    ));
    if let Some(k) = &p.costs {
        let share = |x: &Measured, what: &str| {
            format!(
                "{:.3} µs{what} = {:.3}% of a worker's {:.0} µs per observation ({})",
                x.value * 1e6,
                x.value / k.worker_seconds_per_observation * 100.0,
                k.worker_seconds_per_observation * 1e6,
                x.source
            )
        };
        rows.push(("— per-observation costs, one thread (criterion)", String::new()));
        rows.push(("admission", share(&k.admission_seconds, "")));
        rows.push(("queue", share(&k.queue_seconds, "")));
        rows.push((
            "index insert",
            share(&k.index_insert_seconds, &format!(" (building a {}-vector index)", k.index_insert_vectors)),
        ));
    }
    let mut out = String::from("| quantity | value |\n|---|---|\n");
    for (k, v) in rows {
        out.push_str(&format!("| {k} | {v} |\n"));
    }
    out
}

/// Runs `engram-stream capacity`.
///
/// # Errors
/// Unreadable reports, bad arguments, or reports that do not measure what the plan needs.
pub fn run(args: &CapacityArgs) -> anyhow::Result<()> {
    let mut reports = Vec::new();
    for path in &args.from {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let report: LoadReport =
            serde_json::from_str(&text).with_context(|| format!("{} is not a load report", path.display()))?;
        if report.wait != crate::load::Wait::Indexed {
            anyhow::bail!(
                "{} waited for {} acks: capacity plans from indexed rates and latencies (run the load with --wait indexed)",
                path.display(),
                report.wait.as_str()
            );
        }
        reports.push((path.display().to_string(), report));
    }
    let estimates = args.criterion.as_deref().map(criterion::read).transpose()?;
    let p = plan(args, &reports, estimates.as_deref())?;
    match args.format {
        Format::Table => print!("{}", table(&p)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&p)?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Protocol, Quantiles, ServerStats};

    fn report(rate: f64, target: Option<f64>, workers: u64, rss_growth: u64) -> LoadReport {
        let q = Quantiles { p50: 0.01, p99: 0.04, p999: 0.05 };
        LoadReport {
            dataset: "d".into(),
            protocol: Protocol::Grpc,
            server: "s".into(),
            memory_space: "m".into(),
            dim: 384,
            observations: 1000,
            batch: 100,
            sent: 1000,
            accepted: 1000,
            duplicates: 0,
            rejected: Default::default(),
            retried: 0,
            sent_per_accepted: 1.0,
            wait: crate::load::Wait::Indexed,
            confirmed: 1000,
            indexed: 1000,
            space_vectors: 1000,
            lost: 0,
            duration_s: 1000.0 / rate,
            ingest_rate_per_s: rate,
            ingest_rate_second_half_per_s: rate,
            ack_latency_seconds: q,
            index_latency_seconds: Some(q),
            accepted_to_indexed_seconds: Some(q),
            durable_latency_seconds: None,
            accepted_to_durable_seconds: None,
            recall_latency_seconds: q,
            ef_search: 128,
            queries: 10,
            recall_at_10: 0.99,
            client_cores: 2,
            machine_memory_bytes: Some(8 << 30),
            content_bytes_mean: 100.0,
            index: IndexKind::Usearch,
            quantization: engram_engine::Quantization::None,
            rescore_factor: 3,
            target_rate_per_s: target,
            server_stats: Some(ServerStats {
                workers,
                rss_bytes_before: 1 << 20,
                rss_bytes_after: (1 << 20) + rss_growth,
                vectors_half: None,
                rss_bytes_half: None,
                rss_bytes_ingested: None,
                index_memory_bytes: rss_growth / 2,
                scrape_bytes: 20_000,
                scrape_samples: 300,
                scrape_seconds: 0.002,
                observation_latency_p99_seconds: 0.04,
                observation_latency_share_within_50ms: 0.995,
                disk_bytes_before: None,
                disk_bytes_after: None,
            }),
        }
    }

    /// `capacity`'s defaults at 384 dimensions, with 1M vectors.
    pub(super) fn args(target: f64) -> CapacityArgs {
        CapacityArgs {
            from: vec![],
            criterion: None,
            target_rate: target,
            dim: 384,
            index: None,
            quantization: None,
            buffer_seconds: 30.0,
            headroom: 0.25,
            vectors: Some(1_000_000),
            retention_days: None,
            node_cores: None,
            node_memory_bytes: None,
            scrape_interval_seconds: 15.0,
            format: Format::Json,
        }
    }

    #[test]
    fn sizes_from_the_slowest_saturated_run_and_the_largest_memory() {
        let reports = vec![
            ("fast.json".to_owned(), report(3000.0, None, 2, 2_000_000)),
            ("slow.json".to_owned(), report(2000.0, None, 2, 1_000_000)),
            ("paced.json".to_owned(), report(700.0, Some(700.0), 2, 3_000_000)),
        ];
        let p = plan(&args(10_000.0), &reports, None).unwrap();
        let c = &p.constants;
        assert_eq!((c.rate_per_worker.value, c.rate_per_worker.source.as_str()), (1000.0, "slow.json"));
        assert_eq!((c.rss_bytes_per_vector.value, c.rss_bytes_per_vector.source.as_str()), (3000.0, "paced.json"));
        // 10,000 / 0.75 = 13,333.3 obs/s at 1,000 per worker: 14 workers, 7 nodes of 2 cores.
        assert_eq!((p.workers, p.nodes_for_cores), (14, 7));
        // 1M vectors × 3,000 B + 300k queued × footprint, under 6 GiB per node: 1 node.
        assert_eq!(p.nodes_for_memory, 1);
        assert_eq!(p.nodes, 7);
        assert_eq!(p.queue_capacity_per_node, 300_000u64.div_ceil(7));
        let per_obs = engram_engine::queued_bytes(384, 100) as u64;
        assert_eq!(p.queue_capacity_bytes_per_node, p.queue_capacity_per_node * per_obs);
        assert!((c.p99_at_utilization.unwrap() - 0.35).abs() < 1e-9);
        assert!((p.scrape_samples_per_s - 7.0 * 300.0 / 15.0).abs() < 1e-9);
        assert!(table(&p).contains("| workers (cores) | 14 |"));
    }

    #[test]
    fn disk_is_sized_from_a_report_with_a_store_for_a_retention() {
        let mut stored = report(1000.0, None, 2, 1_000_000);
        let stats = stored.server_stats.as_mut().unwrap();
        (stats.disk_bytes_before, stats.disk_bytes_after) = (Some(10_000), Some(10_000 + 1000 * 6_000));
        let reports =
            vec![("memory.json".to_owned(), report(1000.0, None, 2, 1_000_000)), ("fsync.json".to_owned(), stored)];
        // 100 obs/s kept 10 days: 86.4M vectors at 6,000 B each.
        let p =
            plan(&CapacityArgs { vectors: None, retention_days: Some(10.0), ..args(100.0) }, &reports, None).unwrap();
        let d = p.constants.disk_bytes_per_vector.as_ref().unwrap();
        assert_eq!((d.value, d.source.as_str()), (6000.0, "fsync.json"));
        assert_eq!(p.vectors, 86_400_000);
        assert_eq!(p.disk_bytes, Some(86_400_000.0 * 6000.0));
        let per_node = p.disk_bytes_per_node.unwrap();
        assert!((per_node - 86_400_000.0 * 6000.0 / p.nodes as f64 / 0.75).abs() < 1.0, "{per_node}");
        assert!(table(&p).contains("| disk bytes per vector | 6000.0 B (fsync.json) |"), "{}", table(&p));
        // Without a store in any report, disk says how to measure it.
        let p = plan(&args(100.0), &reports[..1], None).unwrap();
        assert_eq!(p.disk_bytes, None);
        assert!(table(&p).contains("not measured"));
        let e = plan(&CapacityArgs { retention_days: Some(-1.0), vectors: None, ..args(1.0) }, &reports, None);
        assert!(e.unwrap_err().to_string().contains("--retention-days"));
    }

    #[test]
    fn memory_can_set_the_node_count() {
        let reports = vec![("r.json".to_owned(), report(1000.0, None, 2, 4_000_000))];
        // 100M vectors × 4,000 B = 400 GB over 6 GiB usable per node.
        let p = plan(&CapacityArgs { vectors: Some(100_000_000), ..args(100.0) }, &reports, None).unwrap();
        assert_eq!(p.nodes_for_cores, 1);
        assert!(p.nodes_for_memory > 60 && p.nodes == p.nodes_for_memory, "{p:?}");
    }

    #[test]
    fn a_half_way_reading_splits_memory_into_per_vector_and_fixed() {
        // 1,000 observations: 80 MB fixed, then 2,000 B per vector; read at 500 vectors.
        let mut r = report(1000.0, None, 2, 0);
        let s = r.server_stats.as_mut().unwrap();
        (s.rss_bytes_before, s.vectors_half, s.rss_bytes_half) = (10_000_000, Some(500), Some(81_000_000));
        // 82 MB once ingested, 85 MB after the queries filled 3 MB of block cache: fixed.
        (s.rss_bytes_ingested, s.rss_bytes_after) = (Some(82_000_000), 85_000_000);
        let older = report(1000.0, None, 2, 72_000_000);
        let reports = vec![("half.json".to_owned(), r.clone()), ("older.json".to_owned(), older.clone())];
        let p = plan(&args(100.0), &reports, None).unwrap();
        let c = &p.constants;
        // The second half's 1 MB over 500 vectors, not the whole run's 72 MB over 1,000 (which
        // the older report, without a half-way reading, would have given).
        assert_eq!((c.rss_bytes_per_vector.value, c.rss_bytes_per_vector.source.as_str()), (2000.0, "half.json"));
        let fixed = c.rss_fixed_bytes.as_ref().unwrap();
        assert_eq!((fixed.value, fixed.source.as_str()), (83_000_000.0, "half.json"));
        assert!(table(&p).contains("| resident bytes per node, fixed | 83000000.0 B (half.json) |"), "{}", table(&p));
        // Each node holds the fixed part once: 6 GiB usable less 83 MB, at 2,000 B per vector.
        let usable = (8u64 << 30) as f64 * 0.75 - 83e6;
        let big = plan(&CapacityArgs { vectors: Some(100_000_000), ..args(100.0) }, &reports, None).unwrap();
        let queue = 3000.0 * engram_engine::queued_bytes(384, 100) as f64;
        assert_eq!(big.nodes_for_memory, ((100_000_000.0 * 2000.0 + queue) / usable).ceil() as u64);
        // Only older reports: the whole run's growth per vector, and no fixed part.
        let p = plan(&args(100.0), &[("older.json".to_owned(), older)], None).unwrap();
        assert_eq!(p.constants.rss_bytes_per_vector.value, 72_000.0);
        assert!(p.constants.rss_fixed_bytes.is_none());
        // A reading where resident memory fell over the second half gives no marginal cost.
        let s = r.server_stats.as_mut().unwrap();
        s.rss_bytes_ingested = Some(80_000_000);
        let p = plan(&args(100.0), &[("fell.json".to_owned(), r.clone())], None).unwrap();
        assert!(p.constants.rss_fixed_bytes.is_none());
        // A node too small for its fixed part is refused, naming it.
        let s = r.server_stats.as_mut().unwrap();
        s.rss_bytes_ingested = Some(82_000_000);
        let e = plan(&CapacityArgs { node_memory_bytes: Some(100_000_000), ..args(100.0) }, &[("h".into(), r)], None);
        assert!(e.unwrap_err().to_string().contains("fixed resident memory"));
    }

    #[test]
    fn refuses_without_matching_measurements_and_names_bad_arguments() {
        let paced_only = vec![("p.json".to_owned(), report(700.0, Some(700.0), 2, 1))];
        let e = plan(&args(1000.0), &paced_only, None).unwrap_err().to_string();
        assert!(e.contains("saturated"), "{e}");
        let other_dim = vec![("g.json".to_owned(), LoadReport { dim: 50, ..report(1.0, None, 2, 1) })];
        let e = plan(&args(1000.0), &other_dim, None).unwrap_err().to_string();
        assert!(e.contains("no report at dim 384") && e.contains("g.json (dim 50, usearch, none)"), "{e}");
        let i8_report = LoadReport { quantization: engram_engine::Quantization::I8, ..report(1000.0, None, 2, 1) };
        let only_i8 = vec![("q.json".to_owned(), i8_report.clone())];
        let none = CapacityArgs { quantization: Some("none".into()), ..args(1000.0) };
        let e = plan(&none, &only_i8, None).unwrap_err().to_string();
        assert!(e.contains("none, and server stats") && e.contains("q.json (dim 384, usearch, i8)"), "{e}");
        assert!(plan(&args(1000.0), &only_i8, None).is_ok(), "without --quantization the reports' own is used");
        let mixed = vec![("q.json".to_owned(), i8_report), ("r.json".to_owned(), report(1000.0, None, 2, 1))];
        let e = plan(&args(1000.0), &mixed, None).unwrap_err().to_string();
        assert!(e.contains("several quantizations (i8, none)"), "{e}");
        let ok = vec![("r.json".to_owned(), report(1000.0, None, 2, 1))];
        assert!(plan(&args(-1.0), &ok, None).unwrap_err().to_string().contains("--target-rate"));
        assert!(
            plan(&CapacityArgs { headroom: 1.5, ..args(1.0) }, &ok, None)
                .unwrap_err()
                .to_string()
                .contains("--headroom")
        );
        assert!(
            plan(&CapacityArgs { index: Some("faiss".into()), ..args(1.0) }, &ok, None)
                .unwrap_err()
                .to_string()
                .contains("--index")
        );
    }
}

#[cfg(test)]
mod docs_tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// The repository root (this crate is `benches/tools/`).
    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// The committed MiniLM usearch reports (fsync durability), named as the docs' commands name
    /// them.
    fn minilm_reports() -> Vec<(String, LoadReport)> {
        ["saturated", "paced"]
            .map(|k| format!("docs/benchmarks/loads-fsync/minilm-384-stdlib-usearch-{k}.json"))
            .into_iter()
            .map(|n| {
                let report = serde_json::from_str(&std::fs::read_to_string(root().join(&n)).unwrap()).unwrap();
                (n, report)
            })
            .collect()
    }

    /// The arguments of the docs' commands: defaults at 384 dimensions (one hour of vectors).
    fn doc_args(target_rate: f64) -> CapacityArgs {
        CapacityArgs { vectors: None, format: Format::Table, ..super::tests::args(target_rate) }
    }

    fn doc() -> String {
        std::fs::read_to_string(root().join("docs/capacity-planning.md")).unwrap()
    }

    /// docs/capacity-planning.md shows `capacity`'s output for 10k, 100k and 1M obs/s from the
    /// committed MiniLM reports: recompute it and require each table verbatim.
    #[test]
    fn capacity_planning_doc_is_the_commands_output() {
        let (reports, doc) = (minilm_reports(), doc());
        for rate in [10_000.0, 100_000.0, 1_000_000.0] {
            let t = table(&plan(&doc_args(rate), &reports, None).unwrap());
            assert!(doc.contains(&t), "docs/capacity-planning.md lacks the plan for {rate} obs/s:\n{t}");
        }
    }

    /// The same page's costs section: 100k obs/s with the committed criterion results
    /// (`--criterion docs/benchmarks/criterion`).
    #[test]
    fn capacity_planning_doc_holds_the_costs_from_criterion() {
        let prefix = format!("{}/", root().display());
        let mut estimates = criterion::read(&root().join("docs/benchmarks/criterion")).unwrap();
        for e in &mut estimates {
            e.source = e.source.strip_prefix(&prefix).unwrap().to_owned();
        }
        let t = table(&plan(&doc_args(100_000.0), &minilm_reports(), Some(&estimates)).unwrap());
        assert!(doc().contains(&t), "docs/capacity-planning.md lacks the plan with criterion costs:\n{t}");
    }
}
