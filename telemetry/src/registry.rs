//! [`Telemetry`]: the registry of our primitives, one family per catalog entry, rendered in the
//! Prometheus text format through metrics-exporter-prometheus's formatting module.
//!
//! Registration (at space, worker or server creation) finds or creates a series and returns a
//! shared handle to its primitive; recording then touches only that primitive's atomics. The
//! value a stage reads back from its handle is the value `/metrics` exports: there is no second
//! copy. Registering the same label values twice returns the same primitive (so spaces folded
//! into `__other__` share their series).

use crate::catalog::{self, CATALOG, Fold, MetricDef, MetricKind};
use crate::labels::{BoundedLabel, OVERFLOW};
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

/// Reads a value that lives outside the registry (an engine atomic, the index, `/proc`); `None`
/// once its owner is gone, which removes the source.
pub type Source = Box<dyn Fn() -> Option<f64> + Send + Sync>;

/// The sources of one sampled series, combined by the family's [`Fold`].
struct Sampled {
    sources: Mutex<Vec<Source>>,
}

impl std::fmt::Debug for Sampled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampled").field("sources", &self.sources.lock().len()).finish()
    }
}

impl Sampled {
    /// Reads every live source, drops the dead ones, and folds the values.
    fn read(&self, fold: Fold) -> f64 {
        let mut sources = self.sources.lock();
        let mut acc: Option<f64> = None;
        sources.retain(|read| match read() {
            Some(v) => {
                acc = Some(match (acc, fold) {
                    (None, _) => v,
                    (Some(a), Fold::Sum) => a + v,
                    (Some(a), Fold::Max) => a.max(v),
                });
                true
            }
            None => false,
        });
        acc.unwrap_or(0.0)
    }
}

#[derive(Debug, Clone)]
enum Primitive {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
    Histogram(Arc<Histogram>),
    Sampled(Arc<Sampled>),
}

impl Primitive {
    /// The value exported for a counter, gauge or sampled series (a histogram's sum).
    fn value(&self, fold: Fold) -> f64 {
        match self {
            Primitive::Counter(c) => c.get() as f64,
            Primitive::Gauge(g) => g.get(),
            Primitive::Sampled(x) => x.read(fold),
            Primitive::Histogram(h) => h.snapshot().sum,
        }
    }
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

    /// A space whose `memory_space` label is `label` was dropped: every series carrying that
    /// label leaves the registry (and `/metrics`), and its slot is free for the next space
    /// created. Series of [`OVERFLOW`] are shared by other spaces and stay (the dropped space's
    /// sampled sources leave them by returning `None`).
    pub fn release_space(&self, label: &str) {
        if label == OVERFLOW || !self.space_label.release(label) {
            return;
        }
        for family in &self.families {
            if let Some(i) = family.def.labels.iter().position(|l| *l == "memory_space") {
                family.series.lock().retain(|s| s.values[i] != label);
            }
        }
    }

    /// Finds or creates the series of `def` with label `values` (in the order of `def.labels`).
    fn register(&self, def: &MetricDef, values: &[&str], make: impl FnOnce() -> Primitive) -> Primitive {
        assert_eq!(def.labels.len(), values.len(), "{}: label values must match the catalog", def.name);
        let family = self.family(def);
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

    /// Registers a *sampled* counter or gauge: its value is read from `source` when `/metrics`
    /// is rendered, so the exported value is the one the owner steers by (no copy kept in sync
    /// by hand). Registering the same label values again adds a source, combined by
    /// [`MetricDef::fold`] (spaces folded into `__other__` share a series). A source returning
    /// `None` (its owner is gone) is removed.
    ///
    /// # Panics
    /// If `def` is a histogram, or the series exists as a non-sampled primitive (a programming
    /// error caught by the first test that registers it).
    pub fn sampled(&self, def: &MetricDef, values: &[&str], source: Source) {
        assert_ne!(def.kind, MetricKind::Histogram, "{} cannot be sampled", def.name);
        let primitive =
            self.register(def, values, || Primitive::Sampled(Arc::new(Sampled { sources: Mutex::new(Vec::new()) })));
        match primitive {
            Primitive::Sampled(s) => s.sources.lock().push(source),
            _ => panic!("{} is registered as a recorded primitive, not a sampled one", def.name),
        }
    }

    /// The exported value of every series of counter or gauge `def` whose label values pass
    /// `filter`, summed: for readers that steer by a whole family (the health score). Takes
    /// the family's registration lock: not for hot paths.
    pub fn sum(&self, def: &MetricDef, filter: impl Fn(&[String]) -> bool) -> f64 {
        let family = self.family(def);
        let series = family.series.lock();
        series.iter().filter(|s| filter(&s.values)).map(|s| s.metric.value(def.fold)).sum()
    }

    /// The largest exported value among the series of gauge `def` (0 when it has none).
    pub fn max(&self, def: &MetricDef) -> f64 {
        let family = self.family(def);
        let series = family.series.lock();
        series.iter().map(|s| s.metric.value(def.fold)).fold(0.0, f64::max)
    }

    fn family(&self, def: &MetricDef) -> &Family {
        self.families
            .iter()
            .find(|f| f.def.name == def.name)
            .unwrap_or_else(|| panic!("{} is not in the catalog", def.name))
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
                    Primitive::Sampled(x) => {
                        write_metric_line(&mut out, def.name, None, &s.labels, none, x.read(def.fold), None)
                    }
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
    fn sampled_series_read_their_sources_at_render_and_fold_them() {
        let t = Telemetry::new(TelemetryConfig::default());
        let level = Arc::new(std::sync::atomic::AtomicU8::new(2));
        let weak = Arc::downgrade(&level);
        t.sampled(
            &catalog::BACKPRESSURE_STATE,
            &["__other__"],
            Box::new(move || weak.upgrade().map(|l| f64::from(l.load(std::sync::atomic::Ordering::Relaxed)))),
        );
        t.sampled(&catalog::BACKPRESSURE_STATE, &["__other__"], Box::new(|| Some(1.0)));
        t.sampled(&catalog::INDEX_VECTORS, &["__other__"], Box::new(|| Some(10.0)));
        t.sampled(&catalog::INDEX_VECTORS, &["__other__"], Box::new(|| Some(5.0)));
        let text = t.render();
        assert!(text.contains("engram_streaming_backpressure_state{memory_space=\"__other__\"} 2"), "{text}");
        assert!(text.contains("engram_index_vectors{memory_space=\"__other__\"} 15"), "{text}");
        level.store(3, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(t.max(&catalog::BACKPRESSURE_STATE), 3.0, "the worst source shows, read live");
        drop(level);
        assert_eq!(t.max(&catalog::BACKPRESSURE_STATE), 1.0, "a dead source is dropped");
    }

    #[test]
    fn sum_filters_by_label_values() {
        let t = Telemetry::new(TelemetryConfig::default());
        t.counter(&catalog::HTTP_REQUESTS, &["POST", "/a", "200"]).add(7);
        t.counter(&catalog::HTTP_REQUESTS, &["POST", "/a", "500"]).add(2);
        t.counter(&catalog::HTTP_REQUESTS, &["GET", "/b", "503"]).add(1);
        assert_eq!(t.sum(&catalog::HTTP_REQUESTS, |_| true), 10.0);
        assert_eq!(t.sum(&catalog::HTTP_REQUESTS, |v| v[2].starts_with('5')), 3.0);
    }

    #[test]
    fn a_released_space_leaves_metrics_and_frees_its_label() {
        let t = Telemetry::new(TelemetryConfig { max_space_labels: 2 });
        let a = t.space_label("a");
        t.counter(&catalog::OBSERVATIONS_INDEXED, &[&a]).add(1);
        t.sampled(&catalog::INDEX_VECTORS, &[&a], Box::new(|| Some(3.0)));
        let b = t.space_label("b");
        assert_eq!(t.space_label("c"), OVERFLOW);
        t.release_space(&a);
        let text = t.render();
        assert!(!text.contains("memory_space=\"a\""), "{text}");
        assert_eq!(t.space_label("c"), "c");
        t.release_space(OVERFLOW);
        t.release_space(&b);
        assert_eq!(t.space_label("d"), "d");
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
