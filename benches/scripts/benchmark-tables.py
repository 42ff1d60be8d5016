#!/usr/bin/env python3
"""Print docs/benchmarks.md's tables from the committed reports.

Usage: benches/scripts/benchmark-tables.py [DIR]   (default: docs/benchmarks)

Reads DIR/raw-DATASET-BACKEND.json (benches/examples/index_raw.rs) and
DIR/loads/DATASET-BACKEND-{saturated,paced}.json (benches/scripts/backend-loads.sh) and prints:
the per-backend table (raw), the recall sweep, the engine-overhead pairs
(DIR/overhead/summary-*.json from benches/scripts/engine-overhead.sh), and the end-to-end table
with the p99 at the paced rate and resident memory per vector.
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "docs/benchmarks")
SETS = ["minilm-384-stdlib", "glove-50-angular-100k"]
BACKENDS = ["usearch", "hnsw_rs"]


def load(path):
    return json.loads(path.read_text())


print("### Raw index (benches/examples/index_raw.rs, 2 insert threads, ef_search 64 and 128)\n")
print("| data set | backend | vectors | insert/s | query ms (mean, ef 128) | recall@10 ef 64 | recall@10 ef 128 "
      "| index bytes/vector (backend's accounting) | RSS growth bytes/vector |")
print("|---|---|---|---|---|---|---|---|---|")
raw = {}
for s in SETS:
    for b in BACKENDS:
        r = load(root / f"raw-{s}-{b}.json")
        raw[(s, b)] = r
        at = {x["ef_search"]: x for x in r["sweep"]}
        print(f"| {s} | {b} | {r['vectors']:,} | {r['insert_per_s']:,.0f} | {at[128]['query_ms_mean']:.3f} "
              f"| {at[64]['recall_at_10']:.4f} | {at[128]['recall_at_10']:.4f} | {r['index_bytes_per_vector']:,.0f} "
              f"| {r['rss_growth_bytes_per_vector']:,.0f} |")

print("\n### Recall against query time (same runs)\n")
print("| data set | backend | " + " | ".join(f"ef {e}" for e in [32, 64, 96, 128, 192, 256]) + " |")
print("|---|---|" + "---|" * 6)
for s in SETS:
    for b in BACKENDS:
        cells = [f"{x['recall_at_10']:.4f} / {x['query_ms_mean']:.3f} ms" for x in raw[(s, b)]["sweep"]]
        print(f"| {s} | {b} | " + " | ".join(cells) + " |")

print("\n### End to end (`load` over gRPC, benches/scripts/backend-loads.sh)\n")
print("| data set | backend | indexed/s saturated (whole run / second half) | recall@10 (ef 128) "
      "| paced rate (share of second half) | p99 accepted→indexed per observation | within 50 ms | RSS growth bytes/vector "
      "| RSS after ÷ vectors | lost |")
print("|---|---|---|---|---|---|---|---|---|---|")
for s in SETS:
    for b in BACKENDS:
        sat_path = root / "loads" / f"{s}-{b}-saturated.json"
        if not sat_path.exists():
            continue
        sat = load(sat_path)
        paced = load(root / "loads" / f"{s}-{b}-paced.json")
        st, pst = sat["server_stats"], paced["server_stats"]
        growth = (st["rss_bytes_after"] - st["rss_bytes_before"]) / sat["observations"]
        print(f"| {s} | {b} | {sat['ingest_rate_per_s']:,.0f} / {sat['ingest_rate_second_half_per_s']:,.0f} "
              f"| {sat['recall_at_10']:.4f} | {paced['ingest_rate_per_s']:,.0f} ({paced['ingest_rate_per_s'] / sat['ingest_rate_second_half_per_s']:.2f}) "
              f"| {pst['observation_latency_p99_seconds'] * 1e3:.1f} ms | {pst['observation_latency_share_within_50ms']:.4f} "
              f"| {growth:,.0f} | {st['rss_bytes_after'] / sat['observations']:,.0f} | {sat['lost'] + paced['lost']} |")

print("\n### Engine overhead (benches/scripts/engine-overhead.sh: raw insert and `load` back to back)\n")
print("| data set | backend | threads | pairs | raw insert/s (median) | engine indexed/s (median) | ratio of medians | ratio per pair |")
print("|---|---|---|---|---|---|---|---|")
for s in SETS:
    for b in BACKENDS:
        p = root / "overhead" / f"summary-{s}-{b}.json"
        if p.exists():
            o = load(p)
            print(f"| {s} | {b} | {o['threads']} | {o['pairs']} | {o['raw_median_per_s']:,} | {o['engine_median_per_s']:,} "
                  f"| {o['ratio_of_medians']:.3f} | {', '.join(f'{r:.3f}' for r in o['pair_ratios'])} |")
