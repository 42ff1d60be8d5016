//! Checks of the monitoring mixin that need no running Prometheus: every expression parses and
//! names only metrics somebody produces, every alert is complete and has its runbook, every
//! alert and recording rule is covered by the promtool tests, every panel uses the datasource
//! variable, and the jobs the rules select are the jobs prometheus.yml scrapes.

use engram_deploy::{EXTERNAL_METRICS, catalog_metrics, deploy_dir, parse, queries, rules, selectors, unknown_metrics};
use serde_yaml_ng::Value;
use std::collections::{BTreeMap, BTreeSet};

const RUNBOOK_BASE: &str = "https://github.com/engram-stream/engram-stream/blob/main/docs/runbooks/";

fn yaml(path: &str) -> Value {
    let p = deploy_dir().join(path);
    serde_yaml_ng::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn recorded() -> BTreeSet<String> {
    rules().unwrap().into_iter().filter(|r| !r.alert).map(|r| r.name).collect()
}

#[test]
fn every_expression_parses_and_names_only_produced_metrics() {
    let qs = queries().unwrap();
    assert!(qs.len() > 60, "rules, panels, variables and annotations: {} expressions", qs.len());
    for q in &qs {
        parse(q).unwrap();
    }
    let unknown = unknown_metrics(&qs, &recorded()).unwrap();
    assert!(unknown.is_empty(), "metrics nobody exports: {unknown:#?}");
}

#[test]
fn the_metric_check_catches_a_misspelled_metric() {
    let q = engram_deploy::Query {
        source: "test".into(),
        expr: String::new(),
        promql: "rate(engram_streaming_observation_total[5m])".into(),
    };
    let unknown = unknown_metrics(&[q], &recorded()).unwrap();
    assert_eq!(unknown, vec![("test".to_owned(), "engram_streaming_observation_total".to_owned())]);
    let bad = engram_deploy::Query { source: "test".into(), expr: String::new(), promql: "sum by (le (x)".into() };
    assert!(parse(&bad).is_err());
}

#[test]
fn every_dashboard_metric_and_recording_rule_input_is_in_the_catalog_or_listed_external() {
    // The external list stays short and each entry is used somewhere.
    let used: BTreeSet<String> =
        queries().unwrap().iter().flat_map(|q| selectors(&parse(q).unwrap())).map(|s| s.metric).collect();
    for (m, who) in EXTERNAL_METRICS {
        assert!(used.contains(*m), "{m} ({who}) is listed as external but not used");
        assert!(!catalog_metrics().contains(*m), "{m} is in the catalog, not external");
    }
}

#[test]
fn every_alert_has_severity_family_summary_description_with_value_and_its_runbook() {
    let alerts: Vec<_> = rules().unwrap().into_iter().filter(|r| r.alert).collect();
    assert!(alerts.len() >= 25, "{} alerts", alerts.len());
    let runbooks = deploy_dir().parent().unwrap().join("docs/runbooks");
    for a in &alerts {
        let labels = &a.yaml["labels"];
        let severity = labels["severity"].as_str().unwrap_or_default();
        assert!(["critical", "warning", "info"].contains(&severity), "{}: severity {severity:?}", a.name);
        assert!(labels["family"].as_str().is_some_and(|f| !f.is_empty()), "{}: family", a.name);
        assert_eq!(labels["service"].as_str(), Some("engram-stream"), "{}: service", a.name);
        let ann = &a.yaml["annotations"];
        assert!(ann["summary"].as_str().is_some_and(|s| !s.is_empty()), "{}: summary", a.name);
        assert!(
            ann["description"].as_str().is_some_and(|d| d.contains("$value")),
            "{}: description shows the value",
            a.name
        );
        let url = ann["runbook_url"].as_str().unwrap_or_default();
        assert_eq!(url, format!("{RUNBOOK_BASE}{}.md", a.name), "{}: runbook_url", a.name);
        let runbook = runbooks.join(format!("{}.md", a.name));
        let text = std::fs::read_to_string(&runbook).unwrap_or_else(|e| panic!("{}: {e}", runbook.display()));
        for section in ["## Meaning", "## Impact", "## Investigate", "## Resolve", "## Prevent"] {
            assert!(text.contains(section), "{}: no {section}", runbook.display());
        }
        assert!(text.contains("```promql"), "{}: no PromQL to investigate", runbook.display());
        // The investigation queries parse and name only produced metrics.
        let block = text.split("```promql").nth(1).and_then(|b| b.split("```").next()).unwrap_or_default();
        let qs: Vec<engram_deploy::Query> = block
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| engram_deploy::Query { source: format!("runbook {}", a.name), expr: l.into(), promql: l.into() })
            .collect();
        assert!(!qs.is_empty(), "{}: empty PromQL block", runbook.display());
        let unknown = unknown_metrics(&qs, &recorded()).unwrap();
        assert!(unknown.is_empty(), "{unknown:?}");
    }
    // Every runbook belongs to an alert.
    let names: BTreeSet<String> = alerts.iter().map(|a| format!("{}.md", a.name)).collect();
    for entry in std::fs::read_dir(&runbooks).unwrap() {
        let file = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(file == "README.md" || names.contains(&file), "runbook {file} has no alert");
    }
}

/// For each alert: a promtool test case where it fires, and a near miss (an input instance that
/// is not expected to fire, or an evaluation where it must not fire yet).
#[test]
fn promtool_tests_cover_every_alert_with_a_firing_case_and_a_near_miss_and_every_recording_rule() {
    let mut fires = BTreeSet::new();
    let mut near_miss = BTreeSet::new();
    let mut recorded_tested = BTreeSet::new();
    let instance = |s: &str| s.split("instance=\"").nth(1).and_then(|r| r.split('"').next()).map(str::to_owned);
    for entry in std::fs::read_dir(deploy_dir().join("prometheus/tests")).unwrap() {
        let path = entry.unwrap().path();
        let doc: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for t in doc["tests"].as_sequence().unwrap() {
            let inputs: BTreeSet<String> = t["input_series"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|s| s["series"].as_str().and_then(instance))
                .collect();
            for a in t["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = a["alertname"].as_str().unwrap().to_owned();
                let exp = a["exp_alerts"].as_sequence().cloned().unwrap_or_default();
                if exp.is_empty() {
                    near_miss.insert(name);
                    continue;
                }
                let expected: BTreeSet<String> =
                    exp.iter().filter_map(|e| e["exp_labels"]["instance"].as_str().map(str::to_owned)).collect();
                assert!(
                    exp.iter().all(|e| e["exp_annotations"]["description"].as_str().is_some()),
                    "{name}: annotations are checked"
                );
                fires.insert(name.clone());
                if inputs.iter().any(|i| !expected.contains(i)) {
                    near_miss.insert(name);
                }
            }
            for p in t["promql_expr_test"].as_sequence().into_iter().flatten() {
                if p["exp_samples"].as_sequence().is_some_and(|s| !s.is_empty()) {
                    recorded_tested.insert(p["expr"].as_str().unwrap().trim().to_owned());
                }
            }
        }
    }
    let all = rules().unwrap();
    let alerts: BTreeSet<String> = all.iter().filter(|r| r.alert).map(|r| r.name.clone()).collect();
    assert_eq!(alerts.difference(&fires).collect::<Vec<_>>(), Vec::<&String>::new(), "alerts never fired in a test");
    assert_eq!(alerts.difference(&near_miss).collect::<Vec<_>>(), Vec::<&String>::new(), "alerts without a near miss");
    let untested: Vec<_> = recorded().into_iter().filter(|r| !recorded_tested.contains(r)).collect();
    assert!(untested.is_empty(), "recording rules without a value test: {untested:?}");
}

#[test]
fn every_panel_target_variable_and_annotation_uses_the_datasource_variable() {
    for (file, d) in engram_deploy::dashboards().unwrap() {
        let vars = d["templating"]["list"].as_array().unwrap();
        assert!(
            vars.iter().any(|v| v["name"] == "datasource" && v["type"] == "datasource"),
            "{file}: no datasource variable"
        );
        let ds = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
        let panels = d["panels"].as_array().unwrap();
        assert!(!panels.is_empty(), "{file}: no panels");
        for p in panels {
            assert_eq!(p["datasource"], ds, "{file}: panel {}", p["title"]);
            assert!(
                p["description"].as_str().is_some_and(|s| !s.is_empty()),
                "{file}: panel {} has no description",
                p["title"]
            );
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{file}: panel {} has no query", p["title"]);
            for t in targets {
                assert_eq!(t["datasource"], ds, "{file}: panel {} target", p["title"]);
            }
        }
        for v in vars.iter().filter(|v| v["type"] == "query") {
            assert_eq!(v["datasource"], ds, "{file}: variable {}", v["name"]);
        }
        for a in d["annotations"]["list"].as_array().unwrap() {
            assert_eq!(a["datasource"], ds, "{file}: annotation {}", a["name"]);
        }
    }
}

#[test]
fn the_streaming_dashboard_has_the_seed_panels_and_the_others_theirs() {
    let titles: BTreeMap<String, Vec<String>> = engram_deploy::dashboards()
        .unwrap()
        .into_iter()
        .map(|(f, d)| {
            (f, d["panels"].as_array().unwrap().iter().map(|p| p["title"].as_str().unwrap().to_owned()).collect())
        })
        .collect();
    let has = |file: &str, title: &str| {
        assert!(titles[file].iter().any(|t| t == title), "{file} has no panel {title:?}: {:?}", titles[file])
    };
    for t in [
        "Ingest rate by memory space",
        "Queue depth by lane",
        "Worker utilization",
        "Observation latency (accepted → indexed)",
        "Backpressure activations",
        "Backpressure state",
        "Recall latency",
        "Batches and work stealing",
        "Batch size distribution",
        "Errors and rejections",
    ] {
        has("grafana/dashboards/engram-streaming.json", t);
    }
    for t in [
        "Health score",
        "Up",
        "Observations indexed (24 h)",
        "Recall queries (24 h)",
        "Top 10 memory spaces by ingest rate",
        "Firing alerts",
    ] {
        has("grafana/dashboards/engram-overview.json", t);
    }
    for t in ["HTTP latency by route", "HTTP status codes", "Request and response sizes (p95)", "In flight"] {
        has("grafana/dashboards/engram-api.json", t);
    }
}

#[test]
fn rules_select_only_jobs_that_prometheus_scrapes_and_every_rule_file_is_loaded() {
    let config = yaml("prometheus/prometheus.yml");
    let jobs: BTreeSet<String> = config["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|j| j["job_name"].as_str().unwrap().to_owned())
        .collect();
    for q in queries().unwrap() {
        for s in selectors(&parse(&q).unwrap()) {
            for part in s.promql.split("job=").skip(1) {
                let value = part.trim_start_matches('~').trim_start_matches('"').split('"').next().unwrap();
                let matched = if part.starts_with('~') {
                    jobs.iter().any(|j| j.starts_with(value.trim_end_matches(".*")))
                } else {
                    jobs.contains(value)
                };
                assert!(matched, "{}: job {value:?} is not scraped (jobs: {jobs:?})", q.source);
            }
        }
    }
    let globs: Vec<&str> = config["rule_files"].as_sequence().unwrap().iter().map(|g| g.as_str().unwrap()).collect();
    assert_eq!(globs, ["rules/*.yml"], "prometheus.yml loads every file in rules/");
}

#[test]
fn kubernetes_probes_use_the_health_endpoints_and_the_hpa_scales_on_the_adapter_metric() {
    let docs = engram_deploy::kubernetes().unwrap();
    let kind = |k: &str| docs.iter().find(|(_, d)| d["kind"].as_str() == Some(k)).map(|(_, d)| d.clone()).unwrap();
    let container = &kind("Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"].as_str(), Some("/health/live"));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"].as_str(), Some("/health/ready"));
    assert_eq!(kind("ServiceMonitor")["spec"]["endpoints"][0]["path"].as_str(), Some("/metrics"));
    let hpa_metric =
        kind("HorizontalPodAutoscaler")["spec"]["metrics"][0]["pods"]["metric"]["name"].as_str().unwrap().to_owned();
    let adapter: Value = serde_yaml_ng::from_str(kind("ConfigMap")["data"]["config.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(
        adapter["rules"][0]["name"]["as"].as_str(),
        Some(hpa_metric.as_str()),
        "the HPA reads the adapter's metric"
    );
    let series = adapter["rules"][0]["seriesQuery"].as_str().unwrap();
    assert!(catalog_metrics().contains(series.split('{').next().unwrap()), "{series}");
}

#[test]
fn the_compose_prometheus_config_is_the_shipped_one_with_service_names() {
    let body = |path: &str| -> String {
        let text = std::fs::read_to_string(deploy_dir().join(path)).unwrap();
        text.lines().skip_while(|l| l.starts_with('#')).collect::<Vec<_>>().join("\n")
    };
    let expected = body("prometheus/prometheus.yml")
        .replace("127.0.0.1:8080", "engram-stream:8080")
        .replace("127.0.0.1:50051", "engram-stream:50051")
        .replace("127.0.0.1:9093", "alertmanager:9093")
        .replace("127.0.0.1:9100", "node-exporter:9100")
        .replace("127.0.0.1:9090", "localhost:9090")
        .replace("127.0.0.1:9115", "blackbox:9115");
    assert_eq!(body("prometheus/compose/prometheus.yml"), expected);
}

#[test]
fn compose_sends_engram_traces_to_jaeger_over_otlp_grpc() {
    let compose = yaml("docker-compose.yml");
    let services = &compose["services"];
    let env = &services["engram-stream"]["environment"];
    let endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"].as_str().expect("engram-stream has an OTLP endpoint");
    let jaeger = &services["jaeger"];
    assert!(jaeger["image"].as_str().unwrap().starts_with("jaegertracing/all-in-one:"));
    assert_eq!(jaeger["environment"]["COLLECTOR_OTLP_ENABLED"].as_str(), Some("true"));
    assert_eq!(endpoint, "http://jaeger:4317", "the service name and Jaeger's OTLP/gRPC port");
    let ports: Vec<&str> = jaeger["ports"].as_sequence().unwrap().iter().filter_map(|p| p.as_str()).collect();
    assert!(ports.contains(&"16686:16686"), "the UI is published: {ports:?}");
}
