#!/usr/bin/env bash
# The main job: serve with embedded defaults on loopback, stream ../shared/data/minilm-384-stdlib
# over gRPC with `load`, and fail unless nothing was lost, every vector was indexed, recall@10 at
# the default ef_search is >= 0.95, /metrics passes promtool, every cataloged metric has a
# sample, and SIGTERM drains and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${MAIN_JOB_OUT:-target/main-job}
mkdir -p "$out"
cargo build --release -p engram-server -p engram-tools
bin=target/release/engram-stream
http=127.0.0.1:18080
grpc=127.0.0.1:15051

# A fresh data directory with the default durability (fsync): the restart below reads it back.
rm -rf "$out/data"
"$bin" serve --http-addr "$http" --grpc-addr "$grpc" --data-dir "$out/data" >"$out/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://$http/health/ready" >/dev/null && break
  sleep 0.1
done
curl -sf "http://$http/health/ready" >/dev/null || { cat "$out/serve.log"; echo "server not ready"; exit 1; }

"$bin" load --dataset ../shared/data/minilm-384-stdlib --server "http://$grpc" --protocol grpc \
  --report "$out/minilm-grpc.json"

python3 - "$out/minilm-grpc.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rejected = sum(r["rejected"].values())
checks = {
    "lost == 0": r["lost"] == 0,
    "indexed == 17027": r["indexed"] == 17027,
    "space_vectors == 17027": r["space_vectors"] == 17027,
    "recall_at_10 >= 0.95": r["recall_at_10"] >= 0.95,
    "sent == accepted + rejected": r["sent"] == r["accepted"] + rejected,
}
print(json.dumps({k: r[k] for k in ("ingest_rate_per_s", "recall_at_10", "lost", "indexed", "index_latency_seconds")}))
failed = [k for k, ok in checks.items() if not ok]
if failed:
    sys.exit("main job failed: " + ", ".join(failed))
print("main job: all checks passed")
PY

curl -sf "http://$http/metrics" >"$out/metrics.txt"
lint=$(promtool check metrics <"$out/metrics.txt" 2>&1) || { echo "$lint"; exit 1; }
[ -z "$lint" ] || { echo "promtool check metrics warns: $lint"; exit 1; }
echo "promtool check metrics: no warnings"
"$bin" catalog --format json >"$out/catalog.json"
python3 - "$out/catalog.json" "$out/metrics.txt" <<'PY'
import json, sys
catalog = json.load(open(sys.argv[1]))
lines = [l for l in open(sys.argv[2]) if not l.startswith("#")]
missing = []
for m in catalog:
    prefix = m["name"] + ("_bucket{" if m["type"] == "histogram" else "")
    if not any(l.startswith(prefix) for l in lines):
        missing.append(m["name"])
if missing:
    sys.exit("metrics without a sample: " + ", ".join(missing))
print(f"every one of the {len(catalog)} cataloged metrics has a sample")
PY

kill -TERM $pid
wait $pid
echo "server drained and exited 0 on SIGTERM"
trap - EXIT
