//! The HTTP API (axum): REST for spaces, observations and recall; health; `/metrics`.
//!
//! Every route is listed once in [`ROUTES`]; the request-metrics layer ([`metrics_layer`])
//! labels by those templates, never by raw paths.

mod handlers;
pub mod metrics_layer;
mod snapshots;
pub mod trace_layer;

use crate::config::ServerConfig;
use crate::trace::Tracer;
use axum::Router;
use axum::routing::get;
use engram_engine::Engine;
use engram_telemetry::events::HttpEvents;
use engram_telemetry::health::HealthSampler;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Instant;

/// Every (method, route template) served; the label values of the HTTP request metrics.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/spaces"),
    ("PUT", "/v1/spaces/{space}"),
    ("GET", "/v1/spaces/{space}"),
    ("DELETE", "/v1/spaces/{space}"),
    ("POST", "/v1/spaces/{space}/observations"),
    ("POST", "/v1/spaces/{space}/observations/delete"),
    ("GET", "/v1/spaces/{space}/observations/{id}"),
    ("DELETE", "/v1/spaces/{space}/observations/{id}"),
    ("POST", "/v1/spaces/{space}/recall"),
    ("POST", "/v1/spaces/{space}/snapshots"),
    ("GET", "/v1/spaces/{space}/snapshots"),
    ("GET", "/v1/spaces/{space}/snapshots/{name}"),
    ("DELETE", "/v1/spaces/{space}/snapshots/{name}"),
    ("POST", "/v1/spaces/{space}/snapshots/restore"),
    ("GET", "/health"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/health/detailed"),
    ("GET", "/metrics"),
];

/// State shared by the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// HTTP request metrics.
    pub http_events: HttpEvents,
    /// When the server started.
    pub started: Instant,
    /// Body size limit in bytes.
    pub max_request_bytes: usize,
    /// Largest snapshot upload, bytes (`storage.max_snapshot_bytes`).
    pub max_snapshot_bytes: u64,
    /// The health score sampler (its latest score is in `/health/detailed`).
    pub health: Arc<Mutex<HealthSampler>>,
    /// Where request traces go (off unless `[tracing]` names an endpoint).
    pub tracer: Tracer,
}

/// The router with every route and the HTTP listener's layers ([`crate::layers::http`]).
pub fn router(engine: Arc<Engine>, health: Arc<Mutex<HealthSampler>>, config: &ServerConfig, tracer: Tracer) -> Router {
    let state = AppState {
        http_events: HttpEvents::register(engine.telemetry(), ROUTES),
        engine,
        started: Instant::now(),
        max_request_bytes: config.max_request_bytes,
        max_snapshot_bytes: config.storage.max_snapshot_bytes,
        health,
        tracer,
    };
    let routes = Router::new()
        .route("/v1/spaces", get(handlers::list_spaces))
        .route("/v1/spaces/{space}", get(handlers::get_space).put(handlers::create_space).delete(handlers::drop_space))
        .route("/v1/spaces/{space}/observations", axum::routing::post(handlers::post_observations))
        .route("/v1/spaces/{space}/observations/delete", axum::routing::post(handlers::delete_observations))
        .route(
            "/v1/spaces/{space}/observations/{id}",
            get(handlers::get_observation).delete(handlers::delete_observation),
        )
        .route("/v1/spaces/{space}/recall", axum::routing::post(handlers::recall))
        .route("/v1/spaces/{space}/snapshots", get(snapshots::list).post(snapshots::create))
        .route("/v1/spaces/{space}/snapshots/restore", axum::routing::post(snapshots::restore))
        .route("/v1/spaces/{space}/snapshots/{name}", get(snapshots::download).delete(snapshots::delete))
        .route("/health", get(handlers::health))
        .route("/health/live", get(handlers::live))
        .route("/health/ready", get(handlers::ready))
        .route("/health/detailed", get(handlers::detailed))
        .route("/metrics", get(handlers::metrics))
        .fallback(handlers::not_found);
    crate::layers::http(routes, state)
}
