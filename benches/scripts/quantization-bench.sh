#!/usr/bin/env bash
# Quantization side by side with hnswlib, in one run (docs/benchmarks.md, "Quantization"): per
# shared data set, hnswlib 0.8 raw (2 build threads; benches/scripts/hnswlib-raw.py, in a
# virtualenv this script makes), then the engine in process on the durable path (fsync) for each
# `quantization` (benches/examples/engine_sweep.rs: ingest until indexed, resident memory, an
# ef_search sweep of recall@10 and query time), then `load` over gRPC against a fresh
# `engram-stream serve` (default config: fsync, 2 workers) for each `quantization`, acks
# INDEXED. ROUNDS (default 1) repeats the whole sequence, alternating, so ratios can be read per
# round.
#
# Usage: benches/scripts/quantization-bench.sh [OUT] [QUANTIZATIONS] [DATASETS]
#   defaults: docs/benchmarks/quantization, "none f16 bf16 i8",
#   "minilm-384-stdlib glove-50-angular-100k"
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-docs/benchmarks/quantization}
quantizations=${2:-none f16 bf16 i8}
datasets=${3:-minilm-384-stdlib glove-50-angular-100k}
rounds=${ROUNDS:-1}
# shellcheck source=benches/scripts/lib.sh
source benches/scripts/lib.sh
hnswlib_setup
bin=target/release/engram-stream
http=127.0.0.1:18191
grpc=127.0.0.1:15162

for round in $(seq 1 "$rounds"); do
  for dataset in $datasets; do
    ENGRAM_DATA="$data_root" "$venv/bin/python" benches/scripts/hnswlib-raw.py "$dataset" >"$out/r$round-$dataset-hnswlib.json"
    echo "round $round $dataset hnswlib: $(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(round(r['insert_per_s']), '/s')" "$out/r$round-$dataset-hnswlib.json")"
    for q in $quantizations; do
      target/release/examples/engine_sweep "$dataset" "$q" fsync >"$out/r$round-$dataset-engine-$q.json"
      echo "round $round $dataset engine $q: $(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(round(r['ingest_per_s']), '/s')" "$out/r$round-$dataset-engine-$q.json")"
    done
    for q in $quantizations; do
      grpc_load "r$round-$dataset-grpc-$q" "$dataset" --quantization "$q"
    done
  done
done
