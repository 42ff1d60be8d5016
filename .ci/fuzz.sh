#!/usr/bin/env bash
# Every cargo-fuzz target (fuzz/, its own workspace; nightly libFuzzer) for a bounded time each
# (FUZZ_SECONDS, default 30), from the committed seeds; fails on any crash or panic (debug
# assertions and overflow checks on). Built without a sanitizer (`-s none`): the decoders are
# safe Rust, and instrumenting the server's dependency tree for ASan (usearch's C++ and
# NumKong's C included) would add a second long build; .ci/asan.sh covers the C++ under ASan.
# Prints executions per target. A crash leaves its input in fuzz/artifacts/TARGET/: add it to
# fuzz/seeds/TARGET/ and as a regression test where the code is.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-30}
# The workspace's lock file: the fuzz build uses the dependency versions the tests ran with.
cp ../Cargo.lock Cargo.lock
# C and C++ at -O1, as fuzz/Cargo.toml's release profile for Rust (the build is most of the stage).
export CFLAGS=-O1 CXXFLAGS=-O1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
# Built once, then the targets two at a time (libFuzzer runs on one core; CI has two).
cargo +nightly fuzz build -s none
run_target() { # run_target TARGET: fuzz it for $seconds; its summary or its crash in $logs/TARGET
  local target=$1 corpus=corpus/$1 log=$logs/$1
  rm -rf "$corpus" && mkdir -p "$corpus"
  cp seeds/"$target"/* "$corpus"/ 2>/dev/null || true
  if ! cargo +nightly fuzz run -s none "$target" "$corpus" -- -max_total_time="$seconds" >"$log" 2>&1; then
    echo "fuzz: $target crashed (input in fuzz/artifacts/$target/)" >>"$log"
    return 1
  fi
  echo "fuzz: $target: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log"), no crash; corpus $(ls "$corpus" | wc -l) inputs" >"$log.summary"
}
logs=$(mktemp -d)
pids=() targets=()
failed=0
for target in $(cargo +nightly fuzz list); do
  if [ ${#pids[@]} -ge 2 ]; then
    wait "${pids[0]}" || failed=1
    pids=("${pids[@]:1}")
  fi
  run_target "$target" &
  pids+=($!) targets+=("$target")
done
for p in "${pids[@]}"; do wait "$p" || failed=1; done
for target in "${targets[@]}"; do
  if [ -f "$logs/$target.summary" ]; then cat "$logs/$target.summary"; else tail -60 "$logs/$target"; fi
done
exit "$failed"
