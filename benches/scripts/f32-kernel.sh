#!/usr/bin/env bash
# USearch's f32 distance kernel (NumKong 7.8, f64 accumulation) against the engine's
# (engine/src/index/kernels.rs, f32 accumulation), raw index, 2 insert threads, in alternating
# pairs (the order swaps every pair; the machine's noise moves single runs by up to 1.5x):
# PAIRS times per data set, benches/examples/index_raw with ENGRAM_USEARCH_F32_KERNEL=numkong,
# then without it (or the other way round), both sweeping ef_search 64 and 128.
#
# Usage: benches/scripts/f32-kernel.sh OUT [PAIRS] [DATASETS]
#        (defaults 4, "minilm-384-stdlib glove-50-angular-100k")
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1 pairs=${2:-4} datasets=${3:-"minilm-384-stdlib glove-50-angular-100k"}
mkdir -p "$out"
cargo build-release
run() { # KERNEL PAIR DATASET
  if [ "$1" = numkong ]; then export ENGRAM_USEARCH_F32_KERNEL=numkong; else unset ENGRAM_USEARCH_F32_KERNEL; fi
  target/release/examples/index_raw "$3" usearch 2 all 64,128 >"$out/p$2-$3-$1.json"
}
for dataset in $datasets; do
  for p in $(seq 1 "$pairs"); do
    if [ $((p % 2)) = 1 ]; then run numkong "$p" "$dataset"; run engram "$p" "$dataset"
    else run engram "$p" "$dataset"; run numkong "$p" "$dataset"; fi
    echo "pair $p $dataset done"
  done
done
