//! Every tower layer around the two listeners, built here and only here, so a policy that
//! concerns every request is added once for both protocols.
//!
//! | listener | layers, outermost first |
//! |---|---|
//! | both | [`shared`]: none yet (API keys are read by each protocol's own layer: the grant they check depends on what a route or method names) |
//! | HTTP ([`http`]) | shared; the body limit (`max_request_bytes`, 413); per matched route, the request metrics (`http::metrics_layer::track`, labelled by route template), the request's trace (`http::trace_layer::trace`: W3C context in, `traceresponse` out), then its authorization (`http::auth_layer::authorize`: 401 / 403, audit) |
//! | gRPC ([`grpc`]) | shared; the unary status fix (`grpc::codec::fix_unary_status`: `RESOURCE_EXHAUSTED` for an oversized message, refusal counts); authentication (`grpc::auth::Authenticate`: `UNAUTHENTICATED`; each method checks its grant) |
//!
//! Connection-level limits (the connection cap, header-read and idle timeouts) are not layers:
//! they act before a request exists, in [`crate::listen`].

use crate::auth::Auth;
use crate::grpc::auth as grpc_auth;
use crate::grpc::codec;
use crate::http::{AppState, auth_layer, metrics_layer, trace_layer};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use engram_telemetry::events::GrpcEvents;
use std::convert::Infallible;
use tower::ServiceBuilder;
use tower::layer::layer_fn;
use tower::layer::util::Identity;
use tower::util::BoxCloneSyncServiceLayer;

/// The layers both listeners apply before their own: the place for cross-protocol policy.
/// Empty today (an identity layer).
pub(crate) fn shared() -> ServiceBuilder<Identity> {
    ServiceBuilder::new()
}

/// `routes` (every route and the fallback) with the HTTP listener's layers and `state`.
pub(crate) fn http(routes: Router<AppState>, state: AppState) -> Router {
    let max_request_bytes = state.max_request_bytes;
    routes
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth_layer::authorize))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), trace_layer::trace))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), metrics_layer::track))
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .layer(shared())
        .with_state(state)
}

/// The gRPC listener's layers around tonic's routes (boxed: a request costs one allocation
/// and a dynamic call, per call or stream, never per observation).
pub(crate) type GrpcLayers = BoxCloneSyncServiceLayer<
    tonic::service::Routes,
    axum::http::Request<tonic::body::Body>,
    axum::http::Response<tonic::body::Body>,
    Infallible,
>;

/// The gRPC listener's layers; refusals are counted in `events`.
pub(crate) fn grpc(events: GrpcEvents, auth: Auth) -> GrpcLayers {
    let auth_events = events.clone();
    BoxCloneSyncServiceLayer::new(
        ServiceBuilder::new()
            .layer(shared())
            .map_response(move |response| codec::fix_unary_status(&events, response))
            .layer(layer_fn(move |inner| grpc_auth::Authenticate::new(inner, auth.clone(), auth_events.clone()))),
    )
}
