//! Ingest-path benchmarks on the shared data: admission accounting; pool dispatch with work
//! stealing (one hot space, many spaces); index insert and search per backend on both data sets,
//! with recall@10 printed beside the time; and the engine end to end (submit → indexed) per
//! backend.
//!
//! Sizes are chosen so `cargo bench -p engram-benches -- --quick --noplot` stays within CI's
//! budget: indexes of 5,000 vectors, inserts of 500, engine runs of 1,000 observations.

use criterion::{BatchSize, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement};
use engram_benches::{Data, build, exact_top_k, index_params, read_data, recall};
use engram_engine::AckLevel;
use engram_engine::admission::Capacity;
use engram_engine::index::{self, IndexKind};
use engram_engine::{Batch, Engine, EngineConfig, Observation, Priority, SpaceParams};
use engram_telemetry::{Telemetry, TelemetryConfig};
use std::hint::black_box;

/// Vectors in the index the searches and inserts run against.
const INDEXED: usize = 5_000;
/// Vectors inserted per insert iteration.
const INSERTED: usize = 500;
/// Queries scored for the printed recall@10.
const SCORED: usize = 200;

type Group<'a> = BenchmarkGroup<'a, measurement::WallTime>;

fn admission(c: &mut Criterion) {
    let cap = Capacity::new(1 << 20, 1 << 40);
    c.bench_function("admission/reserve_release", |b| {
        b.iter(|| {
            assert!(cap.try_reserve(black_box(1), black_box(1600)));
            cap.release(1, 1600);
        })
    });
}

/// Observations of `dim` deterministic pseudo-random values (the dispatch benches want a cheap
/// index, so the pool's own work shows).
fn synthetic(n: usize, dim: usize, first_id: u64) -> Vec<Observation> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64 ^ first_id;
    (0..n)
        .map(|i| {
            let embedding = (0..dim)
                .map(|_| {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                })
                .collect();
            Observation { id: first_id + i as u64, embedding, content: None }
        })
        .collect()
}

/// Submits `batches` (space, observations) and waits until every one is indexed.
fn submit_all(e: &Engine, batches: Vec<(String, Vec<Observation>)>) {
    let waiters: Vec<_> = batches
        .into_iter()
        .map(|(space, observations)| {
            e.submit(&space, Batch { upsert: false, priority: Priority::Normal, observations }, AckLevel::Indexed)
                .expect("admitted: the queue is sized for the run")
                .indexed
                .expect("a waiter was asked for")
        })
        .collect();
    for w in waiters {
        assert_eq!(w.wait_blocking().failed, 0);
    }
}

fn engine_with(spaces: &[String], params: SpaceParams) -> Engine {
    let config = EngineConfig { workers: 2, ..EngineConfig::default() };
    let e = Engine::new(config, Telemetry::new(TelemetryConfig::default())).expect("engine");
    for s in spaces {
        e.create_space(s, params).expect("space");
    }
    e
}

fn pool_dispatch(c: &mut Criterion) {
    // 2,000 observations of 8 dimensions in batches of 50, to one space or spread over 16. The
    // graph is kept minimal (M 4, ef_construction 8) so an insert costs about the same in a
    // 2,000-vector index as in a 125-vector one, and queueing, batching and stealing dominate
    // (at the default ef_construction 200, the 16 small indexes would win on graph size alone).
    let n = 2_000;
    let mut g = c.benchmark_group("pool_dispatch");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    for spaces in [1usize, 16] {
        let names: Vec<String> = (0..spaces).map(|s| format!("space-{s}")).collect();
        let name = if spaces == 1 { "one_hot_space".to_owned() } else { format!("{spaces}_spaces") };
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let params = SpaceParams { max_elements: n, m: 4, ef_construction: 8, ..SpaceParams::with_dim(8) };
                    let e = engine_with(&names, params);
                    let batches = (0..n / 50)
                        .map(|k| (names[k % spaces].clone(), synthetic(50, 8, (k * 50) as u64)))
                        .collect::<Vec<_>>();
                    (e, batches)
                },
                |(e, batches)| {
                    submit_all(&e, batches);
                    e
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn index_on(g: &mut Group<'_>, data: &Data, set: &str, kind: IndexKind) {
    let (idx, _) = build(kind, data, INDEXED, 2);
    let truth = exact_top_k(data, INDEXED, SCORED, 10);
    let r = recall(idx.as_ref(), data, &truth, 10, 64);
    eprintln!(
        "index/{}/{set}: recall@10 = {r:.4} at ef_search 64 ({SCORED} queries, {INDEXED} vectors)",
        kind.as_str()
    );

    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("{}/search_{set}_{INDEXED}_ef64", kind.as_str()), |b| {
        let mut q = 0;
        b.iter(|| {
            q = (q + 1) % data.queries.len();
            black_box(idx.search(data.queries.row(q), 10, 64))
        })
    });
    drop(idx);
    g.throughput(Throughput::Elements(INSERTED as u64));
    g.bench_function(format!("{}/insert_{set}_{INSERTED}_1_thread", kind.as_str()), |b| {
        b.iter_batched(
            || index::build(&index_params(kind, data.base.dim, INSERTED, 1)).expect("index"),
            |fresh| {
                for i in 0..INSERTED {
                    fresh.insert(i as u64, data.base.row(i));
                }
                fresh
            },
            BatchSize::PerIteration,
        )
    });
}

fn index(c: &mut Criterion) {
    let mut g = c.benchmark_group("index");
    g.sample_size(10);
    for (set, name) in [("glove50", "glove-50-angular-100k"), ("minilm384", "minilm-384-stdlib")] {
        let data = read_data(name);
        for kind in IndexKind::ALL {
            index_on(&mut g, &data, set, kind);
        }
    }
    g.finish();
}

fn engine(c: &mut Criterion) {
    let data = read_data("minilm-384-stdlib");
    let n = 1_000;
    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    for kind in IndexKind::ALL {
        let names = ["bench".to_owned()];
        g.bench_function(format!("{}/submit_to_indexed_minilm384_{n}", kind.as_str()), |b| {
            b.iter_batched(
                || {
                    let params = SpaceParams { max_elements: n, index: Some(kind), ..SpaceParams::with_dim(384) };
                    let batches = (0..n)
                        .step_by(100)
                        .map(|s| {
                            let observations = (s..s + 100)
                                .map(|i| Observation {
                                    id: i as u64,
                                    embedding: data.base.row(i).to_vec(),
                                    content: None,
                                })
                                .collect();
                            (names[0].clone(), observations)
                        })
                        .collect::<Vec<_>>();
                    (engine_with(&names, params), batches)
                },
                |(e, batches)| {
                    submit_all(&e, batches);
                    e
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, admission, pool_dispatch, index, engine);
criterion_main!(benches);
