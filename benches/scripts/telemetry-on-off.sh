#!/usr/bin/env bash
# End-to-end cost of telemetry: `load` ingest rate against a server built normally (telemetry
# on) and one built with `--features engram-telemetry/off` (every recording compiled out; the
# engine steers by its own state either way: telemetry/src/events/mod.rs), same data, same
# client binary, runs interleaved ABBA so drift on the machine hits both sides alike. Prints a
# JSON summary: per-run rates, the ratio on/off of the means, and the spread of the per-pair
# ratios.
#
# Usage: benches/scripts/telemetry-on-off.sh [PAIRS] [DATASET]   (defaults: 5, minilm-384-stdlib)
# PIN=1 pins the server (one worker) to CPU 0 and the load client to CPU 1 with taskset, which
# takes the client's contention for the server's cores out of the comparison.
set -euo pipefail
cd "$(dirname "$0")/../.."
pairs=${1:-5}
dataset=${2:-../shared/data/minilm-384-stdlib}
out=target/telemetry-on-off
mkdir -p "$out"
cargo build-release
cargo build --release -p engram-server --bin engram-stream --features engram-telemetry/off --target-dir target/off
on=target/release/engram-stream
off=target/off/release/engram-stream
http=127.0.0.1:18090
grpc=127.0.0.1:15061

server_pin=() client_pin=()
if [[ ${PIN:-0} == 1 ]]; then
  server_pin=(taskset -c 0) client_pin=(taskset -c 1)
  export ENGRAM_ENGINE__WORKERS=1
fi

run() { # run NAME BINARY INDEX
  local name=$1 bin=$2 i=$3
  "${server_pin[@]}" "$bin" serve --http-addr "$http" --grpc-addr "$grpc" >"$out/serve-$name-$i.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do curl -sf "http://$http/health/ready" >/dev/null && break; sleep 0.1; done
  "${client_pin[@]}" "$on" load --wait indexed --dataset "$dataset" --server "http://$grpc" --protocol grpc --report "$out/$name-$i.json" \
    >"$out/load-$name-$i.log" 2>&1
  # The server's CPU time for the whole run (start, ingest, recall queries), from its own
  # process_cpu_seconds_total: less sensitive to scheduling noise than the wall-clock rate.
  curl -sf "http://$http/metrics" | awk '$1 == "process_cpu_seconds_total" { print $2 }' >"$out/cpu-$name-$i.txt"
  kill -TERM "$pid"
  wait "$pid"
}

for i in $(seq 1 "$pairs"); do
  if (( i % 2 )); then run on "$on" "$i"; run off "$off" "$i"; else run off "$off" "$i"; run on "$on" "$i"; fi
done

python3 - "$out" "$pairs" <<'PY'
import json, statistics, sys
out, pairs = sys.argv[1], int(sys.argv[2])
rate = lambda name, i: json.load(open(f"{out}/{name}-{i}.json"))["ingest_rate_per_s"]
on = [rate("on", i) for i in range(1, pairs + 1)]
off = [rate("off", i) for i in range(1, pairs + 1)]
ratios = [a / b for a, b in zip(on, off)]
cpu = lambda name, i: float(open(f"{out}/cpu-{name}-{i}.txt").read())
obs = json.load(open(f"{out}/on-1.json"))["observations"]
cpu_on = [cpu("on", i) / obs * 1e6 for i in range(1, pairs + 1)]
cpu_off = [cpu("off", i) / obs * 1e6 for i in range(1, pairs + 1)]
summary = {
    "pairs": pairs,
    "pinned": __import__("os").environ.get("PIN") == "1",
    "on_rates_per_s": [round(x, 1) for x in on],
    "off_rates_per_s": [round(x, 1) for x in off],
    "ratio_of_means": round(statistics.mean(on) / statistics.mean(off), 4),
    "pair_ratio_median": round(statistics.median(ratios), 4),
    "pair_ratio_min": round(min(ratios), 4),
    "pair_ratio_max": round(max(ratios), 4),
    "pair_ratio_stdev": round(statistics.stdev(ratios), 4) if pairs > 1 else None,
    "server_cpu_us_per_observation_on": [round(x, 1) for x in cpu_on],
    "server_cpu_us_per_observation_off": [round(x, 1) for x in cpu_off],
    "cpu_ratio_off_over_on_of_means": round(statistics.mean(cpu_off) / statistics.mean(cpu_on), 4),
}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print(json.dumps(summary, indent=2))
PY
