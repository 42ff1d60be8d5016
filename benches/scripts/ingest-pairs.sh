#!/usr/bin/env bash
# Ingest until searchable, engine over gRPC against hnswlib, in alternating pairs (the machine's
# noise moves single runs by up to 2x; a ratio within a pair is steadier): PAIRS times, hnswlib
# raw (benches/scripts/hnswlib-raw.py: 2 insert threads, then one ef_search, 128) then `load
# --wait indexed` over gRPC against a fresh `engram-stream serve` (embedded defaults: fsync,
# 2 workers) into an INDEX space (default usearch) with QUANTIZATION (default: the space's default
# for the data set's dimension and index). Prints each pair's ratio and the median; the reports
# stay in OUT.
#
# Usage: benches/scripts/ingest-pairs.sh OUT DATASET [PAIRS] [QUANTIZATION] [INDEX]   (5 pairs)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1 dataset=$2 pairs=${3:-5} q=${4:-} index=${5:-usearch}
# shellcheck source=benches/scripts/lib.sh
source benches/scripts/lib.sh
hnswlib_setup
bin=target/release/engram-stream
http=127.0.0.1:18290
grpc=127.0.0.1:15261
tag=${q:-default}
[ "$index" = usearch ] || tag=$index-$tag # the reports of usearch keep their names
for p in $(seq 1 "$pairs"); do
  SWEEP_REPEAT=1 ENGRAM_DATA="$data_root" "$venv/bin/python" benches/scripts/hnswlib-raw.py "$dataset" 128 \
    >"$out/p$p-$dataset-$tag-hnswlib.json"
  grpc_load "p$p-$dataset-$tag-grpc" "$dataset" --index "$index" ${q:+--quantization "$q"} \
    >/dev/null
  python3 - "$out/p$p-$dataset-$tag-hnswlib.json" "$out/p$p-$dataset-$tag-grpc.json" "$p" <<'PY'
import json, sys
h, g = (json.load(open(f)) for f in sys.argv[1:3])
ef128 = next(s for s in h["sweep"] if s["ef_search"] == 128)
print(f"pair {sys.argv[3]}: hnswlib {h['insert_per_s']:,.0f}/s (recall@10 {ef128['recall_at_10']:.4f}), "
      f"gRPC {g['ingest_rate_per_s']:,.0f}/s (recall@10 {g['recall_at_10']:.4f}, {g['quantization']}), "
      f"ratio {g['ingest_rate_per_s'] / h['insert_per_s']:.2f}")
PY
done
python3 - "$out" "$dataset" "$tag" "$pairs" <<'PY'
import json, statistics, sys
out, dataset, tag, pairs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
r = [json.load(open(f"{out}/p{p}-{dataset}-{tag}-grpc.json"))["ingest_rate_per_s"]
     / json.load(open(f"{out}/p{p}-{dataset}-{tag}-hnswlib.json"))["insert_per_s"] for p in range(1, pairs + 1)]
print(f"{dataset} {tag}: median gRPC ÷ hnswlib {statistics.median(r):.2f} over {pairs} pairs "
      f"({', '.join(f'{x:.2f}' for x in r)})")
PY
