//! Engine behaviour end to end, in process: real embeddings in, recall out; overload; fairness
//! between spaces; drain on shutdown; bad input; dropped spaces.

mod common;

use common::sample;
use engram_dataset as dataset;
use engram_engine::AckLevel;
use engram_engine::{
    BackpressureLevel, Batch, Engine, EngineConfig, EngineError, IndexKind, Observation, Priority, RecallHit,
    RejectReason, SpaceParams,
};
use engram_telemetry::{Telemetry, TelemetryConfig};
use std::path::PathBuf;
use std::time::Duration;

fn data_dir(name: &str) -> PathBuf {
    engram_dataset::shared_data_dir(name).unwrap_or_else(|e| panic!("{e}"))
}

fn engine(config: EngineConfig) -> Engine {
    Engine::new(config, Telemetry::new(TelemetryConfig::default())).unwrap()
}

fn obs(id: u64, v: Vec<f32>) -> Observation {
    Observation { id, embedding: v, content: None }
}

/// Deterministic pseudo-random unit-ish vectors.
fn vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            (0..dim)
                .map(|_| {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                })
                .collect()
        })
        .collect()
}

fn batch(priority: Priority, ids: std::ops::Range<u64>, dim: usize) -> Batch {
    let vs = vectors(ids.clone().count(), dim, ids.start + 7);
    Batch { upsert: false, priority, observations: ids.zip(vs).map(|(id, v)| obs(id, v)).collect() }
}

#[test]
fn real_embeddings_are_indexed_recalled_with_content_and_deduplicated() {
    for kind in IndexKind::ALL {
        real_embeddings_round_trip(kind);
    }
}

fn real_embeddings_round_trip(kind: IndexKind) {
    let dir = data_dir("minilm-384-stdlib");
    let base = dataset::read_fvecs(&dir.join("base.fvecs")).unwrap();
    let text = dataset::read_lines(&dir.join("base.txt")).unwrap();
    let queries = dataset::read_fvecs(&dir.join("query.fvecs")).unwrap();
    let n = 2000;
    let e = engine(EngineConfig { workers: 2, ..EngineConfig::default() });
    e.create_space("docs", SpaceParams { index: Some(kind), ..SpaceParams::with_dim(384) }).unwrap();
    let mut waiters = Vec::new();
    for start in (0..n).step_by(250) {
        let observations = (start..start + 250)
            .map(|i| Observation { id: i as u64, embedding: base.row(i).to_vec(), content: Some(text[i].clone()) })
            .collect();
        let a = e
            .submit("docs", Batch { upsert: false, priority: Priority::Normal, observations }, AckLevel::Indexed)
            .unwrap();
        assert_eq!((a.accepted, a.duplicates), (250, 0));
        let t = a.times;
        assert!(t.validated <= t.admitted && t.admitted <= t.appended && t.appended <= t.queued, "{t:?}");
        waiters.push((t.queued, a.indexed.unwrap()));
    }
    for (queued, w) in waiters {
        let outcome = w.wait_blocking();
        assert_eq!((outcome.indexed, outcome.failed), (250, 0));
        // The queue wait ends when a worker batch that held one of its jobs started (possibly
        // a moment before the push returned), and the insert ends after it.
        let (started, finished) = (outcome.started.unwrap(), outcome.finished.unwrap());
        assert!(started <= finished && queued <= finished, "{outcome:?}");
    }
    assert_eq!(e.describe_space("docs").unwrap().vectors, n);

    let mut total = 0.0;
    let nq = 100;
    for q in 0..nq {
        let hits = e.recall("docs", queries.row(q).to_vec(), 10, Some(64)).unwrap();
        let ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
        total += dataset::recall_at_k(&ids, &dataset::exact_top_k(&base, n, queries.row(q), 10), 10);
        let top = &hits[0];
        assert_eq!(top.content.as_deref(), Some(text[top.id as usize].as_str()), "content travels with the vector");
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "best first");
        // Without content: the same hits and scores, no content read.
        let (bare, _) = e.recall_timed("docs", queries.row(q).to_vec(), 10, Some(64), false).unwrap();
        let pairs = |h: &[RecallHit]| h.iter().map(|h| (h.id, h.score)).collect::<Vec<_>>();
        assert_eq!(pairs(&bare), pairs(&hits), "{kind:?}: query {q} without content");
        assert!(bare.iter().all(|h| h.content.is_none()), "{kind:?}: content left out");
    }
    let recall = total / nq as f64;
    assert!(recall >= 0.95, "{kind:?}: recall@10 = {recall}");
    let info = e.describe_space("docs").unwrap();
    assert_eq!(info.params.index, Some(kind));
    // Index memory covers at least the f32 vectors (usearch: its own accounting; hnsw_rs: estimate).
    assert!(info.memory_bytes >= n * 384 * 4, "{kind:?}: {} bytes", info.memory_bytes);

    // Re-sending accepted ids is acknowledged, not inserted twice.
    let again = (0..10).map(|i| obs(i, base.row(i as usize).to_vec())).collect();
    let a = e
        .submit("docs", Batch { upsert: false, priority: Priority::High, observations: again }, AckLevel::Indexed)
        .unwrap();
    assert_eq!((a.accepted, a.duplicates), (0, 10));
    assert_eq!(e.describe_space("docs").unwrap().vectors, n);
    let text = e.telemetry().render();
    assert_eq!(
        sample(&text, "engram_streaming_observations_total{memory_space=\"docs\",priority=\"normal\"}"),
        Some(2000.0)
    );
    assert_eq!(sample(&text, "engram_streaming_observations_duplicate_total{memory_space=\"docs\"}"), Some(10.0));
    assert_eq!(sample(&text, "engram_streaming_observations_indexed_total{memory_space=\"docs\"}"), Some(2000.0));
}

#[test]
fn overload_sheds_low_then_normal_admits_high_to_the_cap_and_accounts_every_observation() {
    let dim = 8;
    let e = engine(EngineConfig { workers: 1, queue_capacity: 100, ..EngineConfig::default() });
    e.create_space("s", SpaceParams::with_dim(dim)).unwrap();
    e.pause();
    let (mut sent, mut accepted, mut rejected) = (0usize, 0usize, 0usize);
    let mut next = 0u64;
    let mut send = |p: Priority, n: u64| {
        let b = batch(p, next..next + n, dim);
        next += n;
        sent += n as usize;
        match e.submit("s", b, AckLevel::Accepted) {
            Ok(a) => {
                accepted += a.accepted + a.duplicates;
                Ok(a.level)
            }
            Err(err) => {
                rejected += n as usize;
                Err(err)
            }
        }
    };
    // 0 → 50: Warning admits everything (and says slow down).
    for _ in 0..5 {
        send(Priority::Low, 10).unwrap();
    }
    assert_eq!(send(Priority::Low, 10).unwrap(), BackpressureLevel::Warning);
    // 60 → 80: Critical.
    send(Priority::Normal, 10).unwrap();
    assert_eq!(send(Priority::Normal, 10).unwrap(), BackpressureLevel::Critical);
    match send(Priority::Low, 5) {
        Err(EngineError::Rejected(r)) => {
            assert_eq!(r.reason, RejectReason::BackpressureCritical);
            assert_eq!(r.level, BackpressureLevel::Critical);
            assert!(r.retry_after >= Duration::from_millis(100), "{r:?}");
        }
        other => panic!("low must be shed in Critical: {other:?}"),
    }
    // Normal still admitted in Critical: 80 → 95 enters Overloaded.
    send(Priority::Normal, 10).unwrap();
    assert_eq!(send(Priority::Normal, 5).unwrap(), BackpressureLevel::Overloaded);
    match send(Priority::Normal, 1) {
        Err(EngineError::Rejected(r)) => assert_eq!(r.reason, RejectReason::BackpressureOverloaded),
        other => panic!("normal must be shed in Overloaded: {other:?}"),
    }
    assert!(matches!(send(Priority::Low, 1), Err(EngineError::Rejected(_))));
    // High is admitted until the hard cap, and not one observation beyond it.
    send(Priority::High, 5).unwrap();
    match send(Priority::High, 1) {
        Err(EngineError::Rejected(r)) => assert_eq!(r.reason, RejectReason::QueueFull),
        other => panic!("the hard cap holds: {other:?}"),
    }
    assert_eq!(e.status().queue_depth, 100);
    assert_eq!(sent, accepted + rejected, "sent = accepted + rejected");
    assert_eq!((accepted, rejected), (100, 8));

    let text = e.telemetry().render();
    for (level, n) in [("warning", 1.0), ("critical", 1.0), ("overloaded", 1.0)] {
        let series = format!("engram_streaming_backpressure_activations_total{{memory_space=\"s\",level=\"{level}\"}}");
        assert_eq!(sample(&text, &series), Some(n), "{series}");
    }
    assert_eq!(sample(&text, "engram_streaming_backpressure_state{memory_space=\"s\"}"), Some(3.0));
    assert_eq!(sample(&text, "engram_streaming_queue_depth{priority=\"high\"}"), Some(5.0));
    assert_eq!(sample(&text, "engram_streaming_queue_depth{priority=\"normal\"}"), Some(35.0));
    assert_eq!(sample(&text, "engram_streaming_queue_depth{priority=\"low\"}"), Some(60.0));
    let rej = |r: &str| {
        sample(&text, &format!("engram_streaming_observations_rejected_total{{memory_space=\"s\",reason=\"{r}\"}}"))
    };
    assert_eq!(
        (rej("backpressure_critical"), rej("backpressure_overloaded"), rej("queue_full")),
        (Some(5.0), Some(2.0), Some(1.0))
    );

    // Nothing accepted is lost: draining indexes all 100.
    e.resume();
    let report = e.shutdown(Some(Duration::from_secs(60)));
    assert!(report.drained, "{report:?}");
    assert_eq!(e.describe_space("s").unwrap().vectors, 100);
    assert_eq!(e.status().queue_depth, 0);
    let text = e.telemetry().render();
    for p in ["high", "normal", "low"] {
        assert_eq!(sample(&text, &format!("engram_streaming_queue_depth{{priority=\"{p}\"}}")), Some(0.0));
    }
}

#[test]
fn a_hot_space_is_shed_on_its_own_share_before_it_starves_another() {
    let dim = 4;
    let e = engine(EngineConfig { workers: 1, queue_capacity: 100, ..EngineConfig::default() });
    e.create_space("hot", SpaceParams::with_dim(dim)).unwrap();
    e.create_space("quiet", SpaceParams::with_dim(dim)).unwrap();
    e.pause();
    let mut id = 0;
    let mut hot_rejected = None;
    for _ in 0..20 {
        match e.submit("hot", batch(Priority::Normal, id..id + 5, dim), AckLevel::Accepted) {
            Ok(_) => id += 5,
            Err(EngineError::Rejected(r)) => {
                hot_rejected = Some(r);
                break;
            }
            Err(other) => panic!("{other}"),
        }
    }
    let r = hot_rejected.expect("the hot space is shed");
    assert_eq!(r.reason, RejectReason::BackpressureOverloaded);
    assert!(id <= 50, "the hot space holds at most its 50% share of normal traffic, held {id}");
    // The global level stays below Critical, so the quiet space's normal and low traffic flow.
    assert!(e.status().level <= BackpressureLevel::Warning);
    e.submit("quiet", batch(Priority::Low, 1000..1005, dim), AckLevel::Accepted).unwrap();
    e.submit("quiet", batch(Priority::Normal, 1005..1010, dim), AckLevel::Accepted).unwrap();
    // High priority of the hot space is still admitted.
    e.submit("hot", batch(Priority::High, 2000..2005, dim), AckLevel::Accepted).unwrap();
}

#[test]
fn shutdown_stops_intake_and_drains_every_accepted_observation() {
    let dim = 32;
    let e = engine(EngineConfig { workers: 2, ..EngineConfig::default() });
    e.create_space("s", SpaceParams::with_dim(dim)).unwrap();
    e.pause();
    for start in (0..1000).step_by(100) {
        e.submit("s", batch(Priority::Normal, start..start + 100, dim), AckLevel::Accepted).unwrap();
    }
    assert_eq!(e.describe_space("s").unwrap().vectors, 0);
    let report = e.shutdown(None);
    assert_eq!(report, engram_engine::ShutdownReport { drained: true, remaining: 0 });
    assert_eq!(e.describe_space("s").unwrap().vectors, 1000);
    assert_eq!(
        e.submit("s", batch(Priority::High, 5000..5001, dim), AckLevel::Accepted).unwrap_err(),
        EngineError::ShuttingDown
    );
    assert!(e.status().closing);
}

#[test]
fn one_hot_space_uses_every_worker() {
    let dim = 64;
    let e = engine(EngineConfig { workers: 2, max_batch: 16, ..EngineConfig::default() });
    e.create_space("hot", SpaceParams::with_dim(dim)).unwrap();
    e.pause();
    for start in (0..4000).step_by(500) {
        e.submit("hot", batch(Priority::Normal, start..start + 500, dim), AckLevel::Accepted).unwrap();
    }
    e.resume();
    assert!(e.shutdown(None).drained);
    let text = e.telemetry().render();
    for w in ["0", "1"] {
        let batches = sample(&text, &format!("engram_streaming_batches_processed_total{{worker_id=\"{w}\"}}")).unwrap();
        assert!(batches > 0.0, "worker {w} inserted into the hot space");
    }
    assert_eq!(e.describe_space("hot").unwrap().vectors, 4000);
}

#[test]
fn bad_batches_are_refused_whole_naming_the_field_and_change_nothing() {
    let dim = 4;
    let e = engine(EngineConfig {
        workers: 1,
        max_content_bytes: 16,
        max_batch_observations: 50,
        ..EngineConfig::default()
    });
    e.create_space("s", SpaceParams::with_dim(dim)).unwrap();
    let a = e.submit("s", batch(Priority::Normal, 0..3, dim), AckLevel::Indexed).unwrap();
    a.indexed.unwrap().wait_blocking();

    let field_of = |b: Batch| match e.submit("s", b, AckLevel::Accepted) {
        Err(EngineError::InvalidArgument { field, reason }) => format!("{field}: {reason}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    };
    let mut b = batch(Priority::Normal, 10..15, dim);
    b.observations[3].embedding.pop();
    assert_eq!(field_of(b), "observations[3].embedding: expected 4 values, got 3");
    let mut b = batch(Priority::Normal, 10..15, dim);
    b.observations[1].embedding[2] = f32::NAN;
    assert!(field_of(b).starts_with("observations[1].embedding: value [2] is NaN"));
    let mut b = batch(Priority::Normal, 10..15, dim);
    b.observations[0].embedding[0] = f32::INFINITY;
    assert!(field_of(b).starts_with("observations[0].embedding: value [0] is inf"));
    let mut b = batch(Priority::Normal, 10..15, dim);
    b.observations[4].content = Some("x".repeat(17));
    assert!(field_of(b).starts_with("observations[4].content: is 17 bytes"));
    let mut b = batch(Priority::Normal, 10..15, dim);
    b.observations[2].id = 10;
    assert!(field_of(b).starts_with("observations[2].id: id 10 appears twice"));
    let mut b = batch(Priority::Normal, 10..15, dim);
    b.observations[1].id = u64::MAX;
    assert!(field_of(b).starts_with("observations[1].id: 18446744073709551615 (u64::MAX) is reserved"));
    let mut b = batch(Priority::Normal, 10..15, dim);
    b.observations[2].embedding = vec![0.0; dim];
    assert!(field_of(b).starts_with("observations[2].embedding: all zeros"));
    assert!(
        field_of(Batch { upsert: false, priority: Priority::Low, observations: vec![] })
            .starts_with("observations: must hold")
    );
    assert!(field_of(batch(Priority::Low, 100..151, dim)).starts_with("observations: holds 51"));
    assert_eq!(
        e.submit("nope", batch(Priority::Normal, 0..1, dim), AckLevel::Accepted).unwrap_err(),
        EngineError::SpaceNotFound("nope".into())
    );
    assert!(
        matches!(e.recall("s", vec![1.0; dim + 1], 10, None), Err(EngineError::InvalidArgument { field, .. }) if field == "embedding")
    );
    assert!(
        matches!(e.recall("s", vec![1.0; dim], 0, None), Err(EngineError::InvalidArgument { field, .. }) if field == "k")
    );
    assert!(
        matches!(e.create_space("bad name", SpaceParams::with_dim(4)), Err(EngineError::InvalidArgument { field, .. }) if field == "memory_space")
    );
    let too_many_links = SpaceParams { m: 300, ..SpaceParams::with_dim(4) };
    assert!(
        matches!(e.create_space("m", too_many_links), Err(EngineError::InvalidArgument { field, .. }) if field == "m")
    );
    assert_eq!(e.create_space("s", SpaceParams::with_dim(8)).unwrap_err(), EngineError::SpaceExists("s".into()));
    assert!(!e.create_space("s", SpaceParams::with_dim(dim)).unwrap().1, "same parameters: idempotent");

    // Nothing of the refused batches was accepted: ids 10..15 are still new.
    let a = e.submit("s", batch(Priority::Normal, 10..15, dim), AckLevel::Indexed).unwrap();
    assert_eq!((a.accepted, a.duplicates), (5, 0));
    a.indexed.unwrap().wait_blocking();
    assert_eq!(e.describe_space("s").unwrap().vectors, 8);
    let text = e.telemetry().render();
    assert_eq!(
        sample(&text, "engram_streaming_observations_rejected_total{memory_space=\"s\",reason=\"invalid_argument\"}"),
        Some(5.0 * 7.0 + 51.0)
    );
}

#[test]
fn dropping_a_space_fails_its_queued_observations_visibly() {
    let dim = 4;
    let e = engine(EngineConfig { workers: 1, ..EngineConfig::default() });
    e.create_space("gone", SpaceParams::with_dim(dim)).unwrap();
    e.pause();
    let a = e.submit("gone", batch(Priority::Normal, 0..7, dim), AckLevel::Indexed).unwrap();
    e.drop_space("gone").unwrap();
    e.resume();
    let outcome = a.indexed.unwrap().wait_blocking();
    assert_eq!((outcome.indexed, outcome.failed), (0, 7));
    assert!(outcome.started.is_some() && outcome.finished.is_some(), "a failed batch still has its times: {outcome:?}");
    let text = e.telemetry().render();
    assert_eq!(
        sample(&text, "engram_streaming_batch_failures_total{worker_id=\"0\",error_type=\"space_dropped\"}"),
        Some(7.0)
    );
    assert!(matches!(e.describe_space("gone"), Err(EngineError::SpaceNotFound(_))));
}

#[test]
fn recall_is_correct_while_inserts_run() {
    for kind in IndexKind::ALL {
        recall_while_inserting(kind);
    }
}

fn recall_while_inserting(kind: IndexKind) {
    let dir = data_dir("glove-50-angular-100k");
    let base = dataset::read_fvecs(&dir.join("base.fvecs")).unwrap();
    let queries = dataset::read_fvecs(&dir.join("query.fvecs")).unwrap();
    let n = 4000;
    let e = std::sync::Arc::new(engine(EngineConfig { workers: 2, ..EngineConfig::default() }));
    e.create_space("g", SpaceParams { index: Some(kind), ..SpaceParams::with_dim(50) }).unwrap();
    // The first half is indexed before the queries start.
    let first: Vec<Observation> = (0..n / 2).map(|i| obs(i as u64, base.row(i).to_vec())).collect();
    e.submit("g", Batch { upsert: false, priority: Priority::Normal, observations: first }, AckLevel::Indexed)
        .unwrap()
        .indexed
        .unwrap()
        .wait_blocking();
    let reader = {
        let e = e.clone();
        let queries = queries.clone();
        std::thread::spawn(move || {
            let mut answered = 0;
            for q in 0..200 {
                let hits = e.recall("g", queries.row(q).to_vec(), 10, Some(64)).unwrap();
                assert_eq!(hits.len(), 10, "{kind:?}: at least n/2 vectors are indexed, query {q}");
                assert!(hits.iter().all(|h| (h.id as usize) < n && h.score.is_finite()));
                assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
                answered += 1;
            }
            answered
        })
    };
    let second: Vec<Observation> = (n / 2..n).map(|i| obs(i as u64, base.row(i).to_vec())).collect();
    let waiter = e
        .submit("g", Batch { upsert: false, priority: Priority::Normal, observations: second }, AckLevel::Indexed)
        .unwrap()
        .indexed
        .unwrap();
    assert_eq!(reader.join().unwrap(), 200);
    waiter.wait_blocking();
    let mut total = 0.0;
    for q in 0..100 {
        let ids: Vec<u64> =
            e.recall("g", queries.row(q).to_vec(), 10, Some(64)).unwrap().iter().map(|h| h.id).collect();
        total += dataset::recall_at_k(&ids, &dataset::exact_top_k(&base, n, queries.row(q), 10), 10);
    }
    assert!(total / 100.0 >= 0.95, "{kind:?}: recall@10 after concurrent inserts = {}", total / 100.0);
}

#[test]
fn memory_space_label_is_bounded() {
    let e = Engine::new(
        EngineConfig { workers: 1, ..EngineConfig::default() },
        Telemetry::new(TelemetryConfig { max_space_labels: 2 }),
    )
    .unwrap();
    for name in ["a", "b", "c", "d"] {
        e.create_space(name, SpaceParams::with_dim(2)).unwrap();
        e.submit(name, batch(Priority::High, 0..3, 2), AckLevel::Indexed).unwrap().indexed.unwrap().wait_blocking();
    }
    let text = e.telemetry().render();
    assert_eq!(sample(&text, "engram_streaming_observations_indexed_total{memory_space=\"a\"}"), Some(3.0));
    assert_eq!(sample(&text, "engram_streaming_observations_indexed_total{memory_space=\"__other__\"}"), Some(6.0));
    assert!(!text.contains("memory_space=\"c\"") && !text.contains("memory_space=\"d\""));
}

#[test]
fn a_backlogged_low_lane_gets_its_minimum_share_before_high_runs_dry() {
    // 128-dimensional inserts take long enough that high observations indexed between the low
    // batch resolving and the count below stay far from the 2,000 of strict priority.
    let dim = 128;
    // Small batches so the 2,000 high observations take about 125 lane refills.
    let e = engine(EngineConfig { workers: 1, max_batch: 8, ..EngineConfig::default() });
    e.create_space("h", SpaceParams::with_dim(dim)).unwrap();
    e.create_space("l", SpaceParams { metric: engram_engine::Metric::L2, ..SpaceParams::with_dim(dim) }).unwrap();
    e.pause();
    for start in (0..2000).step_by(500) {
        e.submit("h", batch(Priority::High, start..start + 500, dim), AckLevel::Accepted).unwrap();
    }
    let low = e.submit("l", batch(Priority::Low, 0..8, dim), AckLevel::Indexed).unwrap().indexed.unwrap();
    e.resume();
    low.wait_blocking();
    // The low lane's 5 % share of refills came due after about 20 refills (~320 high
    // observations), long before the high lane ran dry: strict priority alone indexes all
    // 2,000 high observations first (seen with `lane_min_share.low = 0`).
    let high_done = e.describe_space("h").unwrap().vectors;
    assert!(high_done < 1500, "low waited for {high_done} high observations");
}
