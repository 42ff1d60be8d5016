//! Telemetry overhead: one recording operation, on 1 and 2 threads, for a bare relaxed
//! `AtomicU64::fetch_add`, our primitives, metrics-exporter-prometheus handles (through the
//! `metrics` crate) and the `prometheus` crate; and the `/metrics` render time with 1,000
//! memory spaces registered.
//!
//! `cargo bench -p engram-benches --bench telemetry -- --noplot`
//!
//! Multi-threaded cases time `iters` operations on each thread, all threads recording into the
//! same metric, and report wall time ÷ `iters` (the per-operation cost as each thread sees it).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use engram_telemetry::catalog::OBSERVATION_LATENCY;
use engram_telemetry::events::SpaceEvents;
use engram_telemetry::events::space::SpaceSources;
use engram_telemetry::primitives::{Counter, Gauge, Histogram};
use engram_telemetry::{Telemetry, TelemetryConfig};
use metrics::Recorder;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Values spread over the ingest-latency buckets, cycled by the histogram cases.
fn values() -> Vec<f64> {
    (0..1024).map(|i| 0.0004 * 1.013f64.powi(i)).collect()
}

/// Runs `op(i)` `iters` times on each of `threads` threads; returns the wall time.
fn timed<F: Fn(u64) + Sync>(threads: usize, iters: u64, op: F) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for i in 0..iters {
                    op(i);
                }
            });
        }
    });
    start.elapsed()
}

fn overhead(c: &mut Criterion) {
    let vals = values();
    let v = |i: u64| vals[(i & 1023) as usize];

    let bare = AtomicU64::new(0);
    let counter = Counter::new();
    let gauge = Gauge::new();
    let histogram = Histogram::new(OBSERVATION_LATENCY.buckets, OBSERVATION_LATENCY.sum_resolution());

    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full("h".into()), OBSERVATION_LATENCY.buckets)
        .unwrap()
        .build_recorder();
    let meta = metrics::Metadata::new("bench", metrics::Level::INFO, None);
    let m_counter = recorder.register_counter(&metrics::Key::from_name("c"), &meta);
    let m_gauge = recorder.register_gauge(&metrics::Key::from_name("g"), &meta);
    let m_histogram = recorder.register_histogram(&metrics::Key::from_name("h"), &meta);
    let handle = recorder.handle();

    let p_counter = prometheus::IntCounter::new("c", "c").unwrap();
    let p_gauge = prometheus::Gauge::new("g", "g").unwrap();
    let p_histogram = prometheus::Histogram::with_opts(
        prometheus::HistogramOpts::new("h", "h").buckets(OBSERVATION_LATENCY.buckets.to_vec()),
    )
    .unwrap();

    let mut g = c.benchmark_group("telemetry");
    for threads in [1usize, 2] {
        let mut case = |name: &str, op: &(dyn Fn(u64) + Sync)| {
            g.bench_function(BenchmarkId::new(name, format!("{threads}t")), |b| {
                b.iter_custom(|iters| timed(threads, iters, op))
            });
        };
        case("bare_fetch_add", &|_| {
            bare.fetch_add(1, Ordering::Relaxed);
        });
        case("ours_counter", &|_| counter.inc());
        case("ours_gauge_add", &|i| gauge.add(black_box(v(i))));
        case("ours_histogram", &|i| histogram.record(black_box(v(i))));
        case("metrics_exporter_counter", &|_| m_counter.increment(1));
        case("metrics_exporter_gauge_add", &|i| m_gauge.increment(black_box(v(i))));
        case("metrics_exporter_histogram", &|i| m_histogram.record(black_box(v(i))));
        case("prometheus_counter", &|_| p_counter.inc());
        case("prometheus_gauge_add", &|i| p_gauge.add(black_box(v(i))));
        case("prometheus_histogram", &|i| p_histogram.observe(black_box(v(i))));
        // Fold buffered histogram samples so the exporter's buffer does not grow across cases.
        handle.run_upkeep();
    }
    g.finish();
    black_box((bare.load(Ordering::Relaxed), counter.get(), histogram.snapshot().count));
}

fn render(c: &mut Criterion) {
    let t = Telemetry::new(TelemetryConfig { max_space_labels: 1000 });
    let spaces: Vec<SpaceEvents> = (0..1000).map(|i| SpaceEvents::register(&t, &format!("space-{i:04}"))).collect();
    for (i, s) in spaces.iter().enumerate() {
        s.admitted(1, 10 + i as u64);
        s.indexed(Duration::from_millis(3));
        s.recalled(Duration::from_micros(900));
        // Level, vectors and memory are sampled from the engine at render time, as served.
        let vectors = 1000.0 + i as f64;
        s.sample(
            &t,
            SpaceSources {
                state: Box::new(|| Some(0.0)),
                vectors: Box::new(move || Some(vectors)),
                memory_bytes: Box::new(|| Some(3_400_000.0)),
                tombstones: Box::new(|| Some(0.0)),
            },
        );
    }
    let bytes = t.render().len();
    eprintln!("telemetry/render_1000_spaces: {bytes} bytes of exposition");
    let mut g = c.benchmark_group("telemetry");
    g.sample_size(20);
    g.bench_function("render_1000_spaces", |b| b.iter(|| black_box(t.render())));
    g.finish();
}

criterion_group!(benches, overhead, render);
criterion_main!(benches);
