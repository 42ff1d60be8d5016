//! Authentication and authorization of HTTP requests: the route's [`Action`] (from
//! [`super::ROUTES`]), the key from the headers, the grant checked in the route's `{space}`
//! (percent-decoded, as the handler sees it), the request's [`Principal`] put in its extensions
//! (the space list filters by it), and an audit line for every admin action. Runs as a route
//! layer, inside the request metrics, so 401s and 403s are counted per route.

use super::{AppState, route};
use crate::auth::{Action, Principal};
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use engram_telemetry::events::Transport;
use std::net::SocketAddr;

/// The action of the route `req` matched (`Describe` for one [`super::ROUTES`] does not list).
fn action(req: &Request) -> Action {
    req.extensions()
        .get::<MatchedPath>()
        .and_then(|template| route(req.method().as_str(), template.as_str()))
        .map_or(Action::Describe, |r| r.action)
}

/// Authorizes one request around the handler.
pub async fn authorize(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let action = action(&req);
    let (mut parts, body) = req.into_parts();
    let space = if app.auth.is_enabled() || action.is_admin() {
        RawPathParams::from_request_parts(&mut parts, &app)
            .await
            .ok()
            .and_then(|p| p.iter().find(|(name, _)| *name == "space").map(|(_, v)| v.to_owned()))
    } else {
        None
    };
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let principal = match app.auth.authenticate(&parts.headers, Transport::Http, peer, action, space.as_deref()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let space = space.unwrap_or_default();
    if let Err(e) = principal.require(action, &space) {
        return e.into_response();
    }
    if action != Action::Probe
        && let Err(e) = principal.admit_request(action, &space)
    {
        return e.into_response();
    }
    parts.extensions.insert::<Principal>(principal.clone());
    let resp = next.run(Request::from_parts(parts, body)).await;
    if action.is_admin() {
        principal.audit_http(action, &space, resp.status());
    }
    resp
}
