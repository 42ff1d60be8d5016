#!/usr/bin/env bash
# Resident memory per stored observation at the margin, durability none against fsync, in one
# run on this machine (docs/benchmarks.md, "Durability"). For each mode, on a fresh server: load
# MiniLM (vectors and text) into space `a`, then the same into space `b`. The first load's RSS
# growth includes the store's bounded overhead (fjall's block cache and memtables fill once);
# the second load's growth per vector is what one more stored observation costs: its index
# entry, and its content on the heap (none) or in the store (fsync).
# SPACES=N (default 2) loads N spaces (a, b, c, ...): the store's bounded buffers (memtables
# filling and flushing) make one load's growth noisy by up to their size, so the summary also
# gives the slope from the end of the first load to the end of the last, per vector.
# Reports go to OUT (default target/marginal-memory), the summary to OUT/summary.json.
#
# Usage: [SPACES=N] benches/scripts/marginal-memory.sh [OUT [DATA SET]]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/marginal-memory}
set=${2:-minilm-384-stdlib}
spaces=$(echo a b c d e f g h | cut -d' ' -f1-"${SPACES:-2}")
mkdir -p "$out"
cargo build-release -q
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
  for space in $spaces; do
    "$bin" load --wait indexed --dataset "../shared/data/$set" --server "http://$grpc" --protocol grpc \
      --space "$space" --metrics-url "http://$http/metrics" --report "$out/$mode-$space.json" >/dev/null
  done
  stop
done

python3 - "$out" $spaces <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
spaces = sys.argv[2:]
summary = {"machine": "2 vCPU (AMD EPYC), 24 GiB; client and server on the same machine"}
for mode in ["none", "fsync"]:
    row = {}
    reports = [json.loads((out / f"{mode}-{space}.json").read_text()) for space in spaces]
    for space, r in zip(spaces, reports):
        s = r["server_stats"]
        row[f"rss_growth_bytes_per_vector_{space}"] = (s["rss_bytes_after"] - s["rss_bytes_before"]) / r["observations"]
        row[f"index_bytes_per_vector_{space}"] = s["index_memory_bytes"] / r["observations"]
        row[f"ingest_rate_per_s_{space}"] = r["ingest_rate_per_s"]
    if len(reports) > 2:
        vectors = sum(r["observations"] for r in reports[1:])
        grown = reports[-1]["server_stats"]["rss_bytes_after"] - reports[0]["server_stats"]["rss_bytes_after"]
        row["rss_slope_bytes_per_vector_after_first"] = grown / vectors
    summary[mode] = row
summary["marginal_fsync_over_none"] = (
    summary["fsync"]["rss_growth_bytes_per_vector_b"] / summary["none"]["rss_growth_bytes_per_vector_b"]
)
if len(spaces) > 2:
    summary["slope_fsync_over_none"] = (
        summary["fsync"]["rss_slope_bytes_per_vector_after_first"] / summary["none"]["rss_slope_bytes_per_vector_after_first"]
    )
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
PY
