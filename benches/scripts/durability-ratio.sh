#!/usr/bin/env bash
# Ingest rate with storage.durability fsync and os against none, measured side by side: for
# each shared data set, ROUNDS rounds (default 3), each a saturated gRPC `load` (INDEXED acks,
# which wait for DURABLE) per mode on a fresh data directory, the order of the modes rotated
# from round to round. Each round gives a paired ratio (fsync ÷ none, os ÷ none); the summary
# holds every round's and their median (docs/benchmarks.md, "Durability").
#
# Usage: benches/scripts/durability-ratio.sh [OUT [ROUNDS]]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/durability-ratio}
rounds=${2:-3}
mkdir -p "$out"
cargo build-release -q
bin=target/release/engram-stream
http=127.0.0.1:18680
grpc=127.0.0.1:18651
source benches/scripts/lib.sh

orders=("none fsync os" "fsync os none" "os none fsync")
for set in minilm-384-stdlib glove-50-angular-100k; do
  for round in $(seq 1 "$rounds"); do
    for mode in ${orders[$(((round - 1) % 3))]}; do
      dir="$out/data-$set-$round-$mode"
      rm -rf "$dir"
      ENGRAM_STORAGE__DURABILITY=$mode "$bin" serve --http-addr "$http" --grpc-addr "$grpc" --data-dir "$dir" \
        >>"$out/serve.log" 2>&1 &
      pid=$!
      wait_ready >/dev/null
      "$bin" load --wait indexed --dataset "../shared/data/$set" --server "http://$grpc" --protocol grpc \
        --report "$out/$set-$round-$mode.json" >/dev/null
      stop
      rm -rf "$dir"
    done
  done
done

python3 - "$out" "$rounds" <<'PY'
import json, pathlib, statistics, sys
out, rounds = pathlib.Path(sys.argv[1]), int(sys.argv[2])
summary = {"machine": "2 vCPU (AMD EPYC), 24 GiB; client and server on the same machine", "rounds": rounds}
for s in ["minilm-384-stdlib", "glove-50-angular-100k"]:
    rate = lambda r, m: json.loads((out / f"{s}-{r}-{m}.json").read_text())["ingest_rate_per_s"]
    rows = [{m: rate(r, m) for m in ["none", "os", "fsync"]} for r in range(1, rounds + 1)]
    fsync = [r["fsync"] / r["none"] for r in rows]
    os_ = [r["os"] / r["none"] for r in rows]
    summary[s] = {
        "rates_per_round": rows,
        "fsync_over_none": fsync,
        "os_over_none": os_,
        "fsync_over_none_median": statistics.median(fsync),
        "os_over_none_median": statistics.median(os_),
    }
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
PY
