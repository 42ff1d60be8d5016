#!/usr/bin/env bash
# The read-while-ingest stress test and the end-to-end tests once under AddressSanitizer
# (nightly rustc's -Zsanitizer=address; usearch's C++ core instrumented too through CFLAGS and
# CXXFLAGS). An out-of-bounds or use-after-free read, in our code or in USearch's, fails the run
# with ASan's report instead of passing by luck. Leak checking is off: the process-wide
# registries live until exit by design.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup toolchain list | grep -q '^nightly' \
  || { echo "asan: the nightly toolchain is missing (rustup toolchain list): -Zsanitizer needs it"; exit 1; }
target=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Zsanitizer=address"
export RUSTDOCFLAGS="-Zsanitizer=address"
export CFLAGS="-fsanitize=address -fno-omit-frame-pointer"
export CXXFLAGS="-fsanitize=address -fno-omit-frame-pointer"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1"
# A tenth of the fresh-space rounds: under ASan they look for memory errors, not race odds.
export ENGRAM_FRESH_SPACES_SCALE=0.1
cargo +nightly test --target "$target" --target-dir target/asan \
  -p engram-engine --test concurrency \
  -p engram-server --test end_to_end --test safety
