#!/usr/bin/env bash
# Verifies the monitoring mixin against live software: engram-stream under load, Debian's
# Prometheus, Alertmanager, blackbox exporter and node exporter, all on loopback with the
# shipped configs (deploy/prometheus, deploy/alertmanager). Fails unless
#   - every scrape target is up and every blackbox probe succeeds (HTTP ready, /health/detailed
#     JSON, gRPC health, TCP on both ports);
#   - every rule file loads and every rule evaluates without error;
#   - every dashboard target, every recording rule, and every selector of every alert
#     expression returns at least one series (except the few listed in EMPTY_OK below, each
#     with the reason it has data only on errors);
#   - driven into backpressure (small queue, one worker), a backpressure alert fires in
#     Prometheus and reaches Alertmanager (seen through both HTTP APIs);
#   - with API keys on (as in production): the scrape and the /health/detailed probe use a
#     `metrics` key, the loads an admin key; requests without a key get 401, and the audit log
#     holds the admin actions and the refusals.
# The only changes to the shipped configs, made in a temporary copy: scrape and evaluation
# every 1 s instead of 15 s, `for:` of every alert shortened to 5 s, and the Alertmanager
# receivers' secret files created empty (nothing is sent anywhere from here).
#
# Usage: deploy/verify-stack.sh          (needs the ports 8080, 50051, 9090, 9093, 9100, 9115)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$root/target/verify-stack
rm -rf "$work"
mkdir -p "$work"

need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v prometheus-blackbox-exporter >/dev/null || need+=(prometheus-blackbox-exporter)
command -v prometheus-node-exporter >/dev/null || need+=(prometheus-node-exporter)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cargo build-release
target/release/deploy-queries >"$work/queries.jsonl"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
start() { # start NAME CMD...: run in the background, log to $work/NAME.log
  local name=$1
  shift
  "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
}
wait_http() { # wait_http URL NAME
  for _ in $(seq 1 100); do curl -sf "$1" >/dev/null && return 0; sleep 0.2; done
  echo "$2 did not come up; its log:"; cat "$work/$2.log"; exit 1
}

# The test copy of the Prometheus config and rules.
mkdir -p "$work/prometheus/rules" "$work/prometheus/targets"
sed -e 's/^  scrape_interval: 15s/  scrape_interval: 1s/' -e 's/^  evaluation_interval: 15s/  evaluation_interval: 1s/' \
  deploy/prometheus/prometheus.yml >"$work/prometheus/prometheus.yml"
for f in deploy/prometheus/rules/*.yml; do
  sed -E 's/^( +)for: [0-9]+[smh]$/\1for: 5s/' "$f" >"$work/prometheus/rules/$(basename "$f")"
done
grep -q 'scrape_interval: 1s' "$work/prometheus/prometheus.yml"

# API keys on, as in production (docs/security.md): an admin key for the loads and requests
# below, a `metrics` key for Prometheus's scrape and the blackbox /health/detailed probe.
target/release/engram-stream keys new --name verify-stack --grant admin >"$work/ops.key"
target/release/engram-stream keys new --name prometheus --grant metrics >"$work/prometheus.key"
ops_key=$(head -n 1 "$work/ops.key")
mkdir -p "$work/prometheus/secrets"
head -n 1 "$work/prometheus.key" >"$work/prometheus/secrets/engram-metrics-key"
{
  echo "[auth]"
  echo "audit_log = \"$work/audit.jsonl\""
  tail -n +2 "$work/ops.key"
  tail -n +2 "$work/prometheus.key"
} >"$work/engram.toml"
sed "s#/etc/prometheus/secrets/#$work/prometheus/secrets/#" deploy/prometheus/blackbox.yml >"$work/blackbox.yml"
promtool check config "$work/prometheus/prometheus.yml" >/dev/null

# Alertmanager: the shipped config; its secret files exist (empty) so receivers load.
mkdir -p "$work/alertmanager/secrets"
for s in smtp-password slack-webhook-url pagerduty-routing-key ticket-webhook-token; do
  : >"$work/alertmanager/secrets/$s"
done
sed "s#/etc/alertmanager/secrets/#$work/alertmanager/secrets/#g" deploy/alertmanager/alertmanager.yml \
  >"$work/alertmanager/alertmanager.yml"

echo "== starting engram-stream, node exporter, blackbox exporter, Alertmanager, Prometheus"
# One worker and a queue of 1,000 observations: a default `load` (16 batches of 100 in flight)
# overfills it, which drives the server into backpressure for the whole load.
ENGRAM_ENGINE__WORKERS=1 ENGRAM_ENGINE__QUEUE_CAPACITY=1000 \
  start engram target/release/engram-stream serve --config "$work/engram.toml" \
    --http-addr 127.0.0.1:8080 --grpc-addr 127.0.0.1:50051 --data-dir "$work/engram-data"
start node prometheus-node-exporter --web.listen-address=127.0.0.1:9100
start blackbox prometheus-blackbox-exporter --config.file="$work/blackbox.yml" --web.listen-address=127.0.0.1:9115
start alertmanager prometheus-alertmanager --config.file="$work/alertmanager/alertmanager.yml" \
  --storage.path="$work/alertmanager/data" --web.listen-address=127.0.0.1:9093 --cluster.listen-address=
start prometheus prometheus --config.file="$work/prometheus/prometheus.yml" --storage.tsdb.path="$work/prometheus/data" \
  --storage.tsdb.retention.time=30d --web.listen-address=127.0.0.1:9090
wait_http http://127.0.0.1:8080/health/ready engram
wait_http http://127.0.0.1:9100/metrics node
wait_http http://127.0.0.1:9115/metrics blackbox
wait_http http://127.0.0.1:9093/-/ready alertmanager
wait_http http://127.0.0.1:9090/-/ready prometheus

# Watch for the backpressure alert in Alertmanager while the load runs.
(
  for _ in $(seq 1 300); do
    if curl -sf 'http://127.0.0.1:9093/api/v2/alerts?filter=alertname=~"PersistentBackpressure|FrequentBackpressure"' \
      | python3 -c 'import json,sys; a=json.load(sys.stdin); sys.exit(0 if a else 1)'; then
      curl -sf 'http://127.0.0.1:9093/api/v2/alerts' >"$work/alertmanager-alerts.json"
      curl -sfG http://127.0.0.1:9090/api/v1/query --data-urlencode 'query=ALERTS{alertstate="firing"}' \
        >"$work/prometheus-alerts.json"
      exit 0
    fi
    sleep 1
  done
  exit 1
) &
watcher=$!

echo "== load: MiniLM-384 over gRPC into a queue of 1,000 (backpressure expected)"
# One load may be over before either alert's condition has held for its `for:` (5 s here): a
# fast machine indexes MiniLM in about 4 s. Every load is rejected at least once (the checks
# below require it), so each load (the space dropped and re-created) enters backpressure again,
# and FrequentBackpressure (more than 3 activations in 15 m) fires by the fourth load at the
# latest. Between loads, wait long
# enough for a pending alert to fire and reach Alertmanager.
for attempt in 1 2 3 4 5 6; do
  target/release/engram-stream load --dataset ../shared/data/minilm-384-stdlib --server http://127.0.0.1:50051 \
    --protocol grpc --api-key "$ops_key" --report "$work/load-$attempt.json" >"$work/load-$attempt.log" 2>&1 \
    || { cat "$work/load-$attempt.log"; exit 1; }
  tail -n 1 "$work/load-$attempt.log"
  for _ in $(seq 1 15); do
    [ -s "$work/alertmanager-alerts.json" ] && break 2
    sleep 1
  done
done
# One HTTP recall and a bad request, so the HTTP series have samples on the ingest routes too.
curl -sf -X POST http://127.0.0.1:8080/v1/spaces/minilm-384-stdlib/recall -H 'content-type: application/json' \
  -H "authorization: Bearer $ops_key" \
  -d "{\"embedding\": [$(python3 -c 'print(",".join(["0.05"] * 384))')], \"k\": 5}" >/dev/null
curl -s -o /dev/null -X POST http://127.0.0.1:8080/v1/spaces/minilm-384-stdlib/observations -d '{' \
  -H "authorization: Bearer $ops_key"
# Without a key: 401 for /metrics and the API (counted in engram_auth_failures_total, audited).
for path in /metrics /v1/spaces; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:8080$path")
  [ "$code" = 401 ] || { echo "FAILED: $path without a key answered $code, not 401"; exit 1; }
done
echo "ok: without a key /metrics and /v1/spaces answer 401"
sleep 5 # a few more scrapes and rule evaluations

if wait "$watcher"; then
  echo "ok: a backpressure alert reached Alertmanager"
else
  echo "FAILED: no backpressure alert reached Alertmanager"; cat "$work"/load-*.log; exit 1
fi

python3 - "$work" <<'PY'
import glob, json, sys, urllib.parse, urllib.request
work = sys.argv[1]
PROM = "http://127.0.0.1:9090/api/v1/"

def api(path, **params):
    url = PROM + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]

def series(promql):
    return api("query", query=promql)["result"]

failures = []
for path in sorted(glob.glob(f"{work}/load-*.json")):
    load = json.load(open(path))
    rejected = sum(load["rejected"].values())
    name = path.rsplit("/", 1)[1]
    print(f"{name}: {load['indexed']} indexed, {rejected} rejected and retried, lost {load['lost']}")
    if load["lost"] != 0:
        failures.append(f"{name}: the load lost {load['lost']} acknowledged observations")
    if rejected == 0:
        failures.append(f"{name}: the load was never rejected: the server did not reach backpressure")

# Every target up; every probe succeeds.
targets = api("targets")["activeTargets"]
for t in targets:
    if t["health"] != "up":
        failures.append(f"target {t['labels']['job']} {t['scrapeUrl']} is {t['health']}: {t['lastError']}")
for s in series("probe_success"):
    if s["value"][1] != "1":
        failures.append(f"probe {s['metric']['job']} {s['metric']['instance']} failed")
jobs = {t["labels"]["job"] for t in targets}
print(f"targets: {sum(t['health'] == 'up' for t in targets)} of {len(targets)} up across jobs {sorted(jobs)}")

# Every rule loaded and healthy.
rules = [r for g in api("rules")["groups"] for r in g["rules"]]
for r in rules:
    if r["health"] != "ok":
        failures.append(f"rule {r['name']}: {r['health']} {r.get('lastError', '')}")
print(f"rules: {len(rules)} loaded, {sum(r['health'] == 'ok' for r in rules)} healthy")

# Queries that may rightly be empty on a healthy, loaded server. Each says why.
EMPTY_OK = {
    # 5xx responses: only when the server fails a request.
    'panel "HTTP server errors by route"': "data only on server errors (HTTP 5xx)",
    # ALERTS: only while an alert is pending or firing; the backpressure alert has resolved by now.
    'panel "Firing alerts"': "data only while an alert fires",
    'panel "Security: TLS certificate"': "TLS is off in this stack (the gauge reads 0); the main job's TLS run and server/tests/tls.rs cover TLS",
    "annotation": "the firing-alerts annotation has data only while an alert fires",
}
# Selectors of ALERTS in alert expressions would be listed here too; none are used.

checked = empty = 0
for line in open(f"{work}/queries.jsonl"):
    q = json.loads(line)
    src = q["source"]
    ok_empty = next((why for key, why in EMPTY_OK.items() if key in src), None)
    if ": alert " in src:
        # An alert's expression is empty unless it fires; each selector in it must have data.
        targets = q["selectors"]
    elif ": record " in src:
        name = src.split(": record ", 1)[1]
        targets = [name]
    else:
        targets = [q["promql"]]
    for promql in targets:
        checked += 1
        if not series(promql):
            if ok_empty:
                empty += 1
                print(f"  empty (allowed: {ok_empty}): {src}")
            else:
                failures.append(f"no series: {src}\n    {promql}")
print(f"queries: {checked} run against Prometheus, {empty} empty as allowed")

# The backpressure alert: firing in Prometheus and received by Alertmanager.
am = json.load(open(f"{work}/alertmanager-alerts.json"))
bp = [a for a in am if a["labels"]["alertname"] in ("PersistentBackpressure", "FrequentBackpressure")]
prom = json.load(open(f"{work}/prometheus-alerts.json"))["data"]["result"]
if not bp:
    failures.append("Alertmanager has no backpressure alert")
else:
    a = bp[0]
    print(f"alertmanager: {a['labels']['alertname']} ({a['labels']['severity']}) for memory_space="
          f"{a['labels'].get('memory_space')} on {a['labels']['instance']}, receivers "
          f"{[r['name'] for r in a['receivers']]}; runbook {a['annotations']['runbook_url']}")
    if not any(p["metric"]["alertname"] == a["labels"]["alertname"] for p in prom):
        failures.append("the backpressure alert was not firing in Prometheus when Alertmanager had it")

# The audit log: the loads' space drops and creations (admin actions) and the refused requests.
audit = [json.loads(l) for l in open(f"{work}/audit.jsonl")]
creates = sum(1 for a in audit if a["action"] == "space.create" and a["outcome"] == "ok" and a["key"] == "verify-stack")
missing = sum(1 for a in audit if a["outcome"] == "missing")
print(f"audit log: {len(audit)} lines, {creates} space.create by verify-stack, {missing} refused without a key")
if creates == 0 or missing < 2:
    failures.append(f"the audit log lacks the loads' space creations ({creates}) or the refused requests ({missing})")

if failures:
    print("FAILED:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("verify-stack: OK")
PY
