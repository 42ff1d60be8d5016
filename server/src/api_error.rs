//! The one place where engine errors become HTTP statuses and gRPC codes.
//!
//! | error | HTTP | gRPC |
//! |---|---|---|
//! | bad input (field named) | 400 | `INVALID_ARGUMENT` |
//! | unknown memory space | 404 | `NOT_FOUND` |
//! | space exists with other parameters | 409 | `ALREADY_EXISTS` |
//! | request body too large | 413 | `RESOURCE_EXHAUSTED` (tonic's message size limit) |
//! | rejected by backpressure / full queue | 429 + `Retry-After` | `RESOURCE_EXHAUSTED` + `retry-after-ms` |
//! | shutting down | 503 + `Retry-After` | `UNAVAILABLE` |
//! | over a per-key rate limit (reason `rate_limited`) | 429 + `Retry-After` | `RESOURCE_EXHAUSTED` + `retry-after-ms` |
//! | `engine.max_spaces` spaces exist (a quota: no `Retry-After`) | 429 | `RESOURCE_EXHAUSTED` |
//! | no API key, or an unknown one (auth on) | 401 + `WWW-Authenticate: Bearer` | `UNAUTHENTICATED` |
//! | a known key without the grant (whether the space exists or not) | 403 | `PERMISSION_DENIED` |
//! | internal failure | 500 | `INTERNAL` |

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engram_engine::{AckLevel, BackpressureLevel, EngineError, StorageErrorKind};
use serde::Serialize;
use std::time::Duration;

/// Why a request was refused: the `reason` of `engram_api_requests_rejected_total`.
pub use engram_telemetry::labels::Refusal;

/// An API error: status, gRPC code and a JSON body naming the field and reason.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// gRPC code.
    pub code: tonic::Code,
    /// Human-readable message (`field: reason` for bad input).
    pub message: String,
    /// The offending field, for bad input.
    pub field: Option<String>,
    /// Rejection reason (`backpressure_critical`, `queue_full`, `shutting_down`, ...).
    pub reason: Option<&'static str>,
    /// When to retry.
    pub retry_after: Option<Duration>,
    /// Backpressure level at rejection.
    pub level: Option<BackpressureLevel>,
    /// Why the request was refused, when it is a refusal (not for internal failures or
    /// conflicts). Carried into the HTTP response's extensions for the metrics layer.
    pub refusal: Option<Refusal>,
}

/// Every error's body: `{"error": {...}}` (the OpenAPI document's `ErrorBody`).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ErrorBody)]
pub(crate) struct Body<'a> {
    error: Inner<'a>,
}

/// What went wrong: the gRPC code name, a message naming the field and reason, and for a
/// refusal why and when to retry.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(crate) struct Inner<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backpressure: Option<BackpressureLevel>,
}

impl ApiError {
    fn new(status: StatusCode, code: tonic::Code, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            reason: None,
            retry_after: None,
            level: None,
            refusal: None,
        }
    }

    /// Bad input on `field`.
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        let field = field.into();
        let mut e = Self::new(StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument, format!("{field}: {reason}"));
        e.field = Some(field);
        e.refusal = Some(Refusal::InvalidArgument);
        e
    }

    /// Input on `field` that could not be parsed at all (JSON syntax, truncated body).
    pub fn malformed(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        let mut e = Self::invalid(field, reason);
        e.refusal = Some(Refusal::Malformed);
        e
    }

    /// A resource named by `field` that does not exist (not a refusal: nothing was asked to change).
    pub fn not_found(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::NOT_FOUND, tonic::Code::NotFound, message);
        e.field = Some(field.into());
        e
    }

    /// No route matches the request.
    pub fn unknown_route() -> Self {
        let mut e = Self::new(StatusCode::NOT_FOUND, tonic::Code::NotFound, "no such route");
        e.refusal = Some(Refusal::UnknownRoute);
        e
    }

    /// A request body over the size limit.
    pub fn too_large(limit: usize) -> Self {
        let mut e = Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            tonic::Code::ResourceExhausted,
            format!("body: larger than the limit of {limit} bytes"),
        );
        e.refusal = Some(Refusal::PayloadTooLarge);
        e
    }

    /// No API key (`missing`) or a key no configured key matches (`invalid`): 401 /
    /// `UNAUTHENTICATED`. The message never repeats the key.
    pub fn unauthenticated(reason: &'static str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, tonic::Code::Unauthenticated, message);
        e.reason = Some(reason);
        e.refusal = Some(Refusal::Unauthenticated);
        e
    }

    /// A known key without the grant for what it asked: 403 / `PERMISSION_DENIED`, the same
    /// whether the memory space exists or not (a key never learns of a space it may not see).
    pub fn forbidden(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::FORBIDDEN, tonic::Code::PermissionDenied, message);
        e.reason = Some("forbidden");
        e.refusal = Some(Refusal::PermissionDenied);
        e
    }

    /// Over a rate limit (`[rate_limits]`): 429 + `Retry-After` / `RESOURCE_EXHAUSTED` +
    /// `retry-after-ms`, reason `rate_limited` (apart from backpressure's reasons).
    pub fn rate_limited(who: &str, limit: &str, per_second: u32, retry_after: Duration) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            tonic::Code::ResourceExhausted,
            format!("rate limited: {who} is over its limit of {per_second} {limit} per second"),
        );
        e.reason = Some("rate_limited");
        e.retry_after = Some(retry_after.max(Duration::from_millis(1)));
        e.refusal = Some(Refusal::RateLimited);
        e
    }

    /// An internal failure (a bug or a lost task), never bad input.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, tonic::Code::Internal, message)
    }

    /// Retry-after in whole seconds for the HTTP header (RFC 9110 §10.2.3), at least 1.
    fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(|d| d.as_secs_f64().ceil().max(1.0) as u64)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let message = e.to_string();
        match e {
            EngineError::InvalidArgument { field, .. } => {
                let mut a = Self::new(StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument, message);
                a.field = Some(field);
                a.refusal = Some(Refusal::InvalidArgument);
                a
            }
            EngineError::SpaceNotFound(_) => {
                let mut a = Self::new(StatusCode::NOT_FOUND, tonic::Code::NotFound, message);
                a.field = Some("memory_space".into());
                a.refusal = Some(Refusal::UnknownSpace);
                a
            }
            EngineError::SpaceExists(_) => Self::new(StatusCode::CONFLICT, tonic::Code::AlreadyExists, message),
            EngineError::Rejected(r) => {
                let mut a = Self::new(StatusCode::TOO_MANY_REQUESTS, tonic::Code::ResourceExhausted, message);
                a.reason = Some(r.reason.as_str());
                a.retry_after = Some(r.retry_after);
                a.level = Some(r.level);
                a.refusal = Some(Refusal::Overloaded);
                a
            }
            EngineError::SpaceLimit { .. } => {
                // A quota, not a rate: RESOURCE_EXHAUSTED (429 in the gRPC ↔ HTTP mapping), with
                // no Retry-After because waiting does not help; dropping a space does.
                let mut a = Self::new(StatusCode::TOO_MANY_REQUESTS, tonic::Code::ResourceExhausted, message);
                a.reason = Some(Refusal::SpaceLimit.as_str());
                a.refusal = Some(Refusal::SpaceLimit);
                a
            }
            EngineError::ShuttingDown => {
                let mut a = Self::new(StatusCode::SERVICE_UNAVAILABLE, tonic::Code::Unavailable, message);
                a.reason = Some(Refusal::ShuttingDown.as_str());
                a.retry_after = Some(engram_engine::backpressure::SHUTDOWN_RETRY_AFTER);
                a.refusal = Some(Refusal::ShuttingDown);
                a
            }
            EngineError::Storage { kind, .. } => {
                // 507 for a full disk (RFC 4918 §11.5), 503 for any other write failure; both
                // UNAVAILABLE in gRPC (the client retries once space or the disk is back).
                let status = match kind {
                    StorageErrorKind::Full => StatusCode::INSUFFICIENT_STORAGE,
                    StorageErrorKind::Io => StatusCode::SERVICE_UNAVAILABLE,
                };
                let mut a = Self::new(status, tonic::Code::Unavailable, message);
                a.reason = Some(kind.as_str());
                a.retry_after = Some(STORAGE_RETRY_AFTER);
                a.refusal = Some(Refusal::Storage);
                a
            }
            EngineError::SnapshotNotFound(_) => {
                let mut a = Self::new(StatusCode::NOT_FOUND, tonic::Code::NotFound, message);
                a.field = Some("snapshot".into());
                a
            }
            EngineError::SnapshotsUnavailable => {
                Self::new(StatusCode::CONFLICT, tonic::Code::FailedPrecondition, message)
            }
            EngineError::Recovering => {
                let mut a = Self::new(StatusCode::SERVICE_UNAVAILABLE, tonic::Code::Unavailable, message);
                a.reason = Some(Refusal::Recovering.as_str());
                a.retry_after = Some(RECOVERING_RETRY_AFTER);
                a.refusal = Some(Refusal::Recovering);
                a
            }
        }
    }
}

/// Retry-after of a write the store could not record (disk full or an I/O error).
pub const STORAGE_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Retry-after while the engine replays its log at start.
pub const RECOVERING_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The ack level a client asks for by name (`accepted`, `durable`, `indexed`; one mapping for
/// both transports).
///
/// # Errors
/// An invalid-argument error on `field` naming the unknown value.
pub fn parse_ack_level(field: &str, value: &str) -> Result<AckLevel, ApiError> {
    match value {
        "accepted" => Ok(AckLevel::Accepted),
        "durable" => Ok(AckLevel::Durable),
        "indexed" => Ok(AckLevel::Indexed),
        other => Err(ApiError::invalid(
            field,
            format!("unknown value `{other}`, expected `accepted`, `durable` or `indexed`"),
        )),
    }
}

/// gRPC status code name (`INVALID_ARGUMENT`, ...).
pub fn code_name(code: tonic::Code) -> &'static str {
    engram_telemetry::events::api::GRPC_CODES[code as usize]
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Inside the request's `tracing` span: with tracing on, the line carries its trace_id.
        let (status, reason, field) = (self.status.as_u16(), self.reason.unwrap_or(""), self.field.as_deref());
        if self.status.is_server_error() {
            tracing::warn!(status, reason, field, "request failed: {}", self.message);
        } else {
            tracing::debug!(status, reason, field, "request refused: {}", self.message);
        }
        let body = Body {
            error: Inner {
                code: code_name(self.code),
                message: &self.message,
                field: self.field.as_deref(),
                reason: self.reason,
                retry_after_ms: self.retry_after.map(|d| d.as_millis() as u64),
                backpressure: self.level,
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs() {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: the scheme the client should use.
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(refusal) = self.refusal {
            resp.extensions_mut().insert(refusal);
        }
        resp
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        let mut status = tonic::Status::new(e.code, e.message);
        if let Some(d) = e.retry_after {
            status
                .metadata_mut()
                .insert("retry-after-ms", d.as_millis().to_string().parse().expect("digits are ASCII"));
        }
        if let Some(r) = e.reason {
            status.metadata_mut().insert("reason", r.parse().expect("reasons are ASCII"));
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engram_engine::{RejectReason, Rejection};

    #[test]
    fn rejection_maps_to_429_with_retry_after_and_resource_exhausted() {
        let e = ApiError::from(EngineError::Rejected(Rejection {
            reason: RejectReason::BackpressureCritical,
            retry_after: Duration::from_millis(1200),
            level: BackpressureLevel::Critical,
        }));
        assert_eq!((e.status, e.code), (StatusCode::TOO_MANY_REQUESTS, tonic::Code::ResourceExhausted));
        let resp = e.clone().into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
        let status = tonic::Status::from(e);
        assert_eq!(status.metadata().get("retry-after-ms").unwrap(), "1200");
    }

    #[test]
    fn invalid_argument_names_the_field() {
        let e = ApiError::from(EngineError::InvalidArgument {
            field: "observations[3].embedding".into(),
            reason: "expected 384 values, got 383".into(),
        });
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.message, "observations[3].embedding: expected 384 values, got 383");
    }
}
