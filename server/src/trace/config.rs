//! `[tracing]`: where spans go and which requests are traced, with the OpenTelemetry SDK's
//! standard environment variables filling what the config leaves unset.

use opentelemetry_sdk::trace::Sampler;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Trace export settings (`[tracing]`). Tracing is off unless an endpoint is set, here or in
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`.
///
/// The OpenTelemetry environment variables (specification: "Environment Variable
/// Specification", <https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/>)
/// fill each key the config leaves unset: `OTEL_SDK_DISABLED`, `OTEL_SERVICE_NAME`,
/// `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`, and the batch
/// processor's `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// OTLP/gRPC endpoint of a collector, Jaeger or Tempo, e.g. `http://localhost:4317`.
    /// Unset (the default): the environment's, else tracing is off.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported resource. Unset: `OTEL_SERVICE_NAME`, else
    /// `engram-stream`.
    pub service_name: Option<String>,
    /// Which requests are traced, by the OpenTelemetry sampler names: `always_on`,
    /// `always_off`, `traceidratio`, `parentbased_always_on`, `parentbased_always_off`,
    /// `parentbased_traceidratio`. Unset: `OTEL_TRACES_SAMPLER`, else
    /// `parentbased_traceidratio`. Rejected and failed batches are traced whatever it says
    /// (unless tracing is off).
    pub sampler: Option<String>,
    /// The ratio of the `traceidratio` samplers, 0 to 1. Unset: `OTEL_TRACES_SAMPLER_ARG`, else
    /// 0.01 (one request in a hundred).
    pub sampler_ratio: Option<f64>,
    /// Spans waiting for export at most; more are dropped and counted
    /// (`engram_trace_spans_dropped_total{reason="queue_full"}`), never waited for. Default
    /// 2,048 (about 250 traced batches).
    pub export_queue_spans: usize,
    /// Longest one export call may take, with its retries, in seconds. Default 10.
    pub export_timeout_secs: u64,
    /// Milliseconds between exports of what is queued (sooner when 512 spans are waiting).
    /// Default 5,000, the SDK's (`OTEL_BSP_SCHEDULE_DELAY`).
    pub export_interval_ms: u64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: None,
            sampler: None,
            sampler_ratio: None,
            export_queue_spans: 2048,
            export_timeout_secs: 10,
            export_interval_ms: 5000,
        }
    }
}

/// The default `service.name`.
pub const DEFAULT_SERVICE_NAME: &str = "engram-stream";

/// The default sampler ratio.
pub const DEFAULT_SAMPLER_RATIO: f64 = 0.01;

/// The settings tracing runs with, after the environment filled what the config left unset.
#[derive(Debug)]
pub struct Resolved {
    /// Where spans go.
    pub endpoint: String,
    /// `service.name`, when set by the config or `OTEL_SERVICE_NAME` is absent (else the SDK
    /// reads `OTEL_SERVICE_NAME` itself).
    pub service_name: Option<String>,
    /// The head sampler.
    pub sampler: Sampler,
    /// Bound of the export queue, spans.
    pub queue_spans: usize,
    /// Bound of one export call.
    pub export_timeout: Duration,
    /// Time between exports.
    pub export_interval: Duration,
}

impl TracingConfig {
    /// The settings to run with, reading unset keys from `env` (a lookup such as
    /// `std::env::var`); `Ok(None)` when tracing is off (no endpoint, or `OTEL_SDK_DISABLED`).
    ///
    /// # Errors
    /// The key (or variable) and why: an unknown sampler name, a ratio outside 0 to 1, a
    /// protocol other than gRPC, a zero queue or timeout.
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<Option<Resolved>, String> {
        if self.export_queue_spans == 0 {
            return Err("tracing.export_queue_spans: must be at least 1".into());
        }
        if self.export_timeout_secs == 0 {
            return Err("tracing.export_timeout_secs: must be at least 1".into());
        }
        if self.export_interval_ms == 0 {
            return Err("tracing.export_interval_ms: must be at least 1".into());
        }
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let endpoint = self
            .otlp_endpoint
            .clone()
            .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
            .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))
            .filter(|e| !e.trim().is_empty());
        let Some(endpoint) = endpoint else { return Ok(None) };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(format!(
                "tracing.otlp_endpoint: `{endpoint}` is not a URL (expected e.g. http://localhost:4317)"
            ));
        }
        for var in ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
            if let Some(p) = env(var).filter(|p| p.trim() != "grpc") {
                return Err(format!("{var}: `{p}` is not supported: spans are exported over OTLP/gRPC (`grpc`)"));
            }
        }
        let (name_key, name) = match &self.sampler {
            Some(s) => ("tracing.sampler", s.clone()),
            None => {
                ("OTEL_TRACES_SAMPLER", env("OTEL_TRACES_SAMPLER").unwrap_or_else(|| "parentbased_traceidratio".into()))
            }
        };
        let ratio = match self.sampler_ratio {
            Some(r) => ratio("tracing.sampler_ratio", r)?,
            None => match env("OTEL_TRACES_SAMPLER_ARG") {
                Some(arg) => {
                    let r = arg
                        .trim()
                        .parse::<f64>()
                        .map_err(|e| format!("OTEL_TRACES_SAMPLER_ARG: `{arg}` is not a number: {e}"))?;
                    ratio("OTEL_TRACES_SAMPLER_ARG", r)?
                }
                None => DEFAULT_SAMPLER_RATIO,
            },
        };
        let sampler = match name.trim() {
            "always_on" => Sampler::AlwaysOn,
            "always_off" => Sampler::AlwaysOff,
            "traceidratio" => Sampler::TraceIdRatioBased(ratio),
            "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            "parentbased_traceidratio" => Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio))),
            other => {
                return Err(format!(
                    "{name_key}: unknown sampler `{other}` (always_on, always_off, traceidratio, parentbased_always_on, \
                     parentbased_always_off, parentbased_traceidratio)"
                ));
            }
        };
        let service_name = match &self.service_name {
            Some(n) => Some(n.clone()),
            None if env("OTEL_SERVICE_NAME").is_some() => None,
            None => Some(DEFAULT_SERVICE_NAME.to_owned()),
        };
        Ok(Some(Resolved {
            endpoint,
            service_name,
            sampler,
            queue_spans: self.export_queue_spans,
            export_timeout: Duration::from_secs(self.export_timeout_secs),
            export_interval: Duration::from_millis(self.export_interval_ms),
        }))
    }
}

fn ratio(key: &str, r: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&r) { Ok(r) } else { Err(format!("{key}: must be within 0 and 1, got {r}")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn off_without_an_endpoint_or_when_the_sdk_is_disabled() {
        let c = TracingConfig::default();
        assert!(c.resolve(env(&[])).unwrap().is_none());
        let on = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), ("OTEL_SDK_DISABLED", "true")]);
        assert!(c.resolve(on).unwrap().is_none());
    }

    #[test]
    fn the_environment_fills_what_the_config_leaves_unset() {
        let vars = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
            ("OTEL_SERVICE_NAME", "memory"),
        ]);
        let r = TracingConfig::default().resolve(&vars).unwrap().unwrap();
        assert_eq!(r.endpoint, "http://collector:4317");
        assert!(matches!(r.sampler, Sampler::TraceIdRatioBased(x) if x == 0.5));
        assert_eq!(r.service_name, None, "the SDK reads OTEL_SERVICE_NAME");
        let c = TracingConfig {
            otlp_endpoint: Some("http://mine:4317".into()),
            sampler: Some("always_on".into()),
            service_name: Some("svc".into()),
            ..TracingConfig::default()
        };
        let r = c.resolve(&vars).unwrap().unwrap();
        assert_eq!(r.endpoint, "http://mine:4317");
        assert!(matches!(r.sampler, Sampler::AlwaysOn));
        assert_eq!(r.service_name.as_deref(), Some("svc"));
        let r = TracingConfig { otlp_endpoint: Some("http://x:4317".into()), ..TracingConfig::default() }
            .resolve(env(&[]))
            .unwrap()
            .unwrap();
        assert!(matches!(r.sampler, Sampler::ParentBased(_)), "parent-based ratio by default");
        assert_eq!(r.service_name.as_deref(), Some(DEFAULT_SERVICE_NAME));
    }

    #[test]
    fn bad_values_name_their_key() {
        let on = || TracingConfig { otlp_endpoint: Some("http://x:4317".into()), ..TracingConfig::default() };
        let e = TracingConfig { sampler: Some("sometimes".into()), ..on() }.resolve(env(&[])).unwrap_err();
        assert!(e.starts_with("tracing.sampler: unknown sampler `sometimes`"), "{e}");
        let e = TracingConfig { sampler_ratio: Some(1.5), ..on() }.resolve(env(&[])).unwrap_err();
        assert!(e.starts_with("tracing.sampler_ratio: must be within 0 and 1"), "{e}");
        let e = on().resolve(env(&[("OTEL_TRACES_SAMPLER_ARG", "lots")])).unwrap_err();
        assert!(e.starts_with("OTEL_TRACES_SAMPLER_ARG: `lots` is not a number"), "{e}");
        let e = on().resolve(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")])).unwrap_err();
        assert!(e.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{e}");
        let e = TracingConfig { otlp_endpoint: Some("collector:4317".into()), ..TracingConfig::default() }
            .resolve(env(&[]))
            .unwrap_err();
        assert!(e.starts_with("tracing.otlp_endpoint:"), "{e}");
        let e = TracingConfig { export_queue_spans: 0, ..on() }.resolve(env(&[])).unwrap_err();
        assert!(e.starts_with("tracing.export_queue_spans"), "{e}");
    }
}
