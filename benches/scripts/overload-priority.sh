#!/usr/bin/env bash
# Overload with priorities, as in the safety issue's probe: a server with a queue of 1,000 and
# one worker; four `load` clients stream MiniLM-384 as fast as they are let (priority mix
# 1:2:1, each into its own space), and a high-priority probe stream (`--priority-mix 1:0:0`,
# 3,000 observations at 100 obs/s in batches of 100, one in flight) runs once alone (unloaded)
# and once under that overload.
#
# Writes OUT/probe-unloaded.json, OUT/probe-overloaded.json and OUT/client-{1..4}.json (the
# `load` reports: the probe's index_latency_seconds is the high-priority INDEXED latency, the
# clients' sent_per_accepted what refusals cost in traffic) and prints a summary line.
#
# Usage: benches/scripts/overload-priority.sh BIN OUT
#   BIN: an engram-stream binary (target/release/engram-stream, or a previous build to compare)
set -euo pipefail
bin=$1
out=$2
data=${ENGRAM_DATA_DIR:-../shared/data}/minilm-384-stdlib
http=127.0.0.1:18290
grpc=127.0.0.1:15261
mkdir -p "$out"
conf=$(mktemp --suffix=.toml)
printf '[engine]\nworkers = 1\nqueue_capacity = 1000\n' >"$conf"
"$bin" serve --config "$conf" --http-addr "$http" --grpc-addr "$grpc" >"$out/serve.log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null || true; rm -f "$conf"' EXIT
for _ in $(seq 1 100); do curl -sf "http://$http/health/ready" >/dev/null && break; sleep 0.1; done

probe() { # probe NAME
  "$bin" load --wait indexed --dataset "$data" --server "http://$grpc" --protocol grpc --space probe --limit 3000 \
    --batch 100 --concurrency 1 --rate 100 --priority-mix 1:0:0 --queries 10 --report "$out/$1.json" \
    >"$out/$1.log" 2>&1
}

probe probe-unloaded
clients=()
for c in 1 2 3 4; do
  "$bin" load --wait indexed --dataset "$data" --server "http://$grpc" --protocol grpc --space "client-$c" \
    --priority-mix 1:2:1 --queries 10 --report "$out/client-$c.json" >"$out/client-$c.log" 2>&1 &
  clients+=($!)
done
sleep 5
probe probe-overloaded
for pid in "${clients[@]}"; do wait "$pid"; done
python3 - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
r = lambda n: json.loads((out / f"{n}.json").read_text())
un, ov = r("probe-unloaded"), r("probe-overloaded")
clients = [r(f"client-{c}") for c in (1, 2, 3, 4)]
sent = sum(c["sent"] for c in clients)
accepted = sum(c["accepted"] for c in clients)
summary = {
    "high_indexed_p99_unloaded_s": un["index_latency_seconds"]["p99"],
    "high_indexed_p99_overloaded_s": ov["index_latency_seconds"]["p99"],
    "probe_rejected_overloaded": sum(ov["rejected"].values()),
    "clients_sent": sent,
    "clients_accepted": accepted,
    "clients_sent_per_accepted": round(sent / max(accepted, 1), 3),
    "clients_duration_s": max(c["duration_s"] for c in clients),
}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary))
PY
