//! HTTP handlers. Bodies are parsed with `serde_path_to_error`, so a bad field is named by its
//! path (`observations[2].embedding[5]`); engine errors map through [`ApiError`].

use super::AppState;
use crate::api_error::{ApiError, Refusal, parse_ack_level};
use crate::auth::{Action, Principal};
use crate::health::{self, DetailedHealth, HealthStatus};
use crate::session;
use crate::trace::TraceSlot;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engram_engine::{AckLevel, BackpressureLevel, Batch, RecallHit, SpaceInfo, SpaceParams};
use engram_telemetry::events::Transport;
use opentelemetry::KeyValue;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Instant;

/// Header that tells clients the space's backpressure level on every admission response.
pub const BACKPRESSURE_HEADER: &str = "x-engram-backpressure";

fn body(bytes: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    bytes.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(limit)
        } else {
            ApiError::malformed("body", r.body_text())
        }
    })
}

/// Decodes `bytes` as the JSON body of a REST route, as its handler does (for the fuzz
/// targets): `which` picks the body (0 observations, 1 space parameters, 2 recall, 3 delete).
///
/// # Errors
/// The handler's answer to a body it refuses.
#[cfg(feature = "fuzzing")]
pub(crate) fn decode_body(which: u8, bytes: &[u8]) -> Result<(), ApiError> {
    match which % 4 {
        0 => parse_json::<Batch>(bytes).map(drop),
        1 => parse_json::<SpaceParams>(bytes).map(drop),
        2 => parse_json::<RecallBody>(bytes).map(drop),
        _ => parse_json::<DeleteBody>(bytes).map(drop),
    }
}

/// Parses a JSON body, naming the field of the first error.
pub(super) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::malformed(field, inner)
        } else {
            ApiError::invalid(field, inner)
        }
    })
}

/// `GET /v1/spaces`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct SpaceList {
    spaces: Vec<SpaceInfo>,
}

/// The spaces the request's key may read (every space while auth is off).
pub(super) async fn list_spaces(State(app): State<AppState>, Extension(principal): Extension<Principal>) -> Response {
    let mut spaces = app.engine.list_spaces();
    spaces.retain(|s| principal.may(Action::GetSpace, &s.name));
    Json(SpaceList { spaces }).into_response()
}

pub(super) async fn get_space(State(app): State<AppState>, Path(space): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(app.engine.describe_space(&space)?).into_response())
}

pub(super) async fn create_space(
    State(app): State<AppState>,
    Path(space): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let params: SpaceParams = parse_json(&body(bytes, app.max_request_bytes)?)?;
    let (info, created) = app.engine.create_space(&space, params)?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(info)).into_response())
}

pub(super) async fn drop_space(State(app): State<AppState>, Path(space): Path<String>) -> Result<Response, ApiError> {
    app.engine.drop_space(&space)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn get_observation(
    State(app): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    match app.engine.get_observation(&space, id)? {
        Some(o) => Ok(Json(o).into_response()),
        None => Err(ApiError::not_found("id", format!("memory space `{space}` holds no observation {id}"))),
    }
}

/// The answer to a batch of observations: what was accepted, at which level it is acknowledged.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct AdmissionBody {
    status: &'static str,
    accepted: usize,
    duplicates: usize,
    #[serde(skip_serializing_if = "is_zero")]
    replaced: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    indexed: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed: Option<usize>,
    backpressure: BackpressureLevel,
}

/// The ack level of `?wait=accepted|durable|indexed` (default durable).
fn wait_level(query: Option<&str>) -> Result<AckLevel, ApiError> {
    let mut wait = AckLevel::Durable;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("wait", value)) => wait = parse_ack_level("wait", value)?,
            _ => {
                return Err(ApiError::invalid("query", format!("unknown parameter `{pair}`, expected `wait`")));
            }
        }
    }
    Ok(wait)
}

pub(super) async fn post_observations(
    State(app): State<AppState>,
    Path(space): Path<String>,
    RawQuery(query): RawQuery,
    slot: Option<Extension<TraceSlot>>,
    Extension(principal): Extension<Principal>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let slot = slot.as_deref();
    let wait = wait_level(query.as_deref())?;
    let batch = body(bytes, app.max_request_bytes)
        .and_then(|b| parse_json::<Batch>(&b))
        .and_then(|b| principal.admit_observations(b.observations.len(), &space).map(|()| b));
    let parsed = Instant::now();
    TraceSlot::record(slot, |t| {
        t.parsed(parsed);
        if let Ok(b) = &batch {
            t.batch(&space, b.observations.len(), b.priority, wait);
        }
    });
    let admission = session::submit(&app.engine, &space, batch, wait).inspect_err(|e| {
        TraceSlot::record(slot, |t| t.refused(e));
    })?;
    TraceSlot::record(slot, |t| t.admitted(parsed, &admission));
    let (level, times) = (admission.level, admission.times);
    let mut body = AdmissionBody {
        status: "accepted",
        accepted: admission.accepted,
        duplicates: admission.duplicates,
        replaced: admission.replaced,
        indexed: None,
        failed: None,
        backpressure: level,
    };
    let mut status = StatusCode::ACCEPTED;
    if let Some(durable) = admission.durable {
        // INDEXED implies DURABLE: an observation is never acknowledged searchable before it
        // is recorded.
        let synced = durable.wait().await.map_err(ApiError::from);
        TraceSlot::record(slot, |t| {
            t.synced(times.appended, Instant::now());
            if let Err(e) = &synced {
                t.refused(e);
            }
        });
        synced?;
        body.status = "durable";
    }
    if let Some(waiter) = admission.indexed {
        let outcome = waiter.wait().await;
        TraceSlot::record(slot, |t| t.indexed(times.queued, &outcome));
        body.status = "indexed";
        body.indexed = Some(outcome.indexed);
        body.failed = Some(outcome.failed);
        status = StatusCode::OK;
    }
    let answering = Instant::now();
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut().insert(BACKPRESSURE_HEADER, HeaderValue::from_static(level.as_str()));
    TraceSlot::record(slot, |t| t.stage("ack", answering, Instant::now()));
    Ok(resp)
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The answer to a delete: ids deleted and ids the space did not hold.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct DeletionBody {
    status: &'static str,
    deleted: usize,
    not_found: usize,
    backpressure: BackpressureLevel,
}

/// The response to a delete: 202 once accepted or durable, 200 once indexed (every id out of
/// the index), as for inserts.
fn deletion_response(d: session::Deleted) -> Response {
    let status = if d.status == AckLevel::Indexed { StatusCode::OK } else { StatusCode::ACCEPTED };
    let body =
        DeletionBody { status: d.status.as_str(), deleted: d.deleted, not_found: d.not_found, backpressure: d.level };
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut().insert(BACKPRESSURE_HEADER, HeaderValue::from_static(d.level.as_str()));
    resp
}

/// An id in a path: 0 to 2^64 - 2.
fn path_id(id: &str) -> Result<u64, ApiError> {
    id.parse().map_err(|e| ApiError::invalid("id", format!("`{id}` is not an id (0 to 2^64 - 2): {e}")))
}

/// `DELETE /v1/spaces/{space}/observations/{id}?wait=`: deletes one id (idempotent: an id the
/// space does not hold answers with `not_found: 1`).
pub(super) async fn delete_observation(
    State(app): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let wait = wait_level(query.as_deref())?;
    let id = path_id(&id)?;
    Ok(deletion_response(session::delete(&app.engine, &space, vec![id], wait).await?))
}

/// Ids to delete (1 to the engine's `max_batch_observations`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DeleteBody {
    #[schema(min_items = 1)]
    ids: Vec<u64>,
}

/// `POST /v1/spaces/{space}/observations/delete?wait=` with `{"ids": [...]}`: deletes a batch.
pub(super) async fn delete_observations(
    State(app): State<AppState>,
    Path(space): Path<String>,
    RawQuery(query): RawQuery,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let wait = wait_level(query.as_deref())?;
    let req: DeleteBody = parse_json(&body(bytes, app.max_request_bytes)?)?;
    Ok(deletion_response(session::delete(&app.engine, &space, req.ids, wait).await?))
}

/// A recall query: an embedding of the space's dimension, how many hits (`k`, default 10), the
/// HNSW `ef_search` (default the space's) and whether each hit carries its content
/// (`with_content`, default true; false answers ids and scores without reading the store).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RecallBody {
    #[schema(min_items = 1)]
    embedding: Vec<f32>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    k: Option<usize>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 4096)]
    ef_search: Option<usize>,
    #[serde(default)]
    with_content: Option<bool>,
}

pub(super) async fn recall(
    State(app): State<AppState>,
    Path(space): Path<String>,
    slot: Option<Extension<TraceSlot>>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let slot = slot.as_deref();
    let req: RecallBody = parse_json(&body(bytes, app.max_request_bytes)?)?;
    let parsed = Instant::now();
    TraceSlot::record(slot, |t| {
        t.parsed(parsed);
        t.attribute(KeyValue::new("engram.memory_space", space.clone()));
    });
    let (hits, times) =
        session::recall(&app.engine, space, req.embedding, req.k, req.ef_search, req.with_content.unwrap_or(true))
            .await
            .inspect_err(|e| TraceSlot::record(slot, |t| t.refused(e)))?;
    TraceSlot::record(slot, |t| t.recalled(parsed, &times, hits.len()));
    Ok(Json(RecallAnswer { hits }).into_response())
}

/// A recall's answer: the nearest observations, best first.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct RecallAnswer {
    hits: Vec<RecallHit>,
}

/// `GET /openapi.json`: the OpenAPI 3.1 document of this API.
pub(super) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], super::openapi::json()).into_response()
}

pub(super) async fn health(State(app): State<AppState>) -> Response {
    let (status, reasons) = health::assess(&app.engine.status());
    let code = if status == HealthStatus::Critical { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (code, Json(json!({ "status": status, "reasons": reasons }))).into_response()
}

pub(super) async fn live() -> Response {
    Json(json!({ "status": "alive" })).into_response()
}

pub(super) async fn ready(State(app): State<AppState>) -> Response {
    let s = app.engine.status();
    if s.closing || s.workers_alive == 0 || s.recovery.recovering {
        let why = if s.closing {
            "shutting down"
        } else if s.recovery.recovering {
            "recovering memory spaces from the log"
        } else {
            "no worker thread is running"
        };
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "not_ready", "reason": why })))
            .into_response();
    }
    Json(json!({ "status": "ready" })).into_response()
}

pub(super) async fn detailed(State(app): State<AppState>) -> Response {
    let engine = app.engine.status();
    let (status, reasons) = health::assess(&engine);
    Json(DetailedHealth {
        status,
        reasons,
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: app.started.elapsed().as_secs_f64(),
        health_score: app.health.lock().latest(),
        engine,
        spaces: app.engine.list_spaces(),
    })
    .into_response()
}

pub(super) async fn metrics(State(app): State<AppState>) -> Response {
    let text = app.engine.telemetry().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// 404 for a path no route serves; with auth on, 401 first for a request without a valid key
/// (an unknown client learns nothing of the routes).
pub(super) async fn not_found(State(app): State<AppState>, req: axum::extract::Request) -> ApiError {
    let peer = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0);
    if let Err(e) = app.auth.authenticate(req.headers(), Transport::Http, peer, Action::Describe, None) {
        app.http_events.refused(Refusal::Unauthenticated);
        return e;
    }
    let e = ApiError::unknown_route();
    // Fallback responses skip the route-level metrics layer: count the refusal here.
    app.http_events.refused(Refusal::UnknownRoute);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_the_path() {
        let e = parse_json::<Batch>(br#"{"priority":"urgent","observations":[]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("priority"));
        assert!(e.message.contains("unknown variant `urgent`"), "{}", e.message);
        let e = parse_json::<Batch>(br#"{"observations":[{"id":1,"embedding":[1.0,"x"]}]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("observations[0].embedding[1]"), "{}", e.message);
        let e = parse_json::<Batch>(b"{not json").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn wait_parameter() {
        assert_eq!(wait_level(None).unwrap(), AckLevel::Durable);
        assert_eq!(wait_level(Some("wait=indexed")).unwrap(), AckLevel::Indexed);
        assert_eq!(wait_level(Some("wait=accepted")).unwrap(), AckLevel::Accepted);
        assert_eq!(wait_level(Some("wait=durable")).unwrap(), AckLevel::Durable);
        let e = wait_level(Some("wait=soon")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("wait"));
        assert!(e.message.contains("`durable`"), "{}", e.message);
        assert_eq!(wait_level(Some("when=now")).unwrap_err().field.as_deref(), Some("query"));
    }
}
