#!/usr/bin/env bash
# The durable log's cost and recovery, measured in one run on this machine (docs/benchmarks.md,
# "Durability"). For each shared data set: a saturated `load` over gRPC (INDEXED acks, which wait
# for DURABLE) with storage.durability none, os and fsync, each on a fresh data directory; a
# paced fsync run at 70 % of the saturated fsync rate (p99 accepted → durable); then, on the
# fsync data directory, time to ready after kill -9 and after a clean SIGTERM stop. Reports go
# to OUT (default target/durability-bench), the summary to OUT/summary.json.
#
# Usage: benches/scripts/durability-bench.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/durability-bench}
mkdir -p "$out"
cargo build-release -q
bin=target/release/engram-stream
http=127.0.0.1:18480
grpc=127.0.0.1:18451
source benches/scripts/lib.sh

serve() { # serve MODE DIR LOG
  ENGRAM_STORAGE__DURABILITY=$1 "$bin" serve --http-addr "$http" --grpc-addr "$grpc" --data-dir "$2" >>"$3" 2>&1 &
  pid=$!
}

for set in minilm-384-stdlib glove-50-angular-100k; do
  for mode in none os fsync paced; do
    dir="$out/data-$set-$mode"
    rm -rf "$dir"
    durability=$mode rate=()
    if [ "$mode" = paced ]; then
      durability=fsync
      rate=(--rate "$(python3 -c "import json; print(round(0.7 * json.load(open('$out/$set-fsync.json'))['ingest_rate_per_s']))")")
    fi
    serve "$durability" "$dir" "$out/serve-$set-$mode.log"
    wait_ready >/dev/null
    "$bin" load --wait indexed --dataset "../shared/data/$set" --server "http://$grpc" --protocol grpc \
      --metrics-url "http://$http/metrics" "${rate[@]}" --report "$out/$set-$mode.json" >/dev/null
    curl -sf "http://$http/metrics" >"$out/$set-$mode.metrics"
    # Allocated blocks, not apparent size: fjall preallocates its journal sparsely (64 MiB).
    du -s --block-size=1 "$dir" 2>/dev/null | cut -f1 >"$out/$set-$mode.du" || echo 0 >"$out/$set-$mode.du"
    if [ "$mode" = fsync ]; then
      kill -9 $pid; wait $pid 2>/dev/null || true
      serve fsync "$dir" "$out/serve-$set-$mode.log"
      wait_ready >"$out/$set-ready-after-kill9.s"
      kill -TERM $pid; wait $pid
      serve fsync "$dir" "$out/serve-$set-$mode.log"
      wait_ready >"$out/$set-ready-after-sigterm.s"
    fi
    kill -TERM $pid; wait $pid || true
    pid=
  done
done

python3 - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None
summary = {"machine": "2 vCPU (AMD EPYC), 24 GiB; client and server on the same machine"}
for s in ["minilm-384-stdlib", "glove-50-angular-100k"]:
    row = {}
    for mode in ["none", "os", "fsync", "paced"]:
        r = json.loads((out / f"{s}-{mode}.json").read_text())
        m = (out / f"{s}-{mode}.metrics").read_text()
        syncs = metric(m, "engram_storage_syncs_total") or 0.0
        appended = metric(m, "engram_storage_appended_records_total") or 0.0
        row[mode] = {
            "ingest_rate_per_s": r["ingest_rate_per_s"],
            "recall_at_10": r["recall_at_10"],
            "lost": r["lost"],
            "accepted_to_durable_seconds": r.get("accepted_to_durable_seconds"),
            "durable_latency_seconds": r.get("durable_latency_seconds"),
            "index_latency_seconds": r["index_latency_seconds"],
            "syncs_per_s": syncs / r["duration_s"],
            "observations_per_sync": appended / syncs if syncs else None,
            "store_disk_bytes_per_vector": (metric(m, "engram_storage_disk_bytes") or 0.0) / r["observations"],
            "data_dir_bytes_per_vector": int((out / f"{s}-{mode}.du").read_text().strip() or 0) / r["observations"],
            "resident_bytes_per_vector": (r["server_stats"]["rss_bytes_after"] - r["server_stats"]["rss_bytes_before"]) / r["observations"],
        }
    none = row["none"]["ingest_rate_per_s"]
    row["fsync_over_none"] = row["fsync"]["ingest_rate_per_s"] / none
    row["os_over_none"] = row["os"]["ingest_rate_per_s"] / none
    row["ready_after_kill9_s"] = float((out / f"{s}-ready-after-kill9.s").read_text())
    row["ready_after_sigterm_s"] = float((out / f"{s}-ready-after-sigterm.s").read_text())
    summary[s] = row
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
PY
