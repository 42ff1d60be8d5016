#!/usr/bin/env bash
# Engram Stream against the embedded vector stores a user would pick instead (docs/benchmarks.md,
# "Against the embedded stores"), one run side by side: per shared data set, `engram-stream load`
# over gRPC against a fresh `engram-stream serve` (embedded defaults: fsync, 2 workers; acks
# INDEXED, which implies DURABLE) into a space with the engine's default index and quantization
# for the dimension (INDEX names another backend), asked at EF_SEARCH (default the space's, 128),
# then ChromaDB, Milvus Lite and LanceDB in process
# (benches/scripts/embedded-stores.py, in a virtualenv this script makes with the versions
# pinned below). Each answers the same first QUERIES (default 500) queries one at a time.
# ROUNDS (default 1) repeats the whole sequence, numbered from FIRST_ROUND (default 1; reports
# r<round>-<data set>-<system>.json).
#
# Usage: benches/scripts/embedded-stores.sh [OUT] [DATASETS] [STORES]
#   defaults: docs/benchmarks/embedded-stores, "minilm-384-stdlib glove-50-angular-100k",
#   "chromadb milvus-lite lancedb"
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-docs/benchmarks/embedded-stores}
datasets=${2:-minilm-384-stdlib glove-50-angular-100k}
stores=${3:-chromadb milvus-lite lancedb}
rounds=${ROUNDS:-1}
first=${FIRST_ROUND:-1}
index=${INDEX:-}
ef_search=${EF_SEARCH:-}
queries=${QUERIES:-500}
data_root=${ENGRAM_DATA_DIR:-../shared/data}
venv=${VENV:-target/stores-venv}
mkdir -p "$out"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q numpy chromadb==1.5.9 lancedb==0.40.0 milvus-lite==3.2.2 pymilvus==3.0.2
cargo build-release
bin=target/release/engram-stream
http=127.0.0.1:18193
grpc=127.0.0.1:15164
source benches/scripts/lib.sh

for round in $(seq "$first" $((first + rounds - 1))); do
  for dataset in $datasets; do
    echo -n "round $round $dataset engram: "
    grpc_load "r$round-$dataset-engram" "$dataset" --queries "$queries" ${index:+--index "$index"} \
      ${ef_search:+--ef-search "$ef_search"}
    for store in $stores; do
      ENGRAM_DATA="$data_root" "$venv/bin/python" benches/scripts/embedded-stores.py "$store" "$dataset" "$queries" \
        >"$out/r$round-$dataset-$store.json" 2>"$out/r$round-$dataset-$store.log"
      echo "round $round $dataset $store: $(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(round(r['ingest_per_s']), '/s, recall', round(r['recall_at_10'], 4), ', p50', round(r['query_ms_p50'], 2), 'ms')" "$out/r$round-$dataset-$store.json")"
    done
  done
done
rm -f "$out"/*.log
