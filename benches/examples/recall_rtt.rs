//! What the gRPC `Recall` round trip adds to the search: the server in this process, the same
//! queries at the same `ef_search` run alternately through `Engine::recall` (in process) and
//! through a gRPC client over loopback, as one JSON object on stdout.
//!
//! ```sh
//! cargo run --release -p engram-benches --example recall_rtt -- DATASET [EF] [ROUNDS]
//! # e.g. minilm-384-stdlib 128 5
//! ```
//! Binds `engram_server::Server` (2 workers, embedded defaults, `fsync` on a fresh data
//! directory under the system temp directory, both listeners on loopback ports the OS picks),
//! creates a space with the defaults (cosine, `M` 16, `ef_construction` 200, the default
//! quantization) and ingests every base vector through the engine, with `base.txt` as content
//! where the set has it, each batch acknowledged INDEXED. After 15 s for the store's
//! background work, every query runs once unmeasured, then `ROUNDS` (default 5) rounds each
//! run every query in process and then over gRPC, one at a time, at `EF` (default 128). The
//! client has a runtime of its own on the main thread (a separate client process has one
//! too); the server runs on a 2-worker runtime, as `engram-stream serve` does on 2 cores.
//!
//! Within a round each query runs both ways back to back (the order alternating), so
//! background work of the store slows both alike. Reported per round: the p50 of each path
//! and the p50 of the per-query differences, in milliseconds; and the median over the rounds
//! of that difference (`added_ms_p50`), the figure the target is about. Hits must be the
//! same ids either way (the same search), which is checked for every query.

use engram_engine::{SpaceParams, StorageConfig};
use engram_server::proto::{self, engram_client::EngramClient};
use engram_server::{Server, ServerConfig};
use std::time::{Duration, Instant};

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: recall_rtt DATASET [EF] [ROUNDS]";
    let name = args.next().expect(usage);
    let ef: usize = args.next().map_or(128, |e| e.parse().expect("EF: a whole number"));
    let rounds: usize = args.next().map_or(5, |r| r.parse().expect("ROUNDS: a whole number")).max(1);
    let data = engram_benches::read_data(&name);
    let text = engram_dataset::read_lines(&engram_benches::data_dir(&name).join("base.txt")).ok();
    let k = 10;

    let data_dir = std::env::temp_dir().join(format!("engram-recall-rtt-{}", std::process::id()));
    let mut config = ServerConfig {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        storage: StorageConfig::at(&data_dir, engram_engine::Durability::Fsync),
        ..ServerConfig::default()
    };
    config.engine.workers = 2;
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = server_rt.block_on(Server::bind(config)).unwrap();
    let engine = server.engine();
    let grpc = format!("http://{}", server.grpc_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = server_rt.spawn(server.run(async move {
        let _ = stopped.await;
    }));
    while !engine.is_ready() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let params = SpaceParams { max_elements: data.base.len(), ..SpaceParams::with_dim(data.base.dim) };
    let (info, _) = engine.create_space("rtt", params).unwrap();
    engram_benches::ingest_indexed(&engine, "rtt", &data.base, text.as_deref(), |_| {});
    std::thread::sleep(Duration::from_secs(15));

    let client_rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut client = client_rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(grpc).unwrap().connect().await.unwrap();
        EngramClient::new(channel).max_decoding_message_size(64 << 20)
    });
    let nq = data.queries.len();
    let mut plain_client = client.clone();
    let in_process = |q: usize| engine.recall("rtt", data.queries.row(q).to_vec(), k, Some(ef)).unwrap();
    let mut over_grpc = |q: usize| {
        let req = proto::RecallRequest {
            memory_space: "rtt".into(),
            embedding: data.queries.row(q).to_vec(),
            k: k as u32,
            ef_search: ef as u32,
            with_content: None,
        };
        client_rt.block_on(client.recall(req)).unwrap().into_inner().hits
    };
    for q in 0..nq {
        let a: Vec<u64> = in_process(q).iter().map(|h| h.id).collect();
        let b: Vec<u64> = over_grpc(q).iter().map(|h| h.id).collect();
        assert_eq!(a, b, "query {q}: the same search in process and over gRPC");
    }
    let mut report_rounds = Vec::new();
    let mut added = Vec::new();
    for _ in 0..rounds {
        let (mut local, mut remote, mut diff) =
            (Vec::with_capacity(nq), Vec::with_capacity(nq), Vec::with_capacity(nq));
        for q in 0..nq {
            // Each query both ways, back to back, the order alternating: a burst of background
            // work lands on both paths alike, and the per-query difference cancels it out.
            let mut time = |grpc: bool| {
                let t0 = Instant::now();
                if grpc {
                    std::hint::black_box(over_grpc(q));
                } else {
                    std::hint::black_box(in_process(q));
                }
                t0.elapsed().as_secs_f64() * 1e3
            };
            let (l, r) = if q % 2 == 0 {
                let l = time(false);
                (l, time(true))
            } else {
                let r = time(true);
                (time(false), r)
            };
            local.push(l);
            remote.push(r);
            diff.push(r - l);
        }
        let mut floor = Vec::with_capacity(nq);
        for _ in 0..nq {
            let t0 = Instant::now();
            let req = proto::GetSpaceRequest { memory_space: "rtt".into() };
            std::hint::black_box(client_rt.block_on(plain_client.get_space(req)).unwrap());
            floor.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let d = p50(diff);
        added.push(d);
        report_rounds.push(serde_json::json!({"in_process_ms_p50": p50(local), "grpc_ms_p50": p50(remote), "added_ms_p50": d, "get_space_ms_p50": p50(floor)}));
    }
    let report = serde_json::json!({
        "dataset": name,
        "vectors": data.base.len(),
        "queries": nq,
        "ef_search": ef,
        "k": k,
        "quantization": info.params.quantization().as_str(),
        "content": text.is_some(),
        "cores": std::thread::available_parallelism().map_or(1, |c| c.get()),
        "rounds": report_rounds,
        "added_ms_p50": p50(added),
    });
    let _ = stop.send(());
    server_rt.block_on(running).unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&data_dir);
    println!("{report}");
}
