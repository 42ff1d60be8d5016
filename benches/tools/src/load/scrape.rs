//! The server seen through its `/metrics` endpoint, before, half-way through and after a load
//! ([`ServerStats`]).
//!
//! The exposition text is parsed by `prometheus-parse` (histogram buckets grouped per series);
//! the space's latency histogram becomes a [`HistogramSnapshot`] over the catalog's bounds, so
//! the run's window and its p99 are the telemetry crate's own `since` and `quantile` (PromQL's
//! `histogram_quantile` interpolation).

use super::LoadArgs;
use super::report::ServerStats;
use anyhow::{Context, bail};
use engram_telemetry::catalog::OBSERVATION_LATENCY;
use engram_telemetry::primitives::HistogramSnapshot;
use prometheus_parse::{Scrape, Value};
use std::time::{Duration, Instant};

/// One `/metrics` response, parsed.
struct Exposition {
    scrape: Scrape,
    /// Response size, bytes.
    bytes: u64,
}

impl Exposition {
    /// Parses exposition text (the Prometheus text format, version 0.0.4).
    fn parse(body: &str) -> anyhow::Result<Self> {
        let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).context("parsing the exposition text")?;
        Ok(Self { scrape, bytes: body.len() as u64 })
    }

    /// Samples in the response: one per bucket of a histogram, one per other series (including
    /// a histogram's `_sum` and `_count`).
    fn samples(&self) -> u64 {
        self.scrape
            .samples
            .iter()
            .map(|s| match &s.value {
                Value::Histogram(b) => b.len() as u64,
                Value::Summary(q) => q.len() as u64,
                _ => 1,
            })
            .sum()
    }

    /// The value of the counter, gauge or untyped series `name` whose label `label.0` is
    /// `label.1` (`None`: the first series of that name).
    fn value(&self, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
        self.scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .find_map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
                _ => None,
            })
    }

    /// The space's `engram_streaming_observation_latency_seconds` over the catalog's bounds
    /// (empty when the space has no series yet). A bucket the text lacks counts what the one
    /// below it counts.
    fn observation_latency(&self, space: &str) -> HistogramSnapshot {
        let bounds = OBSERVATION_LATENCY.buckets;
        let mut snapshot = HistogramSnapshot { bounds, buckets: vec![0; bounds.len() + 1], sum: 0.0, count: 0 };
        let cumulative = self.scrape.samples.iter().find_map(|s| match &s.value {
            Value::Histogram(b)
                if s.metric == OBSERVATION_LATENCY.name && s.labels.get("memory_space") == Some(space) =>
            {
                Some(b)
            }
            _ => None,
        });
        let Some(cumulative) = cumulative else { return snapshot };
        let at = |le: f64| cumulative.iter().filter(|c| c.less_than <= le).map(|c| c.count).fold(0.0, f64::max);
        let mut below = 0.0;
        for (i, &le) in bounds.iter().enumerate() {
            let n = at(le);
            snapshot.buckets[i] = (n - below).max(0.0) as u64;
            below = n;
        }
        snapshot.buckets[bounds.len()] = (at(f64::INFINITY) - below).max(0.0) as u64;
        snapshot.count = snapshot.buckets.iter().sum();
        let sum_name = format!("{}_sum", OBSERVATION_LATENCY.name);
        snapshot.sum = self.value(&sum_name, Some(("memory_space", space))).unwrap_or(0.0);
        snapshot
    }
}

/// Reads `/metrics` once with `client` (one per scraper, so its connection is reused):
/// (parsed response, seconds to fetch it).
async fn scrape(client: &reqwest::Client, url: &str) -> anyhow::Result<(Exposition, f64)> {
    let t0 = Instant::now();
    let resp = client.get(url).send().await.with_context(|| format!("scraping {url}"))?;
    if !resp.status().is_success() {
        bail!("scraping {url}: {}", resp.status());
    }
    let body = resp.text().await?;
    let secs = t0.elapsed().as_secs_f64();
    Ok((Exposition::parse(&body).with_context(|| format!("scraping {url}"))?, secs))
}

/// What is read from `/metrics` before the run: resident memory and the latency histogram.
pub(super) struct Before {
    rss: u64,
    disk: Option<u64>,
    latency: HistogramSnapshot,
}

/// Scrapes `url` before the load into `space`.
pub(super) async fn before(url: &str, space: &str, args: &LoadArgs) -> anyhow::Result<Before> {
    let (e, _) = scrape(&super::http_client(args)?, url).await?;
    let rss = e
        .value("process_resident_memory_bytes", None)
        .map(|v| v as u64)
        .with_context(|| format!("{url} has no process_resident_memory_bytes"))?;
    let disk = e.value("engram_storage_disk_bytes", None).map(|v| v as u64);
    Ok(Before { rss, disk, latency: e.observation_latency(space) })
}

/// Resident memory once the space held half the load's vectors, polled from `/metrics` while
/// the load runs ([`half_way`]), and once it held them all, before the queries.
pub(super) struct HalfWay {
    /// The polling, until it is awaited (once).
    task: Option<tokio::task::JoinHandle<Option<(u64, u64)>>>,
    /// (vectors, resident bytes) at half-way, once taken.
    half: Option<(u64, u64)>,
    /// Resident bytes at the end of the ingest.
    ingested: Option<u64>,
    url: String,
    client: reqwest::Client,
}

/// How often [`half_way`] reads `/metrics`: often enough to land near half of a short load,
/// seldom enough to cost the server nothing measurable (one scrape is ~1 ms, see the reports'
/// `scrape_seconds`).
const HALF_WAY_POLL: Duration = Duration::from_millis(200);

/// Starts polling `url` for `engram_index_vectors{memory_space=space}` and
/// `process_resident_memory_bytes` until the space holds at least `total / 2` vectors; the
/// first such reading is kept. A failed scrape is retried at the next poll (the load itself
/// reports an unreachable server).
///
/// # Errors
/// When the HTTP client cannot be built from `args` (its TLS settings).
pub(super) fn half_way(url: &str, space: &str, total: usize, args: &LoadArgs) -> anyhow::Result<HalfWay> {
    let (url, space, client) = (url.to_owned(), space.to_owned(), super::http_client(args)?);
    let half = (total / 2).max(1) as f64;
    let (polled, polling) = (url.clone(), client.clone());
    let task = tokio::spawn(async move {
        loop {
            if let Ok((e, _)) = scrape(&polling, &polled).await
                && let Some(vectors) = e.value("engram_index_vectors", Some(("memory_space", &space)))
                && vectors >= half
                && let Some(rss) = e.value("process_resident_memory_bytes", None)
            {
                return Some((vectors as u64, rss as u64));
            }
            tokio::time::sleep(HALF_WAY_POLL).await;
        }
    });
    Ok(HalfWay { task: Some(task), half: None, ingested: None, url, client })
}

impl HalfWay {
    /// Ends the polling and reads resident memory now (every vector is in); a failed scrape
    /// leaves the reading out.
    pub(super) async fn ingested(&mut self) {
        if let Some(task) = self.task.take() {
            // Still polling: the ingest ended before a poll found the space at half, so there
            // is no half-way reading.
            task.abort();
            self.half = task.await.ok().flatten();
        }
        if let Ok((e, _)) = scrape(&self.client, &self.url).await {
            self.ingested = e.value("process_resident_memory_bytes", None).map(|v| v as u64);
        }
    }

    /// The half-way reading (vectors, resident bytes) and the resident bytes at the ingest's
    /// end: both or neither.
    async fn readings(mut self) -> Option<((u64, u64), u64)> {
        if self.task.is_some() {
            self.ingested().await;
        }
        Some((self.half?, self.ingested?))
    }
}

/// Scrapes `url` five times after the load (the median time is the scrape's cost) and sets
/// what it says beside `before`.
pub(super) async fn server_stats(
    url: &str,
    space: &str,
    before: Before,
    half: Option<HalfWay>,
    args: &LoadArgs,
) -> anyhow::Result<ServerStats> {
    let half = match half {
        Some(h) => h.readings().await,
        None => None,
    };
    // One client for the five, as Prometheus keeps its connection: the median is a scrape over
    // an open connection.
    let client = super::http_client(args)?;
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let (e, secs) = scrape(&client, url).await?;
        times.push(secs);
        last = Some(e);
    }
    let e = last.context("no scrape")?;
    times.sort_by(f64::total_cmp);
    stats(&e, space, &before, half, times[times.len() / 2]).with_context(|| format!("reading {url}"))
}

fn stats(
    e: &Exposition,
    space: &str,
    before: &Before,
    half: Option<((u64, u64), u64)>,
    scrape_seconds: f64,
) -> anyhow::Result<ServerStats> {
    let run = e.observation_latency(space).since(&before.latency);
    // 0.05 s is a bound of the catalog's buckets, so the share is exact.
    let within_50ms = match run.bounds.iter().position(|&b| b == 0.05) {
        Some(i) => run.buckets[..=i].iter().sum::<u64>() as f64 / run.count.max(1) as f64,
        None => f64::NAN,
    };
    let get = |name: &str, label: Option<(&str, &str)>| {
        e.value(name, label).with_context(|| format!("no sample of {name} {}", label.map_or("", |l| l.1)))
    };
    Ok(ServerStats {
        workers: get("engram_streaming_workers", None)? as u64,
        rss_bytes_before: before.rss,
        rss_bytes_after: get("process_resident_memory_bytes", None)? as u64,
        vectors_half: half.map(|h| h.0.0),
        rss_bytes_half: half.map(|h| h.0.1),
        rss_bytes_ingested: half.map(|h| h.1),
        index_memory_bytes: get("engram_index_memory_bytes", Some(("memory_space", space)))? as u64,
        scrape_bytes: e.bytes,
        scrape_samples: e.samples(),
        scrape_seconds,
        observation_latency_p99_seconds: run.quantile(0.99).unwrap_or(f64::NAN),
        observation_latency_share_within_50ms: within_50ms,
        disk_bytes_before: before.disk,
        disk_bytes_after: e.value("engram_storage_disk_bytes", None).map(|v| v as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(counts: [u64; 4], other: u64) -> String {
        let name = OBSERVATION_LATENCY.name;
        let b = OBSERVATION_LATENCY.buckets;
        // Cumulative counts at 0.025, 0.05, 0.1 and +Inf; every other bound repeats the one below.
        let mut out = format!("# HELP {name} x\n# TYPE {name} histogram\n");
        for &le in b {
            let n = if le < 0.025 {
                0
            } else if le < 0.05 {
                counts[0]
            } else if le < 0.1 {
                counts[1]
            } else {
                counts[2]
            };
            out += &format!("{name}_bucket{{memory_space=\"s\",le=\"{le}\"}} {n}\n");
        }
        out += &format!("{name}_bucket{{memory_space=\"s\",le=\"+Inf\"}} {}\n", counts[3]);
        out += &format!("{name}_sum{{memory_space=\"s\"}} 4.5\n{name}_count{{memory_space=\"s\"}} {}\n", counts[3]);
        out += &format!("{name}_bucket{{memory_space=\"t\",le=\"+Inf\"}} {other}\n");
        out += "# TYPE engram_streaming_workers gauge\nengram_streaming_workers 2\n";
        out += "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 1000\n";
        out += "# TYPE engram_index_memory_bytes gauge\nengram_index_memory_bytes{memory_space=\"t\"} 1\n";
        out += "engram_index_memory_bytes{memory_space=\"s\"} 77\n";
        out
    }

    #[test]
    fn the_runs_window_of_the_spaces_histogram_gives_p99_like_promql() {
        for b in [0.025, 0.05, 0.1] {
            assert!(OBSERVATION_LATENCY.buckets.contains(&b), "the test's bounds are catalog bounds");
        }
        let before = Exposition::parse(&text([10, 10, 10, 10], 3)).unwrap();
        let after = Exposition::parse(&text([60, 100, 110, 110], 9)).unwrap();
        let before = Before { rss: 500, disk: None, latency: before.observation_latency("s") };
        let s = stats(&after, "s", &before, Some(((4, 700), 900)), 0.01).unwrap();
        // The run: 50 in (.., 0.025], 40 in (0.025, 0.05], 10 in (0.05, 0.1]. Rank 99 of 100
        // falls in (0.05, 0.1]: 0.05 + 0.05 × (99 - 90) / 10.
        assert!((s.observation_latency_p99_seconds - 0.095).abs() < 1e-12, "{s:?}");
        assert!((s.observation_latency_share_within_50ms - 0.9).abs() < 1e-12, "{s:?}");
        assert_eq!((s.workers, s.rss_bytes_before, s.rss_bytes_after, s.index_memory_bytes), (2, 500, 1000, 77));
        let half = (s.vectors_half, s.rss_bytes_half, s.rss_bytes_ingested);
        assert_eq!(half, (Some(4), Some(700), Some(900)), "the readings as taken");
        let lines = text([60, 100, 110, 110], 9).lines().filter(|l| !l.starts_with('#')).count() as u64;
        assert_eq!(s.scrape_samples, lines, "every sample line counts once");
        assert_eq!((s.disk_bytes_before, s.disk_bytes_after), (None, None), "no store: no disk bytes");
    }

    #[test]
    fn a_space_without_series_is_an_empty_histogram_and_a_missing_gauge_is_an_error() {
        let e = Exposition::parse("# TYPE x counter\nx 1\n").unwrap();
        let h = e.observation_latency("s");
        assert_eq!((h.count, h.quantile(0.99)), (0, None));
        let before = Before { rss: 1, disk: None, latency: h };
        assert!(stats(&e, "s", &before, None, 0.0).unwrap_err().to_string().contains("engram_streaming_workers"));
    }
}
