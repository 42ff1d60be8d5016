//! Helpers shared by the server's integration tests: a server in process on ephemeral ports.
#![allow(dead_code, unused_macros, unused_imports)] // each test crate uses part of it

use engram_server::proto::engram_client::EngramClient;
use engram_server::{Server, ServerConfig};
use engram_tools::load::{LoadArgs, Protocol};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub fn data_dir(name: &str) -> PathBuf {
    engram_dataset::shared_data_dir(name).unwrap_or_else(|e| panic!("{e}"))
}

pub struct Running {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub engine: std::sync::Arc<engram_engine::Engine>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<engram_engine::ShutdownReport>>,
}

impl Running {
    pub async fn start(mut config: ServerConfig) -> Self {
        config.http_addr = "127.0.0.1:0".parse().unwrap();
        config.grpc_addr = "127.0.0.1:0".parse().unwrap();
        let server = Server::bind(config).await.unwrap();
        let (http, grpc, engine) = (server.http_addr(), server.grpc_addr(), server.engine());
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        // Recovery runs in the background (a data directory, even an empty one, is replayed
        // first); until it ends, writes get 503 `recovering`. Tests start from a ready server.
        let started = std::time::Instant::now();
        while !engine.is_ready() {
            assert!(engine.status().recovery.error.is_none(), "recovery failed: {:?}", engine.status().recovery);
            assert!(started.elapsed() < std::time::Duration::from_secs(60), "not ready in 60 s");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        Self { http, grpc, engine, stop: Some(tx), task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub async fn grpc_client(&self) -> EngramClient<tonic::transport::Channel> {
        EngramClient::connect(format!("http://{}", self.grpc)).await.unwrap()
    }

    pub async fn stop(mut self) -> engram_engine::ShutdownReport {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap().unwrap()
    }
}

pub fn config(workers: usize) -> ServerConfig {
    let mut c = ServerConfig::default();
    c.engine.workers = workers;
    // Memory only: parallel tests must not share ./engram-data (durability has its own tests,
    // each on a temporary data directory).
    c.storage = engram_engine::StorageConfig::memory();
    c
}

pub fn load_args(protocol: Protocol, server: String, space: &str, report: &Path) -> LoadArgs {
    LoadArgs {
        dataset: data_dir("minilm-384-stdlib"),
        server,
        protocol,
        space: Some(space.into()),
        rate: None,
        batch: 50,
        priority_mix: "1:2:1".into(),
        ef_search: None,
        concurrency: 8,
        wait: engram_tools::load::Wait::Indexed,
        limit: Some(1500),
        queries: Some(60),
        no_content: false,
        index: None,
        quantization: None,
        rescore_factor: None,
        metrics_url: None,
        trace: false,
        api_key: None,
        cacert: None,
        report: report.to_path_buf(),
    }
}

pub fn temp_report(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("engram-e2e-{}-{name}.json", std::process::id()))
}

pub fn read_report(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

pub async fn post_json(http: &reqwest::Client, url: String, body: Value) -> Value {
    http.post(url).json(&body).send().await.unwrap().json().await.unwrap()
}

pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}

/// Reads `replies` until the stream ends with an error status and returns it; panics if the
/// stream ends cleanly instead.
pub async fn stream_error<T>(replies: &mut tonic::Streaming<T>) -> tonic::Status {
    loop {
        match replies.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream should end with an error status"),
            Err(e) => return e,
        }
    }
}

/// The service names the server's reflection lists over `channel`, through reflection's `v1` or
/// `v1alpha` client (the two are separately generated, hence a macro).
macro_rules! reflected_services {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut reflection = ServerReflectionClient::new($channel);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut resp = reflection.server_reflection_info(tokio_stream::iter(vec![req])).await.unwrap().into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) = resp.message().await.unwrap().unwrap().message_response
        else {
            panic!("expected a service list")
        };
        list.service.into_iter().map(|s| s.name).collect::<Vec<String>>()
    }};
}
pub(crate) use reflected_services;

/// A free TCP port on loopback (for a server process that binds it next, and binds again after
/// a restart). Taken below Linux's ephemeral range (32768–60999), from a per-process sequence:
/// a port from `bind(0)` is in that range, where any test's outgoing connection can take it
/// while the server is down between restarts ("Address already in use", seen in crash.rs and
/// disk_full.rs); below it, only another explicit bind can, and no two calls here return the
/// same port.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7_919) % SPAN,
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    loop {
        let port = (LOW + NEXT.fetch_add(1, Ordering::AcqRel) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Copies directory `from` into `to` (files only, recursively).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// An engine in this process on the data directory `dir` (durability fsync), once recovery
/// has finished and what it replayed is all indexed: panics, naming `what`, when it refuses to open, recovery fails, or it is not
/// ready within `timeout`.
pub fn open_recovered(dir: &Path, what: &str, timeout: std::time::Duration) -> engram_engine::Engine {
    let engine = engram_engine::Engine::open(
        engram_engine::EngineConfig { workers: 2, ..Default::default() },
        &engram_engine::StorageConfig::at(dir, engram_engine::Durability::Fsync),
        engram_telemetry::Telemetry::new(engram_telemetry::TelemetryConfig::default()),
    )
    .unwrap_or_else(|e| panic!("{what}: the engine refused to start: {e}"));
    let started = std::time::Instant::now();
    while !engine.is_ready() || engine.status().recovery.catching_up {
        assert!(engine.status().recovery.error.is_none(), "{what}: {:?}", engine.status().recovery);
        assert!(started.elapsed() < timeout, "{what}: not ready: {:?}", engine.status().recovery);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    engine
}

/// The ids of the `k` observations recall returns for `embedding` in `space` over HTTP at
/// `url`, best first.
pub async fn recall_ids(http: &reqwest::Client, url: &str, space: &str, embedding: &[f32], k: usize) -> Vec<u64> {
    let hits: Value = http
        .post(format!("{url}/v1/spaces/{space}/recall"))
        .json(&serde_json::json!({ "embedding": embedding, "k": k }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    hits["hits"].as_array().unwrap().iter().map(|h| h["id"].as_u64().unwrap()).collect()
}
