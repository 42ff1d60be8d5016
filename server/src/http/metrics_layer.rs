//! Request metrics for the HTTP API: count by status, duration, body sizes and in-flight, per
//! (method, route template), and refusals by reason (from the [`Refusal`] an `ApiError` puts in
//! the response's extensions). Runs as a route layer, so the matched template is known.

use super::AppState;
use crate::api_error::Refusal;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::Response;
use http_body::Body as _;
use std::time::Instant;

/// Records one request's metrics around the handler.
pub async fn track(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned(); // an Arc clone, no allocation
    let method = req.method().clone();
    let Some(series) = route.as_ref().and_then(|r| app.http_events.route(method.as_str(), r.as_str())) else {
        return next.run(req).await;
    };
    let request_bytes = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    series.started();
    let started = Instant::now();
    let resp = next.run(req).await;
    let response_bytes = resp.body().size_hint().exact().unwrap_or_else(|| resp.body().size_hint().lower());
    series.finished(resp.status().as_u16(), started.elapsed(), request_bytes, response_bytes);
    if let Some(refusal) = resp.extensions().get::<Refusal>() {
        app.http_events.refused(*refusal);
    }
    resp
}
