#!/usr/bin/env bash
# Our own HNSW core against hnswlib, raw, in alternating pairs (the machine's noise moves single
# runs by up to 2x; a ratio within a pair is steadier): PAIRS times, hnswlib
# (benches/scripts/hnswlib-raw.py) then the core (benches/examples/graph_raw.rs), both building
# from 2 threads at M 16, ef_construction 200, cosine, then sweeping ef_search EFS over every
# query on one thread (SWEEP_REPEAT passes, fastest kept). Prints each pair's insert ratio and
# query-time ratio at each ef_search (with both recalls), then the medians; reports stay in OUT.
#
# Usage: benches/scripts/graph-pairs.sh OUT DATASET [PAIRS] [EFS]   (defaults 3, 32,64,128,256)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1 dataset=$2 pairs=${3:-3} efs=${4:-32,64,128,256}
# shellcheck source=benches/scripts/lib.sh
source benches/scripts/lib.sh
hnswlib_setup
for p in $(seq 1 "$pairs"); do
  ENGRAM_DATA="$data_root" "$venv/bin/python" benches/scripts/hnswlib-raw.py "$dataset" "$efs" \
    >"$out/p$p-$dataset-hnswlib.json"
  ENGRAM_DATA_DIR="$data_root" target/release/examples/graph_raw "$dataset" "$efs" >"$out/p$p-$dataset-graph.json"
done
python3 - "$out" "$dataset" "$pairs" <<'PY'
import json, statistics, sys
out, dataset, pairs = sys.argv[1], sys.argv[2], int(sys.argv[3])
ins, query = [], {}
for p in range(1, pairs + 1):
    h, g = (json.load(open(f"{out}/p{p}-{dataset}-{s}.json")) for s in ("hnswlib", "graph"))
    ins.append(g["insert_per_s"] / h["insert_per_s"])
    line = [f"pair {p}: insert {g['insert_per_s']:,.0f}/s vs hnswlib {h['insert_per_s']:,.0f}/s = {ins[-1]:.2f}"]
    for hs, gs in zip(h["sweep"], g["sweep"]):
        r = gs["query_ms_mean"] / hs["query_ms_mean"]
        query.setdefault(gs["ef_search"], []).append(r)
        line.append(f"ef {gs['ef_search']}: {gs['query_ms_mean']:.3f} vs {hs['query_ms_mean']:.3f} ms = {r:.2f} "
                    f"(recall@10 {gs['recall_at_10']:.4f} vs {hs['recall_at_10']:.4f})")
    print("; ".join(line))
print(f"{dataset}: median insert ratio {statistics.median(ins):.2f}; median query-time ratio "
      + ", ".join(f"ef {ef} {statistics.median(v):.2f}" for ef, v in query.items()))
PY
