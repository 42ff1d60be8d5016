//! [`Telemetry`]: the Prometheus recorder, handle registration from catalog entries, and rendering.
//!
//! The recorder is owned, not installed globally: each [`Telemetry`] is its own registry, so
//! several engines (in tests) never share series, and a handle can never be a no-op created
//! before a global recorder existed. Handles are `metrics` crate handles backed by
//! metrics-exporter-prometheus's atomics.

use crate::catalog::{self, CATALOG, MetricDef, MetricKind};
use crate::labels::BoundedLabel;
use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use std::sync::Arc;

/// Telemetry settings (the `[telemetry]` table of the server config).
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Most distinct `memory_space` label values; later spaces are exported as `__other__`.
    pub max_space_labels: usize,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { max_space_labels: 100 }
    }
}

/// The process's metric registry and Prometheus exposition.
///
/// Create one per engine with [`Telemetry::new`]; register handles through the stage events in
/// [`crate::events`]; serve [`Telemetry::render`] at `/metrics`; call [`Telemetry::run_upkeep`]
/// every few seconds so histogram samples are folded into their buckets.
pub struct Telemetry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    space_label: BoundedLabel,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

const METADATA: Metadata<'static> = Metadata::new("engram", Level::INFO, None);

impl Telemetry {
    /// Builds the recorder with every histogram's fixed buckets and every metric's help text,
    /// and sets `engram_build_info{version}` to 1.
    pub fn new(config: TelemetryConfig) -> Arc<Self> {
        let mut builder = PrometheusBuilder::new();
        for def in CATALOG.iter().filter(|d| d.kind == MetricKind::Histogram) {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(def.name.to_owned()), def.buckets)
                .expect("catalog buckets are non-empty (checked by catalog tests)");
        }
        let recorder = builder.build_recorder();
        for def in CATALOG {
            let name = metrics::KeyName::from_const_str(def.name);
            let help = metrics::SharedString::const_str(def.help);
            match def.kind {
                MetricKind::Counter => recorder.describe_counter(name, None, help),
                MetricKind::Gauge => recorder.describe_gauge(name, None, help),
                MetricKind::Histogram => recorder.describe_histogram(name, None, help),
            }
        }
        let handle = recorder.handle();
        let telemetry = Arc::new(Self { recorder, handle, space_label: BoundedLabel::new(config.max_space_labels) });
        telemetry.gauge(&catalog::BUILD_INFO, &[env!("CARGO_PKG_VERSION")]).set(1.0);
        telemetry
    }

    /// The exported value of the `memory_space` label for a space name (bounded, see
    /// [`BoundedLabel`]).
    pub fn space_label(&self, space: &str) -> String {
        self.space_label.resolve(space)
    }

    fn key(def: &MetricDef, values: &[&str]) -> Key {
        assert_eq!(def.labels.len(), values.len(), "{}: label values must match the catalog", def.name);
        let labels: Vec<Label> = def.labels.iter().zip(values).map(|(k, v)| Label::new(*k, (*v).to_owned())).collect();
        Key::from_parts(def.name, labels)
    }

    /// Registers a counter handle. `values` are the label values in the order of `def.labels`.
    ///
    /// # Panics
    /// If `def` is not a counter or the number of values differs from the catalog's labels
    /// (a programming error caught by the first test that registers it).
    pub fn counter(&self, def: &MetricDef, values: &[&str]) -> Counter {
        assert_eq!(def.kind, MetricKind::Counter, "{} is not a counter", def.name);
        self.recorder.register_counter(&Self::key(def, values), &METADATA)
    }

    /// Registers a gauge handle (see [`Telemetry::counter`] for `values`).
    pub fn gauge(&self, def: &MetricDef, values: &[&str]) -> Gauge {
        assert_eq!(def.kind, MetricKind::Gauge, "{} is not a gauge", def.name);
        self.recorder.register_gauge(&Self::key(def, values), &METADATA)
    }

    /// Registers a histogram handle (see [`Telemetry::counter`] for `values`).
    pub fn histogram(&self, def: &MetricDef, values: &[&str]) -> Histogram {
        assert_eq!(def.kind, MetricKind::Histogram, "{} is not a histogram", def.name);
        self.recorder.register_histogram(&Self::key(def, values), &METADATA)
    }

    /// Renders the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Folds recorded histogram samples into their buckets; call every few seconds.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_series_render_with_fixed_buckets_and_help() {
        let t = Telemetry::new(TelemetryConfig::default());
        t.counter(&catalog::OBSERVATIONS, &["s1", "high"]).increment(3);
        t.histogram(&catalog::BATCH_SIZE, &["0"]).record(5.0);
        let text = t.render();
        assert!(text.contains("engram_streaming_observations_total{memory_space=\"s1\",priority=\"high\"} 3"));
        assert!(text.contains("engram_streaming_batch_size_bucket{worker_id=\"0\",le=\"8\"} 1"), "{text}");
        assert!(text.contains("# HELP engram_streaming_batch_size "));
        assert!(text.contains("engram_build_info{version=\""));
    }
}
