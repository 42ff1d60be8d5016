#!/usr/bin/env bash
# Telemetry cost in instructions per ingested observation, telemetry on vs compiled off: a
# deterministic complement to telemetry-on-off.sh, whose wall-clock rates on a shared 2-vCPU VM
# spread by ±10% and cannot resolve a 1% difference.
#
# Runs `benches/examples/ingest_fixed.rs` (in-process engine, one worker, fixed batches) under
# `valgrind --tool=callgrind` for a small and a large N, built normally and with
# `--features engram-telemetry/off`, RUNS times each, interleaved. The marginal cost per
# observation is (I(N_LARGE) - I(N_SMALL)) / (N_LARGE - N_SMALL), which cancels start-up
# (loading the data set, spawning threads).
#
# Two views, both reported:
# - whole process: every instruction executed;
# - outside the index: the whole process minus the inclusive cost of hnsw_rs's `insert_slice`.
#   hnsw_rs is generic, so its search loop is compiled inside the engine crate, and the two
#   builds' different code in that crate lets the compiler lay out (and count) the index's
#   instructions differently by a few tenths of a percent, either way, although the index does
#   the same work. Outside the index, the difference is what telemetry itself executes.
# Instructions are not cycles (no cache or branch effects), so this bounds what telemetry
# *executes*; the wall-clock script remains the end-to-end check. Prints a JSON summary.
#
# Usage: benches/scripts/telemetry-instructions.sh [RUNS] [N_SMALL] [N_LARGE] [DATASET]
#        (defaults: 3, 500, 4500, minilm-384-stdlib). Needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3} small=${2:-500} large=${3:-4500} dataset=${4:-minilm-384-stdlib}
out=target/telemetry-instructions
mkdir -p "$out"
# Both builds share target/release and select the packages `cargo build-release` selects
# (.cargo/config.toml), so features unify alike and only the crates the feature touches rebuild;
# each binary is copied out before the other build replaces it.
cargo build-release
cp target/release/examples/ingest_fixed "$out/ingest_fixed-on"
cargo build --release -p engram-benches -p engram-server -p engram-tools -p engram-deploy \
  --example ingest_fixed --features engram-telemetry/off
cp target/release/examples/ingest_fixed "$out/ingest_fixed-off"
declare -A bin=([on]=$out/ingest_fixed-on [off]=$out/ingest_fixed-off)

count() { # count BUILD N RUN -> "TOTAL INDEX": instructions of the whole process, and inclusive in insert_slice
  local file="$out/$1-$2-$3.callgrind"
  valgrind --tool=callgrind --callgrind-out-file="$file" "${bin[$1]}" "$2" "$dataset" >/dev/null 2>&1
  callgrind_annotate --inclusive=yes "$file" | tr -d , | awk '
    /PROGRAM TOTALS/ { total = $1 }
    /hnsw_rs::hnsw::Hnsw<.*>::insert_slice / { idx = $1 }
    END { if (!total || !idx) exit 1; print total, idx }'
}

for r in $(seq 1 "$runs"); do
  for build in on off; do
    for n in "$small" "$large"; do
      count "$build" "$n" "$r" >"$out/$build-$n-$r.ir"
    done
  done
done

python3 - "$out" "$runs" "$small" "$large" "$dataset" <<'PY'
import json, statistics, sys
out, runs, small, large, dataset = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
def ir(b, n, r):
    total, index = map(int, open(f"{out}/{b}-{n}-{r}.ir").read().split())
    return total, total - index
def per(b, view):  # marginal instructions per observation, one per run
    return [(ir(b, large, r)[view] - ir(b, small, r)[view]) / (large - small) for r in range(1, runs + 1)]
whole = {b: per(b, 0) for b in ("on", "off")}
outside = {b: per(b, 1) for b in ("on", "off")}
mean = statistics.mean
# At equal cycles per instruction, rate is inversely proportional to instructions per
# observation. The telemetry-only ratio adds what telemetry executes outside the index to the
# off build's whole cost: off / (off + (outside_on - outside_off)).
delta = [a - b for a, b in zip(outside["on"], outside["off"])]
only = [w / (w + d) for w, d in zip(whole["off"], delta)]
whole_ratios = [off / on for on, off in zip(whole["on"], whole["off"])]
r5 = lambda x: round(x, 5)
summary = {
    "dataset": dataset,
    "runs": runs,
    "n_small": small,
    "n_large": large,
    "whole_instructions_per_observation_on": [round(x) for x in whole["on"]],
    "whole_instructions_per_observation_off": [round(x) for x in whole["off"]],
    "whole_rate_ratio_on_over_off": r5(mean(whole["off"]) / mean(whole["on"])),
    "whole_rate_ratio_per_run_range": [r5(min(whole_ratios)), r5(max(whole_ratios))],
    "outside_index_instructions_per_observation_on": [round(x) for x in outside["on"]],
    "outside_index_instructions_per_observation_off": [round(x) for x in outside["off"]],
    "telemetry_instructions_per_observation": [round(d) for d in delta],
    "telemetry_rate_ratio_on_over_off": r5(mean(only)),
    "telemetry_rate_ratio_per_run_range": [r5(min(only)), r5(max(only))],
    "telemetry_rate_ratio_per_run_stdev": r5(statistics.stdev(only)) if runs > 1 else None,
}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print(json.dumps(summary, indent=2))
PY
