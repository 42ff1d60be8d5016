//! The OpenAPI 3.1 document of the REST API, built with `utoipa` and served at
//! `GET /openapi.json` (kept in `docs/openapi.json`).
//!
//! Request and response schemas are derived from the types the handlers parse and answer with
//! (the engine's `Batch`, `SpaceParams`, `SpaceInfo`, `RecallHit`, ..., and the error body
//! [`crate::api_error`] writes). Each route of [`super::ROUTES`] has one operation here; a test
//! holds the two lists equal. Every operation but the probes and this document carries the
//! API-key security requirement (`Authorization: Bearer KEY` or `api-key: KEY`) and the error
//! answers it can give, each with the `ErrorBody` schema.

use super::handlers::{AdmissionBody, DeleteBody, DeletionBody, RecallAnswer, RecallBody, SpaceList};
use super::snapshots::{RestoreByName, SnapshotDeleted, SnapshotList};
use crate::api_error::{Body as ErrorBody, Inner as Error};
use crate::auth::Action;
use engram_engine::{
    BackpressureLevel, Batch, IndexKind, Metric, Observation, Priority, Quantization, RecallHit, SnapshotInfo,
    SpaceInfo, SpaceParams, StoredObservation,
};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Engram Stream REST API",
        description = "Memory spaces of embeddings with optional text: ingest with acknowledgement levels and backpressure, recall, delete, snapshots, health and metrics. docs/api.md explains each route; docs/security.md the API keys.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        list_spaces, create_space, get_space, drop_space, post_observations, delete_observations,
        get_observation, delete_observation, recall, create_snapshot, list_snapshots, download_snapshot,
        delete_snapshot, restore_snapshot, health, live, ready, detailed, metrics, openapi_json,
    ),
    components(schemas(
        Batch, Observation, Priority, SpaceParams, Metric, IndexKind, Quantization, SpaceInfo, SpaceList,
        BackpressureLevel, AdmissionBody, DeleteBody, DeletionBody, RecallBody, RecallAnswer, RecallHit,
        StoredObservation, SnapshotInfo, SnapshotList, SnapshotDeleted, RestoreByName, ErrorBody, Error,
    )),
    modifiers(&KeysAndErrors),
)]
pub struct ApiDoc;

/// The document as JSON, pretty-printed (what `/openapi.json` serves and docs/openapi.json
/// holds), built once.
pub fn json() -> &'static str {
    static DOC: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    });
    &DOC
}

/// Adds the two ways to send a key as security schemes, requires one of them on every operation
/// but the open ones ([`Action::Probe`] in [`super::ROUTES`]: the probes and this document), and
/// adds the error answers each operation can give.
struct KeysAndErrors;

impl Modify for KeysAndErrors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key: `Authorization: Bearer egk_...`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "api-key",
                "The same key in an `api-key` header",
            ))),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            let methods = [
                ("GET", &mut item.get),
                ("PUT", &mut item.put),
                ("POST", &mut item.post),
                ("DELETE", &mut item.delete),
            ];
            for (method, op) in methods {
                let Some(op) = op else { continue };
                let open = super::route(method, path).is_some_and(|r| r.action == Action::Probe);
                add_errors(op, open, path.contains("{space}"));
                if !open {
                    op.security = Some(vec![
                        SecurityRequirement::new("bearer", Vec::<String>::new()),
                        SecurityRequirement::new("api_key", Vec::<String>::new()),
                    ]);
                }
            }
        }
    }
}

/// The error answers of an operation: bad input, auth, a missing space, too large, rate limits
/// and backpressure, shutdown, failures.
fn add_errors(op: &mut Operation, open: bool, names_space: bool) {
    let mut errors: Vec<(&str, &str)> = vec![("500", "An internal failure (`INTERNAL`)")];
    if !open {
        errors.extend([
            ("400", "Bad input: `error.field` names the field and `error.message` the reason"),
            ("401", "No API key, or one no configured key matches (`WWW-Authenticate: Bearer`)"),
            ("403", "The key lacks the grant this operation needs in this memory space (the same for a space that does not exist)"),
            ("413", "The body is larger than `max_request_bytes`"),
            ("429", "Over the key's rate limit (`error.reason` `rate_limited`) or refused by backpressure; `Retry-After` says when to retry"),
            ("503", "Shutting down, or the durable log is unavailable; `Retry-After` when a retry may succeed"),
        ]);
    }
    if names_space {
        errors.push(("404", "No such memory space (or observation, or snapshot)"));
    }
    for (status, description) in errors {
        if op.responses.responses.contains_key(status) {
            continue;
        }
        let response = ResponseBuilder::new()
            .description(description)
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
            .build();
        op.responses.responses.insert(status.to_owned(), response.into());
    }
}

// One item per route: the documentation of the handler in `handlers` or `snapshots`.

#[utoipa::path(get, path = "/v1/spaces", tag = "spaces",
    responses((status = 200, description = "The memory spaces the key may read", body = SpaceList)))]
#[allow(dead_code)]
fn list_spaces() {}

#[utoipa::path(put, path = "/v1/spaces/{space}", tag = "spaces", params(("space" = String, Path, description = "Memory space name", pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    request_body = SpaceParams,
    responses((status = 201, description = "Created", body = SpaceInfo), (status = 200, description = "It exists with these parameters", body = SpaceInfo),
              (status = 409, description = "It exists with other parameters", body = ErrorBody)))]
#[allow(dead_code)]
fn create_space() {}

#[utoipa::path(get, path = "/v1/spaces/{space}", tag = "spaces", params(("space" = String, Path, description = "Memory space name", pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    responses((status = 200, description = "The space", body = SpaceInfo)))]
#[allow(dead_code)]
fn get_space() {}

#[utoipa::path(delete, path = "/v1/spaces/{space}", tag = "spaces", params(("space" = String, Path, description = "Memory space name", pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    responses((status = 204, description = "Dropped with everything it held")))]
#[allow(dead_code)]
fn drop_space() {}

#[utoipa::path(post, path = "/v1/spaces/{space}/observations", tag = "observations",
    params(("space" = String, Path, description = "Memory space name", pattern = "^[A-Za-z0-9_.-]{1,64}$"),
           ("wait" = Option<String>, Query, description = "Acknowledgement level: `accepted`, `durable` (default) or `indexed`", pattern = "^(accepted|durable|indexed)$")),
    request_body = Batch,
    responses((status = 202, description = "Accepted (or durable)", body = AdmissionBody, headers(("x-engram-backpressure" = String, description = "The space's backpressure level"))),
              (status = 200, description = "Indexed: searchable", body = AdmissionBody, headers(("x-engram-backpressure" = String, description = "The space's backpressure level")))))]
#[allow(dead_code)]
fn post_observations() {}

#[utoipa::path(post, path = "/v1/spaces/{space}/observations/delete", tag = "observations",
    params(("space" = String, Path, description = "Memory space name", pattern = "^[A-Za-z0-9_.-]{1,64}$"),
           ("wait" = Option<String>, Query, description = "Acknowledgement level: `accepted`, `durable` (default) or `indexed`", pattern = "^(accepted|durable|indexed)$")),
    request_body = DeleteBody,
    responses((status = 202, description = "Accepted (or durable)", body = DeletionBody), (status = 200, description = "Indexed: out of the index", body = DeletionBody)))]
#[allow(dead_code)]
fn delete_observations() {}

#[utoipa::path(get, path = "/v1/spaces/{space}/observations/{id}", tag = "observations",
    params(("space" = String, Path, description = "Memory space name", pattern = "^[A-Za-z0-9_.-]{1,64}$"), ("id" = u64, Path, description = "Observation id, 0 to 2^64 - 2")),
    responses((status = 200, description = "The observation's id and content", body = StoredObservation)))]
#[allow(dead_code)]
fn get_observation() {}

#[utoipa::path(delete, path = "/v1/spaces/{space}/observations/{id}", tag = "observations",
    params(("space" = String, Path, description = "Memory space name", pattern = "^[A-Za-z0-9_.-]{1,64}$"), ("id" = u64, Path, description = "Observation id, 0 to 2^64 - 2"),
           ("wait" = Option<String>, Query, description = "Acknowledgement level: `accepted`, `durable` (default) or `indexed`", pattern = "^(accepted|durable|indexed)$")),
    responses((status = 202, description = "Accepted (or durable)", body = DeletionBody), (status = 200, description = "Indexed: out of the index", body = DeletionBody)))]
#[allow(dead_code)]
fn delete_observation() {}

#[utoipa::path(post, path = "/v1/spaces/{space}/recall", tag = "recall", params(("space" = String, Path, description = "Memory space name", pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    request_body = RecallBody,
    responses((status = 200, description = "The nearest observations, best first", body = RecallAnswer)))]
#[allow(dead_code)]
fn recall() {}

#[utoipa::path(post, path = "/v1/spaces/{space}/snapshots", tag = "snapshots", params(("space" = String, Path, description = "Memory space name", pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    responses((status = 201, description = "Written", body = SnapshotInfo)))]
#[allow(dead_code)]
fn create_snapshot() {}

#[utoipa::path(get, path = "/v1/spaces/{space}/snapshots", tag = "snapshots", params(("space" = String, Path, description = "Memory space name", pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    responses((status = 200, description = "The space's snapshots, oldest first", body = SnapshotList)))]
#[allow(dead_code)]
fn list_snapshots() {}

#[utoipa::path(get, path = "/v1/spaces/{space}/snapshots/{name}", tag = "snapshots",
    params(("space" = String, Path, description = "Memory space name", pattern = "^[A-Za-z0-9_.-]{1,64}$"), ("name" = String, Path, description = "Snapshot file name", pattern = "^[A-Za-z0-9_.-]+\\.snapshot$")),
    responses((status = 200, description = "The snapshot file", content_type = "application/octet-stream", body = Vec<u8>)))]
#[allow(dead_code)]
fn download_snapshot() {}

#[utoipa::path(delete, path = "/v1/spaces/{space}/snapshots/{name}", tag = "snapshots",
    params(("space" = String, Path, description = "Memory space name", pattern = "^[A-Za-z0-9_.-]{1,64}$"), ("name" = String, Path, description = "Snapshot file name", pattern = "^[A-Za-z0-9_.-]+\\.snapshot$")),
    responses((status = 200, description = "Removed", body = SnapshotDeleted)))]
#[allow(dead_code)]
fn delete_snapshot() {}

#[utoipa::path(post, path = "/v1/spaces/{space}/snapshots/restore", tag = "snapshots",
    params(("space" = String, Path, description = "The memory space to create", pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    request_body(content((RestoreByName = "application/json"), (Vec<u8> = "application/octet-stream")),
        description = "A snapshot this server holds, by name, or a snapshot file uploaded as the body"),
    responses((status = 201, description = "Created from the snapshot and searchable", body = SpaceInfo),
              (status = 409, description = "The space exists", body = ErrorBody)))]
#[allow(dead_code)]
fn restore_snapshot() {}

#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "Healthy or degraded: the status and score as JSON"), (status = 503, description = "Unhealthy")))]
#[allow(dead_code)]
fn health() {}

#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, description = "The process serves HTTP")))]
#[allow(dead_code)]
fn live() {}

#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, description = "Ready: recovery is done and observations are accepted"), (status = 503, description = "Starting, recovering or draining")))]
#[allow(dead_code)]
fn ready() {}

#[utoipa::path(get, path = "/health/detailed", tag = "health",
    responses((status = 200, description = "Every health signal, the engine and each space, as JSON (needs the `metrics` grant)")))]
#[allow(dead_code)]
fn detailed() {}

#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4 (needs the `metrics` grant)", content_type = "text/plain", body = String)))]
#[allow(dead_code)]
fn metrics() {}

#[utoipa::path(get, path = "/openapi.json", tag = "health", responses((status = 200, description = "This document")))]
#[allow(dead_code)]
fn openapi_json() {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_route_has_one_operation_and_every_operation_a_route() {
        let doc: serde_json::Value = serde_json::from_str(json()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
        let served: BTreeSet<_> =
            super::super::ROUTES.iter().map(|r| (r.method.to_owned(), r.template.to_owned())).collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn the_committed_document_is_the_generated_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed.trim_end() == json().trim_end(),
            "docs/openapi.json is stale: regenerate with `engram-stream openapi > docs/openapi.json`"
        );
    }
}
