//! Server configuration: embedded defaults, an optional TOML file, `ENGRAM_*` environment
//! overrides, then command-line flags, each layer overriding the one before (figment).
//!
//! Environment keys are the field paths in upper case with `__` between tables, e.g.
//! `ENGRAM_HTTP_ADDR=127.0.0.1:8080`, `ENGRAM_ENGINE__WORKERS=4`,
//! `ENGRAM_ENGINE__BACKPRESSURE__CRITICAL=0.85`, `ENGRAM_STORAGE__DATA_DIR=/var/lib/engram`. See `docs/configuration.md`.

use crate::auth::AuthConfig;
use crate::auth::limits::RateLimitConfig;
use crate::tls::TlsConfig;
use crate::trace::TracingConfig;
use engram_engine::{EngineConfig, StorageConfig};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything `engram-stream serve` reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// HTTP listener (REST, health, `/metrics`). Default `0.0.0.0:8080`.
    pub http_addr: SocketAddr,
    /// gRPC listener. Default `0.0.0.0:50051`.
    pub grpc_addr: SocketAddr,
    /// Log format. Default text (the level comes from `RUST_LOG`, default `info`).
    pub log_format: LogFormat,
    /// Largest HTTP request body or gRPC message, in bytes. Default 64 MiB.
    pub max_request_bytes: usize,
    /// Longest wait for the queue to drain on SIGTERM/SIGINT, in seconds. Default 120.
    pub shutdown_timeout_secs: u64,
    /// Most memory spaces holding a `memory_space` label of their own at once (spaces created
    /// while all are held are exported as `__other__`; a dropped space frees its label).
    /// Default 100.
    pub max_space_labels: usize,
    /// Most open client connections, both listeners together; more are closed as soon as
    /// accepted. Default 4,096.
    pub max_connections: usize,
    /// Seconds a connection may move no byte before it is closed. Default 120.
    pub idle_timeout_secs: u64,
    /// Seconds an HTTP/1 client has to send a request head (request line and headers); also
    /// how long an idle keep-alive connection waits for its next request. Default 30.
    pub header_read_timeout_secs: u64,
    /// Seconds between HTTP/2 keep-alive pings on gRPC connections. Default 30.
    pub grpc_keepalive_interval_secs: u64,
    /// Seconds a gRPC peer has to answer a keep-alive ping before it is disconnected. Default 20.
    pub grpc_keepalive_timeout_secs: u64,
    /// Engine settings (`[engine]`).
    pub engine: EngineConfig,
    /// The durable log (`[storage]`): data directory and durability mode.
    pub storage: StorageConfig,
    /// Trace export (`[tracing]`): off unless an OTLP endpoint is set.
    pub tracing: TracingConfig,
    /// API keys and the audit log (`[auth]`): off unless a key or a keys file is set.
    pub auth: AuthConfig,
    /// Per-key (per client address while auth is off) rate limits (`[rate_limits]`): off by
    /// default.
    pub rate_limits: RateLimitConfig,
    /// TLS on both listeners (`[tls]`): off unless a certificate and key are set.
    pub tls: TlsConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], 50051)),
            log_format: LogFormat::Text,
            max_request_bytes: 64 << 20,
            shutdown_timeout_secs: 120,
            max_space_labels: 100,
            max_connections: 4096,
            idle_timeout_secs: 120,
            header_read_timeout_secs: 30,
            grpc_keepalive_interval_secs: 30,
            grpc_keepalive_timeout_secs: 20,
            engine: EngineConfig::default(),
            storage: StorageConfig::default(),
            tracing: TracingConfig::default(),
            auth: AuthConfig::default(),
            rate_limits: RateLimitConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

impl ServerConfig {
    /// Defaults, then `file` (if given), then `ENGRAM_*` variables.
    ///
    /// # Errors
    /// An unreadable file, invalid TOML, an unknown key or a value of the wrong type, named by
    /// its key path and source.
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut fig = Figment::from(Serialized::defaults(ServerConfig::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(Box::new(figment::Error::from(format!("config file {} does not exist", file.display()))));
            }
            fig = fig.merge(Toml::file(file));
        }
        // `ENGRAM_API_KEY` is the clients' (`load --api-key`), not a server setting: a shell that
        // exports it for the load generator must still start the server.
        let env = Env::prefixed("ENGRAM_").ignore(&["API_KEY"]).split("__");
        let config: Self = fig.merge(env).extract().map_err(Box::new)?;
        config.validate().map_err(|e| Box::new(figment::Error::from(e)))?;
        Ok(config)
    }

    /// Checks the server's own limits (the engine checks `[engine]`).
    ///
    /// # Errors
    /// The first bad key and why.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_connections", self.max_connections as u64),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("grpc_keepalive_interval_secs", self.grpc_keepalive_interval_secs),
            ("grpc_keepalive_timeout_secs", self.grpc_keepalive_timeout_secs),
            ("max_request_bytes", self.max_request_bytes as u64),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{key}: must be at least 1"));
        }
        if self.grpc_keepalive_interval_secs >= self.idle_timeout_secs {
            return Err("grpc_keepalive_interval_secs: must be below idle_timeout_secs, or live idle gRPC \
                        connections are closed as idle"
                .into());
        }
        self.tls.validate()
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature
mod tests {
    use super::*;

    #[test]
    fn file_then_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "engram.toml",
                "http_addr = \"127.0.0.1:9000\"\n[engine]\nworkers = 3\nqueue_capacity = 500\n",
            )?;
            jail.set_env("ENGRAM_ENGINE__QUEUE_CAPACITY", "700");
            let c = ServerConfig::load(Some(Path::new("engram.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.http_addr, "127.0.0.1:9000".parse().unwrap());
            assert_eq!(c.engine.workers, 3);
            assert_eq!(c.engine.queue_capacity, 700);
            assert_eq!(c.grpc_addr, ServerConfig::default().grpc_addr);
            Ok(())
        });
    }

    #[test]
    fn the_example_config_lists_exactly_the_defaults() {
        // In a Jail too: it serialises with the test that sets ENGRAM_* variables.
        figment::Jail::expect_with(|_| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/engram.example.toml");
            let c = ServerConfig::load(Some(&path)).map_err(|e| e.to_string())?;
            assert_eq!(c, ServerConfig::default());
            Ok(())
        });
    }

    #[test]
    fn the_clients_api_key_variable_is_not_a_server_setting() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("ENGRAM_API_KEY", "egk_for_the_load_generator");
            jail.set_env("ENGRAM_HTTP_ADDR", "127.0.0.1:9001");
            let c = ServerConfig::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.http_addr, "127.0.0.1:9001".parse().unwrap());
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[engine]\nqueue_capacityy = 5\n")?;
            let e = ServerConfig::load(Some(Path::new("bad.toml"))).unwrap_err().to_string();
            assert!(e.contains("queue_capacityy"), "{e}");
            Ok(())
        });
    }
}
