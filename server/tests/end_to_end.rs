//! The server in process on ephemeral ports: real embeddings streamed over gRPC and HTTP with
//! the load generator, recall scored, every cataloged metric exported; bad input on both
//! protocols; health and reflection; overload with 429 / RESOURCE_EXHAUSTED; drain on shutdown.

mod common;

use common::*;
use engram_server::proto;
use engram_telemetry::catalog::{CATALOG, MetricKind};
use engram_tools::load::{self, Protocol};
use prost::bytes::{Buf, BufMut};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_real_embeddings_over_grpc_and_http_recalls_them_and_exports_every_metric() {
    // The default durability (fsync) on a data directory of its own, so the durable log's
    // series are produced too.
    let data = tempfile::tempdir().unwrap();
    let mut c = config(2);
    c.storage = engram_engine::StorageConfig { data_dir: data.path().to_owned(), ..Default::default() };
    let server = Running::start(c).await;

    // Every backend over the wire, both protocols.
    for (protocol, url, space, index) in [
        (Protocol::Grpc, format!("http://{}", server.grpc), "minilm-grpc", "usearch"),
        (Protocol::Http, server.url(""), "minilm-http", "hnsw_rs"),
        (Protocol::Grpc, format!("http://{}", server.grpc), "minilm-engram", "engram"),
    ] {
        let path = temp_report(space);
        let mut args = load_args(protocol, url, space, &path);
        args.index = Some(index.into());
        args.metrics_url = Some(server.url("/metrics"));
        // gRPC waits for the default, DURABLE (then for the space to hold every vector);
        // HTTP for INDEXED.
        let durable = protocol == Protocol::Grpc;
        if durable {
            args.wait = load::Wait::Durable;
        }
        load::run(args).await.unwrap();
        let r = read_report(&path);
        assert_eq!(r["index"], index, "{r}");
        assert_eq!(r["wait"], if durable { "durable" } else { "indexed" }, "{r}");
        assert_eq!(r["confirmed"], 1500, "{r}");
        assert_eq!(r["ef_search"], 128, "the space's default ef_search: {r}");
        let stats = &r["server_stats"];
        assert_eq!(stats["workers"], 2, "{r}");
        // The default for cosine: i8 vectors in a usearch index (the f32 ones in the store);
        // hnsw_rs and engram hold f32.
        assert_eq!(r["quantization"], if index == "usearch" { "i8" } else { "none" }, "{r}");
        assert!(stats["index_memory_bytes"].as_u64().unwrap() >= 1500 * 384, "{r}");
        assert!(
            stats["rss_bytes_after"].as_u64().unwrap() > 0 && stats["scrape_samples"].as_u64().unwrap() > 100,
            "{r}"
        );
        let share = stats["observation_latency_share_within_50ms"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&share), "{r}");
        assert!(stats["observation_latency_p99_seconds"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["ingest_rate_second_half_per_s"].as_f64().unwrap() > 0.0, "{r}");
        let info = reqwest::get(server.url(&format!("/v1/spaces/{space}")))
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap();
        assert_eq!(info["params"]["index"], index, "{info}");
        assert_eq!(r["lost"], 0, "{r}");
        assert_eq!(r["indexed"], 1500, "{r}");
        assert_eq!(r["space_vectors"], 1500, "{r}");
        let rejected: u64 = r["rejected"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(r["sent"].as_u64().unwrap(), r["accepted"].as_u64().unwrap() + rejected, "{r}");
        assert!(r["recall_at_10"].as_f64().unwrap() >= 0.95, "{r}");
        let waited = if durable { "durable_latency_seconds" } else { "index_latency_seconds" };
        for key in ["ack_latency_seconds", waited, "recall_latency_seconds"] {
            assert!(r[key]["p99"].as_f64().unwrap() > 0.0, "{key}: {r}");
        }
        if durable {
            assert!(r["index_latency_seconds"].is_null(), "not waited for: {r}");
        }
        std::fs::remove_file(&path).ok();
    }

    // Content comes back with recall.
    let http = reqwest::Client::new();
    let q = engram_dataset::read_fvecs(&data_dir("minilm-384-stdlib").join("query.fvecs")).unwrap();
    let v = post_json(&http, server.url("/v1/spaces/minilm-http/recall"), json!({"embedding": q.row(0), "k": 3})).await;
    assert_eq!(v["hits"].as_array().unwrap().len(), 3);
    assert!(v["hits"][0]["content"].as_str().is_some_and(|c| !c.is_empty()), "{v}");

    // Every cataloged metric has at least one sample, with fixed buckets for histograms.
    let text = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for def in CATALOG {
        let name = match def.kind {
            MetricKind::Histogram => format!("{}_bucket{{", def.name),
            _ => def.name.to_owned(),
        };
        assert!(text.lines().any(|l| l.starts_with(&name)), "no sample of {}", def.name);
        assert!(text.contains(&format!("# TYPE {} {}", def.name, def.kind.as_str())), "type of {}", def.name);
    }
    assert!(
        sample(&text, "engram_streaming_observations_total{memory_space=\"minilm-grpc\",priority=\"high\"}").unwrap()
            > 0.0
    );
    assert!(
        sample(&text, "engram_streaming_observations_total{memory_space=\"minilm-http\",priority=\"low\"}").unwrap()
            > 0.0
    );
    assert!(text.contains(
        "engram_http_requests_total{method=\"POST\",route=\"/v1/spaces/{space}/observations\",status=\"200\"}"
    ));
    assert!(text.contains("engram_grpc_requests_total{method=\"StreamObservations\",code=\"OK\"}"));
    assert!(!text.contains("route=\"/v1/spaces/minilm"), "routes are templates, never raw paths");

    // What the engine steers by is what /metrics exports (read back, not a copy).
    // The monitor folds the last observations taken into the drain rate on its next 200 ms
    // tick; from then on, idle, the rate holds. Read both sides once it has settled.
    let (mut text, mut h) = (String::new(), Value::Null);
    for _ in 0..20 {
        text = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
        h = http.get(server.url("/health/detailed")).send().await.unwrap().json().await.unwrap();
        let exported = sample(&text, "engram_streaming_queue_drain_rate_observations_per_second");
        if exported == h["engine"]["drain_rate_per_s"].as_f64() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let drain = sample(&text, "engram_streaming_queue_drain_rate_observations_per_second").unwrap();
    assert!(drain > 0.0, "{text}");
    assert_eq!(h["engine"]["drain_rate_per_s"].as_f64().unwrap(), drain, "{h}");
    assert_eq!(sample(&text, "engram_streaming_queue_utilization_ratio"), Some(0.0), "drained queue");
    assert_eq!(sample(&text, "engram_index_vectors{memory_space=\"minilm-grpc\"}"), Some(1500.0));
    assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 1e6);
    let score = sample(&text, "engram_health_score").unwrap();
    assert!((0.0..=100.0).contains(&score), "{score}");
    // The score is recomputed every 5 s: /health/detailed shows the one exported just before or
    // just after it.
    let after = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let shown = h["health_score"]["score"].as_f64().unwrap();
    assert!(shown == score || Some(shown) == sample(&after, "engram_health_score"), "{h}");

    // Health.
    assert_eq!(h["status"], "HEALTHY", "{h}");
    assert_eq!(h["spaces"].as_array().unwrap().len(), 3);
    assert_eq!(http.get(server.url("/health/ready")).send().await.unwrap().status(), 200);
    assert_eq!(http.get(server.url("/health/live")).send().await.unwrap().status(), 200);

    let report = server.stop().await;
    assert!(report.drained);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_over_http_names_the_field_and_keeps_accepted_data() {
    let mut c = config(1);
    c.engine.max_content_bytes = 32;
    c.engine.max_batch_observations = 10;
    c.max_request_bytes = 64 * 1024;
    let server = Running::start(c).await;
    let http = reqwest::Client::new();
    let put = http.put(server.url("/v1/spaces/s")).json(&json!({"dim": 3})).send().await.unwrap();
    assert_eq!(put.status(), 201);
    let obs_url = server.url("/v1/spaces/s/observations?wait=indexed");
    let ok = http
        .post(&obs_url)
        .json(
            &json!({"priority": "high", "observations": [{"id": 1, "embedding": [1.0, 0.0, 0.0], "content": "kept"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"observations": [{"id": 2, "embedding": [1.0, 2.0]}]}),
            400,
            "observations[0].embedding: expected 3 values, got 2",
        ),
        (json!({"priority": "urgent", "observations": []}), 400, "priority: unknown variant `urgent`"),
        (json!({"observations": []}), 400, "observations: must hold at least one observation"),
        (
            json!({"observations": (0..11).map(|i| json!({"id": i + 10, "embedding": [1.0, 0.0, 0.0]})).collect::<Vec<_>>()}),
            400,
            "observations: holds 11",
        ),
        (
            json!({"observations": [{"id": 3, "embedding": [1.0, 0.0, 0.0], "content": "x".repeat(33)}]}),
            400,
            "observations[0].content: is 33 bytes",
        ),
        (json!({"observations": [{"id": -3, "embedding": [1.0, 0.0, 0.0]}]}), 400, "observations[0].id: invalid value"),
        (
            json!({"observations": [{"id": 4, "embedding": [1.0, "NaN", 0.0]}]}),
            400,
            "observations[0].embedding[1]: invalid type",
        ),
    ];
    for (body, status, message) in cases {
        let r = http.post(&obs_url).json(&body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "INVALID_ARGUMENT", "{v}");
        assert!(v["error"]["message"].as_str().unwrap().starts_with(message), "{v} should start with {message}");
    }
    let r = http
        .post(&obs_url)
        .header("content-type", "application/json")
        .body("{\"observations\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(server.url("/v1/spaces/missing/observations"))
        .json(&json!({"observations": [{"id": 1, "embedding": [1.0, 0.0, 0.0]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "NOT_FOUND");
    let r = http.post(&obs_url).body(vec![b' '; 70 * 1024]).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let r =
        http.post(server.url("/v1/spaces/s/recall")).json(&json!({"embedding": [1.0], "k": 5})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("embedding: expected 3 values, got 1"));

    let r = http.get(server.url("/v1/nothing-here")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // What was accepted before is untouched.
    let v = post_json(&http, server.url("/v1/spaces/s/recall"), json!({"embedding": [1.0, 0.0, 0.0]})).await;
    assert_eq!(v["hits"][0]["id"], 1);
    assert_eq!(v["hits"][0]["content"], "kept");
    // Ids and scores only: the content is not read, and the field is left out.
    let v = post_json(
        &http,
        server.url("/v1/spaces/s/recall"),
        json!({"embedding": [1.0, 0.0, 0.0], "with_content": false}),
    )
    .await;
    assert_eq!(v["hits"][0]["id"], 1);
    assert!(v["hits"][0].get("content").is_none(), "{v}");
    let r = http
        .post(server.url("/v1/spaces/s/recall"))
        .json(&json!({"embedding": [1.0, 0.0, 0.0], "with_content": "no"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("with_content"));

    // Every refusal above is counted by reason: 9 invalid arguments (7 bodies and 2 recalls),
    // 1 truncated JSON, 1 unknown space, 1 oversized body, 1 unknown route.
    let text = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let refused = |reason: &str| {
        sample(&text, &format!("engram_api_requests_rejected_total{{protocol=\"http\",reason=\"{reason}\"}}"))
    };
    assert_eq!(refused("invalid_argument"), Some(9.0), "{text}");
    assert_eq!(refused("malformed"), Some(1.0));
    assert_eq!(refused("unknown_space"), Some(1.0));
    assert_eq!(refused("payload_too_large"), Some(1.0));
    assert_eq!(refused("unknown_route"), Some(1.0));
    assert_eq!(refused("overloaded"), Some(0.0), "registered up front, at zero");
    server.stop().await;
}

/// Sends pre-encoded bytes as a gRPC message, to test malformed protobuf.
#[derive(Clone, Default)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;
impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}
impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}
impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_over_grpc_is_invalid_argument_and_health_and_reflection_answer() {
    let server = Running::start(config(1)).await;
    let mut client = server.grpc_client().await;
    client
        .create_space(proto::CreateSpaceRequest {
            memory_space: "g".into(),
            params: Some(proto::SpaceParams { dim: 2, ..Default::default() }),
        })
        .await
        .unwrap();
    let batch = |seq: u64, space: &str, priority: i32, embedding: Vec<f32>| proto::ObservationBatch {
        sequence: seq,
        memory_space: space.into(),
        priority,
        want_indexed: true,
        upsert: false,
        traceparent: String::new(),
        tracestate: String::new(),
        wait: 0,
        observations: vec![proto::Observation { id: seq, embedding, content: None }],
    };
    let requests = vec![
        batch(1, "g", 1, vec![1.0, 0.0]),
        batch(2, "g", 2, vec![1.0]),
        batch(3, "nope", 2, vec![1.0, 0.0]),
        batch(4, "g", 9, vec![1.0, 0.0]),
        batch(5, "g", 2, vec![f32::NAN, 0.0]),
    ];
    let mut replies = client.stream_observations(tokio_stream::iter(requests)).await.unwrap().into_inner();
    let mut acks = std::collections::BTreeMap::<(u64, i32), proto::BatchAck>::new();
    while let Some(reply) = replies.message().await.unwrap() {
        if let Some(proto::stream_reply::Reply::Ack(a)) = reply.reply {
            acks.insert((a.sequence, a.status), a);
        }
    }
    let accepted = proto::AckStatus::Accepted as i32;
    let indexed = proto::AckStatus::Indexed as i32;
    let invalid = proto::AckStatus::Invalid as i32;
    assert_eq!(acks[&(1, accepted)].accepted, 1);
    assert_eq!(acks[&(1, indexed)].indexed, 1);
    let a = &acks[&(2, invalid)];
    assert_eq!(
        (a.grpc_code.as_str(), a.message.as_str()),
        ("INVALID_ARGUMENT", "observations[0].embedding: expected 2 values, got 1")
    );
    assert_eq!(acks[&(3, invalid)].grpc_code, "NOT_FOUND");
    assert!(acks[&(4, invalid)].message.starts_with("priority: unknown value 9"), "{:?}", acks[&(4, invalid)]);
    assert!(acks[&(5, invalid)].message.starts_with("observations[0].embedding: value [0] is NaN"));

    let e = client
        .recall(proto::RecallRequest {
            memory_space: "g".into(),
            embedding: vec![1.0, 2.0, 3.0],
            k: 1,
            ef_search: 0,
            with_content: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("embedding: expected 2 values"));
    let e = client.get_space(proto::GetSpaceRequest { memory_space: "nope".into() }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    // Malformed protobuf (a truncated length-delimited field) is INVALID_ARGUMENT, not INTERNAL.
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc)).unwrap().connect().await.unwrap();
    let mut raw = tonic::client::Grpc::new(channel.clone());
    raw.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/engram.v1.Engram/Recall");
    let e = raw.unary(tonic::Request::new(vec![0x0a, 0x05, b'a']), path, RawCodec).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.metadata().get(engram_server::grpc::codec::MALFORMED_MARKER).is_none(), "internal marker removed");
    // The same bytes as a stream message end the stream with INVALID_ARGUMENT.
    raw.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/engram.v1.Engram/StreamObservations");
    let request = tonic::Request::new(tokio_stream::iter(vec![vec![0x0a, 0x05, b'a']]));
    let mut replies = raw.streaming(request, path, RawCodec).await.unwrap().into_inner();
    let e = stream_error(&mut replies).await;
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    // Both are counted once as malformed: the unary one by the layer around the server (the
    // codec refused it before any handler ran), the stream one by the stream handler.
    let text = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
    let malformed = "engram_api_requests_rejected_total{protocol=\"grpc\",reason=\"malformed\"}";
    assert_eq!(sample(&text, malformed), Some(2.0), "{text}");

    // The previously accepted observation is still there.
    let hits = client
        .recall(proto::RecallRequest {
            memory_space: "g".into(),
            embedding: vec![1.0, 0.0],
            k: 1,
            ef_search: 0,
            with_content: None,
        })
        .await
        .unwrap()
        .into_inner()
        .hits;
    assert_eq!(hits[0].id, 1);

    // grpc.health.v1 and reflection work without the .proto.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest { service: "engram.v1.Engram".into() })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    let names = common::reflected_services!(v1, channel);
    assert!(names.contains(&"engram.v1.Engram".to_owned()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_owned()), "{names:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_over_http_and_grpc_rejects_with_retry_after_then_drains_everything() {
    let mut c = config(1);
    c.engine.queue_capacity = 100;
    let server = Running::start(c).await;
    let http = reqwest::Client::new();
    http.put(server.url("/v1/spaces/o")).json(&json!({"dim": 2, "metric": "l2"})).send().await.unwrap();
    server.engine.pause();
    let mut next = 0u64;
    let mut post = async |priority: &str, n: u64| {
        let observations: Vec<Value> =
            (next..next + n).map(|i| json!({"id": i, "embedding": [i as f32, 1.0]})).collect();
        next += n;
        http.post(server.url("/v1/spaces/o/observations"))
            .json(&json!({"priority": priority, "observations": observations}))
            .send()
            .await
            .unwrap()
    };
    let (mut sent, mut accepted, mut rejected) = (0u64, 0u64, 0u64);
    let mut tally = |n: u64, status: u16| {
        sent += n;
        if status == 202 { accepted += n } else { rejected += n }
    };
    let r = post("normal", 85).await;
    tally(85, r.status().as_u16());
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["x-engram-backpressure"], "CRITICAL");
    let r = post("low", 5).await;
    tally(5, r.status().as_u16());
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["reason"], "backpressure_critical");
    assert_eq!(v["error"]["code"], "RESOURCE_EXHAUSTED");
    assert!(v["error"]["retry_after_ms"].as_u64().unwrap() >= 100);
    let r = post("normal", 10).await;
    tally(10, r.status().as_u16());
    assert_eq!(r.status(), 202, "normal is still admitted in Critical");
    let r = post("normal", 1).await;
    tally(1, r.status().as_u16());
    assert_eq!(r.status(), 429, "Overloaded sheds normal");
    let r = post("high", 5).await;
    tally(5, r.status().as_u16());
    assert_eq!(r.status(), 202, "high is admitted until the hard cap");
    let r = post("high", 1).await;
    tally(1, r.status().as_u16());
    assert_eq!(r.status(), 429);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["reason"], "queue_full");
    assert_eq!(sent, accepted + rejected);
    assert_eq!((accepted, rejected), (100, 7));

    // Over gRPC the same admission answers REJECTED with RESOURCE_EXHAUSTED and a retry-after,
    // and the stream pushes the space's backpressure level.
    let mut client = server.grpc_client().await;
    let b = proto::ObservationBatch {
        sequence: 1,
        memory_space: "o".into(),
        priority: proto::Priority::Low as i32,
        want_indexed: false,
        upsert: false,
        traceparent: String::new(),
        tracestate: String::new(),
        wait: proto::WaitFor::Accepted as i32,
        observations: vec![proto::Observation { id: 10_000, embedding: vec![1.0, 1.0], content: None }],
    };
    let mut replies = client.stream_observations(tokio_stream::iter(vec![b])).await.unwrap().into_inner();
    let (mut ack, mut level) = (None, None);
    while let Some(r) = replies.message().await.unwrap() {
        match r.reply {
            Some(proto::stream_reply::Reply::Ack(a)) => ack = Some(a),
            Some(proto::stream_reply::Reply::Backpressure(b)) => level = Some(b.level),
            None => {}
        }
    }
    let ack = ack.unwrap();
    assert_eq!(ack.status, proto::AckStatus::Rejected as i32);
    assert_eq!((ack.reason.as_str(), ack.grpc_code.as_str()), ("backpressure_overloaded", "RESOURCE_EXHAUSTED"));
    assert!(ack.retry_after_ms >= 100);
    assert_eq!(level, Some(proto::BackpressureLevel::Overloaded as i32));
    let h: Value = http.get(server.url("/health/detailed")).send().await.unwrap().json().await.unwrap();
    assert_eq!(h["status"], "CRITICAL", "{h}");

    // Shutdown resumes the workers and drains: every accepted observation is indexed.
    let engine = server.engine.clone();
    let report = server.stop().await;
    assert!(report.drained);
    assert_eq!(engine.describe_space("o").unwrap().vectors, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_retries_rejected_batches_after_retry_after_and_loses_nothing() {
    // A queue of 200 against 8 batches of 50 in flight: admission must refuse some batches,
    // and the load generator must retry each after its retry-after until all are indexed.
    let mut c = config(1);
    c.engine.queue_capacity = 200;
    let server = Running::start(c).await;
    let mut client_rejected = 0u64;
    for (protocol, url, space) in [
        (Protocol::Grpc, format!("http://{}", server.grpc), "retry-grpc"),
        (Protocol::Http, server.url(""), "retry-http"),
    ] {
        let path = temp_report(space);
        let mut args = load_args(protocol, url, space, &path);
        args.limit = Some(1000);
        args.queries = Some(20);
        load::run(args).await.unwrap();
        let r = read_report(&path);
        let rejected: u64 = r["rejected"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert!(rejected > 0 && r["retried"].as_u64().unwrap() > 0, "admission refused nothing: {r}");
        client_rejected += rejected;
        assert_eq!(r["sent"].as_u64().unwrap(), r["accepted"].as_u64().unwrap() + rejected, "{r}");
        assert_eq!((r["lost"].as_u64(), r["indexed"].as_u64()), (Some(0), Some(1000)), "{r}");
        assert!(r["sent_per_accepted"].as_f64().unwrap() >= 1.0, "{r}");
        std::fs::remove_file(&path).ok();
    }
    let text = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
    let server_rejected: f64 = text
        .lines()
        .filter(|l| l.starts_with("engram_streaming_observations_rejected_total{memory_space=\"retry-"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(server_rejected, client_rejected as f64, "the server counted every rejection the clients saw");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_and_upserts_over_http_and_grpc() {
    let server = Running::start(config(2)).await;
    let http = reqwest::Client::new();
    let r = http.put(server.url("/v1/spaces/d")).json(&json!({"dim": 4})).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let v = |i: u64| vec![1.0, i as f32, (i * i) as f32 * 0.1, -(i as f32)];
    let observations: Vec<Value> =
        (1..=10u64).map(|i| json!({"id": i, "embedding": v(i), "content": format!("c{i}")})).collect();
    let r = http
        .post(server.url("/v1/spaces/d/observations?wait=indexed"))
        .json(&json!({"observations": observations}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let recall_ids = async |embedding: Vec<f32>| {
        let v = post_json(&http, server.url("/v1/spaces/d/recall"), json!({"embedding": embedding, "k": 10})).await;
        v["hits"].as_array().unwrap().iter().map(|h| h["id"].as_u64().unwrap()).collect::<Vec<_>>()
    };
    assert!(recall_ids(v(3)).await.contains(&3));

    // One id: DELETE, acknowledged INDEXED (200); then gone from get and recall.
    let r = http.delete(server.url("/v1/spaces/d/observations/3?wait=indexed")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-engram-backpressure"], "NORMAL");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"status": "indexed", "deleted": 1, "not_found": 0, "backpressure": "NORMAL"}));
    assert_eq!(http.get(server.url("/v1/spaces/d/observations/3")).send().await.unwrap().status(), 404);
    assert!(!recall_ids(v(3)).await.contains(&3));
    // Deleting it again is not an error: it is not found.
    let body: Value =
        http.delete(server.url("/v1/spaces/d/observations/3")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (body["status"].as_str(), body["deleted"].as_u64(), body["not_found"].as_u64()),
        (Some("durable"), Some(0), Some(1))
    );

    // A batch: default wait (durable, 202).
    let r = http
        .post(server.url("/v1/spaces/d/observations/delete"))
        .json(&json!({"ids": [4, 5, 99]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    assert_eq!((body["deleted"].as_u64(), body["not_found"].as_u64()), (Some(2), Some(1)), "{body}");
    let left = recall_ids(v(4)).await;
    assert_eq!(left.len(), 7, "{left:?}");
    assert!(left.iter().all(|id| ![3, 4, 5].contains(id)), "{left:?}");

    // Bad deletes name the field; nothing is deleted.
    for (body, field) in [
        (json!({"ids": [1, 1]}), "ids[1]"),
        (json!({"ids": []}), "ids"),
        (json!({"idz": [1]}), "idz"),
        (json!({"ids": [-1]}), "ids[0]"),
    ] {
        let r = http.post(server.url("/v1/spaces/d/observations/delete")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let e: Value = r.json().await.unwrap();
        assert!(e["error"]["field"].as_str().unwrap().starts_with(field), "{body}: {e}");
    }
    let r = http.delete(server.url("/v1/spaces/d/observations/abc")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = http.delete(server.url("/v1/spaces/nope/observations/1")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(recall_ids(v(1)).await.len(), 7);

    // Upsert over HTTP: id 1 takes the vector of 10 and new content; a plain resend is a duplicate.
    let r = http
        .post(server.url("/v1/spaces/d/observations?wait=indexed"))
        .json(&json!({"upsert": true, "observations": [{"id": 1, "embedding": v(10), "content": "new"}]}))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!((body["accepted"].as_u64(), body["replaced"].as_u64()), (Some(1), Some(1)), "{body}");
    let hits = post_json(&http, server.url("/v1/spaces/d/recall"), json!({"embedding": v(10), "k": 2})).await;
    let top: Vec<(u64, &str)> = hits["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["id"].as_u64().unwrap(), h["content"].as_str().unwrap()))
        .collect();
    assert!(top.contains(&(1, "new")) && top.contains(&(10, "c10")), "{hits}");

    // gRPC: DeleteObservations at each level, and its errors.
    let mut client = server.grpc_client().await;
    let resp = client
        .delete_observations(proto::DeleteObservationsRequest {
            memory_space: "d".into(),
            ids: vec![6, 7, 1000],
            wait: proto::WaitFor::Indexed as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.status, proto::AckStatus::Indexed as i32);
    assert_eq!((resp.deleted, resp.not_found), (2, 1));
    let err = client
        .delete_observations(proto::DeleteObservationsRequest { memory_space: "d".into(), ids: vec![], wait: 0 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("ids"), "{err:?}");
    let err = client
        .delete_observations(proto::DeleteObservationsRequest { memory_space: "nope".into(), ids: vec![1], wait: 0 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    // gRPC upsert on the stream: the ack counts what it replaced.
    let batch = proto::ObservationBatch {
        sequence: 1,
        memory_space: "d".into(),
        priority: 0,
        want_indexed: false,
        upsert: true,
        traceparent: String::new(),
        tracestate: String::new(),
        wait: proto::WaitFor::Indexed as i32,
        observations: vec![proto::Observation { id: 2, embedding: v(9), content: Some("up".into()) }],
    };
    let mut replies = client.stream_observations(tokio_stream::iter(vec![batch])).await.unwrap().into_inner();
    let mut statuses = Vec::new();
    while let Some(reply) = replies.message().await.unwrap() {
        if let Some(proto::stream_reply::Reply::Ack(a)) = reply.reply {
            if a.status == proto::AckStatus::Accepted as i32 {
                assert_eq!((a.accepted, a.replaced), (1, 1), "{a:?}");
            }
            statuses.push(a.status);
        }
    }
    assert_eq!(statuses.last(), Some(&(proto::AckStatus::Indexed as i32)), "{statuses:?}");
    let o: Value = http.get(server.url("/v1/spaces/d/observations/2")).send().await.unwrap().json().await.unwrap();
    assert_eq!(o["content"], "up");
    // gRPC recall with content (unset: true) and without: 2 and 9 hold the same vector now.
    let recall = |with_content| proto::RecallRequest {
        memory_space: "d".into(),
        embedding: v(9),
        k: 2,
        ef_search: 0,
        with_content,
    };
    for (with_content, want) in [(None, [(2, Some("up")), (9, Some("c9"))]), (Some(false), [(2, None), (9, None)])] {
        let hits = client.recall(recall(with_content)).await.unwrap().into_inner().hits;
        let mut got: Vec<_> = hits.iter().map(|h| (h.id, h.content.as_deref())).collect();
        got.sort_unstable();
        assert_eq!(got, want, "with_content {with_content:?}");
    }
    let text = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(sample(&text, r#"engram_streaming_observations_deleted_total{memory_space="d"}"#), Some(5.0));
    assert_eq!(sample(&text, r#"engram_streaming_observations_replaced_total{memory_space="d"}"#), Some(2.0));
    assert!(text.contains(r#"engram_grpc_requests_total{method="DeleteObservations",code="OK"}"#));
    server.stop().await;
}

/// Every batch's acks arrive in the order of their levels, ACCEPTED, DURABLE, INDEXED, with
/// nothing after INDEXED, also for inserts a checkpoint's copy defers (indexed, and
/// acknowledged INDEXED, at once: `Space::defer_put`). Checkpoints run every second here and
/// copy a growing GloVe index while 3,000 batches stream in; a `load` once failed on a batch
/// whose INDEXED came before its ACCEPTED ("ack for unknown sequence").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_of_a_batch_arrive_accepted_durable_indexed_also_while_checkpoints_defer_inserts() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(2);
    config.storage = engram_engine::StorageConfig {
        checkpoint_interval_s: 1,
        checkpoint_after_operations: 1,
        ..engram_engine::StorageConfig::at(dir.path(), engram_engine::Durability::Os)
    };
    let server = Running::start(config).await;
    let base = engram_dataset::read_fvecs(&data_dir("glove-50-angular-100k").join("base.fvecs")).unwrap();
    let mut client = server.grpc_client().await;
    client
        .create_space(proto::CreateSpaceRequest {
            memory_space: "ordered".into(),
            params: Some(proto::SpaceParams { dim: 50, ..Default::default() }),
        })
        .await
        .unwrap();
    let (batches, per_batch) = (3_000u64, 10u64);
    let requests = (1..=batches).map(move |seq| proto::ObservationBatch {
        sequence: seq,
        memory_space: "ordered".into(),
        wait: proto::WaitFor::Indexed as i32,
        observations: ((seq - 1) * per_batch..seq * per_batch)
            .map(|id| proto::Observation { id, embedding: base.row(id as usize).to_vec(), content: None })
            .collect(),
        ..Default::default()
    });
    let mut replies = client.stream_observations(tokio_stream::iter(requests)).await.unwrap().into_inner();
    let (accepted, durable, indexed) =
        (proto::AckStatus::Accepted as i32, proto::AckStatus::Durable as i32, proto::AckStatus::Indexed as i32);
    // The last level each batch was acknowledged at, in the order the acks came.
    let mut last = std::collections::HashMap::<u64, i32>::new();
    let mut indexed_batches = 0;
    while let Some(reply) = replies.message().await.unwrap() {
        let Some(proto::stream_reply::Reply::Ack(a)) = reply.reply else { continue };
        let before = last.insert(a.sequence, a.status);
        let expected = match a.status {
            s if s == accepted => None,
            s if s == durable => Some(accepted),
            s if s == indexed => Some(durable),
            _ => panic!("batch {} refused: {a:?}", a.sequence),
        };
        assert_eq!(before, expected, "batch {}: {a:?} came after {before:?}", a.sequence);
        if a.status == indexed {
            assert_eq!(a.indexed as u64, per_batch, "{a:?}");
            indexed_batches += 1;
            if indexed_batches == batches {
                break;
            }
        }
    }
    assert_eq!(indexed_batches, batches);
    let text = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
    // Counted when a copy ends (its checkpoint may still be committing).
    let deferred = sample(&text, "engram_storage_checkpoint_deferred_inserts_total").unwrap_or(0.0);
    eprintln!("{deferred} inserts deferred by checkpoints");
    assert!(deferred > 0.0, "no checkpoint copied the index while the batches streamed");
    server.stop().await;
}
