//! Request traces for the HTTP API: the client's W3C trace context read from the headers, a
//! server span per request named by its route template (`POST /v1/spaces/{space}/recall`, as
//! the HTTP semantic conventions ask), the stages the handler records ([`TraceSlot`]), and the
//! trace returned in the `traceresponse` header. Every log line written while the request runs
//! carries its `trace_id` (a `tracing` span around the handler). Does nothing while tracing is
//! off, and nothing for probes and scrapes (`/health*`, `/metrics`): they are not requests
//! anyone follows, and at `always_on` they would crowd out the batches.

use super::{AppState, route};
use crate::auth::Action;
use crate::trace::TraceSlot;
use crate::trace::context::{self, Headers, TRACERESPONSE};
use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use std::time::Instant;
use tracing::Instrument;

/// Traces one request around the handler.
pub async fn trace(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    if !app.tracer.is_on() {
        return next.run(req).await;
    }
    let started = Instant::now();
    // The matched route's static names: nothing is allocated to name the span.
    let route = req.extensions().get::<MatchedPath>().and_then(|p| route(req.method().as_str(), p.as_str()));
    let Some(route) = route else { return next.run(req).await };
    if matches!(route.action, Action::Probe | Action::ReadMetrics) {
        return next.run(req).await;
    }
    let parent = context::extract(&Headers(req.headers()));
    let Some(mut trace) = app.tracer.begin(route.span_name, SpanKind::Server, parent, started) else {
        return next.run(req).await;
    };
    trace.attribute(KeyValue::new("http.request.method", route.method));
    trace.attribute(KeyValue::new("http.route", route.template));
    trace.attribute(KeyValue::new("url.scheme", "http"));
    let span = tracing::info_span!("request", trace_id = %format_args!("{:032x}", trace.trace_id()));
    let slot = TraceSlot::new(trace);
    req.extensions_mut().insert(slot.clone());
    let mut resp = next.run(req).instrument(span).await;
    let ended = Instant::now();
    if let Some(mut trace) = slot.take() {
        let status = resp.status();
        trace.attribute(KeyValue::new("http.response.status_code", i64::from(status.as_u16())));
        if status.is_server_error() || status.is_client_error() {
            // Refused or failed: always traced (the handler may have said why already).
            trace.force();
        }
        if let Ok(v) = HeaderValue::from_str(&trace.traceresponse()) {
            resp.headers_mut().insert(TRACERESPONSE, v);
        }
        app.tracer.finish(trace, ended);
    }
    resp
}
