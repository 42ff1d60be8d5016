//! [`Telemetry`]: the registry of our primitives, one family per catalog entry, rendered in the
//! Prometheus text format through metrics-exporter-prometheus's formatting module.
//!
//! Registration (at space, worker or server creation) finds or creates a series and returns a
//! shared handle to its primitive; recording then touches only that primitive's atomics. The
//! value a stage reads back from its handle is the value `/metrics` exports: there is no second
//! copy. Registering the same label values twice returns the same primitive (so spaces folded
//! into `__other__` share their series).

use crate::catalog::{self, CATALOG, MetricDef, MetricKind};
use crate::labels::BoundedLabel;
use crate::primitives::{Counter, Gauge, Histogram};
use indexmap::IndexMap;
use metrics_exporter_prometheus::LabelSet;
use metrics_exporter_prometheus::formatting::{write_help_line, write_metric_line, write_type_line};
use parking_lot::Mutex;
use std::sync::Arc;

/// Telemetry settings (the server config's `max_space_labels`).
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

#[derive(Debug, Clone)]
enum Primitive {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
    Histogram(Arc<Histogram>),
}

#[derive(Debug)]
struct Series {
    values: Vec<String>,
    labels: LabelSet,
    metric: Primitive,
}

#[derive(Debug)]
struct Family {
    def: &'static MetricDef,
    series: Mutex<Vec<Series>>,
}

/// The process's metric registry and Prometheus exposition.
///
/// Create one per engine with [`Telemetry::new`]; register handles through the stage events in
/// [`crate::events`]; serve [`Telemetry::render`] at `/metrics`.
#[derive(Debug)]
pub struct Telemetry {
    families: Vec<Family>,
    space_label: BoundedLabel,
}

impl Telemetry {
    /// An empty registry with one family per catalog entry, and `engram_build_info{version}`
    /// set to 1.
    pub fn new(config: TelemetryConfig) -> Arc<Self> {
        let families = CATALOG.iter().map(|def| Family { def, series: Mutex::new(Vec::new()) }).collect();
        let telemetry = Arc::new(Self { families, space_label: BoundedLabel::new(config.max_space_labels) });
        telemetry.gauge(&catalog::BUILD_INFO, &[env!("CARGO_PKG_VERSION")]).set(1.0);
        telemetry
    }

    /// The exported value of the `memory_space` label for a space name (bounded, see
    /// [`BoundedLabel`]).
    pub fn space_label(&self, space: &str) -> String {
        self.space_label.resolve(space)
    }

    /// Finds or creates the series of `def` with label `values` (in the order of `def.labels`).
    fn register(&self, def: &MetricDef, values: &[&str], make: impl FnOnce() -> Primitive) -> Primitive {
        assert_eq!(def.labels.len(), values.len(), "{}: label values must match the catalog", def.name);
        let family = self
            .families
            .iter()
            .find(|f| f.def.name == def.name)
            .unwrap_or_else(|| panic!("{} is not in the catalog", def.name));
        let mut series = family.series.lock();
        if let Some(s) = series.iter().find(|s| s.values.iter().map(String::as_str).eq(values.iter().copied())) {
            return s.metric.clone();
        }
        let key_labels: Vec<metrics::Label> =
            def.labels.iter().zip(values).map(|(k, v)| metrics::Label::new(*k, (*v).to_owned())).collect();
        let key = metrics::Key::from_parts(def.name, key_labels);
        let metric = make();
        series.push(Series {
            values: values.iter().map(|v| (*v).to_owned()).collect(),
            labels: LabelSet::from_key_and_global(&key, &IndexMap::new()),
            metric: metric.clone(),
        });
        metric
    }

    /// Registers (or finds) a counter. `values` are the label values in the order of
    /// `def.labels`.
    ///
    /// # Panics
    /// If `def` is not a counter of the catalog or the number of values differs from its labels
    /// (a programming error caught by the first test that registers it).
    pub fn counter(&self, def: &MetricDef, values: &[&str]) -> Arc<Counter> {
        assert_eq!(def.kind, MetricKind::Counter, "{} is not a counter", def.name);
        match self.register(def, values, || Primitive::Counter(Arc::new(Counter::new()))) {
            Primitive::Counter(c) => c,
            _ => unreachable!("families hold one kind"),
        }
    }

    /// Registers (or finds) a gauge (see [`Telemetry::counter`]).
    pub fn gauge(&self, def: &MetricDef, values: &[&str]) -> Arc<Gauge> {
        assert_eq!(def.kind, MetricKind::Gauge, "{} is not a gauge", def.name);
        match self.register(def, values, || Primitive::Gauge(Arc::new(Gauge::new()))) {
            Primitive::Gauge(g) => g,
            _ => unreachable!("families hold one kind"),
        }
    }

    /// Registers (or finds) a histogram with the catalog's fixed buckets (see
    /// [`Telemetry::counter`]).
    pub fn histogram(&self, def: &MetricDef, values: &[&str]) -> Arc<Histogram> {
        assert_eq!(def.kind, MetricKind::Histogram, "{} is not a histogram", def.name);
        let (buckets, resolution) = (def.buckets, def.sum_resolution());
        match self.register(def, values, || Primitive::Histogram(Arc::new(Histogram::new(buckets, resolution)))) {
            Primitive::Histogram(h) => h,
            _ => unreachable!("families hold one kind"),
        }
    }

    /// Renders every registered series in the Prometheus text exposition format (version
    /// 0.0.4): `# HELP` and `# TYPE` per family, cumulative `_bucket{le}` lines, `_sum` and
    /// `_count` for histograms.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(64 * 1024);
        let none = None::<(&'static str, &str)>;
        for family in &self.families {
            let series = family.series.lock();
            if series.is_empty() {
                continue;
            }
            let def = family.def;
            write_help_line(&mut out, def.name, None, None, def.help);
            write_type_line(&mut out, def.name, None, None, def.kind.as_str());
            for s in series.iter() {
                match &s.metric {
                    Primitive::Counter(c) => {
                        write_metric_line(&mut out, def.name, None, &s.labels, none, c.get(), None)
                    }
                    Primitive::Gauge(g) => write_metric_line(&mut out, def.name, None, &s.labels, none, g.get(), None),
                    Primitive::Histogram(h) => {
                        let snap = h.snapshot();
                        let mut cumulative = 0u64;
                        for (bound, n) in snap.bounds.iter().zip(&snap.buckets) {
                            cumulative += n;
                            write_metric_line(
                                &mut out,
                                def.name,
                                Some("bucket"),
                                &s.labels,
                                Some(("le", bound)),
                                cumulative,
                                None,
                            );
                        }
                        write_metric_line(
                            &mut out,
                            def.name,
                            Some("bucket"),
                            &s.labels,
                            Some(("le", "+Inf")),
                            snap.count,
                            None,
                        );
                        write_metric_line(&mut out, def.name, Some("sum"), &s.labels, none, snap.sum, None);
                        write_metric_line(&mut out, def.name, Some("count"), &s.labels, none, snap.count, None);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_series_render_with_fixed_buckets_and_help() {
        let t = Telemetry::new(TelemetryConfig::default());
        t.counter(&catalog::OBSERVATIONS, &["s1", "high"]).add(3);
        t.histogram(&catalog::BATCH_SIZE, &["0"]).record(5.0);
        let text = t.render();
        assert!(text.contains("engram_streaming_observations_total{memory_space=\"s1\",priority=\"high\"} 3"));
        assert!(text.contains("engram_streaming_batch_size_bucket{worker_id=\"0\",le=\"4\"} 0"), "{text}");
        assert!(text.contains("engram_streaming_batch_size_bucket{worker_id=\"0\",le=\"8\"} 1"), "{text}");
        assert!(text.contains("engram_streaming_batch_size_bucket{worker_id=\"0\",le=\"+Inf\"} 1"), "{text}");
        assert!(text.contains("engram_streaming_batch_size_sum{worker_id=\"0\"} 5"), "{text}");
        assert!(text.contains("engram_streaming_batch_size_count{worker_id=\"0\"} 1"), "{text}");
        assert!(text.contains("# HELP engram_streaming_batch_size "));
        assert!(text.contains("# TYPE engram_streaming_batch_size histogram"));
        assert!(text.contains("engram_build_info{version=\""));
    }

    #[test]
    fn registering_the_same_labels_returns_the_same_series() {
        let t = Telemetry::new(TelemetryConfig::default());
        let a = t.counter(&catalog::OBSERVATIONS_INDEXED, &["x"]);
        let b = t.counter(&catalog::OBSERVATIONS_INDEXED, &["x"]);
        a.add(2);
        b.add(3);
        assert_eq!(a.get(), 5, "one primitive behind both handles");
        assert_eq!(t.render().matches("engram_streaming_observations_indexed_total{").count(), 1);
    }
}
