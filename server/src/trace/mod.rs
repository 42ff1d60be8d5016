//! Traces: OpenTelemetry spans along a batch's and a recall's path, exported over OTLP/gRPC.
//!
//! A request's stages are recorded as it runs (a clock read at the end of each: the engine
//! returns its own, see [`engram_engine::AdmitTimes`], [`engram_engine::IndexedOutcome`] and
//! [`engram_engine::RecallTimes`]); when the request is answered, [`Tracer::finish`] decides
//! whether it is exported and, if so, builds its spans with their real start and end times and
//! hands them to the batch exporter. Deciding at the end lets every rejected or failed request
//! be traced whatever the sampler said (a head sampler alone cannot know the outcome), and an
//! untraced request costs a few clock reads, no span objects. Stages that ran on other threads
//! (the queue wait and index insert ran on the worker pool) need no context carried through
//! the queue: their times come back with the ack.
//!
//! - [`config`]: `[tracing]` and the `OTEL_*` variables.
//! - [`context`]: W3C `traceparent` / `tracestate` in, `traceresponse` out.
//! - `export`: the SDK's batch processor and the OTLP exporter, with drop counting.
//!
//! Span names, kinds and attributes follow the OpenTelemetry semantic conventions for HTTP
//! servers (`http.request.method`, `http.route`, `http.response.status_code`) and RPC
//! (`rpc.system`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code`), plus our own
//! `engram.*` attributes; docs/operations.md lists every span.

pub mod config;
pub mod context;
mod export;

use crate::api_error::{ApiError, code_name};
use engram_engine::{AckLevel, Admission, IndexedOutcome, Priority, RecallTimes};
use engram_telemetry::Telemetry;
use engram_telemetry::events::{SampleReason, TraceEvents};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample, SpanData, SpanEvents, SpanLinks,
};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use config::TracingConfig;

/// Where traces go: off (nothing recorded), or the exporter. Cheap to clone.
#[derive(Clone, Default)]
pub struct Tracer(Option<Arc<Inner>>);

struct Inner {
    gate: export::Gate,
    sampler: Sampler,
    ids: RandomIdGenerator,
    scope: InstrumentationScope,
    events: TraceEvents,
}

impl Tracer {
    /// Tracing off: [`Tracer::begin`] returns `None`.
    pub fn off() -> Self {
        Self(None)
    }

    /// The tracer `config` asks for (with the `OTEL_*` environment filling unset keys); off
    /// when no endpoint is set. Call within the tokio runtime that serves: the exporter's
    /// client runs there.
    ///
    /// # Errors
    /// A bad key or variable, named (see [`TracingConfig::resolve`]), or an endpoint the OTLP
    /// exporter cannot be built for.
    pub fn start(config: &TracingConfig, telemetry: &Telemetry) -> anyhow::Result<Self> {
        // Registered while off too: the series read 0 rather than being absent.
        let events = TraceEvents::register(telemetry);
        let Some(resolved) = config.resolve(|k| std::env::var(k).ok()).map_err(|e| anyhow::anyhow!(e))? else {
            return Ok(Self::off());
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(resolved.endpoint.clone())
            .with_timeout(resolved.export_timeout)
            .build()
            .map_err(|e| anyhow::anyhow!("tracing.otlp_endpoint: {e}"))?;
        let mut resource = Resource::builder();
        if let Some(name) = &resolved.service_name {
            resource = resource.with_service_name(name.clone());
        }
        let resource = resource.with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))).build();
        let gate =
            export::Gate::new(exporter, &resource, resolved.queue_spans, resolved.export_interval, events.clone());
        tracing::info!(endpoint = %resolved.endpoint, sampler = ?resolved.sampler, "exporting traces over OTLP/gRPC");
        Ok(Self(Some(Arc::new(Inner {
            gate,
            sampler: resolved.sampler,
            ids: RandomIdGenerator::default(),
            scope: InstrumentationScope::builder("engram-stream").with_version(env!("CARGO_PKG_VERSION")).build(),
            events,
        }))))
    }

    /// Whether traces are recorded.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// A trace of a request that arrived at `started`, under the client's span `parent`
    /// (invalid: a new trace), whose server span is `name` of `kind`. `None` when tracing is
    /// off.
    pub fn begin(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: SpanContext,
        started: Instant,
    ) -> Option<Trace> {
        let inner = self.0.as_ref()?;
        let name = name.into();
        let trace_id = if parent.is_valid() { parent.trace_id() } else { inner.ids.new_trace_id() };
        let sampled = head_sampled(&inner.sampler, &parent, trace_id, &name, &kind);
        Some(Trace {
            trace_id,
            span_id: inner.ids.new_span_id(),
            parent,
            name,
            kind,
            sampled,
            forced: false,
            started,
            wall: SystemTime::now(),
            anchor: Instant::now(),
            attributes: Vec::with_capacity(8),
            stages: Vec::with_capacity(8),
            status: Status::Unset,
        })
    }

    /// The request ended at `ended`: its spans go to the exporter if the sampler chose it or it
    /// was forced ([`Trace::fail`]), else they are forgotten. Never blocks.
    pub fn finish(&self, trace: Trace, ended: Instant) {
        let Some(inner) = self.0.as_ref() else { return };
        let reason = if trace.forced {
            SampleReason::Forced
        } else if trace.sampled {
            SampleReason::Sampler
        } else {
            return;
        };
        inner.events.sampled(reason);
        inner.gate.submit(trace.into_spans(inner, ended));
    }

    /// Exports what is queued (at most `timeout`) and stops the exporter.
    pub fn shutdown(&self, timeout: Duration) {
        if let Some(inner) = &self.0 {
            inner.gate.shutdown(timeout);
        }
    }
}

/// The sampler's decision for a trace starting under `parent` (invalid: a root, which the
/// sampler decides alone; a context holding an invalid span would read as an unsampled parent
/// to the `parentbased_*` samplers).
fn head_sampled(sampler: &Sampler, parent: &SpanContext, trace_id: TraceId, name: &str, kind: &SpanKind) -> bool {
    let parent_cx = parent.is_valid().then(|| Context::new().with_remote_span_context(parent.clone()));
    sampler.should_sample(parent_cx.as_ref(), trace_id, name, kind, &[], &[]).decision
        == SamplingDecision::RecordAndSample
}

/// A request's trace shared between the layer that starts and finishes it and the handler that
/// records its stages (an HTTP request extension).
#[derive(Debug, Clone)]
pub struct TraceSlot(Arc<parking_lot::Mutex<Option<Trace>>>);

impl TraceSlot {
    /// A slot holding `trace`.
    pub fn new(trace: Trace) -> Self {
        Self(Arc::new(parking_lot::Mutex::new(Some(trace))))
    }

    /// Records into the trace, if the request is traced (`slot` is `None` when tracing is off).
    pub fn record(slot: Option<&Self>, f: impl FnOnce(&mut Trace)) {
        if let Some(slot) = slot
            && let Some(t) = slot.0.lock().as_mut()
        {
            f(t);
        }
    }

    /// The trace, taken out to be finished.
    pub fn take(&self) -> Option<Trace> {
        self.0.lock().take()
    }
}

/// One request's trace while it runs: its server span and the stages under it.
#[derive(Debug)]
pub struct Trace {
    trace_id: TraceId,
    span_id: SpanId,
    parent: SpanContext,
    name: Cow<'static, str>,
    kind: SpanKind,
    sampled: bool,
    forced: bool,
    started: Instant,
    /// The wall clock at `anchor`: span times are `wall + (t - anchor)`.
    wall: SystemTime,
    anchor: Instant,
    attributes: Vec<KeyValue>,
    stages: Vec<Stage>,
    status: Status,
}

#[derive(Debug)]
struct Stage {
    name: &'static str,
    start: Instant,
    end: Instant,
    attributes: Vec<KeyValue>,
}

impl Trace {
    /// The trace id, as 32 lowercase hex digits (for log lines).
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The `traceresponse` value: `00-{trace-id}-{server span id}-{flags}`, flags `01` when the
    /// trace is (so far) exported.
    pub fn traceresponse(&self) -> String {
        let flags = u8::from(self.sampled || self.forced);
        format!("00-{:032x}-{:016x}-{flags:02x}", self.trace_id, self.span_id)
    }

    /// The request was received and decoded at `at` (the `parse` stage, from its arrival).
    pub fn parsed(&mut self, at: Instant) {
        self.stage("parse", self.started, at);
    }

    /// An attribute of the server span.
    pub fn attribute(&mut self, kv: KeyValue) {
        self.attributes.push(kv);
    }

    /// A stage that ran from `start` to `end` (clamped into the request's time).
    pub fn stage(&mut self, name: &'static str, start: Instant, end: Instant) {
        self.stage_with(name, start, end, Vec::new());
    }

    /// A stage with attributes of its own.
    pub fn stage_with(&mut self, name: &'static str, start: Instant, end: Instant, attributes: Vec<KeyValue>) {
        let start = start.max(self.started);
        self.stages.push(Stage { name, start, end: end.max(start), attributes });
    }

    /// The request was rejected or failed: its trace is exported whatever the sampler said,
    /// with an error status saying why.
    pub fn fail(&mut self, why: impl Into<Cow<'static, str>>) {
        self.forced = true;
        self.status = Status::error(why);
    }

    /// Export this trace whatever the sampler said (a refused request), keeping its status
    /// unless nothing set one yet (then an error without a message).
    pub fn force(&mut self) {
        self.forced = true;
        if self.status == Status::Unset {
            self.status = Status::error("");
        }
    }

    /// The batch's own attributes on the server span: its memory space, size and priority.
    pub fn batch(&mut self, space: &str, size: usize, priority: Priority, ack: AckLevel) {
        self.attributes.extend([
            KeyValue::new("engram.memory_space", space.to_owned()),
            KeyValue::new("engram.batch.size", size as i64),
            KeyValue::new("engram.priority", priority.as_str()),
            KeyValue::new("engram.ack", ack.as_str()),
        ]);
    }

    /// The engine's answer to a batch parsed at `parsed`: the `validate`, `admit` and
    /// `log.append` stages, and the level and counts on the server span.
    pub fn admitted(&mut self, parsed: Instant, a: &Admission) {
        let t = a.times;
        self.stage("validate", parsed, t.validated);
        self.stage_with(
            "admit",
            t.validated,
            t.admitted,
            vec![KeyValue::new("engram.backpressure.level", a.level.as_str())],
        );
        self.stage("log.append", t.admitted, t.appended);
        self.attributes.extend([
            KeyValue::new("engram.backpressure.level", a.level.as_str()),
            KeyValue::new("engram.batch.accepted", a.accepted as i64),
            KeyValue::new("engram.batch.duplicates", a.duplicates as i64),
        ]);
    }

    /// A refused batch: what the engine (or the decoder) said, on the server span, and the
    /// trace forced out.
    pub fn refused(&mut self, e: &ApiError) {
        let outcome = e.reason.or(e.refusal.map(|r| r.as_str())).unwrap_or(code_name(e.code));
        self.attributes.push(KeyValue::new("engram.outcome", outcome));
        if let Some(level) = e.level {
            self.attributes.push(KeyValue::new("engram.backpressure.level", level.as_str()));
        }
        self.fail(e.message.clone());
    }

    /// The log sync a batch waited for, from `appended` to `synced`.
    pub fn synced(&mut self, appended: Instant, synced: Instant) {
        self.stage("log.sync", appended, synced);
    }

    /// The pool's part of a batch queued at `queued`: the `queue.wait` and `index.insert`
    /// stages (per batch: from the first of its observations a worker took up to the last
    /// one done). A batch with failed observations is traced whatever the sampler said.
    pub fn indexed(&mut self, queued: Instant, o: &IndexedOutcome) {
        if let (Some(started), Some(finished)) = (o.started, o.finished) {
            self.stage("queue.wait", queued, started);
            self.stage_with(
                "index.insert",
                started,
                finished,
                vec![KeyValue::new("engram.batch.indexed", o.indexed as i64)],
            );
        }
        if o.failed > 0 {
            self.attributes.push(KeyValue::new("engram.batch.failed", o.failed.min(i64::MAX as usize) as i64));
            self.fail(format!("{} observations could not be indexed", o.failed));
        }
    }

    /// A recall's stages after its request was parsed at `parsed`: `validate`, `search`
    /// (graph, tail and rescoring) and `content.fetch`.
    pub fn recalled(&mut self, parsed: Instant, t: &RecallTimes, hits: usize) {
        self.stage("validate", parsed, t.validated);
        self.stage("search", t.validated, t.searched);
        self.stage("content.fetch", t.searched, t.fetched);
        self.attributes.push(KeyValue::new("engram.recall.hits", hits as i64));
    }

    fn time(&self, t: Instant) -> SystemTime {
        match t.checked_duration_since(self.anchor) {
            Some(after) => self.wall + after,
            None => self.wall - (self.anchor - t),
        }
    }

    fn into_spans(self, inner: &Inner, ended: Instant) -> Vec<SpanData> {
        let flags = TraceFlags::SAMPLED;
        let state = if self.parent.is_valid() { self.parent.trace_state().clone() } else { TraceState::default() };
        let root = SpanContext::new(self.trace_id, self.span_id, flags, false, state.clone());
        let mut spans = Vec::with_capacity(1 + self.stages.len());
        for stage in &self.stages {
            let id = inner.ids.new_span_id();
            spans.push(SpanData {
                span_context: SpanContext::new(self.trace_id, id, flags, false, state.clone()),
                parent_span_id: self.span_id,
                parent_span_is_remote: false,
                span_kind: SpanKind::Internal,
                name: Cow::Borrowed(stage.name),
                start_time: self.time(stage.start),
                end_time: self.time(stage.end.min(ended.max(stage.start))),
                attributes: stage.attributes.clone(),
                dropped_attributes_count: 0,
                events: SpanEvents::default(),
                links: SpanLinks::default(),
                status: Status::Unset,
                instrumentation_scope: inner.scope.clone(),
            });
        }
        let (start_time, end_time) = (self.time(self.started), self.time(ended.max(self.started)));
        spans.push(SpanData {
            span_context: root,
            parent_span_id: if self.parent.is_valid() { self.parent.span_id() } else { SpanId::INVALID },
            parent_span_is_remote: self.parent.is_valid(),
            span_kind: self.kind,
            name: self.name,
            start_time,
            end_time,
            attributes: self.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: self.status,
            instrumentation_scope: inner.scope.clone(),
        });
        spans
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(sampled: bool) -> SpanContext {
        let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
        SpanContext::new(TraceId::from(7u128), SpanId::from(9u64), flags, true, TraceState::default())
    }

    /// Roots are decided by the ratio (a regression: an invalid parent once read as an
    /// unsampled one, so `parentbased_traceidratio` sampled no root at all); a valid parent's
    /// flag wins.
    #[test]
    fn the_ratio_decides_roots_and_the_parent_decides_its_children() {
        let ids = RandomIdGenerator::default();
        let kind = SpanKind::Server;
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.25)));
        let root = SpanContext::empty_context();
        let n = 20_000;
        let sampled = (0..n).filter(|_| head_sampled(&sampler, &root, ids.new_trace_id(), "b", &kind)).count();
        let share = sampled as f64 / n as f64;
        assert!((0.22..0.28).contains(&share), "a quarter of roots, got {share}");
        let all = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(1.0)));
        assert!(head_sampled(&all, &root, ids.new_trace_id(), "b", &kind));
        assert!(!head_sampled(&all, &parent(false), ids.new_trace_id(), "b", &kind), "the parent said no");
        let none = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.0)));
        assert!(head_sampled(&none, &parent(true), ids.new_trace_id(), "b", &kind), "the parent said yes");
        assert!(!head_sampled(&none, &root, ids.new_trace_id(), "b", &kind));
    }
}
