#!/usr/bin/env bash
# End-to-end `load` runs over gRPC, per index backend and shared data set, that docs/benchmarks.md
# and docs/capacity-planning.md are computed from. Each run gets a fresh server (default
# config: one worker per core, fsync durability, a fresh data directory) and records the
# server's /metrics before and after (`--metrics-url`), so the reports carry workers, resident
# memory, disk bytes and scrape cost.
#
# For each backend and data set: one saturated run (as fast as the server admits), then one run
# paced at PACE (default 0.7) of that run's rate over its second half (inserts slow as the graph
# grows, so the whole-run average overstates what the full index sustains), for the p99
# accepted → indexed per observation.
#
# Usage: benches/scripts/backend-loads.sh [OUT] [BACKENDS] [DATASETS]
#   defaults: docs/benchmarks/loads, "usearch hnsw_rs", "minilm-384-stdlib glove-50-angular-100k"
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-docs/benchmarks/loads}
backends=${2:-usearch hnsw_rs}
datasets=${3:-minilm-384-stdlib glove-50-angular-100k}
pace=${PACE:-0.7}
data_root=${ENGRAM_DATA_DIR:-../shared/data}
mkdir -p "$out"
cargo build-release
bin=target/release/engram-stream
http=127.0.0.1:18190
grpc=127.0.0.1:15161

run() { # run NAME DATASET BACKEND [load args...]
  local name=$1 dataset=$2 backend=$3
  shift 3
  # A fresh data directory per run (the default storage.durability, fsync), removed after.
  local data; data=$(mktemp -d)
  "$bin" serve --http-addr "$http" --grpc-addr "$grpc" --data-dir "$data" >"$out/$name.serve.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do curl -sf "http://$http/health/ready" >/dev/null && break; sleep 0.1; done
  "$bin" load --wait indexed --dataset "$data_root/$dataset" --server "http://$grpc" --protocol grpc --index "$backend" \
    --metrics-url "http://$http/metrics" --report "$out/$name.json" "$@" >"$out/$name.load.log" 2>&1 || {
    kill -TERM "$pid"
    wait "$pid" || true
    echo "load $name failed:" >&2
    tail -5 "$out/$name.load.log" >&2
    exit 1
  }
  kill -TERM "$pid"
  wait "$pid"
  rm -rf "$data"
  tail -1 "$out/$name.load.log"
}

for dataset in $datasets; do
  for backend in $backends; do
    run "$dataset-$backend-saturated" "$dataset" "$backend"
    rate=$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['ingest_rate_second_half_per_s'] * $pace))" \
      "$out/$dataset-$backend-saturated.json")
    run "$dataset-$backend-paced" "$dataset" "$backend" --rate "$rate"
  done
done
rm -f "$out"/*.serve.log "$out"/*.load.log
