//! Snapshots over HTTP: a space written on one server, snapshotted, downloaded, uploaded to
//! another server and restored there answers recall exactly as the original did (ids and
//! scores); a stored snapshot restores by name; bad uploads are refused naming `snapshot`;
//! names cannot leave the snapshot directory; a memory-only server refuses with 409.

mod common;

use common::*;
use serde_json::{Value, json};

fn durable_config(dir: &std::path::Path) -> engram_server::ServerConfig {
    let mut c = config(2);
    c.storage = engram_engine::StorageConfig::at(dir, engram_engine::Durability::Os);
    c
}

async fn answers(http: &reqwest::Client, server: &Running, space: &str, queries: &[Vec<f32>]) -> Vec<Value> {
    let mut out = Vec::new();
    for q in queries {
        let url = server.url(&format!("/v1/spaces/{space}/recall"));
        out.push(post_json(http, url, json!({"embedding": q, "k": 10})).await["hits"].clone());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_moves_a_space_between_servers_over_http() {
    let data = data_dir("glove-50-angular-100k");
    let base = engram_dataset::read_fvecs(&data.join("base.fvecs")).unwrap();
    let query = engram_dataset::read_fvecs(&data.join("query.fvecs")).unwrap();
    let queries: Vec<Vec<f32>> = (0..50).map(|q| query.row(q).to_vec()).collect();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut b_config = durable_config(b_dir.path());
    let a = Running::start(durable_config(a_dir.path())).await;
    let http = reqwest::Client::new();
    let r = http.put(a.url("/v1/spaces/m")).json(&json!({"dim": 50})).send().await.unwrap();
    assert_eq!(r.status(), 201);
    for start in (0..3000).step_by(250) {
        let observations: Vec<Value> = (start..start + 250)
            .map(|i| json!({"id": i, "embedding": base.row(i), "content": format!("row {i}")}))
            .collect();
        let r = http
            .post(a.url("/v1/spaces/m/observations?wait=indexed"))
            .json(&json!({"observations": observations}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = http.post(a.url("/v1/spaces/m/observations/delete?wait=indexed")).json(&json!({"ids": [1, 2, 3]})).send();
    assert_eq!(r.await.unwrap().status(), 200);
    let before = answers(&http, &a, "m", &queries).await;

    // Create and list.
    let r = http.post(a.url("/v1/spaces/m/snapshots")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let info: Value = r.json().await.unwrap();
    let name = info["name"].as_str().unwrap().to_owned();
    let listed: Value = http.get(a.url("/v1/spaces/m/snapshots")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["snapshots"], json!([info]));

    // Download (streamed, with its length).
    let r = http.get(a.url(&format!("/v1/spaces/m/snapshots/{name}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let file = r.bytes().await.unwrap();
    assert_eq!(file.len() as u64, info["size_bytes"].as_u64().unwrap());

    // Upload to another server: the same answers, ids and scores.
    b_config.storage.max_snapshot_bytes = file.len() as u64 + 100;
    let b = Running::start(b_config).await;
    let restore = |server: &Running, space: &str, body: Vec<u8>| {
        http.post(server.url(&format!("/v1/spaces/{space}/snapshots/restore")))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
    };
    let r = restore(&b, "m", file.to_vec()).await.unwrap();
    assert_eq!(r.status(), 201);
    let space: Value = r.json().await.unwrap();
    assert_eq!(space["vectors"], 2997);
    assert_eq!(answers(&http, &b, "m", &queries).await, before);
    let got: Value = http.get(b.url("/v1/spaces/m/observations/42")).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["content"], "row 42");
    assert_eq!(http.get(b.url("/v1/spaces/m/observations/2")).send().await.unwrap().status(), 404);
    // The space exists now: 409.
    assert_eq!(restore(&b, "m", file.to_vec()).await.unwrap().status(), 409);

    // Bad uploads name `snapshot` and leave no space.
    let mut altered = file.to_vec();
    altered[file.len() / 2] ^= 4;
    for (what, body) in [("altered", altered), ("garbage", vec![7u8; 100]), ("too large", vec![0u8; file.len() + 200])]
    {
        let r = restore(&b, "bad", body).await.unwrap();
        assert_eq!(r.status(), 400, "{what}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["field"], "snapshot", "{what}: {e}");
        println!("{what}: {}", e["error"]["message"]);
        assert_eq!(http.get(b.url("/v1/spaces/bad")).send().await.unwrap().status(), 404, "{what}");
    }

    // By name on the server that holds it, under another space name.
    let r = http
        .post(a.url("/v1/spaces/copy/snapshots/restore"))
        .json(&json!({"name": name, "from_space": "m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(answers(&http, &a, "copy", &queries).await, before);

    // Names stay in their directory; a missing one is 404; delete removes it.
    let r = http.get(a.url("/v1/spaces/m/snapshots/..%2F..%2FLOCK")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = http.get(a.url("/v1/spaces/m/snapshots/none.snapshot")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = http.delete(a.url(&format!("/v1/spaces/m/snapshots/{name}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let listed: Value = http.get(a.url("/v1/spaces/m/snapshots")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["snapshots"], json!([]));
    a.stop().await;
    b.stop().await;

    // Without storage: 409, FAILED_PRECONDITION.
    let memory = Running::start(config(1)).await;
    http.put(memory.url("/v1/spaces/x")).json(&json!({"dim": 4})).send().await.unwrap();
    let r = http.post(memory.url("/v1/spaces/x/snapshots")).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"]["message"].as_str().unwrap().contains("durability = none"), "{e}");
    memory.stop().await;
}
