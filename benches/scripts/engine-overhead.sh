#!/usr/bin/env bash
# Engine overhead: the end-to-end indexed rate of `load` over gRPC against a fresh server (2
# workers on this machine), divided by the same backend's raw multi-threaded insert rate
# (benches/examples/index_raw.rs with as many threads as the server has workers) on the same
# data, run back to back in PAIRS alternating pairs so drift on the machine hits both alike.
# Prints one JSON line per pair and a summary line with the ratio of the medians.
#
# Usage: benches/scripts/engine-overhead.sh [PAIRS] [DATASET] [BACKEND] [OUT]
#   defaults: 3, minilm-384-stdlib, usearch, target/engine-overhead
set -euo pipefail
cd "$(dirname "$0")/../.."
pairs=${1:-3}
dataset=${2:-minilm-384-stdlib}
backend=${3:-usearch}
out=${4:-target/engine-overhead}
data_root=${ENGRAM_DATA_DIR:-../shared/data}
mkdir -p "$out"
cargo build-release
bin=target/release/engram-stream
raw=target/release/examples/index_raw
http=127.0.0.1:18290
grpc=127.0.0.1:15261
workers=$(nproc)

for i in $(seq 1 "$pairs"); do
  "$raw" "$dataset" "$backend" "$workers" >"$out/raw-$dataset-$backend-$i.json"
  "$bin" serve --http-addr "$http" --grpc-addr "$grpc" >"$out/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -sf "http://$http/health/ready" >/dev/null && break; sleep 0.1; done
  "$bin" load --wait indexed --dataset "$data_root/$dataset" --server "http://$grpc" --protocol grpc --index "$backend" \
    --queries 10 --report "$out/load-$dataset-$backend-$i.json" >"$out/load.log" 2>&1
  kill -TERM "$pid"
  wait "$pid"
done

python3 - "$out" "$dataset" "$backend" "$pairs" "$workers" <<'PY'
import json, statistics, sys
out, dataset, backend, pairs, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
raws, ends = [], []
for i in range(1, pairs + 1):
    r = json.load(open(f"{out}/raw-{dataset}-{backend}-{i}.json"))["insert_per_s"]
    e = json.load(open(f"{out}/load-{dataset}-{backend}-{i}.json"))["ingest_rate_per_s"]
    raws.append(r); ends.append(e)
    print(json.dumps({"pair": i, "raw_insert_per_s": round(r), "engine_indexed_per_s": round(e), "ratio": round(e / r, 3)}))
summary = {
    "dataset": dataset, "index": backend, "threads": workers, "pairs": pairs,
    "raw_median_per_s": round(statistics.median(raws)), "engine_median_per_s": round(statistics.median(ends)),
    "ratio_of_medians": round(statistics.median(ends) / statistics.median(raws), 3),
    "pair_ratios": [round(e / r, 3) for e, r in zip(ends, raws)],
}
print(json.dumps(summary))
json.dump(summary, open(f"{out}/summary-{dataset}-{backend}.json", "w"))
PY
