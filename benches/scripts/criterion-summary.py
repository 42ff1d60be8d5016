#!/usr/bin/env python3
"""Summarise criterion results as a Markdown table.

Usage: benches/scripts/criterion-summary.py [TARGET_DIR]   (default: target)

Reads every `<target>/criterion/**/new/estimates.json` with its `benchmark.json` and prints one
row per benchmark: the mean time per iteration and, where the benchmark declares a throughput,
elements per second. Fails when no results are found, so CI cannot pass on an empty run.
"""
import json
import pathlib
import sys


def human_time(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target") / "criterion"
    rows = []
    for estimates in sorted(root.glob("**/new/estimates.json")):
        meta_path = estimates.parent / "benchmark.json"
        if not meta_path.exists():
            continue
        meta = json.loads(meta_path.read_text())
        mean = json.loads(estimates.read_text())["mean"]["point_estimate"]
        throughput = meta.get("throughput") or {}
        elements = throughput.get("Elements")
        rate = f"{elements / (mean / 1e9):,.0f}/s" if elements else ""
        rows.append((meta["full_id"], human_time(mean), rate))
    if not rows:
        print(f"no criterion results under {root}", file=sys.stderr)
        return 1
    print("| benchmark | mean per iteration | elements per second |")
    print("|---|---|---|")
    for name, time, rate in rows:
        print(f"| {name} | {time} | {rate} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
