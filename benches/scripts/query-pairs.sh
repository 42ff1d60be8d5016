#!/usr/bin/env bash
# Query time at equal recall, engine against hnswlib, in alternating pairs (the machine's noise
# moves single runs by up to 2x; a ratio within a pair is steadier): PAIRS times, hnswlib raw
# (benches/scripts/hnswlib-raw.py) then the engine in process with QUANTIZATION
# (benches/examples/engine_sweep.rs, fsync) in an INDEX space (default usearch), 3 passes each.
# hnswlib sweeps ef 32, 64, 96, 128, 192, 256; the engine the same and the steps between them
# (EFS, default every 16 from 32 to 160, then 192, 224, 256), so that equal recall is found at
# a measured ef_search near it rather than one whole step above. The engine answers ids and
# scores only (WITH_CONTENT=0, as hnswlib answers labels and distances; WITH_CONTENT=1 to read
# each hit's content too).
#
# Usage: benches/scripts/query-pairs.sh OUT DATASET [PAIRS] [QUANTIZATION] [INDEX]
#   (defaults 3, i8, usearch)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1 dataset=$2 pairs=${3:-3} q=${4:-i8} index=${5:-usearch}
engine=engine-$q
[ "$index" = usearch ] || engine=engine-$index-$q # the reports of usearch keep their names
# shellcheck source=benches/scripts/lib.sh
source benches/scripts/lib.sh
hnswlib_setup
for p in $(seq 1 "$pairs"); do
  ENGRAM_DATA="$data_root" "$venv/bin/python" benches/scripts/hnswlib-raw.py "$dataset" >"$out/p$p-$dataset-hnswlib.json"
  INDEX=$index WITH_CONTENT=${WITH_CONTENT:-0} target/release/examples/engine_sweep "$dataset" "$q" fsync \
    "${EFS:-32,48,64,80,96,112,128,144,160,192,224,256}" >"$out/p$p-$dataset-$engine.json"
  echo "pair $p $dataset done"
done
