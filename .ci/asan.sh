#!/usr/bin/env bash
# The read-while-ingest stress test and the engine's tests once under AddressSanitizer (nightly
# rustc's -Zsanitizer=address; usearch's C++ core instrumented too through CXXFLAGS).
# An out-of-bounds or use-after-free read, in our code or in USearch's, fails the run with ASan's
# report instead of passing by luck. Leak checking is off: the process-wide registries live until
# exit by design.
#
# Only the engine crate's tests: every call into C++ (USearch) and every unsafe block is in the
# engine, and these tests drive them from many threads at once. The server's end-to-end tests
# reach the same engine calls through safe tonic/axum code; they run, uninstrumented, in the
# workspace tests, and instrumenting their dependency tree (tonic, axum, hyper, h2, prost, ...)
# would add a second large build to this stage.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup toolchain list | grep -q '^nightly' \
  || { echo "asan: the nightly toolchain is missing (rustup toolchain list): -Zsanitizer needs it"; exit 1; }
target=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Zsanitizer=address"
export RUSTDOCFLAGS="-Zsanitizer=address"
# USearch's own C++ (the graph, its locks and buffers) is what the stress test exercises: it is
# instrumented (CXXFLAGS). NumKong, usearch's C library of SIMD distance kernels, is not: cc-rs
# passes rustc's -Zsanitizer=address on to every C file as -fsanitize=address, and NumKong's
# build script compiles its twenty-odd dispatch files at a hard-coded -O3, one after another
# (seen in cc1's command line, 2026-12-07; this stage took 1,272 s of CI's 3,841 s, 1,198 of
# them building). CFLAGS come last on cc-rs's command line, so these undo both for C files;
# NumKong's kernels only read the vectors usearch hands them.
export CXXFLAGS="-fsanitize=address -fno-omit-frame-pointer"
export CFLAGS="-fno-sanitize=address -O1"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1"
# A tenth of the fresh-space rounds: under ASan they look for memory errors, not race odds.
export ENGRAM_FRESH_SPACES_SCALE=0.1
cargo +nightly test --profile asan --target "$target" --target-dir target/asan \
  -p engram-engine --test concurrency --test engine
