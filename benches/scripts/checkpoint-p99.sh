#!/usr/bin/env bash
# Does a checkpoint stall ingest? p99 accepted → indexed at 70 % of the saturated rate, with
# the default checkpoint settings ÷ with checkpoints off, measured side by side: for each data
# set given (default GloVe-100k, the only shared set large enough for the default count trigger
# to fire during its load), one saturated gRPC load with checkpoints off gives the rate; then
# ROUNDS rounds, each a paced load (INDEXED acks, storage.durability fsync) with checkpoints off
# and one with the defaults, each on a fresh data directory, the order alternating from round
# to round. Each round gives a paired ratio; the summary holds every round's and their median
# (docs/benchmarks.md, "Checkpoints"). One pair alone says little here: the same setting's p99
# moved 6× between two runs minutes apart.
#
# RATE (observations/s) fixes the paced rate instead of 70 % of the saturated run's (which
# itself moves ±20 % here from run to run).
#
# Usage: [RATE=N] benches/scripts/checkpoint-p99.sh [OUT [ROUNDS [DATA SET ...]]]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/checkpoint-p99}
rounds=${2:-3}
shift 2 || shift $# || true
sets=("$@")
[ ${#sets[@]} -gt 0 ] || sets=(glove-50-angular-100k)
mkdir -p "$out"
cargo build-release -q
bin=target/release/engram-stream
http=127.0.0.1:18780
grpc=127.0.0.1:18751
source benches/scripts/lib.sh

run() { # run SET NAME CHECKPOINTS(off|default) [RATE]
  local dir="$out/data-$1-$2"
  rm -rf "$dir"
  if [ "$3" = off ]; then
    ENGRAM_STORAGE__CHECKPOINT_INTERVAL_S=0 ENGRAM_STORAGE__CHECKPOINT_AFTER_OPERATIONS=0 \
      "$bin" serve --http-addr "$http" --grpc-addr "$grpc" --data-dir "$dir" >>"$out/serve.log" 2>&1 &
  else
    "$bin" serve --http-addr "$http" --grpc-addr "$grpc" --data-dir "$dir" >>"$out/serve.log" 2>&1 &
  fi
  pid=$!
  wait_ready >/dev/null
  local rate=()
  [ -n "${4:-}" ] && rate=(--rate "$4")
  "$bin" load --wait indexed --dataset "../shared/data/$1" --server "http://$grpc" --protocol grpc \
    "${rate[@]}" --report "$out/$1-$2.json" >/dev/null
  curl -sf "http://$http/metrics" >"$out/$1-$2.metrics"
  stop
  rm -rf "$dir"
}

for set in "${sets[@]}"; do
  run "$set" saturated off
  rate=${RATE:-$(python3 -c "import json; print(round(0.7 * json.load(open('$out/$set-saturated.json'))['ingest_rate_per_s']))")}
  for round in $(seq 1 "$rounds"); do
    if [ $((round % 2)) = 1 ]; then order=(off default); else order=(default off); fi
    for c in "${order[@]}"; do
      run "$set" "$round-$c" "$c" "$rate"
    done
  done
done

python3 - "$out" "$rounds" "${sets[@]}" <<'PY'
import json, pathlib, statistics, sys
out, rounds = pathlib.Path(sys.argv[1]), int(sys.argv[2])
summary = {"machine": "2 vCPU (AMD EPYC), 24 GiB; client and server on the same machine", "rounds": rounds}
for s in sys.argv[3:]:
    p99 = lambda name: json.loads((out / f"{s}-{name}.json").read_text())["accepted_to_indexed_seconds"]["p99"]
    def ckpts(name):
        for line in (out / f"{s}-{name}.metrics").read_text().splitlines():
            if line.startswith("engram_storage_checkpoints_total "):
                return float(line.split()[-1])
        return 0.0
    rows = [{"off_p99_s": p99(f"{r}-off"), "default_p99_s": p99(f"{r}-default"), "checkpoints": ckpts(f"{r}-default")}
            for r in range(1, rounds + 1)]
    ratios = [r["default_p99_s"] / r["off_p99_s"] for r in rows]
    summary[s] = {
        "paced_rate_per_s": json.loads((out / f"{s}-1-off.json").read_text()).get("target_rate_per_s"),
        "saturated_rate_per_s": json.loads((out / f"{s}-saturated.json").read_text())["ingest_rate_per_s"],
        "rounds": rows,
        "default_over_off": ratios,
        "default_over_off_median": statistics.median(ratios),
    }
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
PY
