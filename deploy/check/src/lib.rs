//! The monitoring mixin under `deploy/`, read as data: every PromQL expression shipped (alert
//! and recording rules, Grafana panel targets, variables and annotations, the Kubernetes
//! manifests' embedded rules), parsed with [`promql_parser`], and the metrics each one names.
//!
//! - [`queries`]: every expression with where it comes from and its vector selectors.
//! - [`unknown_metrics`]: metric names that neither the telemetry catalog, nor a recording rule,
//!   nor the short list of [`EXTERNAL_METRICS`] (Prometheus, node exporter, blackbox) produce.
//! - `tests/mixin.rs` holds the checks; the `deploy-queries` binary prints [`queries`] as JSON
//!   for `deploy/verify-stack.sh`, which runs each against a live Prometheus.

use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Metrics the mixin uses that engram-stream does not export, and who does.
pub const EXTERNAL_METRICS: &[(&str, &str)] = &[
    ("up", "Prometheus: scrape status of every target"),
    ("ALERTS", "Prometheus: one series per pending or firing alert"),
    ("probe_success", "blackbox exporter: 1 when a probe succeeded"),
    ("node_cpu_seconds_total", "node exporter: CPU time per mode"),
    ("node_filesystem_avail_bytes", "node exporter: bytes available to unprivileged users"),
    ("node_filesystem_size_bytes", "node exporter: filesystem size"),
];

/// One PromQL expression of the mixin.
#[derive(Debug, Clone)]
pub struct Query {
    /// Where it is: `file: alert NAME`, `file: record NAME`, `file: panel "TITLE" ref A`, ...
    pub source: String,
    /// The expression as shipped.
    pub expr: String,
    /// The expression with Grafana variables replaced, ready for Prometheus (`$__rate_interval`
    /// becomes `1m`, `$instance` and `$memory_space` match everything).
    pub promql: String,
}

/// A vector selector found in a query: its metric name and the selector as PromQL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Selector {
    /// The metric name (`__name__`).
    pub metric: String,
    /// The selector, for example `engram_streaming_queue_depth{instance=~".+"}`.
    pub promql: String,
}

/// The `deploy/` directory of this workspace.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("deploy/check has a parent").to_path_buf()
}

/// Replaces the Grafana variables the dashboards use with values Prometheus accepts.
pub fn substitute_grafana(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("\"$instance\"", "\".+\"")
        .replace("\"$memory_space\"", "\".+\"")
}

/// Parses `expr`; the error names the source.
pub fn parse(query: &Query) -> Result<Expr, String> {
    parser::parse(&query.promql).map_err(|e| format!("{}: {e}\n  {}", query.source, query.promql))
}

/// The vector selectors of a parsed expression (matrix selectors included).
pub fn selectors(expr: &Expr) -> Vec<Selector> {
    struct Collect(Vec<Selector>);
    impl ExprVisitor for Collect {
        type Error = ();
        fn pre_visit(&mut self, e: &Expr) -> Result<bool, ()> {
            let vs = match e {
                Expr::VectorSelector(vs) => vs,
                Expr::MatrixSelector(ms) => &ms.vs,
                _ => return Ok(true),
            };
            let metric = vs.name.clone().unwrap_or_default();
            let mut plain = vs.clone();
            plain.offset = None;
            plain.at = None;
            self.0.push(Selector { metric, promql: plain.to_string() });
            Ok(true)
        }
    }
    let mut c = Collect(Vec::new());
    let _ = walk_expr(&mut c, expr);
    c.0.sort();
    c.0.dedup();
    c.0
}

/// Every metric name engram-stream exports, histogram series included.
pub fn catalog_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for def in engram_telemetry::catalog::CATALOG {
        if def.kind == engram_telemetry::catalog::MetricKind::Histogram {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{}{suffix}", def.name));
            }
        } else {
            names.insert(def.name.to_owned());
        }
    }
    names
}

fn read_yaml(path: &Path) -> Result<serde_yaml_ng::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == ext)).collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn rel(path: &Path) -> String {
    path.strip_prefix(deploy_dir()).unwrap_or(path).display().to_string()
}

/// A Prometheus rule: alert or recording rule, from a rule file.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule file, relative to `deploy/`.
    pub file: String,
    /// `alert` name or `record` name.
    pub name: String,
    /// True for an alerting rule.
    pub alert: bool,
    /// The rule as YAML (labels, annotations, `for`).
    pub yaml: serde_yaml_ng::Value,
}

/// The rules of a Prometheus rule file (`groups:`).
fn rules_of(path: &Path, doc: &serde_yaml_ng::Value) -> Vec<Rule> {
    let mut out = Vec::new();
    for g in doc.get("groups").and_then(|g| g.as_sequence()).into_iter().flatten() {
        for r in g.get("rules").and_then(|r| r.as_sequence()).into_iter().flatten() {
            let (name, alert) = match (r.get("alert"), r.get("record")) {
                (Some(a), _) => (a.as_str().unwrap_or_default(), true),
                (_, Some(rec)) => (rec.as_str().unwrap_or_default(), false),
                _ => continue,
            };
            out.push(Rule { file: rel(path), name: name.to_owned(), alert, yaml: r.clone() });
        }
    }
    out
}

/// Every rule shipped in `deploy/prometheus/rules/`.
pub fn rules() -> Result<Vec<Rule>, String> {
    let mut out = Vec::new();
    for path in files(&deploy_dir().join("prometheus/rules"), "yml") {
        out.extend(rules_of(&path, &read_yaml(&path)?));
    }
    Ok(out)
}

/// The dashboards in `deploy/grafana/dashboards/`, with their file names.
pub fn dashboards() -> Result<Vec<(String, Value)>, String> {
    files(&deploy_dir().join("grafana/dashboards"), "json").iter().map(|p| Ok((rel(p), read_json(p)?))).collect()
}

/// The YAML documents of the Kubernetes manifests in `deploy/kubernetes/`.
pub fn kubernetes() -> Result<Vec<(String, serde_yaml_ng::Value)>, String> {
    let mut out = Vec::new();
    for path in files(&deploy_dir().join("kubernetes"), "yaml") {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = <serde_yaml_ng::Value as serde::Deserialize>::deserialize(doc)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if !v.is_null() {
                out.push((rel(&path), v));
            }
        }
    }
    Ok(out)
}

fn query(source: String, expr: &str) -> Query {
    Query { source, expr: expr.to_owned(), promql: substitute_grafana(expr) }
}

/// The selector inside a Grafana `label_values(SELECTOR, label)` variable query.
fn label_values_selector(q: &str) -> Option<&str> {
    let inner = q.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    Some(inner.rsplit_once(',').map_or(inner, |(sel, _)| sel).trim())
}

/// Every PromQL expression shipped: rules, dashboards (targets, variables, annotations) and
/// the Kubernetes manifests (the prometheus-adapter rules; no Prometheus rules are embedded
/// there, the manifests point at `deploy/prometheus/rules/`).
pub fn queries() -> Result<Vec<Query>, String> {
    let mut out = Vec::new();
    for r in rules()? {
        let expr = r.yaml.get("expr").and_then(|e| e.as_str()).unwrap_or_default();
        let kind = if r.alert { "alert" } else { "record" };
        out.push(query(format!("{}: {kind} {}", r.file, r.name), expr));
    }
    for (file, d) in dashboards()? {
        for p in d["panels"].as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                let source = format!("{file}: panel {:?} ref {}", p["title"].as_str().unwrap_or(""), t["refId"]);
                out.push(query(source, t["expr"].as_str().unwrap_or_default()));
            }
        }
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            if let Some(sel) = v["query"]["query"].as_str().and_then(label_values_selector) {
                out.push(query(format!("{file}: variable {}", v["name"]), sel));
            }
        }
        for a in d["annotations"]["list"].as_array().into_iter().flatten() {
            if let Some(expr) = a["expr"].as_str() {
                out.push(query(format!("{file}: annotation {}", a["name"]), expr));
            }
        }
    }
    for (file, doc) in kubernetes()? {
        // prometheus-adapter's config, embedded in a ConfigMap as `config.yaml`.
        if let Some(text) = doc.get("data").and_then(|d| d.get("config.yaml")).and_then(|c| c.as_str()) {
            let cfg: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| format!("{file}: {e}"))?;
            // Its templates filled as the adapter would, with the labels a local scrape has.
            for r in cfg.get("rules").and_then(|r| r.as_sequence()).into_iter().flatten() {
                let q = r.get("metricsQuery").and_then(|q| q.as_str()).unwrap_or_default();
                let series = r.get("seriesQuery").and_then(|s| s.as_str()).unwrap_or_default();
                let metric = series.split('{').next().unwrap_or_default();
                let q = q
                    .replace("<<.Series>>", metric)
                    .replace("<<.LabelMatchers>>", "")
                    .replace("<<.GroupBy>>", "instance");
                out.push(query(format!("{file}: prometheus-adapter rule"), &q));
                out.push(query(format!("{file}: prometheus-adapter seriesQuery"), metric));
            }
        }
    }
    Ok(out)
}

/// Metric names used by `queries` that nobody produces: not in the catalog, not a recording
/// rule, not in [`EXTERNAL_METRICS`]. Each entry is `(source, metric)`.
pub fn unknown_metrics(queries: &[Query], recorded: &BTreeSet<String>) -> Result<Vec<(String, String)>, String> {
    let catalog = catalog_metrics();
    let mut unknown = Vec::new();
    for q in queries {
        for s in selectors(&parse(q)?) {
            let known = catalog.contains(&s.metric)
                || recorded.contains(&s.metric)
                || EXTERNAL_METRICS.iter().any(|(m, _)| *m == s.metric);
            if !known {
                unknown.push((q.source.clone(), s.metric));
            }
        }
    }
    Ok(unknown)
}
