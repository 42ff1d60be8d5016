#!/usr/bin/env bash
# The cost of tracing on ingest, measured side by side: for each shared data set, ROUNDS rounds
# (default 3), each a saturated gRPC `load` (INDEXED acks, default fsync durability) per mode on
# a fresh data directory, the order of the modes rotated from round to round:
#   off      no [tracing] endpoint (nothing recorded);
#   sampled  the default sampler (parentbased_traceidratio, 1 %) exporting to a live OTLP
#            receiver (`engram-tools otlp-sink`, on this machine);
#   down     the default sampler, exporting to a port nothing listens on (a dead collector);
#   all      every batch traced (always_on) to the live receiver.
# Each round gives paired ratios (mode ÷ off) of the ingest rate and of the server's CPU time for
# the whole run (process_cpu_seconds_total: ingest and the recall queries, less sensitive to
# scheduling noise than the rate); the summary holds every round's and their median
# (docs/benchmarks.md, "Tracing cost"). Target: sampled ÷ off ≥ 0.97 (issue 16).
#
# Usage: benches/scripts/tracing-cost.sh [OUT [ROUNDS]]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/tracing-cost}
rounds=${2:-3}
mkdir -p "$out"
cargo build-release -q
bin=target/release/engram-stream
tools=target/release/engram-tools
http=127.0.0.1:18780
grpc=127.0.0.1:18751
sink=127.0.0.1:18717
dead=127.0.0.1:18718
source benches/scripts/lib.sh

"$tools" otlp-sink --addr "$sink" --report "$out/sink.json" >/dev/null 2>>"$out/sink.log" &
sink_pid=$!
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; kill $sink_pid 2>/dev/null || true' EXIT

orders=("off sampled down all" "sampled down all off" "down all off sampled" "all off sampled down")
for set in minilm-384-stdlib glove-50-angular-100k; do
  for round in $(seq 1 "$rounds"); do
    for mode in ${orders[$(((round - 1) % 4))]}; do
      dir="$out/data-$set-$round-$mode"
      rm -rf "$dir"
      case $mode in
        off) env=() ;;
        sampled) env=(ENGRAM_TRACING__OTLP_ENDPOINT="http://$sink") ;;
        down) env=(ENGRAM_TRACING__OTLP_ENDPOINT="http://$dead") ;;
        all) env=(ENGRAM_TRACING__OTLP_ENDPOINT="http://$sink" OTEL_TRACES_SAMPLER=always_on) ;;
      esac
      env "${env[@]}" "$bin" serve --http-addr "$http" --grpc-addr "$grpc" --data-dir "$dir" \
        >>"$out/serve.log" 2>&1 &
      pid=$!
      wait_ready >/dev/null
      "$bin" load --wait indexed --dataset "../shared/data/$set" --server "http://$grpc" --protocol grpc \
        --report "$out/$set-$round-$mode.json" >/dev/null 2>>"$out/load.log"
      curl -sf "http://$http/metrics" | grep -E '^(engram_trace|process_cpu_seconds_total)' \
        >"$out/$set-$round-$mode.trace-metrics" || true
      stop
      rm -rf "$dir"
    done
  done
done
kill -TERM $sink_pid; wait $sink_pid || true
rm -f "$out/serve.log" "$out/load.log" "$out/sink.log"

python3 - "$out" "$rounds" <<'PY'
import json, pathlib, statistics, sys
out, rounds = pathlib.Path(sys.argv[1]), int(sys.argv[2])
summary = {"machine": "2 vCPU (AMD EPYC), 24 GiB; client, server and OTLP receiver on the same machine",
           "rounds": rounds, "receiver": json.loads((out / "sink.json").read_text())}
modes = ["off", "sampled", "down", "all"]
for s in ["minilm-384-stdlib", "glove-50-angular-100k"]:
    rate = lambda r, m: json.loads((out / f"{s}-{r}-{m}.json").read_text())["ingest_rate_per_s"]
    def metrics(r, m):
        d = {}
        for line in (out / f"{s}-{r}-{m}.trace-metrics").read_text().splitlines():
            k, v = line.rsplit(" ", 1)
            d[k] = float(v)
        return d
    rows = [{m: rate(r, m) for m in modes} for r in range(1, rounds + 1)]
    mets = [{m: metrics(r, m) for m in modes} for r in range(1, rounds + 1)]
    cpu = [{m: x[m]["process_cpu_seconds_total"] for m in modes} for x in mets]
    entry = {"rates_per_round": rows, "cpu_seconds_per_round": cpu, "trace_metrics_per_round": mets}
    for m in modes[1:]:
        ratios = [row[m] / row["off"] for row in rows]
        entry[f"{m}_over_off"] = ratios
        entry[f"{m}_over_off_median"] = statistics.median(ratios)
        cpu_ratios = [row[m] / row["off"] for row in cpu]
        entry[f"{m}_cpu_over_off"] = cpu_ratios
        entry[f"{m}_cpu_over_off_median"] = statistics.median(cpu_ratios)
    summary[s] = entry
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps({s: {k: v for k, v in summary[s].items() if k.endswith("median")} for s in ["minilm-384-stdlib", "glove-50-angular-100k"]}, indent=2))
PY
