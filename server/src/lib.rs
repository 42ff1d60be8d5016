//! The `engram-stream` server: HTTP (axum) and gRPC (tonic) front ends over the engine, health
//! and `/metrics`. The `load` generator and the `capacity` planner are in `engram-tools`
//! (`benches/tools`); `engram-stream load|capacity` runs that binary.
//!
//! Data flows one way: a request is parsed and validated here, handed to
//! [`engram_engine::Engine`], and answered from what the engine returns.
//!
//! Modules:
//! - [`auth`]: API keys, their grants per memory space, the audit log.
//! - [`config`]: `ServerConfig` from defaults, TOML file, `ENGRAM_*` environment.
//! - [`server`]: binds both listeners, runs them, and drains the engine on shutdown.
//! - [`listen`]: accepting connections: the connection cap, idle and header-read timeouts.
//! - [`tls`]: TLS on both listeners (rustls), certificate reload, mTLS.
//! - `reload`: re-reading the keys file and the TLS certificate on change or SIGHUP.
//! - [`session`]: what both transports do with a request, once: an ingest session (submit,
//!   level changes) and recall. [`http`] and [`grpc`] only decode, call it and encode.
//! - [`http`]: REST routes, health endpoints, `/metrics`, request metrics.
//! - [`grpc`]: `engram.v1.Engram` (observation stream, recall, spaces), health and reflection.
//! - `layers`: every tower layer around both listeners, built in one place (the place for
//!   cross-protocol policy such as authentication).
//! - [`trace`]: OpenTelemetry spans of each batch and recall, W3C trace context, OTLP export.
//! - [`api_error`]: the single mapping of engine errors to HTTP statuses and gRPC codes.
//! - [`health`]: the health assessment behind `/health*`.
//! - [`proto`]: the generated `engram.v1` messages and clients.

pub mod api_error;
pub mod auth;
pub mod config;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod grpc;
pub mod health;
pub mod http;
mod layers;
pub mod listen;
mod reload;
pub mod server;
pub mod session;
pub mod tls;
pub mod trace;

/// Generated `engram.v1` code (from `proto/engram/v1/engram.proto`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("engram.v1");
    /// Encoded file descriptor set, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("engram_descriptor");
}

pub use config::ServerConfig;
pub use server::Server;
