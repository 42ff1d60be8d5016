#!/usr/bin/env bash
# The REST API against its own OpenAPI document (GET /openapi.json): schemathesis, from PyPI in a
# virtualenv made here, generates requests from the document for every operation and fails on
# any 5xx, any answer that does not match the document (status, content type, body schema,
# headers), or a server that stops answering. Run with API keys on (an admin key), bounded to
# 30 examples per operation and phase.
#
# Not checked: `positive_data_acceptance` (that every schema-valid request is accepted). A static
# schema cannot say what the server rightly refuses with 400: an embedding must have the space's
# dimension, `i8` quantization needs the usearch index, a restore must name a snapshot that
# exists, and JSON Schema's `integer` admits 17572.0, which the server's u64 fields refuse.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${SCHEMATHESIS_OUT:-target/schemathesis}
rm -rf "$out" && mkdir -p "$out"
python3 -m venv "$out/venv"
"$out/venv/bin/pip" install -q 'schemathesis>=4,<5'
# The same package selection as verify-stack.sh and main-job.sh: features unify per selection,
# so this reuses their release build instead of making another.
cargo build-release
bin=target/release/engram-stream
http=127.0.0.1:18090
"$bin" keys new --name schemathesis --grant admin >"$out/admin.key"
{ echo "[auth]"; tail -n +2 "$out/admin.key"; } >"$out/engram.toml"
source benches/scripts/lib.sh # wait_ready, and the server killed on any exit
"$bin" serve --config "$out/engram.toml" --http-addr "$http" --grpc-addr 127.0.0.1:15090 --data-dir "$out/data" \
  >"$out/serve.log" 2>&1 &
pid=$!
wait_ready >/dev/null
key=$(head -n 1 "$out/admin.key")
"$out/venv/bin/schemathesis" run "http://$http/openapi.json" -H "Authorization: Bearer $key" \
  --checks all --exclude-checks positive_data_acceptance --max-examples 30 --workers 1 \
  --seed 1 --report junit --report-dir "$out" >"$out/schemathesis.log" || { cat "$out/schemathesis.log"; exit 1; }
tail -n 12 "$out/schemathesis.log"
curl -sf "http://$http/health/live" >/dev/null || { echo "the server stopped answering"; tail -50 "$out/serve.log"; exit 1; }
kill -TERM $pid
wait $pid
pid=
echo "schemathesis: no 5xx, no answer outside the document, the server still answers and drained on SIGTERM"
