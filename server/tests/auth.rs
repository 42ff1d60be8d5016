//! API keys end to end, on both transports: each role's reach, 401 without a (valid) key, 403
//! without the grant (the same for a space that exists and one that does not), the space list
//! filtered by key, every refusal counted in `engram_auth_failures_total` and written to the
//! audit log with the admin actions, and a keys file re-read without a restart.

mod common;

use common::{Running, config};
use engram_server::auth::keys::{KeyConfig, new_key, sha256};
use engram_server::proto::{self, engram_client::EngramClient};
use serde_json::{Value, json};
use tonic::Code;

struct Keys {
    admin: String,
    reader: String,
    writer: String,
    metrics: String,
}

fn entry(name: &str, key: &str, grants: &[&str]) -> KeyConfig {
    KeyConfig::new(name, hex(&sha256(key)), grants.iter().map(|g| (*g).to_owned()).collect())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn with_key<T>(msg: T, key: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(k) = key {
        r.metadata_mut().insert("authorization", format!("Bearer {k}").parse().unwrap());
    }
    r
}

fn batch(sequence: u64, space: &str) -> proto::ObservationBatch {
    proto::ObservationBatch {
        sequence,
        memory_space: space.into(),
        priority: proto::Priority::Normal as i32,
        want_indexed: false,
        upsert: false,
        traceparent: String::new(),
        tracestate: String::new(),
        wait: proto::WaitFor::Indexed as i32,
        observations: vec![proto::Observation { id: 1000 + sequence, embedding: vec![0.0, 1.0, 0.0], content: None }],
    }
}

/// The status of the first ack of a one-batch stream sent with `key`.
async fn stream_one(
    client: &mut EngramClient<tonic::transport::Channel>,
    key: &str,
    b: proto::ObservationBatch,
) -> i32 {
    let req = with_key(tokio_stream::iter(vec![b]), Some(key));
    let mut replies = client.stream_observations(req).await.unwrap().into_inner();
    let mut last = None;
    while let Some(r) = replies.message().await.unwrap() {
        if let Some(proto::stream_reply::Reply::Ack(a)) = r.reply {
            last = Some(a.status);
        }
    }
    last.expect("an ack")
}

fn metric(text: &str, series: &str) -> f64 {
    common::sample(text, series).unwrap_or_else(|| panic!("no sample {series}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_reaches_what_it_is_granted_on_both_transports_and_every_refusal_is_counted_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let keys = Keys {
        admin: new_key().unwrap(),
        reader: new_key().unwrap(),
        writer: new_key().unwrap(),
        metrics: new_key().unwrap(),
    };
    let mut c = config(1);
    c.auth.keys = vec![
        entry("ops", &keys.admin, &["admin"]),
        entry("tenant-a-reader", &keys.reader, &["tenant-a-*=read"]),
        entry("tenant-a-writer", &keys.writer, &["tenant-a-*=write"]),
        entry("prometheus", &keys.metrics, &["metrics"]),
    ];
    c.auth.audit_log = Some(audit.clone());
    let server = Running::start(c).await;
    let http = reqwest::Client::new();
    let bearer = |k: &str| format!("Bearer {k}");

    // Probes stay open; everything else needs a key.
    assert_eq!(http.get(server.url("/health/live")).send().await.unwrap().status(), 200);
    assert_eq!(http.get(server.url("/health/ready")).send().await.unwrap().status(), 200);

    // The admin makes two tenants' spaces; the writer fills tenant A's.
    for space in ["tenant-a-docs", "tenant-b-docs"] {
        let r = http
            .put(server.url(&format!("/v1/spaces/{space}")))
            .header("authorization", bearer(&keys.admin))
            .json(&json!({"dim": 3}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{space}");
    }
    let write = |key: &str, space: &str, id: u64| {
        http.post(server.url(&format!("/v1/spaces/{space}/observations?wait=indexed")))
            .header("api-key", key.to_owned())
            .json(&json!({"observations": [{"id": id, "embedding": [1.0, 0.0, 0.0], "content": "private text"}]}))
            .send()
    };
    assert_eq!(write(&keys.writer, "tenant-a-docs", 1).await.unwrap().status(), 200);
    let recall = |key: Option<&str>, space: &str| {
        let mut r = http
            .post(server.url(&format!("/v1/spaces/{space}/recall")))
            .json(&json!({"embedding": [1.0, 0.0, 0.0], "k": 1}));
        if let Some(k) = key {
            r = r.header("authorization", format!("Bearer {k}"));
        }
        r.send()
    };

    // ---- HTTP ----
    // No key, a wrong key: 401 with the Bearer challenge, nothing about the space.
    let r = recall(None, "tenant-a-docs").await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "UNAUTHENTICATED");
    assert_eq!(body["error"]["reason"], "missing");
    let r = recall(Some("egk_0000"), "tenant-a-docs").await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["reason"], "invalid");
    assert_eq!(
        http.get(server.url("/no/such/route")).send().await.unwrap().status(),
        401,
        "no route map without a key"
    );

    // The reader recalls tenant A but cannot write there, and cannot see tenant B at all: the
    // same 403 for B's space as for a space that does not exist.
    let r = recall(Some(&keys.reader), "tenant-a-docs").await.unwrap();
    assert_eq!(r.status(), 200);
    let hits: Value = r.json().await.unwrap();
    assert_eq!(hits["hits"][0]["id"], 1);
    assert_eq!(write(&keys.reader, "tenant-a-docs", 2).await.unwrap().status(), 403);
    let denied_b = recall(Some(&keys.reader), "tenant-b-docs").await.unwrap();
    let denied_none = recall(Some(&keys.reader), "tenant-b-nothing").await.unwrap();
    assert_eq!(
        (denied_b.status(), denied_none.status()),
        (reqwest::StatusCode::FORBIDDEN, reqwest::StatusCode::FORBIDDEN)
    );
    let (b, none): (Value, Value) = (denied_b.json().await.unwrap(), denied_none.json().await.unwrap());
    assert_eq!(b["error"]["code"], "PERMISSION_DENIED");
    assert_eq!(
        b["error"]["message"].as_str().unwrap().replace("tenant-b-docs", "X"),
        none["error"]["message"].as_str().unwrap().replace("tenant-b-nothing", "X"),
        "an existing and a missing space are refused alike"
    );
    let listed: Value = http
        .get(server.url("/v1/spaces"))
        .header("authorization", bearer(&keys.reader))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listed["spaces"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["tenant-a-docs"], "the list holds only what the key may read");
    let all: Value = http
        .get(server.url("/v1/spaces"))
        .header("authorization", bearer(&keys.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["spaces"].as_array().unwrap().len(), 2);

    // The writer writes and deletes in tenant A but cannot drop it or snapshot it, nor write to B.
    assert_eq!(write(&keys.writer, "tenant-a-docs", 3).await.unwrap().status(), 200);
    let del = http
        .delete(server.url("/v1/spaces/tenant-a-docs/observations/3"))
        .header("authorization", bearer(&keys.writer))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 202, "deleted (durable)");
    let drop_a = http
        .delete(server.url("/v1/spaces/tenant-a-docs"))
        .header("authorization", bearer(&keys.writer))
        .send()
        .await
        .unwrap();
    assert_eq!(drop_a.status(), 403);
    let snap = http
        .post(server.url("/v1/spaces/tenant-a-docs/snapshots"))
        .header("authorization", bearer(&keys.writer))
        .send()
        .await
        .unwrap();
    assert_eq!(snap.status(), 403);
    assert_eq!(write(&keys.writer, "tenant-b-docs", 4).await.unwrap().status(), 403);

    // /metrics and /health/detailed: the `metrics` grant.
    assert_eq!(http.get(server.url("/metrics")).send().await.unwrap().status(), 401);
    assert_eq!(
        http.get(server.url("/metrics")).header("authorization", bearer(&keys.reader)).send().await.unwrap().status(),
        403
    );
    assert_eq!(
        http.get(server.url("/health/detailed"))
            .header("authorization", bearer(&keys.metrics))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // HTTP refusals so far: missing 3 (recall, unknown route, /metrics), invalid 1, forbidden 6
    // (reader write, recall B twice; writer drop, snapshot, write B) + 1 (reader /metrics).

    // ---- gRPC ----
    let mut client = server.grpc_client().await;
    let recall_req = |space: &str| proto::RecallRequest {
        memory_space: space.into(),
        embedding: vec![1.0, 0.0, 0.0],
        k: 1,
        ef_search: 0,
        with_content: None,
    };
    let e = client.recall(with_key(recall_req("tenant-a-docs"), None)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = client.recall(with_key(recall_req("tenant-a-docs"), Some("egk_wrong"))).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let ok = client.recall(with_key(recall_req("tenant-a-docs"), Some(&keys.reader))).await.unwrap().into_inner();
    assert_eq!(ok.hits[0].id, 1);
    let e = client.recall(with_key(recall_req("tenant-b-docs"), Some(&keys.reader))).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = client
        .get_space(with_key(proto::GetSpaceRequest { memory_space: "tenant-b-docs".into() }, Some(&keys.writer)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let listed =
        client.list_spaces(with_key(proto::ListSpacesRequest {}, Some(&keys.writer))).await.unwrap().into_inner();
    assert_eq!(listed.spaces.iter().map(|s| s.memory_space.as_str()).collect::<Vec<_>>(), ["tenant-a-docs"]);
    // The stream: a read key's batch is DENIED, a write key's is INDEXED, and B stays closed.
    assert_eq!(stream_one(&mut client, &keys.reader, batch(1, "tenant-a-docs")).await, proto::AckStatus::Denied as i32);
    assert_eq!(
        stream_one(&mut client, &keys.writer, batch(2, "tenant-a-docs")).await,
        proto::AckStatus::Indexed as i32
    );
    assert_eq!(stream_one(&mut client, &keys.writer, batch(3, "tenant-b-docs")).await, proto::AckStatus::Denied as i32);
    let e = client
        .stream_observations(with_key(tokio_stream::iter(vec![batch(4, "tenant-a-docs")]), None))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    // A write key cannot drop; the admin can.
    let drop = |space: &str| proto::DropSpaceRequest { memory_space: space.into() };
    let e = client.drop_space(with_key(drop("tenant-a-docs"), Some(&keys.writer))).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    client.drop_space(with_key(drop("tenant-b-docs"), Some(&keys.admin))).await.unwrap();
    // gRPC refusals: missing 2 (recall, stream), invalid 1, forbidden 5 (recall B, get B, reader
    // batch, writer batch to B, writer drop).

    // ---- counted ----
    let text = http
        .get(server.url("/metrics"))
        .header("authorization", bearer(&keys.metrics))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failures = |transport: &str, reason: &str| {
        metric(&text, &format!("engram_auth_failures_total{{transport=\"{transport}\",reason=\"{reason}\"}}"))
    };
    assert_eq!(failures("http", "missing"), 3.0);
    assert_eq!(failures("http", "invalid"), 1.0);
    assert_eq!(failures("http", "forbidden"), 7.0);
    assert_eq!(failures("grpc", "missing"), 2.0);
    assert_eq!(failures("grpc", "invalid"), 1.0);
    assert_eq!(failures("grpc", "forbidden"), 5.0);
    assert_eq!(metric(&text, "engram_auth_enabled"), 1.0);
    assert_eq!(metric(&text, "engram_auth_keys"), 4.0);

    // ---- audited ----
    let lines: Vec<Value> =
        std::fs::read_to_string(&audit).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let count = |transport: &str, outcome: &str| {
        lines.iter().filter(|l| l["transport"] == transport && l["outcome"] == outcome).count()
    };
    assert_eq!((count("http", "missing"), count("http", "invalid"), count("http", "forbidden")), (3, 1, 7));
    assert_eq!((count("grpc", "missing"), count("grpc", "invalid"), count("grpc", "forbidden")), (2, 1, 5));
    let admin_ok: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| l["outcome"] == "ok")
        .map(|l| (l["action"].as_str().unwrap(), l["memory_space"].as_str().unwrap()))
        .collect();
    assert_eq!(
        admin_ok,
        [("space.create", "tenant-a-docs"), ("space.create", "tenant-b-docs"), ("space.drop", "tenant-b-docs")],
        "every admin action, and only those, is audited when it succeeds"
    );
    let denied_drop = lines.iter().find(|l| l["action"] == "space.drop" && l["outcome"] == "forbidden").unwrap();
    assert_eq!(denied_drop["key"], "tenant-a-writer");
    assert_eq!(denied_drop["status"], "403");
    assert!(denied_drop["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{denied_drop}");
    assert!(denied_drop["time"].as_str().unwrap().ends_with('Z'));
    let raw = std::fs::read_to_string(&audit).unwrap();
    for k in [&keys.admin, &keys.reader, &keys.writer, &keys.metrics] {
        assert!(!raw.contains(k.as_str()), "the audit log never holds a key");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_added_to_the_keys_file_works_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.toml");
    std::fs::write(&file, "").unwrap();
    let mut c = config(1);
    c.auth.keys_file = Some(file.clone());
    let server = Running::start(c).await;
    let http = reqwest::Client::new();
    let key = new_key().unwrap();
    let get = || http.get(server.url("/v1/spaces")).header("authorization", format!("Bearer {key}")).send();
    assert_eq!(get().await.unwrap().status(), 401, "an empty keys file still turns auth on");
    std::fs::write(
        &file,
        format!("[[keys]]\nname = \"late\"\nsha256 = \"{}\"\ngrants = [\"x=read\"]\n", hex(&sha256(&key))),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let status = get().await.unwrap().status();
        if status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the new key was not picked up: {status}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // A broken file keeps the keys in force.
    std::fs::write(&file, "[[keys]]\nname = 7\n").unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(get().await.unwrap().status(), 200);
    server.stop().await;
}

/// One key driven over its limits, over HTTP and gRPC: 429 / RESOURCE_EXHAUSTED with the wait,
/// reason `rate_limited`, counted apart from backpressure; another key is unaffected; and every
/// observation sent was either accepted or refused (sent = accepted + rejected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_limit_is_refused_with_retry_after_and_another_key_is_not() {
    let (slow, fast) = (new_key().unwrap(), new_key().unwrap());
    let mut c = config(1);
    let mut limited = entry("limited", &slow, &["s*=write"]);
    limited.requests_per_second = Some(5);
    limited.observations_per_second = Some(40);
    c.auth.keys = vec![limited, entry("unlimited", &fast, &["admin"])];
    let server = Running::start(c).await;
    let http = reqwest::Client::new();
    let r = http
        .put(server.url("/v1/spaces/s1"))
        .header("authorization", format!("Bearer {fast}"))
        .json(&json!({"dim": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // HTTP: 30 one-observation writes as fast as they go. The bucket holds 5 requests and
    // refills at 5/s, so most are refused.
    let (mut accepted, mut refused, mut sent) = (0u64, 0u64, 0u64);
    for id in 0..30u64 {
        let r = http
            .post(server.url("/v1/spaces/s1/observations?wait=accepted"))
            .header("authorization", format!("Bearer {slow}"))
            .json(&json!({"observations": [{"id": id, "embedding": [1.0, 0.0, 0.0]}]}))
            .send()
            .await
            .unwrap();
        sent += 1;
        match r.status().as_u16() {
            202 => accepted += 1,
            429 => {
                refused += 1;
                let secs: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=1).contains(&secs), "Retry-After {secs}");
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["error"]["reason"], "rate_limited");
                assert_eq!(body["error"]["code"], "RESOURCE_EXHAUSTED");
                assert!(body["error"]["retry_after_ms"].as_u64().unwrap() <= 200, "{body}");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(refused >= 10 && accepted >= 5, "accepted {accepted}, refused {refused}");
    assert_eq!(sent, accepted + refused);
    // The other key, at the same moment, is not limited at all.
    for id in 100..130u64 {
        let r = http
            .post(server.url("/v1/spaces/s1/observations?wait=accepted"))
            .header("authorization", format!("Bearer {fast}"))
            .json(&json!({"observations": [{"id": id, "embedding": [0.0, 1.0, 0.0]}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }

    // gRPC: after the bucket refills, batches of 20 observations: the observation bucket (40)
    // admits two, then REJECTED with rate_limited and a wait; a batch over the whole bucket is
    // INVALID (it could never pass).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut client = server.grpc_client().await;
    let rows = |seq: u64, n: u64| proto::ObservationBatch {
        observations: (0..n)
            .map(|i| proto::Observation { id: 10_000 + seq * 100 + i, embedding: vec![0.0, 0.0, 1.0], content: None })
            .collect(),
        wait: proto::WaitFor::Accepted as i32,
        ..batch(seq, "s1")
    };
    let batches = vec![rows(1, 20), rows(2, 20), rows(3, 20), rows(4, 41)];
    let req = with_key(tokio_stream::iter(batches), Some(&slow));
    let mut replies = client.stream_observations(req).await.unwrap().into_inner();
    let mut acks = Vec::new();
    while let Some(r) = replies.message().await.unwrap() {
        if let Some(proto::stream_reply::Reply::Ack(a)) = r.reply {
            acks.push(a);
        }
    }
    let status = |seq: u64| acks.iter().find(|a| a.sequence == seq).unwrap();
    assert_eq!(status(1).status, proto::AckStatus::Accepted as i32);
    assert_eq!(status(2).status, proto::AckStatus::Accepted as i32);
    let third = status(3);
    assert_eq!((third.status, third.reason.as_str()), (proto::AckStatus::Rejected as i32, "rate_limited"));
    assert!(third.retry_after_ms > 0 && third.retry_after_ms <= 1000, "{third:?}");
    assert_eq!(status(4).status, proto::AckStatus::Invalid as i32);

    // Counted apart from backpressure, by key; accepted observations are exactly what was
    // admitted.
    let text = http
        .get(server.url("/metrics"))
        .header("authorization", format!("Bearer {fast}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric(&text, "engram_rate_limited_total{key=\"limited\",limit=\"requests\"}"), refused as f64);
    assert_eq!(metric(&text, "engram_rate_limited_total{key=\"limited\",limit=\"observations\"}"), 2.0);
    assert_eq!(metric(&text, "engram_rate_limited_total{key=\"unlimited\",limit=\"requests\"}"), 0.0);
    let admitted: f64 = text
        .lines()
        .filter(|l| l.starts_with("engram_streaming_observations_total{") && l.contains("memory_space=\"s1\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(admitted, (accepted + 30 + 40) as f64, "HTTP accepted + the other key's 30 + two gRPC batches");
    server.stop().await;
}
