#!/usr/bin/env bash
# amtool route tests for alertmanager.yml: each severity reaches its receivers, and an alert
# without a severity falls back to the ticket receiver. Exits non-zero on the first mismatch.
set -euo pipefail
cd "$(dirname "$0")"
check() { # check EXPECTED_RECEIVERS LABEL=VALUE...
  local want=$1
  shift
  amtool config routes test --config.file=alertmanager.yml --verify.receivers="$want" "$@" >/dev/null \
    || { echo "route test failed: $* should reach $want, reaches $(amtool config routes test --config.file=alertmanager.yml "$@")"; exit 1; }
  echo "ok: $* -> $want"
}
check pager,chat alertname=EngramDown severity=critical cluster=local service=engram-stream
check pager,chat alertname=PersistentBackpressure severity=critical service=engram-stream
check chat alertname=HighQueueDepth severity=warning service=engram-stream
check chat alertname=FrequentBackpressure severity=warning service=engram-stream
check ticket alertname=NoIngestWhileConnected severity=info service=engram-stream
check ticket alertname=RecallQueryRateNearZero severity=info service=engram-stream
check ticket alertname=Unlabelled
