//! Binding, serving and shutting down.
//!
//! Shutdown (SIGTERM, SIGINT, or the future given to [`Server::run`]): the engine stops
//! admitting (new batches get 503 / `UNAVAILABLE`), gRPC health turns NOT_SERVING, the queue
//! drains into the indexes (bounded by `shutdown_timeout_secs`), and only then do the listeners
//! close, so clients waiting for INDEXED acks receive them. Once drained, every open
//! `StreamObservations` stream sends its outstanding acks and ends with `UNAVAILABLE`
//! ("server shutting down"), and idle HTTP keep-alive connections are closed, so the process
//! exits as soon as the queue is drained instead of waiting out idle clients.

use crate::auth::Auth;
use crate::config::ServerConfig;
use crate::grpc::EngramService;
use crate::listen::{self, ConnectionLimits};
use crate::proto::engram_server::EngramServer;
use crate::tls::Tls;
use crate::trace::Tracer;
use anyhow::Context;
use engram_engine::{Engine, ShutdownReport};
use engram_telemetry::events::ProcessEvents;
use engram_telemetry::health::HealthSampler;
use engram_telemetry::{Telemetry, TelemetryConfig};
use parking_lot::Mutex;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long open connections get to finish after the queue drained.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// How long the spans still queued at shutdown get to reach the collector.
const TRACE_FLUSH: Duration = Duration::from_secs(5);

/// How often `engram_health_score` is recomputed (its error ratio covers this window).
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// A server with both listeners bound and its engine running.
pub struct Server {
    config: ServerConfig,
    engine: Arc<Engine>,
    health: Arc<Mutex<HealthSampler>>,
    http: TcpListener,
    grpc: TcpListener,
    tracer: Tracer,
    auth: Auth,
    tls: Option<Tls>,
}

impl Server {
    /// Creates the telemetry registry and the engine, and binds both listeners.
    ///
    /// # Errors
    /// Invalid engine settings (naming the field) or an address that cannot be bound.
    pub async fn bind(config: ServerConfig) -> anyhow::Result<Self> {
        let telemetry = Telemetry::new(TelemetryConfig { max_space_labels: config.max_space_labels });
        let process = ProcessEvents::register(&telemetry);
        let health = Arc::new(Mutex::new(HealthSampler::new(Arc::clone(&telemetry), process)));
        let tracer = Tracer::start(&config.tracing, &telemetry).context("tracing configuration")?;
        let auth = Auth::new(&config.auth, &config.rate_limits, &telemetry)
            .map_err(|e| anyhow::anyhow!("auth configuration: {e}"))?;
        let tls = Tls::new(&config.tls, &telemetry).map_err(|e| anyhow::anyhow!("TLS configuration: {e}"))?;
        let engine =
            Arc::new(Engine::open(config.engine.clone(), &config.storage, telemetry).context("engine configuration")?);
        let http = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("binding http_addr {}", config.http_addr))?;
        let grpc = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("binding grpc_addr {}", config.grpc_addr))?;
        auth.listeners_bound(&[config.http_addr, config.grpc_addr]);
        if auth.is_enabled() {
            tracing::info!(keys = auth.key_count(), "API keys required on both listeners");
        } else {
            for (name, addr) in [("http_addr", config.http_addr), ("grpc_addr", config.grpc_addr)] {
                if !addr.ip().is_loopback() {
                    tracing::warn!(
                        %addr,
                        "{name} is not on loopback and no API key is configured: anyone who can reach it may read, write and drop every memory space (docs/security.md)"
                    );
                }
            }
        }
        if tls.is_some() {
            tracing::info!("TLS on both listeners");
        }
        Ok(Self { config, engine, health, http, grpc, tracer, auth, tls })
    }

    /// The bound HTTP address (useful with port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().expect("bound listener has an address")
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().expect("bound listener has an address")
    }

    /// The engine.
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    /// Serves until `shutdown` resolves, then drains and stops (see the module docs).
    ///
    /// # Errors
    /// A listener that fails while serving.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<ShutdownReport> {
        let Self { config, engine, health, http, grpc, tracer, auth, tls } = self;
        let keys_task = tokio::spawn(auth.clone().watch());
        let cert_task = tls.clone().map(|t| tokio::spawn(t.watch()));
        let http_addr = http.local_addr()?;
        let grpc_addr = grpc.local_addr()?;

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        // NOT_SERVING until recovery has replayed the log, like `/health/ready`.
        health_reporter.set_not_serving::<EngramServer<EngramService>>().await;
        let ready_task = {
            let (reporter, engine) = (health_reporter.clone(), engine.clone());
            tokio::spawn(async move {
                while !engine.is_ready() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if !engine.is_closing() {
                    reporter.set_serving::<EngramServer<EngramService>>().await;
                }
            })
        };
        // Both reflection versions: v1, and v1alpha for grpcurl builds and the stock Python
        // client (grpcio-reflection) that speak only it.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1().context("building gRPC reflection v1")?;
        let reflection_v1alpha = reflection().build_v1alpha().context("building gRPC reflection v1alpha")?;
        let (close_tx, close_rx) = watch::channel(false);
        let engram = EngramService::new(engine.clone(), close_rx.clone(), tracer.clone());
        let layers = crate::layers::grpc(engram.events(), auth.clone());
        let service = EngramServer::new(engram)
            .max_decoding_message_size(config.max_request_bytes)
            .max_encoding_message_size(config.max_request_bytes);

        let closed = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|c| *c).await;
        };
        let limits = ConnectionLimits::new(&config, engine.telemetry());
        let grpc_task = tokio::spawn(
            tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(Duration::from_secs(config.grpc_keepalive_interval_secs)))
                .http2_keepalive_timeout(Some(Duration::from_secs(config.grpc_keepalive_timeout_secs)))
                .layer(layers)
                .add_service(health_service)
                .add_service(reflection_v1)
                .add_service(reflection_v1alpha)
                .add_service(service)
                .serve_with_incoming_shutdown(
                    listen::grpc_incoming(grpc, limits.clone(), tls.clone()),
                    closed(close_rx.clone()),
                ),
        );
        let router = crate::http::router(engine.clone(), Arc::clone(&health), &config, tracer.clone(), auth);
        let health_task = tokio::spawn(async move {
            let mut every = tokio::time::interval(HEALTH_INTERVAL);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                health.lock().tick();
            }
        });
        let http_task = tokio::spawn(listen::serve_http(
            http,
            router,
            limits,
            Duration::from_secs(config.header_read_timeout_secs),
            tls,
            closed(close_rx),
        ));
        tracing::info!(%http_addr, %grpc_addr, "engram-stream serving");

        shutdown.await;
        tracing::info!("shutdown requested: stopping intake and draining the queue");
        ready_task.abort();
        health_reporter.set_not_serving::<EngramServer<EngramService>>().await;
        let timeout = Duration::from_secs(config.shutdown_timeout_secs);
        let drain_engine = engine.clone();
        let report = tokio::task::spawn_blocking(move || drain_engine.shutdown(Some(timeout))).await?;
        tracing::info!(drained = report.drained, remaining = report.remaining, "queue drained; closing listeners");
        let _ = close_tx.send(true);
        health_task.abort();
        keys_task.abort();
        if let Some(t) = cert_task {
            t.abort();
        }
        let joined = tokio::time::timeout(CLOSE_GRACE, async {
            let grpc = grpc_task.await;
            let http = http_task.await;
            (grpc, http)
        })
        .await;
        match joined {
            Ok((grpc, http)) => {
                grpc?.context("gRPC server")?;
                http.context("HTTP server")?;
            }
            Err(_) => tracing::warn!("connections still open after {CLOSE_GRACE:?}; closing them"),
        }
        // The exporter's thread blocks on exports that run on this runtime: not on a worker.
        tokio::task::spawn_blocking(move || tracer.shutdown(TRACE_FLUSH)).await?;
        Ok(report)
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
