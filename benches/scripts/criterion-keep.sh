#!/usr/bin/env bash
# Copies the engine's criterion results (each benchmark's new/benchmark.json and
# new/estimates.json, and the trace group; not the telemetry group, which docs/telemetry.md covers) from
# target/criterion into DEST (default docs/benchmarks/criterion), replacing what was there.
# Read back by `criterion-summary.py docs/benchmarks` and `engram-stream capacity --criterion`.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=${1:-docs/benchmarks/criterion}
src=target/criterion
[ -d "$src" ] || { echo "no $src: run cargo bench -p engram-benches first" >&2; exit 1; }
rm -rf "$dest"
(cd "$src" && find admission_reserve_release queue pool_dispatch index engine trace_unsampled_batch -path '*/new/*' \
  \( -name benchmark.json -o -name estimates.json \)) | while IFS= read -r f; do
  mkdir -p "$dest/$(dirname "$f")"
  cp "$src/$f" "$dest/$f"
done
echo "$(find "$dest" -name estimates.json | wc -l) results in $dest"
