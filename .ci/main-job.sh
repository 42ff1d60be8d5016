#!/usr/bin/env bash
# The main job: serve with embedded defaults on loopback (durability fsync, a fresh data
# directory), stream ../shared/data/minilm-384-stdlib over gRPC with `load`, and fail unless
# nothing was lost, every vector was indexed, recall@10 at the default ef_search is >= 0.95,
# /metrics passes promtool, every cataloged metric has a sample, and SIGTERM drains and exits 0;
# then restart on the same data directory and check every vector is back and recall@10 holds;
# then once more over TLS with an API key (a CA and certificate made here with openssl).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${MAIN_JOB_OUT:-target/main-job}
mkdir -p "$out"
cargo build-release
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

"$bin" load --wait indexed --dataset ../shared/data/minilm-384-stdlib --server "http://$grpc" --protocol grpc \
  --report "$out/minilm-grpc.json"

# check_report FILE WHAT [scraped]: the load report says nothing was lost, all 17,027 observations
# were indexed and are in the space, recall@10 >= 0.95, sent == accepted + rejected, and, with
# `scraped` (load ran with --metrics-url), that it read the server's metrics (server_stats),
# half-way through too.
check_report() {
  python3 - "$1" "$2" "${3:-}" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
what, scraped = sys.argv[2], sys.argv[3] == "scraped"
rejected = sum(r["rejected"].values())
checks = {
    "lost == 0": r["lost"] == 0,
    "indexed == 17027": r["indexed"] == 17027,
    "space_vectors == 17027": r["space_vectors"] == 17027,
    "recall_at_10 >= 0.95": r["recall_at_10"] >= 0.95,
    "sent == accepted + rejected": r["sent"] == r["accepted"] + rejected,
}
if scraped:
    stats = r.get("server_stats") or {}
    checks["metrics scraped"] = stats.get("scrape_samples", 0) > 0
    # Read every 200 ms while the load ran: the first reading at or past half the vectors.
    checks["half-way reading"] = 17027 // 2 <= (stats.get("vectors_half") or 0) <= 17027 \
        and (stats.get("rss_bytes_half") or 0) > 0
print(json.dumps({k: r[k] for k in ("ingest_rate_per_s", "recall_at_10", "lost", "indexed", "index_latency_seconds")}))
failed = [k for k, ok in checks.items() if not ok]
if failed:
    sys.exit(f"main job ({what}) failed: " + ", ".join(failed))
print(f"main job ({what}): all checks passed")
PY
}

check_report "$out/minilm-grpc.json" "plaintext gRPC"

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

# Restart on the same data directory: the space comes back from the checkpoint its SIGTERM stop
# wrote (nothing left to replay from the durable log), and recall against the exact ground truth
# is as good as before the restart.
"$bin" serve --http-addr "$http" --grpc-addr "$grpc" --data-dir "$out/data" >"$out/serve-restart.log" 2>&1 &
pid=$!
now() { python3 -c 'import time; print(time.time())'; }
start=$(now)
for _ in $(seq 1 600); do
  curl -sf "http://$http/health/ready" >/dev/null && break
  sleep 0.1
done
curl -sf "http://$http/health/ready" >/dev/null || { cat "$out/serve-restart.log"; echo "server not ready after restart"; exit 1; }
echo "ready after restart in $(python3 -c "print(round($(now) - $start, 2))") s (the SIGTERM stop's checkpoint, loaded)"
python3 - "http://$http" ../shared/data/minilm-384-stdlib "$out/minilm-grpc.json" <<'PY'
import json, struct, sys, urllib.request
base_url, data, report = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
def vecs(path, fmt):
    out, raw = [], open(path, "rb").read()
    at = 0
    while at < len(raw):
        (d,) = struct.unpack_from("<i", raw, at)
        out.append(struct.unpack_from(f"<{d}{fmt}", raw, at + 4))
        at += 4 + 4 * d
    return out
def call(method, path, body=None):
    req = urllib.request.Request(base_url + path, method=method,
        data=None if body is None else json.dumps(body).encode(), headers={"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))
queries, truth = vecs(f"{data}/query.fvecs", "f"), vecs(f"{data}/groundtruth.ivecs", "i")
info = call("GET", "/v1/spaces/minilm-384-stdlib")
replayed = call("GET", "/health/detailed")["engine"]["recovery"]["replayed_observations"]
n = 200
recall = sum(len({h["id"] for h in call("POST", "/v1/spaces/minilm-384-stdlib/recall", {"embedding": list(q), "k": 10})["hits"]}
                 & set(t[:10])) / 10 for q, t in zip(queries[:n], truth[:n])) / n
print(json.dumps({"vectors_after_restart": info["vectors"], "replayed_after_restart": replayed,
                  "recall_at_10_after_restart": round(recall, 4), "recall_at_10_before": report["recall_at_10"]}))
assert replayed == 0, f"{replayed} observations replayed after a clean stop: its checkpoint was not used"
assert info["vectors"] == 17027, f"{info['vectors']} vectors after the restart, expected 17027"
assert recall >= 0.95, f"recall@10 after the restart {recall}"
print("restart on the same data directory: every vector back, recall holds")
PY
kill -TERM $pid
wait $pid

# Once more over TLS on both listeners with API keys on, as in production: a CA and a server
# certificate for 127.0.0.1 made here, an admin key for the load, the same checks.
tls=$out/tls
rm -rf "$tls" && mkdir -p "$tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=engram main-job CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >"$tls/ext.cnf"
openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial -days 2 \
  -extfile "$tls/ext.cnf" -out "$tls/server.crt" 2>/dev/null
"$bin" keys new --name main-job --grant admin >"$tls/admin.key"
{
  echo "[auth]"
  tail -n +2 "$tls/admin.key"
  echo "[tls]"
  echo "cert_file = \"$tls/server.crt\""
  echo "key_file = \"$tls/server.key\""
} >"$tls/engram.toml"
admin_key=$(head -n 1 "$tls/admin.key")
"$bin" serve --config "$tls/engram.toml" --http-addr "$http" --grpc-addr "$grpc" --data-dir "$tls/data" >"$out/serve-tls.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -sf --cacert "$tls/ca.crt" "https://$http/health/ready" >/dev/null && break
  sleep 0.1
done
curl -sf --cacert "$tls/ca.crt" "https://$http/health/ready" >/dev/null || { cat "$out/serve-tls.log"; echo "TLS server not ready"; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$tls/ca.crt" "https://$http/v1/spaces")
[ "$code" = 401 ] || { echo "GET /v1/spaces without a key over TLS: $code, expected 401"; exit 1; }
if curl -sf "http://$http/health/ready" >/dev/null 2>&1; then echo "plaintext HTTP answered on the TLS port"; exit 1; fi
"$bin" load --wait indexed --dataset ../shared/data/minilm-384-stdlib --server "https://$grpc" --protocol grpc \
  --cacert "$tls/ca.crt" --api-key "$admin_key" --metrics-url "https://$http/metrics" --report "$out/minilm-grpc-tls.json"
check_report "$out/minilm-grpc-tls.json" "over TLS with an API key" scraped
kill -TERM $pid
wait $pid
trap - EXIT
