//! The HTTP API (axum): REST for spaces, observations and recall; health; `/metrics`.
//!
//! Every route is listed once in [`ROUTES`] with the action it performs; the request-metrics
//! layer ([`metrics_layer`]) labels by those templates, never by raw paths, and the auth layer
//! ([`auth_layer`]) checks the grant each action needs.

pub mod auth_layer;
pub(crate) mod handlers;
pub mod metrics_layer;
pub mod openapi;
mod snapshots;
pub mod trace_layer;

use crate::auth::{Action, Auth};
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

/// A route served: its method and template (the label values of the HTTP request metrics), its
/// span name, and what it asks to do (the grant it needs when auth is on).
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// `GET`, `PUT`, ...
    pub method: &'static str,
    /// The axum template, e.g. `/v1/spaces/{space}/recall`.
    pub template: &'static str,
    /// `{method} {template}`: the server span's name (OpenTelemetry HTTP semantic conventions).
    pub span_name: &'static str,
    /// What the route does, for authorization and the audit log.
    pub action: Action,
}

macro_rules! route {
    ($method:literal, $template:literal, $action:ident) => {
        Route {
            method: $method,
            template: $template,
            span_name: concat!($method, " ", $template),
            action: Action::$action,
        }
    };
}

/// Every route served, once.
pub const ROUTES: &[Route] = &[
    route!("GET", "/v1/spaces", ListSpaces),
    route!("PUT", "/v1/spaces/{space}", CreateSpace),
    route!("GET", "/v1/spaces/{space}", GetSpace),
    route!("DELETE", "/v1/spaces/{space}", DropSpace),
    route!("POST", "/v1/spaces/{space}/observations", WriteObservations),
    route!("POST", "/v1/spaces/{space}/observations/delete", DeleteObservations),
    route!("GET", "/v1/spaces/{space}/observations/{id}", GetObservation),
    route!("DELETE", "/v1/spaces/{space}/observations/{id}", DeleteObservations),
    route!("POST", "/v1/spaces/{space}/recall", Recall),
    route!("POST", "/v1/spaces/{space}/snapshots", CreateSnapshot),
    route!("GET", "/v1/spaces/{space}/snapshots", ListSnapshots),
    route!("GET", "/v1/spaces/{space}/snapshots/{name}", DownloadSnapshot),
    route!("DELETE", "/v1/spaces/{space}/snapshots/{name}", DeleteSnapshot),
    route!("POST", "/v1/spaces/{space}/snapshots/restore", RestoreSnapshot),
    route!("GET", "/health", Probe),
    route!("GET", "/health/live", Probe),
    route!("GET", "/health/ready", Probe),
    route!("GET", "/health/detailed", ReadMetrics),
    route!("GET", "/metrics", ReadMetrics),
    route!("GET", "/openapi.json", Probe),
];

/// The route `method` and matched `template` name (`None` for a pair [`ROUTES`] does not list).
pub fn route(method: &str, template: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.method == method && r.template == template)
}

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
    /// API keys (off unless `[auth]` configures some).
    pub auth: Auth,
}

/// The router with every route and the HTTP listener's layers ([`crate::layers::http`]).
pub fn router(
    engine: Arc<Engine>,
    health: Arc<Mutex<HealthSampler>>,
    config: &ServerConfig,
    tracer: Tracer,
    auth: Auth,
) -> Router {
    let routes: Vec<_> = ROUTES.iter().map(|r| (r.method, r.template)).collect();
    let state = AppState {
        http_events: HttpEvents::register(engine.telemetry(), &routes),
        engine,
        started: Instant::now(),
        max_request_bytes: config.max_request_bytes,
        max_snapshot_bytes: config.storage.max_snapshot_bytes,
        health,
        tracer,
        auth,
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
        .route("/openapi.json", get(handlers::openapi))
        .fallback(handlers::not_found);
    crate::layers::http(routes, state)
}
