# Helpers the benchmark scripts share. The server helpers need `bin`, `http` and `grpc` set
# before they are called.

pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null || true' EXIT

# hnswlib_setup: what the scripts that measure against hnswlib share: `data_root` (the shared
# data sets), `venv` (a virtualenv with numpy and hnswlib 0.8.0), `$out` created, and every
# release binary built (`cargo build-release`). Needs `out` set.
hnswlib_setup() {
  data_root=${ENGRAM_DATA_DIR:-../shared/data}
  venv=${VENV:-target/bench-venv}
  mkdir -p "$out"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q numpy hnswlib==0.8.0
  cargo build-release
}

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

# grpc_load NAME DATASET [LOAD ARGS...]: a fresh `serve` (default config, a temporary data
# directory), then `load --wait indexed` of DATASET (under $data_root) over gRPC with the
# server's /metrics, reporting to $out/NAME.json; stops the server, removes its data, and
# prints the load's last line. Needs `out` and `data_root` set too.
grpc_load() {
  local name=$1 dataset=$2
  shift 2
  local data; data=$(mktemp -d)
  "$bin" serve --http-addr "$http" --grpc-addr "$grpc" --data-dir "$data" >"$out/$name.serve.log" 2>&1 &
  pid=$!
  wait_ready >/dev/null
  "$bin" load --wait indexed --dataset "$data_root/$dataset" --server "http://$grpc" --protocol grpc \
    --metrics-url "http://$http/metrics" --report "$out/$name.json" "$@" >"$out/$name.load.log" 2>&1 || {
    echo "load $name failed:" >&2; tail -5 "$out/$name.load.log" >&2; exit 1
  }
  stop
  rm -rf "$data" "$out/$name.serve.log"
  tail -1 "$out/$name.load.log"
  rm -f "$out/$name.load.log"
}
