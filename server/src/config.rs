//! Server configuration: embedded defaults, an optional TOML file, `ENGRAM_*` environment
//! overrides, then command-line flags, each layer overriding the one before (figment).
//!
//! Environment keys are the field paths in upper case with `__` between tables, e.g.
//! `ENGRAM_HTTP_ADDR=127.0.0.1:8080`, `ENGRAM_ENGINE__WORKERS=4`,
//! `ENGRAM_ENGINE__BACKPRESSURE__CRITICAL=0.85`. See `docs/configuration.md`.

use engram_engine::EngineConfig;
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
    /// Most distinct `memory_space` label values in metrics (then `__other__`). Default 100.
    pub max_space_labels: usize,
    /// Engine settings (`[engine]`).
    pub engine: EngineConfig,
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
            engine: EngineConfig::default(),
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
        fig.merge(Env::prefixed("ENGRAM_").split("__")).extract().map_err(Box::new)
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
    fn unknown_keys_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[engine]\nqueue_capacityy = 5\n")?;
            let e = ServerConfig::load(Some(Path::new("bad.toml"))).unwrap_err().to_string();
            assert!(e.contains("queue_capacityy"), "{e}");
            Ok(())
        });
    }
}
