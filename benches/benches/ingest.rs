//! Ingest-path benchmarks: admission accounting, index insert and search on real vectors
//! (recall@10 printed beside the time), and the engine end to end (submit → indexed).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use engram_benches::data_dir;
use engram_engine::admission::Capacity;
use engram_engine::dataset::{self, recall_at_k};
use engram_engine::index::hnsw::HnswIndex;
use engram_engine::index::{Metric, VectorIndex};
use engram_engine::{Batch, Engine, EngineConfig, Observation, Priority, SpaceParams};
use engram_telemetry::{Telemetry, TelemetryConfig};
use std::hint::black_box;

fn admission(c: &mut Criterion) {
    let cap = Capacity::new(1 << 20, 1 << 40);
    c.bench_function("admission/reserve_release", |b| {
        b.iter(|| {
            assert!(cap.try_reserve(black_box(1), black_box(1600)));
            cap.release(1, 1600);
        })
    });
}

fn index(c: &mut Criterion) {
    let dir = data_dir("glove-50-angular-100k");
    let base = dataset::read_fvecs(&dir.join("base.fvecs")).unwrap();
    let queries = dataset::read_fvecs(&dir.join("query.fvecs")).unwrap();
    // Build once on the first 10k vectors for the search benchmark; exact top-10 over them.
    let n = 10_000;
    let idx = HnswIndex::new(Metric::Cosine, base.dim, 16, 200, n);
    for i in 0..n {
        idx.insert(i as u64, base.row(i));
    }
    let nq = 200;
    let mut recall = 0.0;
    for q in 0..nq {
        let mut scored: Vec<(f32, i32)> = (0..n)
            .map(|i| (base.row(i).iter().zip(queries.row(q)).map(|(a, b)| a * b).sum::<f32>(), i as i32))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let exact: Vec<i32> = scored.iter().take(10).map(|s| s.1).collect();
        let got: Vec<u64> = idx.search(queries.row(q), 10, 64).iter().map(|h| h.id).collect();
        recall += recall_at_k(&got, &exact, 10);
    }
    eprintln!("index/hnsw_rs glove-50 10k: recall@10 = {:.4} at ef_search 64 ({nq} queries)", recall / nq as f64);

    let mut g = c.benchmark_group("index");
    g.sample_size(10);
    g.bench_function("hnsw_rs/search_glove50_10k_ef64", |b| {
        let mut q = 0;
        b.iter(|| {
            q = (q + 1) % queries.len();
            black_box(idx.search(queries.row(q), 10, 64))
        })
    });
    g.throughput(Throughput::Elements(1000));
    g.bench_function("hnsw_rs/insert_1k_into_10k_glove50", |b| {
        b.iter_batched(
            || {
                let fresh = HnswIndex::new(Metric::Cosine, base.dim, 16, 200, n + 1000);
                for i in 0..n {
                    fresh.insert(i as u64, base.row(i));
                }
                fresh
            },
            |fresh| {
                for i in n..n + 1000 {
                    fresh.insert(i as u64, base.row(i));
                }
                fresh
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn engine(c: &mut Criterion) {
    let dir = data_dir("minilm-384-stdlib");
    let base = dataset::read_fvecs(&dir.join("base.fvecs")).unwrap();
    let n = 1000;
    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("submit_to_indexed_minilm384_1k", |b| {
        b.iter_batched(
            || {
                let e = Engine::new(EngineConfig::default(), Telemetry::new(TelemetryConfig::default())).unwrap();
                e.create_space("bench", SpaceParams { max_elements: n, ..SpaceParams::with_dim(384) }).unwrap();
                e
            },
            |e| {
                let waiters: Vec<_> = (0..n)
                    .step_by(100)
                    .map(|s| {
                        let observations = (s..s + 100)
                            .map(|i| Observation { id: i as u64, embedding: base.row(i).to_vec(), content: None })
                            .collect();
                        e.submit("bench", Batch { priority: Priority::Normal, observations }, true)
                            .unwrap()
                            .indexed
                            .unwrap()
                    })
                    .collect();
                for w in waiters {
                    assert_eq!(w.wait_blocking().failed, 0);
                }
                e
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, admission, index, engine);
criterion_main!(benches);
