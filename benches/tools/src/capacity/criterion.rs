//! Per-observation costs from criterion's estimates (`capacity --criterion DIR`).
//!
//! Reads every `DIR/**/new/estimates.json` with the `benchmark.json` beside it (the layout
//! `cargo bench` writes under `target/criterion`; see the criterion.rs user guide, "JSON
//! output"), takes the mean per iteration and the declared `Throughput::Elements`, and picks the
//! three single-thread costs an observation pays on a worker's core:
//!
//! | cost | benchmark (benches/) |
//! |---|---|
//! | admission (reserve and release queue capacity) | `admission/reserve_release`, one per iteration |
//! | queue (reserve → push into a lane → take → finish) | `queue/enqueue_dequeue_mixed_lanes/1_thread`, per element |
//! | index insert | `index/<backend>/insert_<set><dim>_<n>_1_thread`, per element; the data set's name ends in its dimension |
//!
//! Each is set beside a worker's time per observation at the rate `load` measured, so the plan
//! shows how much of a core the engine's own stages take and how much the index does.

use super::Measured;
use anyhow::{Context, bail};
use engram_engine::IndexKind;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One criterion result.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// `group/function[/value]`, as criterion names the benchmark.
    pub full_id: String,
    /// Mean time of one iteration, nanoseconds.
    pub mean_ns: f64,
    /// Elements one iteration processes (`Throughput::Elements`), if declared.
    pub elements: Option<u64>,
    /// The `estimates.json` it was read from.
    pub source: String,
}

impl Estimate {
    /// Seconds per element (per iteration when no throughput is declared).
    pub fn seconds_per_element(&self) -> f64 {
        self.mean_ns / 1e9 / self.elements.unwrap_or(1).max(1) as f64
    }
}

#[derive(Deserialize)]
struct BenchmarkJson {
    full_id: String,
    /// `null`, `{"Elements": n}`, `{"Bytes": n}`, ...: only elements are counted.
    #[serde(default)]
    throughput: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct EstimatesJson {
    mean: PointJson,
}

#[derive(Deserialize)]
struct PointJson {
    point_estimate: f64,
}

/// Reads every criterion result under `dir`.
///
/// # Errors
/// An unreadable directory or file, a file that is not criterion's JSON, or no result at all.
pub fn read(dir: &Path) -> anyhow::Result<Vec<Estimate>> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        if entry.file_name() != "estimates.json" || path.parent().and_then(Path::file_name) != Some("new".as_ref()) {
            continue;
        }
        let meta_path = path.with_file_name("benchmark.json");
        if !meta_path.exists() {
            continue;
        }
        let read_json = |p: &Path| -> anyhow::Result<String> {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        };
        let meta: BenchmarkJson = serde_json::from_str(&read_json(&meta_path)?)
            .with_context(|| format!("{} is not criterion's benchmark.json", meta_path.display()))?;
        let estimates: EstimatesJson = serde_json::from_str(&read_json(path)?)
            .with_context(|| format!("{} is not criterion's estimates.json", path.display()))?;
        if !(estimates.mean.point_estimate > 0.0 && estimates.mean.point_estimate.is_finite()) {
            bail!("{}: mean.point_estimate must be a positive number", path.display());
        }
        out.push(Estimate {
            full_id: meta.full_id,
            mean_ns: estimates.mean.point_estimate,
            elements: meta.throughput.as_ref().and_then(|t| t.get("Elements")).and_then(serde_json::Value::as_u64),
            source: path.display().to_string(),
        });
    }
    if out.is_empty() {
        bail!("no criterion results (new/estimates.json) under {}; run `cargo bench -p engram-benches`", dir.display());
    }
    Ok(out)
}

/// The single-thread costs of one observation, each beside a worker's time per observation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Costs {
    /// Seconds one admission (reserve and release) takes.
    pub admission_seconds: Measured,
    /// Seconds one observation spends in queue operations (reserve, push, take, finish).
    pub queue_seconds: Measured,
    /// Seconds one index insert takes on one thread.
    pub index_insert_seconds: Measured,
    /// Vectors in the index the insert benchmark builds (its inserts run on a smaller graph than
    /// a full space, so this is a lower bound of an insert's cost there).
    pub index_insert_vectors: u64,
    /// A worker's seconds per observation at the measured end-to-end rate (`1 / rate_per_worker`).
    pub worker_seconds_per_observation: f64,
    /// `(admission + queue) / worker_seconds_per_observation`.
    pub engine_share_of_worker_time: f64,
    /// `index_insert / worker_seconds_per_observation`.
    pub index_share_of_worker_time: f64,
}

/// The dimension a `insert_<set><dim>_<n>_1_thread` function names, and `n`.
fn insert_bench(function: &str) -> Option<(usize, u64)> {
    let rest = function.strip_prefix("insert_")?.strip_suffix("_1_thread")?;
    let (set, n) = rest.rsplit_once('_')?;
    let digits = set.len() - set.bytes().rev().take_while(u8::is_ascii_digit).count();
    Some((set[digits..].parse().ok()?, n.parse().ok()?))
}

/// Picks the costs for `dim` and `kind` and sets them beside `rate_per_worker` (observations per
/// second per worker, from `load`).
///
/// # Errors
/// A benchmark the costs need is missing; the message names it and lists what was found.
pub fn costs(estimates: &[Estimate], dim: usize, kind: IndexKind, rate_per_worker: f64) -> anyhow::Result<Costs> {
    let measured = |e: &Estimate| Measured { value: e.seconds_per_element(), source: e.source.clone() };
    let find = |id: &str| {
        estimates.iter().find(|e| e.full_id == id).map(measured).with_context(|| {
            let found: Vec<&str> = estimates.iter().map(|e| e.full_id.as_str()).collect();
            format!("criterion results lack `{id}` (found: {})", found.join(", "))
        })
    };
    let admission = find("admission/reserve_release")?;
    let queue = find("queue/enqueue_dequeue_mixed_lanes/1_thread")?;
    let prefix = format!("index/{}/", kind.as_str());
    let (insert, vectors) = estimates
        .iter()
        .filter_map(|e| {
            let (d, n) = insert_bench(e.full_id.strip_prefix(&prefix)?)?;
            (d == dim && e.elements.is_some()).then_some((e, n))
        })
        .max_by_key(|(_, n)| *n)
        .with_context(|| format!("criterion results lack an `{prefix}insert_<set>{dim}_<n>_1_thread` benchmark"))?;
    let worker = 1.0 / rate_per_worker;
    Ok(Costs {
        engine_share_of_worker_time: (admission.value + queue.value) / worker,
        index_share_of_worker_time: insert.seconds_per_element() / worker,
        admission_seconds: admission,
        queue_seconds: queue,
        index_insert_seconds: measured(insert),
        index_insert_vectors: vectors,
        worker_seconds_per_observation: worker,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, full_id: &str, throughput: &str, mean_ns: f64) {
        let d = dir.join(full_id.replace('/', "_")).join("new");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("benchmark.json"), format!(r#"{{"full_id":"{full_id}","throughput":{throughput}}}"#))
            .unwrap();
        std::fs::write(
            d.join("estimates.json"),
            format!(r#"{{"mean":{{"point_estimate":{mean_ns},"standard_error":1.0}}}}"#),
        )
        .unwrap();
    }

    #[test]
    fn reads_criterion_json_and_sets_costs_beside_a_workers_time() {
        let dir = std::env::temp_dir().join(format!("engram-criterion-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write(&dir, "admission/reserve_release", "null", 10.0);
        write(&dir, "queue/enqueue_dequeue_mixed_lanes/1_thread", r#"{"Elements":1000}"#, 90_000.0);
        write(&dir, "index/usearch/insert_minilm384_500_1_thread", r#"{"Elements":500}"#, 50e6);
        write(&dir, "index/usearch/insert_glove50_500_1_thread", r#"{"Elements":500}"#, 20e6);
        write(&dir, "index/hnsw_rs/insert_minilm384_500_1_thread", r#"{"Elements":500}"#, 80e6);
        // Other throughputs are read, not counted as elements.
        write(&dir, "telemetry/render", r#"{"Bytes":4096}"#, 1e6);
        // A `base/` result beside `new/` is criterion's previous run: not read.
        let base = dir.join("admission_reserve_release/base");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(base.join("estimates.json"), "not json").unwrap();
        let e = read(&dir).unwrap();
        assert_eq!(e.len(), 6);
        assert_eq!(e.iter().find(|x| x.full_id == "telemetry/render").unwrap().elements, None);

        // 1,000 obs/s per worker: 1 ms a worker; queue 90 ns + admission 10 ns; insert 100 µs.
        let c = costs(&e, 384, IndexKind::Usearch, 1000.0).unwrap();
        assert!((c.queue_seconds.value - 90e-9).abs() < 1e-15, "{c:?}");
        assert!((c.admission_seconds.value - 10e-9).abs() < 1e-15);
        assert!((c.index_insert_seconds.value - 100e-6).abs() < 1e-12);
        assert!(c.index_insert_seconds.source.contains("usearch_insert_minilm384"));
        assert_eq!(c.index_insert_vectors, 500);
        assert!((c.engine_share_of_worker_time - 1e-4).abs() < 1e-12);
        assert!((c.index_share_of_worker_time - 0.1).abs() < 1e-9);
        let glove = costs(&e, 50, IndexKind::Usearch, 1000.0).unwrap();
        assert!((glove.index_insert_seconds.value - 40e-6).abs() < 1e-12);

        let missing = costs(&e, 768, IndexKind::Usearch, 1000.0).unwrap_err().to_string();
        assert!(missing.contains("index/usearch/insert_<set>768"), "{missing}");
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert!(read(&empty).unwrap_err().to_string().contains("no criterion results"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_a_missing_engine_benchmark() {
        let only_index = vec![Estimate {
            full_id: "index/usearch/insert_minilm384_500_1_thread".into(),
            mean_ns: 1e6,
            elements: Some(500),
            source: "x".into(),
        }];
        let e = costs(&only_index, 384, IndexKind::Usearch, 1.0).unwrap_err().to_string();
        assert!(e.contains("`admission/reserve_release`") && e.contains("found: index/usearch"), "{e}");
    }

    #[test]
    fn parses_the_dimension_from_the_data_sets_name() {
        assert_eq!(insert_bench("insert_minilm384_500_1_thread"), Some((384, 500)));
        assert_eq!(insert_bench("insert_glove50_2000_1_thread"), Some((50, 2000)));
        assert_eq!(insert_bench("insert_glove_500_1_thread"), None);
        assert_eq!(insert_bench("search_glove50_5000_ef64"), None);
    }
}
