#!/usr/bin/env bash
# Index checkpoints, measured in one run on this machine (docs/benchmarks.md, "Checkpoints").
# For each shared data set, storage.durability fsync, gRPC loads waiting for INDEXED acks:
#   saturated   checkpoints off while running (checkpoint_interval_s 0,
#               checkpoint_after_operations 0): the saturated rate;
#   paced-off   at 70 % of it, checkpoints off: p99 accepted → indexed without checkpoints;
#   paced-on    at 70 % of it, the default checkpoint settings (every 60 s and after
#               storage.checkpoint_after_operations on a space; OPERATIONS overrides that
#               count): p99 accepted → indexed with them (the
#               target is within 2× of paced-off), then kill -9 right after the load (what came
#               after the last checkpoint is replayed) and time to ready, then a SIGTERM stop
#               (which checkpoints) and time to ready.
#               paced-off also ends with a kill -9 and a timed start: with no checkpoint since
#               the space was created, that start replays the whole log (what every start did
#               before checkpoints), beside paced-on's in the same run.
# Ready means the log is read; what it replayed is then inserted beside traffic (searched
# exactly until it is): each start also records how long until that catch-up ended
# (`*-caught-up-*.s`, from /health/detailed's engine.recovery.catching_up).
# INDEX (default usearch) is the backend of the loaded spaces (`load --index`): usearch or
# hnsw_rs. Reports go to OUT (default target/checkpoint-bench), the summary to OUT/summary.json.
#
# Usage: [INDEX=hnsw_rs] benches/scripts/checkpoint-bench.sh [OUT [DATA SET ...]]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/checkpoint-bench}
shift || true
sets=("$@")
[ ${#sets[@]} -gt 0 ] || sets=(minilm-384-stdlib glove-50-angular-100k)
index=${INDEX:-usearch}
mkdir -p "$out"
cargo build-release -q
bin=target/release/engram-stream
http=127.0.0.1:18580
grpc=127.0.0.1:18551
source benches/scripts/lib.sh

serve() { # serve INTERVAL OPERATIONS DIR LOG (OPERATIONS "default": the server's default)
  if [ "$2" = default ]; then
    ENGRAM_STORAGE__CHECKPOINT_INTERVAL_S=$1 \
      "$bin" serve --http-addr "$http" --grpc-addr "$grpc" --data-dir "$3" >>"$4" 2>&1 &
  else
    ENGRAM_STORAGE__CHECKPOINT_INTERVAL_S=$1 ENGRAM_STORAGE__CHECKPOINT_AFTER_OPERATIONS=$2 \
      "$bin" serve --http-addr "$http" --grpc-addr "$grpc" --data-dir "$3" >>"$4" 2>&1 &
  fi
  pid=$!
  started=$(now)
}

# caught_up FILE: once ready, waits until the replayed observations are all indexed and writes
# the seconds since the server was started to FILE.
caught_up() {
  for _ in $(seq 1 3000); do
    if curl -sf "http://$http/health/detailed" | python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)["engine"]["recovery"]["catching_up"])'; then
      python3 -c "print(round($(now) - $started, 3))" >"$1"
      return
    fi
    sleep 0.05
  done
  echo "replayed observations not indexed" >&2; exit 1
}

for set in "${sets[@]}"; do
  for run in saturated paced-off paced-on; do
    dir="$out/data-$set-$run"
    rm -rf "$dir"
    interval=0 operations=0 rate=()
    [ "$run" = paced-on ] && interval=60 operations=${OPERATIONS:-default}
    if [ "$run" != saturated ]; then
      rate=(--rate "$(python3 -c "import json; print(round(0.7 * json.load(open('$out/$set-saturated.json'))['ingest_rate_per_s']))")")
    fi
    serve "$interval" "$operations" "$dir" "$out/serve-$set-$run.log"
    wait_ready >/dev/null
    "$bin" load --wait indexed --dataset "../shared/data/$set" --server "http://$grpc" --protocol grpc \
      --metrics-url "http://$http/metrics" --index "$index" "${rate[@]}" --report "$out/$set-$run.json" >/dev/null
    curl -sf "http://$http/metrics" >"$out/$set-$run.metrics"
    if [ "$run" = paced-off ]; then
      kill -9 $pid; wait $pid 2>/dev/null || true
      serve "$interval" "$operations" "$dir" "$out/serve-$set-$run.log"
      wait_ready >"$out/$set-ready-after-kill9-no-checkpoint.s"
      curl -sf "http://$http/health/detailed" >"$out/$set-after-kill9-no-checkpoint-at-ready.json"
      caught_up "$out/$set-caught-up-after-kill9-no-checkpoint.s"
      curl -sf "http://$http/health/detailed" >"$out/$set-after-kill9-no-checkpoint-health.json"
    fi
    if [ "$run" = paced-on ]; then
      kill -9 $pid; wait $pid 2>/dev/null || true
      serve "$interval" "$operations" "$dir" "$out/serve-$set-$run.log"
      wait_ready >"$out/$set-ready-after-kill9.s"
      curl -sf "http://$http/health/detailed" >"$out/$set-after-kill9-at-ready.json"
      caught_up "$out/$set-caught-up-after-kill9.s"
      curl -sf "http://$http/health/detailed" >"$out/$set-after-kill9-health.json"
      kill -TERM $pid; wait $pid
      serve "$interval" "$operations" "$dir" "$out/serve-$set-$run.log"
      wait_ready >"$out/$set-ready-after-sigterm.s"
      curl -sf "http://$http/health/detailed" >"$out/$set-after-sigterm-health.json"
      du -s --block-size=1 "$dir" | cut -f1 >"$out/$set-$run.du"
    fi
    kill -TERM $pid; wait $pid || true
    pid=
  done
done

python3 - "$out" "${sets[@]}" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None
import os
summary = {"machine": "2 vCPU (AMD EPYC), 24 GiB; client and server on the same machine", "index": os.environ.get("INDEX", "usearch")}
for s in sys.argv[2:]:
    row = {}
    for run in ["saturated", "paced-off", "paced-on"]:
        r = json.loads((out / f"{s}-{run}.json").read_text())
        m = (out / f"{s}-{run}.metrics").read_text()
        row[run] = {
            "ingest_rate_per_s": r["ingest_rate_per_s"],
            "recall_at_10": r["recall_at_10"],
            "lost": r["lost"],
            "accepted_to_indexed_seconds": r.get("accepted_to_indexed_seconds"),
            "checkpoints": metric(m, "engram_storage_checkpoints_total"),
            "checkpoint_seconds_sum": metric(m, "engram_storage_checkpoint_duration_seconds_sum"),
        }
    on, off = row["paced-on"]["accepted_to_indexed_seconds"]["p99"], row["paced-off"]["accepted_to_indexed_seconds"]["p99"]
    row["p99_accepted_to_indexed_checkpoints_over_none"] = on / off
    row["ready_after_kill9_s"] = float((out / f"{s}-ready-after-kill9.s").read_text())
    row["replayed_after_kill9"] = json.loads((out / f"{s}-after-kill9-health.json").read_text())["engine"]["recovery"]["replayed_observations"]
    at_ready = lambda name: json.loads((out / name).read_text())["engine"]["recovery"].get("unindexed_observations")
    row["unindexed_at_ready_after_kill9"] = at_ready(f"{s}-after-kill9-at-ready.json")
    row["caught_up_after_kill9_s"] = float((out / f"{s}-caught-up-after-kill9.s").read_text())
    nc = out / f"{s}-ready-after-kill9-no-checkpoint.s"
    if nc.exists():
        row["ready_after_kill9_no_checkpoint_s"] = float(nc.read_text())
        row["replayed_after_kill9_no_checkpoint"] = json.loads((out / f"{s}-after-kill9-no-checkpoint-health.json").read_text())["engine"]["recovery"]["replayed_observations"]
        row["unindexed_at_ready_after_kill9_no_checkpoint"] = at_ready(f"{s}-after-kill9-no-checkpoint-at-ready.json")
        row["caught_up_after_kill9_no_checkpoint_s"] = float((out / f"{s}-caught-up-after-kill9-no-checkpoint.s").read_text())
    row["ready_after_sigterm_s"] = float((out / f"{s}-ready-after-sigterm.s").read_text())
    row["replayed_after_sigterm"] = json.loads((out / f"{s}-after-sigterm-health.json").read_text())["engine"]["recovery"]["replayed_observations"]
    row["data_dir_bytes_per_vector"] = int((out / f"{s}-paced-on.du").read_text().strip()) / r["observations"]
    summary[s] = row
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
PY
