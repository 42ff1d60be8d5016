//! A full disk, for real: the data directory on a small tmpfs (mounted by the test; it needs
//! root, and says so and stops when it cannot mount). Writes go on until the filesystem is full:
//! then new batches are refused with 507, reason `storage_full` and a `Retry-After`, counted in
//! `engram_storage_errors_total{kind="storage_full"}`, and the server stays up. When the
//! filesystem grows, the store heals by itself and writes are accepted again, no restart.
//! Nothing acknowledged DURABLE is lost: the data directory, copied to a roomy disk after a
//! kill -9, holds every acknowledged observation, before the disk filled and after it healed.
//! (The same paths without root, and an I/O error: `engine/tests/faults.rs`.)

mod common;

use common::{copy_dir, free_port, open_recovered, sample};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Unmounts the tmpfs when the test ends, however it ends.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_new_writes_with_507_heals_when_space_returns_and_keeps_what_was_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted =
        Command::new("mount").args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"]).arg(&mnt).stderr(Stdio::piped()).output();
    match mounted {
        Ok(o) if o.status.success() => {}
        other => {
            // Not a pass: the output says the real-disk case did not run and why.
            println!(
                "NOT RUN: cannot mount a 3 MiB tmpfs for the full-disk case (needs root): {:?}",
                other.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            );
            return;
        }
    }
    let _mount = Mount(mnt.clone());
    let data_dir = mnt.join("data");
    let log = tmp.path().join("server.log");
    let (http_port, grpc_port) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{http_port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_engram-stream"))
        .args([
            "serve",
            "--http-addr",
            &format!("127.0.0.1:{http_port}"),
            "--grpc-addr",
            &format!("127.0.0.1:{grpc_port}"),
        ])
        .arg("--data-dir")
        .arg(&data_dir)
        .env("ENGRAM_ENGINE__WORKERS", "1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let started = Instant::now();
    while !http.get(format!("{url}/health/ready")).send().await.is_ok_and(|r| r.status() == 200) {
        if let Ok(Some(s)) = child.try_wait() {
            panic!("server exited at start on a 3 MiB filesystem ({s}): {}", std::fs::read_to_string(&log).unwrap());
        }
        assert!(started.elapsed() < Duration::from_secs(30), "not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = http.put(format!("{url}/v1/spaces/full")).json(&json!({ "dim": 64 })).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    // 50 observations of 64 random f32 and 200 random characters (the store compresses, so
    // nothing repetitive): about 23 KB a batch, so 3 MiB fills within a few hundred batches.
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut acked = Vec::new();
    let mut refusal = None;
    for b in 0..2_000u64 {
        let body = json!({ "observations": (0..50).map(|j| {
            let id = b * 50 + j;
            let embedding: Vec<f32> = (0..64).map(|_| (next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5).collect();
            let text: String = (0..200).map(|_| char::from(b'a' + (next() % 26) as u8)).collect();
            json!({ "id": id, "embedding": embedding, "content": text })
        }).collect::<Vec<_>>() });
        let r = http.post(format!("{url}/v1/spaces/full/observations?wait=durable")).json(&body).send().await.unwrap();
        match r.status().as_u16() {
            202 => acked.extend(b * 50..b * 50 + 50),
            507 => {
                let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                let v: Value = r.json().await.unwrap();
                refusal = Some((retry, v));
                break;
            }
            s => panic!("batch {b}: unexpected {s}: {}", r.text().await.unwrap()),
        }
    }
    let (retry, body) = refusal.expect("3 MiB never filled");
    assert_eq!(body["error"]["reason"], "storage_full", "{body}");
    assert!(retry.is_some(), "no Retry-After on 507");
    // Still up, still counting.
    assert_eq!(http.get(format!("{url}/health/live")).send().await.unwrap().status(), 200);
    let metrics = http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    let full = sample(&metrics, r#"engram_storage_errors_total{kind="storage_full"}"#).unwrap();
    assert!(full >= 1.0, "storage_full errors not counted");
    // Another batch while full is refused the same way, and nothing of it is kept.
    let again = json!({ "observations": [{ "id": 999_999_999u64, "embedding": vec![1.0f32; 64] }] });
    let r = http.post(format!("{url}/v1/spaces/full/observations?wait=durable")).json(&again).send().await.unwrap();
    assert!([503, 507].contains(&r.status().as_u16()), "{}", r.status());
    let r = http.get(format!("{url}/v1/spaces/full/observations/999999999")).send().await.unwrap();
    assert_eq!(r.status(), 404, "a refused observation was kept");

    // Space comes back (the tmpfs grows): the store heals by itself (reopened, the writes no
    // sync covered written again) and writes are accepted again, without a restart.
    let grown = Command::new("mount").args(["-o", "remount,size=64m"]).arg(&mnt).status().unwrap();
    assert!(grown.success());
    let regrown = Instant::now();
    let mut refusals = 0;
    loop {
        let body = json!({ "observations": [{ "id": 888_000_000u64, "embedding": vec![0.5f32; 64] }] });
        let r = http.post(format!("{url}/v1/spaces/full/observations?wait=durable")).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        if status == 202 {
            acked.push(888_000_000);
            break;
        }
        let v: Value = r.json().await.unwrap();
        assert!([503, 507].contains(&status), "while healing: {status} {v}");
        assert!(regrown.elapsed() < Duration::from_secs(30), "the store did not heal within 30 s: {status} {v}");
        refusals += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("the filesystem grew: writes accepted again after {:?} ({refusals} refusals)", regrown.elapsed());
    for b in 0..20u64 {
        let body = json!({ "observations": (0..50).map(|j| {
            let id = 900_000_000 + b * 50 + j;
            json!({ "id": id, "embedding": (0..64).map(|k| ((id + k) % 97) as f32 / 97.0).collect::<Vec<f32>>(), "content": format!("after {id}") })
        }).collect::<Vec<_>>() });
        let r = http.post(format!("{url}/v1/spaces/full/observations?wait=durable")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 202, "after the heal: {}", r.text().await.unwrap());
        acked.extend(900_000_000 + b * 50..900_000_000 + b * 50 + 50);
    }
    let metrics = http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    let heals = sample(&metrics, "engram_storage_heals_total").unwrap();
    assert!(heals >= 1.0, "the heal is not counted");

    child.kill().unwrap();
    child.wait().unwrap();
    // Move the data directory to a roomy disk: every acknowledged observation is there.
    let roomy = tmp.path().join("roomy");
    copy_dir(&data_dir, &roomy);
    let engine = open_recovered(&roomy, "the data directory moved to a roomy disk", Duration::from_secs(60));
    let lost: Vec<u64> =
        acked.iter().copied().filter(|&id| engine.get_observation("full", id).unwrap().is_none()).collect();
    println!(
        "acknowledged {} observations (before the 3 MiB filesystem filled, and after it grew and the store healed); lost {}",
        acked.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "{} acknowledged observations lost", lost.len());
    assert!(acked.len() >= 1_000, "too little written to mean anything: {}", acked.len());
}
