//! Spans to the OTLP endpoint: the SDK's `BatchSpanProcessor` (its own thread, a bounded queue,
//! batches of up to 512 spans) in front of the `opentelemetry-otlp` gRPC exporter, with two
//! things around them so a slow or dead collector costs nothing and loses nothing unseen:
//!
//! - [`Gate`] counts the spans handed to the processor and not yet taken by an export, and
//!   refuses (and counts) a span once that reaches the queue's bound, so the processor's own
//!   queue never overflows where its drops could not be counted;
//! - [`CountingExporter`] counts what was exported and what failed, and runs each export on the
//!   server's tokio runtime (the tonic client lives there; the processor's thread is not a
//!   runtime thread).

use engram_telemetry::events::{DropReason, TraceEvents};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanExporter, SpanProcessor};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The OTLP exporter, counting.
#[derive(Debug)]
pub struct CountingExporter {
    inner: Arc<opentelemetry_otlp::SpanExporter>,
    runtime: tokio::runtime::Handle,
    in_flight: Arc<AtomicUsize>,
    events: TraceEvents,
}

impl SpanExporter for CountingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        // Out of the queue: room for as many new spans.
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
        let inner = Arc::clone(&self.inner);
        let result = match self.runtime.spawn(async move { inner.export(batch).await }).await {
            Ok(r) => r,
            Err(e) => Err(OTelSdkError::InternalFailure(format!("export task failed: {e}"))),
        };
        match &result {
            Ok(()) => self.events.exported(n as u64),
            Err(_) => self.events.dropped(DropReason::ExportFailed, n as u64),
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

/// The batch processor behind its counting gate.
#[derive(Debug)]
pub struct Gate {
    processor: BatchSpanProcessor,
    in_flight: Arc<AtomicUsize>,
    bound: usize,
    events: TraceEvents,
}

impl Gate {
    /// A processor exporting to `exporter` (with `resource`) every `interval`, queueing at
    /// most `bound` spans. Call within the tokio runtime that will run the exports.
    pub fn new(
        exporter: opentelemetry_otlp::SpanExporter,
        resource: &Resource,
        bound: usize,
        interval: Duration,
        events: TraceEvents,
    ) -> Self {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut exporter = CountingExporter {
            inner: Arc::new(exporter),
            runtime: tokio::runtime::Handle::current(),
            in_flight: Arc::clone(&in_flight),
            events: events.clone(),
        };
        exporter.set_resource(resource);
        // OTEL_BSP_MAX_EXPORT_BATCH_SIZE is honoured; the queue bound and interval are ours.
        let config = BatchConfigBuilder::default().with_max_queue_size(bound).with_scheduled_delay(interval).build();
        let processor = BatchSpanProcessor::builder(exporter).with_batch_config(config).build();
        Self { processor, in_flight, bound, events }
    }

    /// Hands `spans` to the processor, or counts them dropped when the queue has no room for
    /// them all (a trace goes whole or not at all). Never blocks.
    pub fn submit(&self, spans: Vec<SpanData>) {
        let n = spans.len();
        let reserved = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| (q + n <= self.bound).then_some(q + n))
            .is_ok();
        if !reserved {
            self.events.dropped(DropReason::QueueFull, n as u64);
            return;
        }
        for span in spans {
            self.processor.on_end(span);
        }
    }

    /// Exports what is queued and stops the processor's thread (at most `timeout`).
    pub fn shutdown(&self, timeout: Duration) {
        if let Err(e) = self.processor.shutdown_with_timeout(timeout) {
            tracing::warn!("trace export did not finish at shutdown: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engram_telemetry::catalog;
    use engram_telemetry::{Telemetry, TelemetryConfig};
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use std::borrow::Cow;
    use std::sync::atomic::AtomicBool;
    use std::time::SystemTime;

    fn span(i: u64) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(u128::from(i) + 1),
                SpanId::from(i + 1),
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Borrowed("stage"),
            start_time: SystemTime::now(),
            end_time: SystemTime::now(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    /// Four threads submit traces as fast as they can while the processor exports them (to an
    /// endpoint where nothing listens, so every export fails) and a reader samples the gate's
    /// count: it never exceeds the bound, and once the processor is shut down every span
    /// submitted is accounted for exactly once: exported, dropped at the gate (queue_full) or
    /// dropped by a failed export (export_failed).
    #[test]
    fn every_span_submitted_while_exports_run_is_counted_once_and_the_bound_holds() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let telemetry = Telemetry::new(TelemetryConfig::default());
        let events = TraceEvents::register(&telemetry);
        const BOUND: usize = 256;
        let gate = runtime.block_on(async {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint("http://127.0.0.1:9")
                .with_timeout(Duration::from_millis(200))
                .build()
                .unwrap();
            Arc::new(Gate::new(exporter, &Resource::builder().build(), BOUND, Duration::from_millis(5), events))
        });
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (gate, stop) = (Arc::clone(&gate), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut samples = 0u64;
                while !stop.load(Ordering::Acquire) {
                    let q = gate.in_flight.load(Ordering::Acquire);
                    assert!(q <= BOUND, "{q} spans in flight, over the bound of {BOUND}");
                    samples += 1;
                }
                samples
            })
        };
        const THREADS: u64 = 4;
        const TRACES: u64 = 100_000;
        const SPANS: u64 = 8;
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let gate = Arc::clone(&gate);
                std::thread::spawn(move || {
                    for i in 0..TRACES {
                        let base = (t * TRACES + i) * SPANS;
                        gate.submit((base..base + SPANS).map(span).collect());
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        gate.shutdown(Duration::from_secs(30));
        stop.store(true, Ordering::Release);
        assert!(reader.join().unwrap() > 1000, "the reader sampled while the writers ran");
        let sum = |def: &catalog::MetricDef, reason: Option<&str>| {
            telemetry.sum(def, |labels| reason.is_none_or(|r| labels.first().is_some_and(|l| l == r)))
        };
        let exported = sum(&catalog::TRACE_SPANS_EXPORTED, None);
        let queue_full = sum(&catalog::TRACE_SPANS_DROPPED, Some("queue_full"));
        let failed = sum(&catalog::TRACE_SPANS_DROPPED, Some("export_failed"));
        let submitted = (THREADS * TRACES * SPANS) as f64;
        assert_eq!(
            exported + queue_full + failed,
            submitted,
            "exported {exported}, queue_full {queue_full}, failed {failed}"
        );
        assert!(queue_full > 0.0 && failed > 0.0, "both drop paths ran: queue_full {queue_full}, failed {failed}");
        assert_eq!(gate.in_flight.load(Ordering::Acquire), 0);
        drop(runtime);
    }
}
