//! Traces end to end: an OTLP/gRPC receiver runs inside the test (tonic and
//! `opentelemetry-proto`), the server exports to it, and the spans that arrive are checked: one
//! trace per batch or recall, under the client's `traceparent`, with a span per stage parented
//! on the server span, the semantic-convention and `engram.*` attributes, and the trace id
//! returned to the client. A rejected batch is traced although the sampler traces nothing
//! else; with the receiver down, every batch is still acknowledged and the spans that could
//! not go are counted.

mod common;

use common::{Running, config};
use engram_server::proto;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_stream::wrappers::ReceiverStream;

/// The JSON log lines the server wrote in this test process (a global subscriber at debug).
fn log_lines() -> &'static Mutex<Vec<u8>> {
    static LINES: std::sync::OnceLock<Mutex<Vec<u8>>> = std::sync::OnceLock::new();
    let lines = LINES.get_or_init(|| Mutex::new(Vec::new()));
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        struct Writer;
        impl std::io::Write for Writer {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                log_lines().lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let subscriber =
            tracing_subscriber::fmt().json().with_env_filter("engram_server=debug").with_writer(|| Writer).finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
    lines
}

/// Spans received, with their resource's `service.name`.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<(String, Span)>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .map(|a| text(a.value.as_ref().and_then(|v| v.value.as_ref())))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                spans.extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn text(v: Option<&AnyValue>) -> String {
    match v {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).map(|a| text(a.value.as_ref().and_then(|v| v.value.as_ref())))
}

async fn start_receiver() -> (SocketAddr, Receiver) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = Receiver::default();
    let service = TraceServiceServer::new(receiver.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (addr, receiver)
}

const HTTP_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const GRPC_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const RECALL_TRACE: &str = "5b8efff798038103d269b633813fc60c";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The spans of trace `id`: its server span and the stages under it, by name.
fn trace<'a>(spans: &'a [(String, Span)], id: &str) -> (&'a Span, HashMap<&'a str, &'a Span>) {
    let of: Vec<&Span> = spans.iter().map(|(_, s)| s).filter(|s| hex(&s.trace_id) == id).collect();
    let roots: Vec<&&Span> = of.iter().filter(|s| s.kind == 2).collect();
    assert_eq!(roots.len(), 1, "one server span in trace {id}: {of:#?}");
    let root = *roots[0];
    let stages: HashMap<&str, &Span> = of.iter().filter(|s| s.kind != 2).map(|s| (s.name.as_str(), *s)).collect();
    assert_eq!(stages.len() + 1, of.len(), "stage names are distinct in trace {id}");
    for s in stages.values() {
        assert_eq!(s.parent_span_id, root.span_id, "{} is a child of the server span", s.name);
        assert_eq!(s.kind, 1, "{} is INTERNAL", s.name);
        assert!(
            s.start_time_unix_nano >= root.start_time_unix_nano && s.end_time_unix_nano <= root.end_time_unix_nano,
            "{} lies within the server span",
            s.name
        );
        assert!(s.start_time_unix_nano <= s.end_time_unix_nano, "{} ends after it starts", s.name);
    }
    (root, stages)
}

const BATCH_STAGES: [&str; 8] =
    ["parse", "validate", "admit", "log.append", "log.sync", "queue.wait", "index.insert", "ack"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_and_recalls_arrive_as_one_trace_each_with_a_span_per_stage_and_rejections_are_always_traced() {
    let logs = log_lines();
    let (collector, receiver) = start_receiver().await;
    let data = tempfile::tempdir().unwrap();
    let mut c = config(2);
    c.engine.queue_capacity = 100;
    // Durable (fsync) storage: the log append and sync are real stages.
    c.storage = engram_engine::StorageConfig { data_dir: data.path().to_owned(), ..Default::default() };
    c.tracing.otlp_endpoint = Some(format!("http://{collector}"));
    c.tracing.service_name = Some("engram-test".into());
    // Ratio 0: only what a client's sampled traceparent asks for, and what is forced.
    c.tracing.sampler = Some("parentbased_traceidratio".into());
    c.tracing.sampler_ratio = Some(0.0);
    c.tracing.export_interval_ms = 50;
    let server = Running::start(c).await;
    let http = reqwest::Client::new();
    let r = http.put(server.url("/v1/spaces/t")).json(&json!({"dim": 3})).send().await.unwrap();
    assert!(r.status().is_success());
    let obs = |from: u64, n: u64| -> Vec<Value> {
        (from..from + n).map(|i| json!({"id": i, "embedding": [1.0, i as f32, 0.5], "content": "text"})).collect()
    };

    // One HTTP batch under the client's sampled span.
    let r = http
        .post(server.url("/v1/spaces/t/observations?wait=indexed"))
        .header("traceparent", format!("00-{HTTP_TRACE}-{CLIENT_SPAN}-01"))
        .json(&json!({"priority": "high", "observations": obs(0, 10)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let back = r.headers()["traceresponse"].to_str().unwrap().to_owned();
    assert!(back.starts_with(&format!("00-{HTTP_TRACE}-")) && back.ends_with("-01"), "{back}");

    // One gRPC stream batch with its own traceparent, and one without (ratio 0: not traced).
    let mut client = server.grpc_client().await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut replies = client.stream_observations(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let batch = |sequence: u64, traceparent: String, from: u64| proto::ObservationBatch {
        sequence,
        memory_space: "t".into(),
        priority: proto::Priority::Normal as i32,
        observations: (from..from + 10)
            .map(|i| proto::Observation { id: i, embedding: vec![0.5, i as f32, 1.0], content: None })
            .collect(),
        want_indexed: false,
        wait: proto::WaitFor::Indexed as i32,
        upsert: false,
        traceparent,
        tracestate: "engram=test".into(),
    };
    tx.send(batch(1, format!("00-{GRPC_TRACE}-{CLIENT_SPAN}-01"), 100)).await.unwrap();
    tx.send(batch(2, String::new(), 200)).await.unwrap();
    let mut first_ack = HashMap::new();
    let mut indexed = 0;
    while indexed < 2 {
        let reply = tokio::time::timeout(Duration::from_secs(30), replies.message()).await.unwrap().unwrap().unwrap();
        let Some(proto::stream_reply::Reply::Ack(ack)) = reply.reply else { continue };
        first_ack.entry(ack.sequence).or_insert(ack.traceresponse.clone());
        if ack.status == proto::AckStatus::Indexed as i32 {
            assert_eq!(ack.indexed, 10);
            indexed += 1;
        }
    }
    assert!(first_ack[&1].starts_with(&format!("00-{GRPC_TRACE}-")), "{first_ack:?}");
    assert!(first_ack[&2].ends_with("-00"), "an unsampled batch says so: {first_ack:?}");
    let untraced = first_ack[&2][3..35].to_owned();
    drop(tx);

    // A recall under the client's span.
    let r = http
        .post(server.url("/v1/spaces/t/recall"))
        .header("traceparent", format!("00-{RECALL_TRACE}-{CLIENT_SPAN}-01"))
        .json(&json!({"embedding": [1.0, 2.0, 0.5], "k": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Rejected batches, without a traceparent: one with a wrong dimension (400), one refused by
    // backpressure (429) while the pool is paused and the queue is past Critical.
    let r = http
        .post(server.url("/v1/spaces/t/observations"))
        .json(&json!({"observations": [{"id": 999, "embedding": [1.0]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let invalid = r.headers()["traceresponse"].to_str().unwrap()[3..35].to_owned();
    server.engine.pause();
    let r = http
        .post(server.url("/v1/spaces/t/observations"))
        .json(&json!({"observations": obs(1000, 85)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http
        .post(server.url("/v1/spaces/t/observations"))
        .json(&json!({"priority": "low", "observations": obs(2000, 5)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let rejected = r.headers()["traceresponse"].to_str().unwrap()[3..35].to_owned();
    server.engine.resume();
    let metrics = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    server.stop().await; // flushes the exporter

    let spans = receiver.0.lock().unwrap().clone();
    assert!(spans.iter().all(|(service, _)| service == "engram-test"), "service.name from the config");

    // The HTTP batch.
    let (root, stages) = trace(&spans, HTTP_TRACE);
    assert_eq!(root.name, "POST /v1/spaces/{space}/observations");
    assert_eq!(hex(&root.parent_span_id), CLIENT_SPAN, "the server span continues the client's");
    assert_eq!(back[36..52], hex(&root.span_id), "traceresponse names the server span");
    for (k, v) in [
        ("http.request.method", "POST"),
        ("http.route", "/v1/spaces/{space}/observations"),
        ("http.response.status_code", "200"),
        ("engram.memory_space", "t"),
        ("engram.batch.size", "10"),
        ("engram.priority", "high"),
        ("engram.ack", "indexed"),
        ("engram.backpressure.level", "NORMAL"),
    ] {
        assert_eq!(attr(root, k).as_deref(), Some(v), "{k} of {root:#?}");
    }
    let mut names: Vec<&str> = stages.keys().copied().collect();
    names.sort_unstable();
    let mut want = BATCH_STAGES.to_vec();
    want.sort_unstable();
    assert_eq!(names, want);
    assert_eq!(attr(stages["index.insert"], "engram.batch.indexed").as_deref(), Some("10"));
    assert!(stages["queue.wait"].end_time_unix_nano <= stages["index.insert"].start_time_unix_nano + 1);
    assert!(stages["log.append"].end_time_unix_nano <= stages["log.sync"].end_time_unix_nano);

    // The gRPC stream batch.
    let (root, stages) = trace(&spans, GRPC_TRACE);
    assert_eq!(root.name, "engram.v1.Engram/StreamObservations");
    assert_eq!(hex(&root.parent_span_id), CLIENT_SPAN);
    assert_eq!(root.trace_state, "engram=test", "tracestate is carried");
    for (k, v) in [
        ("rpc.system", "grpc"),
        ("rpc.service", "engram.v1.Engram"),
        ("rpc.method", "StreamObservations"),
        ("rpc.grpc.status_code", "0"),
        ("engram.batch.sequence", "1"),
        ("engram.batch.size", "10"),
        ("engram.priority", "normal"),
    ] {
        assert_eq!(attr(root, k).as_deref(), Some(v), "{k} of {root:#?}");
    }
    let mut names: Vec<&str> = stages.keys().copied().collect();
    names.sort_unstable();
    assert_eq!(names, want);
    assert!(spans.iter().all(|(_, s)| hex(&s.trace_id) != untraced), "the unsampled batch was not exported");

    // The recall.
    let (root, stages) = trace(&spans, RECALL_TRACE);
    assert_eq!(root.name, "POST /v1/spaces/{space}/recall");
    let mut names: Vec<&str> = stages.keys().copied().collect();
    names.sort_unstable();
    assert_eq!(names, ["content.fetch", "parse", "search", "validate"]);
    assert_eq!(attr(root, "engram.recall.hits").as_deref(), Some("3"));

    // The rejections: traced although the sampler traced nothing, with an error status.
    let (root, _) = trace(&spans, &invalid);
    assert_eq!(root.status.as_ref().map(|s| s.code), Some(2), "ERROR status: {root:#?}");
    // The request's log line carries its trace id.
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("request refused") && l.contains("embedding"))
        .unwrap_or_else(|| panic!("the refusal is logged: {text}"));
    let line: Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["span"]["trace_id"], invalid.as_str(), "{line}");
    assert!(root.status.as_ref().unwrap().message.contains("embedding"), "{root:#?}");
    assert_eq!(attr(root, "http.response.status_code").as_deref(), Some("400"));
    let (root, _) = trace(&spans, &rejected);
    assert_eq!(attr(root, "engram.outcome").as_deref(), Some("backpressure_critical"));
    assert_eq!(attr(root, "engram.backpressure.level").as_deref(), Some("CRITICAL"));
    assert_eq!(root.status.as_ref().map(|s| s.code), Some(2));

    // Counted: the 3 requests the client sampled (the PUT had no traceparent, and ratio 0), and
    // the 2 forced.
    let value = |line: &str| -> f64 {
        metrics.lines().find(|l| l.starts_with(line)).and_then(|l| l.rsplit(' ').next()).unwrap().parse().unwrap()
    };
    assert_eq!(value("engram_traces_sampled_total{reason=\"forced\"}"), 2.0, "{metrics}");
    assert_eq!(value("engram_traces_sampled_total{reason=\"sampler\"}"), 3.0);
    assert_eq!(value("engram_trace_spans_dropped_total{reason=\"queue_full\"}"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_collector_down_every_batch_is_acknowledged_and_the_lost_spans_are_counted() {
    log_lines(); // one subscriber for the whole test binary, whichever test starts first
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut c = config(2);
    c.tracing.otlp_endpoint = Some(format!("http://{closed}"));
    c.tracing.sampler = Some("always_on".into());
    c.tracing.export_queue_spans = 32;
    c.tracing.export_timeout_secs = 1;
    c.tracing.export_interval_ms = 50;
    let server = Running::start(c).await;
    let http = reqwest::Client::new();
    http.put(server.url("/v1/spaces/d")).json(&json!({"dim": 3})).send().await.unwrap();
    let mut client = server.grpc_client().await;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let mut replies = client.stream_observations(ReceiverStream::new(rx)).await.unwrap().into_inner();
    const BATCHES: u64 = 60;
    for b in 0..BATCHES {
        tx.send(proto::ObservationBatch {
            sequence: b,
            memory_space: "d".into(),
            priority: proto::Priority::Normal as i32,
            observations: (b * 20..b * 20 + 20)
                .map(|i| proto::Observation { id: i, embedding: vec![1.0, i as f32, 0.0], content: None })
                .collect(),
            want_indexed: false,
            wait: proto::WaitFor::Indexed as i32,
            upsert: false,
            traceparent: String::new(),
            tracestate: String::new(),
        })
        .await
        .unwrap();
    }
    drop(tx);
    let mut indexed = 0;
    while let Some(reply) = tokio::time::timeout(Duration::from_secs(60), replies.message()).await.unwrap().unwrap() {
        if let Some(proto::stream_reply::Reply::Ack(ack)) = reply.reply {
            assert_ne!(ack.status, proto::AckStatus::Rejected as i32, "{ack:?}");
            if ack.status == proto::AckStatus::Indexed as i32 {
                assert_eq!(ack.indexed, 20);
                indexed += 1;
            }
        }
    }
    assert_eq!(indexed, BATCHES, "every batch acknowledged INDEXED");
    // 60 traced batches of 9 spans into a queue of 32: most are dropped at once, and what was
    // queued fails to export (counted once its export gives up).
    let metrics = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let value = |line: &str| -> f64 {
        metrics.lines().find(|l| l.starts_with(line)).and_then(|l| l.rsplit(' ').next()).unwrap().parse().unwrap()
    };
    assert_eq!(value("engram_traces_sampled_total{reason=\"sampler\"}"), BATCHES as f64 + 1.0, "the PUT too");
    assert!(value("engram_trace_spans_dropped_total{reason=\"queue_full\"}") > 0.0, "{metrics}");
    assert_eq!(value("engram_trace_spans_exported_total"), 0.0);
    assert_eq!(server.engine.describe_space("d").unwrap().vectors, (BATCHES * 20) as usize);
    server.stop().await;
}
