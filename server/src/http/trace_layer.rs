//! Request traces for the HTTP API: the client's W3C trace context read from the headers, a
//! server span per request named by its route template (`POST /v1/spaces/{space}/recall`, as
//! the HTTP semantic conventions ask), the stages the handler records ([`TraceSlot`]), and the
//! trace returned in the `traceresponse` header. Every log line written while the request runs
//! carries its `trace_id` (a `tracing` span around the handler). Does nothing while tracing is
//! off, and nothing for probes and scrapes (`/health*`, `/metrics`): they are not requests
//! anyone follows, and at `always_on` they would crowd out the batches.

use super::AppState;
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
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    if route.as_deref().is_some_and(|r| r.starts_with("/health") || r == "/metrics") {
        return next.run(req).await;
    }
    let method = req.method().as_str().to_owned();
    let parent = context::extract(&Headers(req.headers()));
    let name = match &route {
        Some(r) => format!("{method} {r}"),
        None => method.clone(),
    };
    let Some(mut trace) = app.tracer.begin(name, SpanKind::Server, parent, started) else {
        return next.run(req).await;
    };
    trace.attribute(KeyValue::new("http.request.method", method));
    if let Some(route) = route {
        trace.attribute(KeyValue::new("http.route", route));
    }
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
