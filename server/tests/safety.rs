//! What an operator or a hostile client can do to the server over the wire, and what it must
//! not be able to: size an allocation, create spaces without end, blind per-space monitoring,
//! hold connections open, or keep the process from exiting; and the status codes and reflection
//! versions clients rely on.

mod common;

use common::*;
use engram_server::proto;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// True when the server closes `stream` (EOF or reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_space_request_sizes_an_allocation_and_the_space_count_is_capped() {
    let mut c = config(1);
    c.engine.max_spaces = 3;
    let server = Running::start(c).await;
    let http = reqwest::Client::new();
    // 2^32 elements once made hnsw_rs allocate ~32 GB up front and abort the process.
    for index in ["hnsw_rs", "usearch", "engram"] {
        let r = http
            .put(server.url("/v1/spaces/x"))
            .json(&json!({"dim": 1, "index": index, "max_elements": 4_294_967_296u64}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{index}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["field"], "max_elements", "{v}");
        // Within the element limit but over the memory budget at this dimension.
        let r = http
            .put(server.url("/v1/spaces/x"))
            .json(&json!({"dim": 4096, "index": index, "max_elements": 90_000_000}))
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["field"], "max_elements", "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("memory budget"), "{v}");
    }
    let mut client = server.grpc_client().await;
    let e = client
        .create_space(proto::CreateSpaceRequest {
            memory_space: "x".into(),
            params: Some(proto::SpaceParams {
                dim: 1,
                max_elements: 1 << 32,
                index: proto::IndexBackend::HnswRs as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("max_elements:"), "{e:?}");

    // The space count is capped: the fourth is refused (429, space_limit, no Retry-After) and
    // counted; dropping one makes room.
    for name in ["a", "b", "c"] {
        let r = http.put(server.url(&format!("/v1/spaces/{name}"))).json(&json!({"dim": 2})).send().await.unwrap();
        assert!(r.status().is_success());
    }
    let r = http.put(server.url("/v1/spaces/d")).json(&json!({"dim": 2})).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["error"]["reason"].as_str(), v["error"]["code"].as_str()),
        (Some("space_limit"), Some("RESOURCE_EXHAUSTED"))
    );
    let text = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
    let counted = "engram_api_requests_rejected_total{protocol=\"http\",reason=\"space_limit\"}";
    assert_eq!(sample(&text, counted), Some(1.0), "{text}");
    http.delete(server.url("/v1/spaces/a")).send().await.unwrap();
    let r = http.put(server.url("/v1/spaces/d")).json(&json!({"dim": 2})).send().await.unwrap();
    assert!(r.status().is_success());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_space_frees_its_label_and_its_series_leave_metrics() {
    let mut c = config(1);
    c.max_space_labels = 3;
    let server = Running::start(c).await;
    let http = reqwest::Client::new();
    let put = |name: &str| http.put(server.url(&format!("/v1/spaces/{name}"))).json(&json!({"dim": 2})).send();
    for name in ["a", "b", "c"] {
        put(name).await.unwrap();
    }
    put("overflow").await.unwrap();
    let text = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(text.contains("engram_index_vectors{memory_space=\"__other__\"}"), "{text}");
    for name in ["a", "b", "c", "overflow"] {
        http.delete(server.url(&format!("/v1/spaces/{name}"))).send().await.unwrap();
    }
    for name in ["d", "e", "f"] {
        put(name).await.unwrap();
    }
    let text = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
    for name in ["d", "e", "f"] {
        let series = format!("engram_index_vectors{{memory_space=\"{name}\"}}");
        assert!(text.contains(&series), "{name} got a label of its own after the drops:\n{text}");
    }
    for name in ["a", "b", "c"] {
        assert!(!text.contains(&format!("memory_space=\"{name}\"")), "series of dropped {name} remain:\n{text}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_and_the_connection_count_is_capped() {
    let mut c = config(1);
    c.header_read_timeout_secs = 1;
    c.idle_timeout_secs = 3;
    c.grpc_keepalive_interval_secs = 1;
    c.grpc_keepalive_timeout_secs = 1;
    c.max_connections = 40;
    let server = Running::start(c).await;

    // 30 HTTP connections holding half a request head, and 5 gRPC connections that send nothing.
    let mut half = Vec::new();
    for _ in 0..30 {
        let mut s = TcpStream::connect(server.http).await.unwrap();
        s.write_all(b"POST /v1/spaces/x/observations HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        half.push(s);
    }
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(TcpStream::connect(server.grpc).await.unwrap());
    }
    // Up to the cap (40) more are admitted; past it, a connection is closed at once.
    let mut extra = Vec::new();
    for _ in 0..5 {
        extra.push(TcpStream::connect(server.http).await.unwrap());
    }
    let mut over = TcpStream::connect(server.http).await.unwrap();
    assert!(closed_within(&mut over, Duration::from_secs(2)).await, "a connection past max_connections is closed");

    for s in &mut half {
        assert!(closed_within(s, Duration::from_secs(5)).await, "a half-sent request head is closed");
    }
    for s in &mut silent {
        assert!(closed_within(s, Duration::from_secs(8)).await, "a silent gRPC connection is closed");
    }
    for s in &mut extra {
        assert!(closed_within(s, Duration::from_secs(5)).await, "an idle HTTP connection is closed");
    }
    // Room again: a well-behaved request is served.
    let r = reqwest::get(server.url("/health/live")).await.unwrap();
    assert_eq!(r.status(), 200);
    let text = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(sample(&text, "engram_api_connections_refused_total{protocol=\"http\"}").unwrap() >= 1.0, "{text}");
    assert!(sample(&text, "engram_api_connections_timed_out_total{protocol=\"http\"}").unwrap() >= 30.0, "{text}");
    assert!(sample(&text, "engram_api_connections_timed_out_total{protocol=\"grpc\"}").unwrap() >= 5.0, "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_idle_grpc_stream_is_kept_and_ends_unavailable_as_soon_as_the_server_drained() {
    let mut c = config(1);
    c.idle_timeout_secs = 3;
    c.grpc_keepalive_interval_secs = 1;
    let server = Running::start(c).await;
    let mut client = server.grpc_client().await;
    client
        .create_space(proto::CreateSpaceRequest {
            memory_space: "s".into(),
            params: Some(proto::SpaceParams { dim: 2, ..Default::default() }),
        })
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut replies =
        client.stream_observations(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    tx.send(proto::ObservationBatch {
        sequence: 1,
        memory_space: "s".into(),
        priority: proto::Priority::Normal as i32,
        want_indexed: true,
        upsert: false,
        traceparent: String::new(),
        tracestate: String::new(),
        wait: 0,
        observations: vec![proto::Observation { id: 1, embedding: vec![1.0, 0.0], content: None }],
    })
    .await
    .unwrap();
    let mut statuses = Vec::new();
    while statuses.len() < 2 {
        if let Some(proto::stream_reply::Reply::Ack(a)) = replies.message().await.unwrap().unwrap().reply {
            statuses.push(a.status);
        }
    }
    // Quiet for longer than the idle timeout: the keep-alive pings keep the stream open.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stopped = Instant::now();
    let report = server.stop().await;
    let took = stopped.elapsed();
    assert!(report.drained);
    // Before, the server waited out a 10 s grace period for the idle stream to close.
    assert!(took < Duration::from_secs(5), "shutdown with an idle stream open took {took:?}");
    let end = stream_error(&mut replies).await;
    assert_eq!(end.code(), tonic::Code::Unavailable, "{end:?}");
    drop(tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_grpc_messages_are_resource_exhausted_and_reflection_speaks_v1alpha() {
    let mut c = config(1);
    c.max_request_bytes = 4096;
    let server = Running::start(c).await;
    let mut client = server.grpc_client().await;
    client
        .create_space(proto::CreateSpaceRequest {
            memory_space: "big".into(),
            params: Some(proto::SpaceParams { dim: 2, ..Default::default() }),
        })
        .await
        .unwrap();
    let e = client
        .recall(proto::RecallRequest {
            memory_space: "big".into(),
            embedding: vec![0.5; 5000],
            k: 1,
            ef_search: 0,
            with_content: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    let batch = proto::ObservationBatch {
        sequence: 1,
        memory_space: "big".into(),
        priority: proto::Priority::Normal as i32,
        want_indexed: false,
        upsert: false,
        traceparent: String::new(),
        tracestate: String::new(),
        wait: proto::WaitFor::Accepted as i32,
        observations: (0..1000)
            .map(|i| proto::Observation { id: i, embedding: vec![1.0, 0.0], content: None })
            .collect(),
    };
    let mut replies = client.stream_observations(tokio_stream::iter(vec![batch])).await.unwrap().into_inner();
    let e = stream_error(&mut replies).await;
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    let text = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
    let counted = "engram_api_requests_rejected_total{protocol=\"grpc\",reason=\"payload_too_large\"}";
    assert_eq!(sample(&text, counted), Some(2.0), "{text}");

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc)).unwrap();
    let names = common::reflected_services!(v1alpha, channel.connect().await.unwrap());
    assert!(names.contains(&"engram.v1.Engram".to_owned()), "{names:?}");
    server.stop().await;
}
