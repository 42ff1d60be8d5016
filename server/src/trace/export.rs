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
