//! What spaces cost in resident memory, and whether `memory_bytes` says so.
//!
//! Each measurement runs in a fresh child process (this test binary re-run with
//! `ENGRAM_MEASURE` set), so no other test and no memory freed by an earlier measurement
//! blurs the resident-memory growth.
//! Before the fix an empty usearch space reserved 65,536 slots (~2.9 MB resident each), and its
//! `memory_bytes` (USearch's `memory_usage()`, reserved arenas included) read 17.3 MB for 10
//! vectors: the sum over 1,000 spaces overstated the process's growth about 6×.

mod common;

use common::vector;
use engram_engine::{AckLevel, Batch, Engine, EngineConfig, IndexKind, Observation, Priority, SpaceParams};
use engram_telemetry::{Telemetry, TelemetryConfig};
use std::time::Duration;

/// Resident set size of this process, in bytes (`/proc/self/statm`, field 2, in pages).
fn rss_bytes() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("resident pages");
    pages * 4096.0
}

/// Creates `spaces` spaces of `kind` (dim 384) with `per_space` vectors each; returns the RSS
/// growth per space and the sum of their `memory_bytes` over that growth.
fn measure(kind: IndexKind, spaces: usize, per_space: usize) -> (f64, f64) {
    let config = EngineConfig { workers: 2, max_spaces: spaces + 1, ..EngineConfig::default() };
    let e = Engine::new(config, Telemetry::new(TelemetryConfig::default())).unwrap();
    let before = rss_bytes();
    for s in 0..spaces {
        let name = format!("{}-{s}", kind.as_str());
        e.create_space(&name, SpaceParams { index: Some(kind), ..SpaceParams::with_dim(384) }).unwrap();
        for start in (0..per_space as u64).step_by(1000) {
            let end = (start + 1000).min(per_space as u64);
            let observations = (start..end)
                .map(|i| Observation { id: i, embedding: vector(384, s as u64 * 1_000_000 + i), content: None })
                .collect();
            let a = e
                .submit(&name, Batch { upsert: false, priority: Priority::Normal, observations }, AckLevel::Indexed)
                .unwrap();
            // One batch queued at a time: the queue's copies of the vectors are freed and reused
            // rather than counted as growth.
            assert_eq!(a.indexed.unwrap().wait_blocking().indexed, (end - start) as usize);
        }
    }
    let growth = rss_bytes() - before;
    let reported: f64 = e.list_spaces().iter().map(|s| s.memory_bytes as f64).sum();
    assert!(e.shutdown(Some(Duration::from_secs(60))).drained);
    eprintln!(
        "{kind:?}: {spaces} spaces of {per_space} vectors: RSS +{:.1} MB ({:.1} KB per space), memory_bytes sum {:.1} MB",
        growth / 1e6,
        growth / spaces as f64 / 1e3,
        reported / 1e6
    );
    (growth / spaces as f64, reported / growth.max(1.0))
}

/// Runs [`measure`] in a child process.
fn measure_in_child(kind: IndexKind, spaces: usize, per_space: usize) -> (f64, f64) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "measure_child", "--nocapture", "--test-threads", "1"])
        .env("ENGRAM_MEASURE", format!("{} {spaces} {per_space}", kind.as_str()))
        .output()
        .expect("re-running the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    assert!(out.status.success(), "measurement failed: {stdout}{stderr}");
    let line = stdout.lines().find_map(|l| Some(&l[l.find("MEASURED ")? + 9..])).expect("a MEASURED line");
    let mut v = line.split(' ').map(|x| x.parse::<f64>().unwrap());
    (v.next().unwrap(), v.next().unwrap())
}

/// The child side of [`measure_in_child`]: does nothing unless `ENGRAM_MEASURE` is set.
#[test]
fn measure_child() {
    let Ok(spec) = std::env::var("ENGRAM_MEASURE") else { return };
    let parts: Vec<&str> = spec.split(' ').collect();
    let kind: IndexKind = parts[0].parse().unwrap();
    let (per_space, ratio) = measure(kind, parts[1].parse().unwrap(), parts[2].parse().unwrap());
    println!("MEASURED {per_space} {ratio}");
}

#[test]
fn small_spaces_cost_kilobytes_and_memory_bytes_tracks_resident_growth() {
    for kind in IndexKind::ALL {
        let (per_empty, _) = measure_in_child(kind, 1000, 0);
        assert!(per_empty < 200e3, "{kind:?}: an empty space costs {:.0} KB resident", per_empty / 1e3);
        let (per_small, ratio) = measure_in_child(kind, 1000, 10);
        assert!(per_small < 300e3, "{kind:?}: a 10-vector space costs {:.0} KB resident", per_small / 1e3);
        assert!(
            (0.25..=2.0).contains(&ratio),
            "{kind:?}: memory_bytes of 1,000 small spaces is {ratio:.2}× their resident growth"
        );
    }
    // One larger space: the per-vector accounting against the growth it causes.
    for kind in IndexKind::ALL {
        let (per_space, ratio) = measure_in_child(kind, 1, 20_000);
        assert!(
            (0.6..=1.6).contains(&ratio),
            "{kind:?}: memory_bytes of a 20,000-vector space is {ratio:.2}× its resident growth ({:.1} MB)",
            per_space / 1e6
        );
    }
}
