//! The cost tracing adds to one batch while it is on: what every batch pays whether or not it
//! is exported (the head sampler's decision and the stage clock readings kept until the answer),
//! at the default sampler (`parentbased_traceidratio`, 0.01) with no client `traceparent`, so
//! the batch is not exported. Compare with one batch's insert time (the `ingest` bench): the
//! end-to-end ratio is in docs/benchmarks.md, "Tracing".
//!
//! `cargo bench -p engram-benches --bench trace -- --noplot`

use criterion::{Criterion, criterion_group, criterion_main};
use engram_engine::{AckLevel, Admission, AdmitTimes, BackpressureLevel, IndexedOutcome, Priority};
use engram_server::trace::{Tracer, TracingConfig};
use engram_telemetry::{Telemetry, TelemetryConfig};
use opentelemetry::trace::{SpanContext, SpanKind};
use std::hint::black_box;
use std::time::Instant;

fn unsampled_batch(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let telemetry = Telemetry::new(TelemetryConfig::default());
    // A port nothing listens on: nothing is exported at ratio 0.01 in this bench anyway.
    let config = TracingConfig {
        otlp_endpoint: Some("http://127.0.0.1:9".into()),
        sampler: Some("parentbased_traceidratio".into()),
        sampler_ratio: Some(0.0),
        ..TracingConfig::default()
    };
    let tracer = runtime.block_on(async { Tracer::start(&config, &telemetry).unwrap() });
    let now = Instant::now();
    let times = AdmitTimes { validated: now, admitted: now, appended: now, queued: now };
    let outcome = IndexedOutcome { indexed: 100, failed: 0, started: Some(now), finished: Some(now) };
    c.bench_function("trace/unsampled_batch", |b| {
        b.iter(|| {
            let received = Instant::now();
            let mut t = tracer
                .begin("engram.v1.Engram/StreamObservations", SpanKind::Server, SpanContext::empty_context(), received)
                .unwrap();
            t.parsed(Instant::now());
            t.batch(black_box("space"), 100, Priority::Normal, AckLevel::Indexed);
            let a = Admission {
                accepted: 100,
                duplicates: 0,
                replaced: 0,
                level: BackpressureLevel::Normal,
                durable: None,
                indexed: None,
                times,
            };
            t.admitted(received, &a);
            t.synced(times.appended, Instant::now());
            t.indexed(times.queued, &outcome);
            black_box(t.traceresponse());
            let ended = Instant::now();
            t.stage("ack", ended, ended);
            tracer.finish(t, ended);
        })
    });
    tracer.shutdown(std::time::Duration::from_millis(100));
}

criterion_group!(benches, unsampled_batch);
criterion_main!(benches);
