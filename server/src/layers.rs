//! Every tower layer around the two listeners, built here and only here, so a policy that
//! concerns every request (API-key authentication next) is added once for both protocols.
//!
//! | listener | layers, outermost first |
//! |---|---|
//! | both | [`shared`]: none yet; authentication goes here, in front of either protocol's own |
//! | HTTP ([`http`]) | shared; the body limit (`max_request_bytes`, 413); per matched route, the request metrics (`http::metrics_layer::track`, labelled by route template), then the request's trace (`http::trace_layer::trace`: W3C context in, `traceresponse` out) |
//! | gRPC ([`grpc`]) | shared; the unary status fix (`grpc::codec::fix_unary_status`: `RESOURCE_EXHAUSTED` for an oversized message, refusal counts) |
//!
//! Connection-level limits (the connection cap, header-read and idle timeouts) are not layers:
//! they act before a request exists, in [`crate::listen`].

use crate::grpc::codec;
use crate::http::{AppState, metrics_layer, trace_layer};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use engram_telemetry::events::GrpcEvents;
use std::convert::Infallible;
use tower::ServiceBuilder;
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
pub(crate) fn grpc(events: GrpcEvents) -> GrpcLayers {
    BoxCloneSyncServiceLayer::new(
        ServiceBuilder::new().layer(shared()).map_response(move |response| codec::fix_unary_status(&events, response)),
    )
}
