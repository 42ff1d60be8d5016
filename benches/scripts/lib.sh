# Helpers the benchmark scripts share; source it after setting `bin`, `http` and `grpc`.

pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null || true' EXIT

now() { python3 -c 'import time; print(time.time())'; }

# wait_ready: prints the seconds until /health/ready answered 200 (fails after 150 s).
wait_ready() {
  local start; start=$(now)
  for _ in $(seq 1 3000); do
    curl -sf "http://$http/health/ready" >/dev/null && { python3 -c "print(round($(now) - $start, 3))"; return; }
    sleep 0.05
  done
  echo "server not ready" >&2; exit 1
}

# stop: SIGTERM the server started last and wait for it.
stop() {
  kill -TERM "$pid"; wait "$pid" || true
  pid=
}
