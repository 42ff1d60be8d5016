#!/usr/bin/env bash
# Resident memory per stored observation at the margin, durability none against fsync, in one
# run on this machine (docs/benchmarks.md, "Durability"). For each mode, on a fresh server: load
# MiniLM (vectors and text) into space `a`, then the same into space `b`. The first load's RSS
# growth includes the store's bounded overhead (fjall's block cache and memtables fill once);
# the second load's growth per vector is what one more stored observation costs: its index
# entry, and its content on the heap (none) or in the store (fsync).
# Reports go to OUT (default target/marginal-memory), the summary to OUT/summary.json.
#
# Usage: benches/scripts/marginal-memory.sh [OUT [DATA SET]]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/marginal-memory}
set=${2:-minilm-384-stdlib}
mkdir -p "$out"
cargo build --release -q -p engram-server -p engram-tools
bin=target/release/engram-stream
http=127.0.0.1:18590
grpc=127.0.0.1:18561
source benches/scripts/lib.sh

for mode in none fsync; do
  dir="$out/data-$mode"
  rm -rf "$dir"
  ENGRAM_STORAGE__DURABILITY=$mode "$bin" serve --http-addr "$http" --grpc-addr "$grpc" --data-dir "$dir" \
    >>"$out/serve-$mode.log" 2>&1 &
  pid=$!
  wait_ready >/dev/null
  for space in a b; do
    "$bin" load --wait indexed --dataset "../shared/data/$set" --server "http://$grpc" --protocol grpc \
      --space "$space" --metrics-url "http://$http/metrics" --report "$out/$mode-$space.json" >/dev/null
  done
  stop
done

python3 - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
summary = {"machine": "2 vCPU (AMD EPYC), 24 GiB; client and server on the same machine"}
for mode in ["none", "fsync"]:
    row = {}
    for space in ["a", "b"]:
        r = json.loads((out / f"{mode}-{space}.json").read_text())
        s = r["server_stats"]
        row[f"rss_growth_bytes_per_vector_{space}"] = (s["rss_bytes_after"] - s["rss_bytes_before"]) / r["observations"]
        row[f"index_bytes_per_vector_{space}"] = s["index_memory_bytes"] / r["observations"]
        row[f"ingest_rate_per_s_{space}"] = r["ingest_rate_per_s"]
    summary[mode] = row
summary["marginal_fsync_over_none"] = (
    summary["fsync"]["rss_growth_bytes_per_vector_b"] / summary["none"]["rss_growth_bytes_per_vector_b"]
)
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
PY
