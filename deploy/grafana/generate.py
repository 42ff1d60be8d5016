#!/usr/bin/env python3
"""Writes the three Grafana dashboards (dashboards/*.json) from the panel lists below.

Every panel queries the `$datasource` variable; instance and memory-space filters use the
`$instance` and `$memory_space` variables; thresholds are the alert rules' thresholds
(deploy/prometheus/rules/engram-alerts.yml). Edit this file and run it, not the JSON:

    python3 deploy/grafana/generate.py

`cargo test -p engram-deploy` parses every expression below (from the JSON) and checks each
metric against the telemetry catalog; deploy/verify-stack.sh queries each against a live
Prometheus.
"""
import json
import pathlib

DS = {"type": "prometheus", "uid": "${datasource}"}
I = 'instance=~"$instance"'
IS = 'instance=~"$instance", memory_space=~"$memory_space"'
RI = "$__rate_interval"


def target(expr, legend="", ref="A", fmt=None):
    t = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref}
    if fmt:
        t["format"] = fmt
    return t


def panel(kind, title, desc, targets, unit="short", w=12, h=8, thresholds=None, extra=None):
    steps = [{"color": "green", "value": None}]
    for value, color in thresholds or []:
        steps.append({"color": color, "value": value})
    p = {
        "type": kind,
        "title": title,
        "description": desc,
        "datasource": DS,
        "targets": [target(*t) if isinstance(t, tuple) else t for t in targets],
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}}, "overrides": []},
        "gridPos": {"w": w, "h": h},
        "options": {},
    }
    if thresholds and kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {"thresholdsStyle": {"mode": "line"}}
    if extra:
        p.update(extra)
    return p


def variables(spaces=True):
    v = [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source",
         "current": {"text": "Prometheus", "value": "prometheus"}},
        {"name": "instance", "type": "query", "datasource": DS, "label": "Instance",
         "query": {"query": "label_values(engram_build_info, instance)", "refId": "instance"},
         "definition": "label_values(engram_build_info, instance)", "includeAll": True, "multi": True,
         "allValue": ".+", "refresh": 2, "current": {"text": "All", "value": "$__all"}},
    ]
    if spaces:
        v.append({"name": "memory_space", "type": "query", "datasource": DS, "label": "Memory space",
                  "query": {"query": 'label_values(engram_index_vectors{instance=~"$instance"}, memory_space)',
                            "refId": "memory_space"},
                  "definition": 'label_values(engram_index_vectors{instance=~"$instance"}, memory_space)',
                  "includeAll": True, "multi": True, "allValue": ".+", "refresh": 2,
                  "current": {"text": "All", "value": "$__all"}})
    return v


def dashboard(uid, title, desc, panels, spaces=True):
    x = y = 0
    row_h = 0
    for i, p in enumerate(panels):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y = 0, y + row_h
            row_h = 0
        p["gridPos"].update({"x": x, "y": y})
        p["id"] = i + 1
        x += w
        row_h = max(row_h, h)
    return {
        "uid": uid,
        "title": title,
        "description": desc,
        "tags": ["engram-stream"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables(spaces)},
        "annotations": {"list": [{
            "name": "Firing alerts", "datasource": DS, "enable": True, "iconColor": "red",
            "expr": 'ALERTS{alertstate="firing", service="engram-stream"}',
            "titleFormat": "{{alertname}}", "textFormat": "{{severity}} on {{instance}}",
            "step": "60s", "useValueForTime": False,
        }]},
        "links": [{"title": "Engram Stream dashboards", "type": "dashboards", "tags": ["engram-stream"], "asDropdown": True}],
        "panels": panels,
    }


def quantiles(metric, by, qs, sel=IS):
    return [target(f"histogram_quantile({q}, sum by ({by}le) (rate({metric}_bucket{{{sel}}}[{RI}])))",
                   f"p{round(q * 100, 1):g}" + (" {{" + by.rstrip(", ") + "}}" if by else ""), chr(65 + i))
            for i, q in enumerate(qs)]


streaming = dashboard("engram-streaming", "Engram Stream / Streaming",
    "Ingest path: admission, queue, workers, backpressure, latency, recall. Thresholds are the alert thresholds.", [
    panel("stat", "Admitted observations/s", "Observations admitted into the queue per second (all selected spaces).",
          [(f"sum(rate(engram_streaming_observations_total{{{IS}}}[{RI}]))", "admitted")], "ops", w=6, h=4),
    panel("stat", "Indexed observations/s", "Observations inserted into an index per second.",
          [(f"sum(rate(engram_streaming_observations_indexed_total{{{IS}}}[{RI}]))", "indexed")], "ops", w=6, h=4),
    panel("stat", "Queue utilization", "The engine's queue fill (backpressure steers by it). HighQueueDepth at 70 %, CriticalQueueDepth at 90 %.",
          [(f"max(engram_streaming_queue_utilization_ratio{{{I}}})", "utilization")], "percentunit", w=6, h=4,
          thresholds=[(0.7, "orange"), (0.9, "red")]),
    panel("stat", "Accepted → indexed p99", "p99 observation latency over the rate interval. HighObservationLatency at 100 ms.",
          [(f"histogram_quantile(0.99, sum by (le) (rate(engram_streaming_observation_latency_seconds_bucket{{{IS}}}[{RI}])))", "p99")],
          "s", w=6, h=4, thresholds=[(0.1, "red")]),
    panel("timeseries", "Ingest rate by memory space", "Admitted and rejected observations per second, per memory space.",
          [(f"sum by (memory_space) (rate(engram_streaming_observations_total{{{IS}}}[{RI}]))", "{{memory_space}} admitted", "A"),
           (f"sum by (memory_space) (rate(engram_streaming_observations_rejected_total{{{IS}}}[{RI}]))", "{{memory_space}} rejected", "B")], "ops"),
    panel("timeseries", "Queue depth by lane", "Observations waiting per priority lane, with the queue capacity.",
          [(f"sum by (priority) (engram_streaming_queue_depth{{{I}}})", "{{priority}}", "A"),
           (f"max(engram_streaming_queue_capacity{{{I}}})", "capacity", "B")], "short"),
    panel("heatmap", "Worker utilization", "Busy fraction of each insertion worker (1 s samples). Uneven rows over time fire WorkerUtilizationImbalance.",
          [(f"avg by (worker_id) (engram_streaming_worker_utilization{{{I}}})", "worker {{worker_id}}")], "percentunit",
          extra={"options": {"calculate": False, "yAxis": {"unit": "short"}, "color": {"scheme": "Oranges", "mode": "scheme"}}}),
    panel("timeseries", "Observation latency (accepted → indexed)", "p50, p99 and p99.9 from the latency histogram. HighObservationLatency: p99 above 100 ms for 5 m.",
          quantiles("engram_streaming_observation_latency_seconds", "", [0.5, 0.99, 0.999]), "s", thresholds=[(0.1, "red")]),
    panel("timeseries", "Backpressure activations", "Entries into a worse backpressure state per interval, by space and level. FrequentBackpressure at more than 3 in 15 m.",
          [(f"sum by (memory_space, level) (increase(engram_streaming_backpressure_activations_total{{{IS}}}[{RI}]))", "{{memory_space}} → {{level}}")], "short",
          extra={"fieldConfig": {"defaults": {"unit": "short", "custom": {"drawStyle": "bars"}}, "overrides": []}}),
    panel("state-timeline", "Backpressure state", "State per memory space: 0 normal, 1 warning, 2 critical, 3 overloaded. PersistentBackpressure: critical or worse for 10 m.",
          [(f"max by (memory_space) (engram_streaming_backpressure_state{{{IS}}})", "{{memory_space}}")], "short",
          thresholds=[(1, "yellow"), (2, "orange"), (3, "red")],
          extra={"fieldConfig": {"defaults": {"unit": "short", "mappings": [{"type": "value", "options": {
              "0": {"text": "normal"}, "1": {"text": "warning"}, "2": {"text": "critical"}, "3": {"text": "overloaded"}}}],
              "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "yellow", "value": 1},
                                                           {"color": "orange", "value": 2}, {"color": "red", "value": 3}]}},
              "overrides": []}}),
    panel("timeseries", "Recall latency", "p50 and p99 recall query latency. HighRecallLatency: p99 above 50 ms for 5 m.",
          quantiles("engram_streaming_recall_latency_seconds", "", [0.5, 0.99]), "s", thresholds=[(0.05, "red")]),
    panel("timeseries", "Batches and work stealing", "Batches inserted and observations stolen between workers, per second.",
          [(f"sum(rate(engram_streaming_batches_processed_total{{{I}}}[{RI}]))", "batches/s", "A"),
           (f"sum(rate(engram_streaming_work_stolen_total{{{I}}}[{RI}]))", "stolen observations/s", "B")], "ops"),
    panel("heatmap", "Batch size distribution", "Observations per batch (adaptive batching), from the batch_size histogram.",
          [target(f"sum by (le) (rate(engram_streaming_batch_size_bucket{{{I}}}[{RI}]))", "{{le}}", "A", "heatmap")], "short",
          extra={"options": {"calculate": False, "yAxis": {"unit": "short"}, "color": {"scheme": "Blues", "mode": "scheme"}}}),
    panel("timeseries", "Errors and rejections", "Observations rejected by reason, insertion failures by type, API refusals by reason (per second).",
          [(f"sum by (reason) (rate(engram_streaming_observations_rejected_total{{{IS}}}[{RI}]))", "rejected: {{reason}}", "A"),
           (f"sum by (error_type) (rate(engram_streaming_batch_failures_total{{{I}}}[{RI}]))", "failed: {{error_type}}", "B"),
           (f"sum by (protocol, reason) (rate(engram_api_requests_rejected_total{{{I}}}[{RI}]))", "refused {{protocol}}: {{reason}}", "C")], "ops", w=24),
])

api = dashboard("engram-api", "Engram Stream / API",
    "HTTP routes and gRPC methods: rate, latency, errors, status codes, sizes, in-flight. Thresholds are the alert thresholds.", [
    panel("timeseries", "HTTP request rate by route", "Requests per second per method and route template.",
          [(f"sum by (method, route) (rate(engram_http_requests_total{{{I}}}[{RI}]))", "{{method}} {{route}}")], "reqps"),
    panel("timeseries", "gRPC call rate by method", "Completed calls per second per method (a stream counts when it ends).",
          [(f"sum by (method) (rate(engram_grpc_requests_total{{{I}}}[{RI}]))", "{{method}}")], "reqps"),
    panel("timeseries", "HTTP latency by route", "p50, p95 and p99 per route. HighAPILatencyP95 at 500 ms, HighAPILatencyP99 at 2 s (API-wide).",
          quantiles("engram_http_request_duration_seconds", "route, ", [0.5, 0.95, 0.99], I), "s",
          thresholds=[(0.5, "orange"), (2, "red")]),
    panel("timeseries", "gRPC latency by method", "p50, p95, p99 per unary method (StreamObservations is a stream lifetime and left out).",
          [target(f'histogram_quantile({q}, sum by (method, le) (rate(engram_grpc_request_duration_seconds_bucket{{{I}, method!="StreamObservations"}}[{RI}])))',
                  f"p{round(q * 100):g} {{{{method}}}}", chr(65 + i)) for i, q in enumerate([0.5, 0.95, 0.99])], "s",
          thresholds=[(0.5, "orange"), (2, "red")]),
    panel("stat", "Server error ratio", "HTTP 5xx and gRPC INTERNAL/UNKNOWN/DATA_LOSS over all calls (recording rule). HighAPIErrorRate at 1 %.",
          [(f"max(instance:engram_api_errors:ratio_rate5m{{{I}}})", "errors")], "percentunit", w=6, thresholds=[(0.01, "red")]),
    panel("stat", "API p95 / p99", "API-wide latency over HTTP and unary gRPC (recording rules).",
          [(f"max(instance:engram_api_request_duration_seconds:p95_5m{{{I}}})", "p95", "A"),
           (f"max(instance:engram_api_request_duration_seconds:p99_5m{{{I}}})", "p99", "B")], "s", w=6,
          thresholds=[(0.5, "orange"), (2, "red")]),
    panel("timeseries", "HTTP server errors by route", "5xx responses per second per route; empty while there are none.",
          [(f'sum by (route, status) (rate(engram_http_requests_total{{{I}, status=~"5.."}}[{RI}]))', "{{route}} {{status}}")], "reqps"),
    panel("timeseries", "HTTP status codes", "Responses per second by status code.",
          [(f"sum by (status) (rate(engram_http_requests_total{{{I}}}[{RI}]))", "{{status}}")], "reqps"),
    panel("timeseries", "gRPC status codes", "Calls per second by gRPC status code.",
          [(f"sum by (code) (rate(engram_grpc_requests_total{{{I}}}[{RI}]))", "{{code}}")], "reqps"),
    panel("timeseries", "Refused requests by reason", "API requests and stream batches refused, by protocol and reason.",
          [(f"sum by (protocol, reason) (rate(engram_api_requests_rejected_total{{{I}}}[{RI}]))", "{{protocol}} {{reason}}")], "reqps"),
    panel("timeseries", "Request and response sizes (p95)", "p95 body size per HTTP route and encoded message size per gRPC method.",
          [(f"histogram_quantile(0.95, sum by (route, le) (rate(engram_http_request_size_bytes_bucket{{{I}}}[{RI}])))", "HTTP request {{route}}", "A"),
           (f"histogram_quantile(0.95, sum by (route, le) (rate(engram_http_response_size_bytes_bucket{{{I}}}[{RI}])))", "HTTP response {{route}}", "B"),
           (f"histogram_quantile(0.95, sum by (method, le) (rate(engram_grpc_request_size_bytes_bucket{{{I}}}[{RI}])))", "gRPC request {{method}}", "C"),
           (f"histogram_quantile(0.95, sum by (method, le) (rate(engram_grpc_response_size_bytes_bucket{{{I}}}[{RI}])))", "gRPC response {{method}}", "D")], "bytes"),
    panel("timeseries", "In flight", "HTTP requests and gRPC calls in progress (open streams included), and open observation streams.",
          [(f"sum by (route) (engram_http_requests_in_flight{{{I}}})", "HTTP {{route}}", "A"),
           (f"sum by (method) (engram_grpc_requests_in_flight{{{I}}})", "gRPC {{method}}", "B"),
           (f"sum(engram_streaming_active_sessions{{{I}}})", "observation streams", "C")], "short"),
], spaces=False)

overview = dashboard("engram-overview", "Engram Stream / Overview",
    "Health, availability, business KPIs, storage, resources, the durable log, security and firing alerts.", [
    panel("stat", "Health score", "engram_health_score (0–100). HealthScoreDegraded below 70, HealthScoreCritical below 50.",
          [(f"min(engram_health_score{{{I}}})", "score")], "none", w=6, h=5, thresholds=[(50, "red"), (70, "green")],
          extra={"fieldConfig": {"defaults": {"unit": "none", "min": 0, "max": 100, "thresholds": {"mode": "absolute", "steps": [
              {"color": "red", "value": None}, {"color": "orange", "value": 50}, {"color": "green", "value": 70}]}}, "overrides": []}}),
    panel("stat", "Up", "Scrape status of each engram-stream target (EngramDown after 1 m at 0).",
          [(f'up{{job="engram-stream", {I}}}', "{{instance}}")], "none", w=6, h=5,
          extra={"fieldConfig": {"defaults": {"unit": "none", "mappings": [{"type": "value", "options": {"0": {"text": "DOWN", "color": "red"}, "1": {"text": "UP", "color": "green"}}}],
                                              "thresholds": {"mode": "absolute", "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}]}}, "overrides": []}}),
    panel("stat", "Observations indexed (24 h)", "Observations inserted into the indexes over the last day.",
          [(f"sum(increase(engram_streaming_observations_indexed_total{{{IS}}}[1d]))", "indexed")], "short", w=6, h=5),
    panel("stat", "Recall queries (24 h)", "Recall queries answered over the last day.",
          [(f"sum(increase(engram_streaming_recall_latency_seconds_count{{{IS}}}[1d]))", "queries")], "short", w=6, h=5),
    panel("timeseries", "Vectors per memory space", "Vectors held by each space's index.",
          [(f"sum by (memory_space) (engram_index_vectors{{{IS}}})", "{{memory_space}}")], "short"),
    panel("timeseries", "Storage growth", "Index memory growth per second over the last hour, per instance. StorageGrowthAnomalous above engram:storage_growth_threshold:bytes_per_second for 1 h.",
          [(f"sum by (instance) (deriv(engram_index_memory_bytes{{{IS}}}[1h]))", "{{instance}}", "A"),
           ("engram:storage_growth_threshold:bytes_per_second", "alert threshold", "B")], "Bps"),
    panel("bargauge", "Top 10 memory spaces by ingest rate", "Admitted observations per second, the ten busiest spaces.",
          [(f"topk(10, sum by (memory_space) (rate(engram_streaming_observations_total{{{IS}}}[{RI}])))", "{{memory_space}}")], "ops",
          extra={"options": {"orientation": "horizontal", "displayMode": "basic"}}),
    panel("timeseries", "Index memory by memory space", "Estimated bytes held per space (graph, vectors, content, id map).",
          [(f"sum by (memory_space) (engram_index_memory_bytes{{{IS}}})", "{{memory_space}}")], "bytes"),
    panel("timeseries", "Memory use", "Resident memory over the process or container limit. HighMemoryUsage at 90 %.",
          [(f'process_resident_memory_bytes{{job="engram-stream", {I}}} / on (instance) engram_memory_limit_bytes{{{I}}}', "{{instance}}")],
          "percentunit", w=8, thresholds=[(0.9, "red")]),
    panel("timeseries", "CPU", "engram-stream CPU in cores, and the host's busy fraction (HighCPUUsage at 80 %).",
          [(f'rate(process_cpu_seconds_total{{job="engram-stream", {I}}}[{RI}])', "engram-stream {{instance}} (cores)", "A"),
           (f'1 - avg by (instance) (rate(node_cpu_seconds_total{{job="node", mode="idle"}}[{RI}]))', "host {{instance}} busy", "B")],
          "short", w=8, thresholds=[(0.8, "red")]),
    panel("timeseries", "Disk and file descriptors", "Filesystem use (DiskSpaceLow 80 %, DiskSpaceCritical 95 %) and open descriptors over the limit.",
          [('1 - node_filesystem_avail_bytes{job="node", fstype!~"tmpfs|ramfs|overlay|squashfs|nsfs"} / node_filesystem_size_bytes', "{{mountpoint}}", "A"),
           (f'process_open_fds{{job="engram-stream", {I}}} / process_max_fds{{job="engram-stream", {I}}}', "fds {{instance}}", "B")],
          "percentunit", w=8, thresholds=[(0.8, "orange"), (0.95, "red")]),
    panel("timeseries", "Durable log: appends and syncs", "Observations appended to the durable log per second, and group-commit syncs per second (one sync covers every append since the last; fewer syncs than batches under load).",
          [(f"sum by (instance) (rate(engram_storage_appended_records_total{{{I}}}[{RI}]))", "{{instance}} observations/s", "A"),
           (f"sum by (instance) (rate(engram_storage_syncs_total{{{I}}}[{RI}]))", "{{instance}} syncs/s", "B")], "short", w=8),
    panel("timeseries", "Durable log: sync duration p99", "p99 of one group-commit sync (fsync, or the buffer write with durability os). SlowLogSyncs above 50 ms for 10 minutes.",
          [(f"histogram_quantile(0.99, sum by (instance, le) (rate(engram_storage_sync_duration_seconds_bucket{{{I}}}[{RI}])))", "{{instance}}", "A")],
          "s", w=8, thresholds=[(0.05, "red")]),
    panel("timeseries", "Durable log: bytes on disk, free bytes and errors", "Bytes the durable store holds on disk, bytes available on its filesystem (DataDirFilling fires when they would run out within 4 h), and storage errors in the last hour by kind (StorageErrors fires on any).",
          [(f"sum by (instance) (engram_storage_disk_bytes{{{I}}})", "{{instance}} bytes on disk", "A"),
           (f"sum by (instance, kind) (increase(engram_storage_errors_total{{{I}}}[1h]))", "{{instance}} {{kind}} errors (1 h)", "B"),
           (f"sum by (instance) (engram_storage_filesystem_free_bytes{{{I}}})", "{{instance}} free on the filesystem", "C")], "short", w=8),
    panel("timeseries", "Durable log: checkpoint age and recovery", "Seconds since each usearch space's checkpoint was last current (StaleCheckpoint above 15 min), and how long the last start took to recover (LongRecovery above 30 s).",
          [(f"max by (instance, memory_space) (engram_storage_checkpoint_age_seconds{{{I}}})", "{{instance}} {{memory_space}} checkpoint age", "A"),
           (f"max by (instance) (engram_storage_recovery_duration_seconds{{{I}}})", "{{instance}} last recovery", "B")], "s", w=24),
    panel("timeseries", "Security: auth refusals", "Requests refused by API-key auth per second, by transport and reason: missing or invalid key (401 / UNAUTHENTICATED), forbidden (403 / PERMISSION_DENIED). AuthFailureSpike above 1/s for 5 minutes (docs/security.md).",
          [(f"sum by (instance, transport, reason) (rate(engram_auth_failures_total{{{I}}}[{RI}]))", "{{instance}} {{transport}} {{reason}}", "A")],
          "reqps", w=12, thresholds=[(1, "red")]),
    panel("stat", "Security: auth", "Auth on (1) or off (0), keys in force, and listeners beyond loopback with auth off (AuthDisabledOnOpenListener when above 0).",
          [(f"min by (instance) (engram_auth_enabled{{{I}}})", "auth on {{instance}}", "A"),
           (f"max by (instance) (engram_auth_keys{{{I}}})", "keys {{instance}}", "B"),
           (f"max by (instance) (engram_auth_open_listeners{{{I}}})", "open listeners {{instance}}", "C")], "none", w=6),
    panel("stat", "Security: TLS certificate", "Time left until the served certificate's notAfter (no value while TLS is off). TLSCertificateExpiringSoon under 14 days.",
          [(f"(max by (instance) (engram_tls_certificate_expiry_timestamp_seconds{{{I}}}) > 0) - time()", "{{instance}}", "A")], "s", w=6),
    panel("timeseries", "Security: rate-limited requests", "Requests refused by a per-key rate limit per second, by key and limit (- : clients by address while auth is off). SustainedRateLimiting above 0.1/s for 15 minutes.",
          [(f"sum by (instance, key, limit) (rate(engram_rate_limited_total{{{I}}}[{RI}]))", "{{instance}} {{key}} {{limit}}", "A")],
          "reqps", w=12, thresholds=[(0.1, "orange")]),
    panel("timeseries", "Security: key reloads", "Re-reads of auth.keys_file in the last hour, by outcome (an error keeps the keys in force; fix the file).",
          [(f"sum by (instance, outcome) (increase(engram_auth_key_reloads_total{{{I}}}[1h]))", "{{instance}} {{outcome}}", "A")], "short", w=12),
    panel("timeseries", "Security: TLS handshake failures and certificate reloads", "TLS handshakes that failed per second, by listener and reason (certificate: a client refused ours or mTLS refused theirs; protocol: not TLS or nothing in common; timeout; closed), and certificate reloads in the last hour by outcome (TLSCertificateReloadFailing on an error).",
          [(f"sum by (instance, protocol, reason) (rate(engram_tls_handshake_failures_total{{{I}}}[{RI}]))", "{{instance}} {{protocol}} {{reason}}", "A"),
           (f"sum by (instance, outcome) (increase(engram_tls_certificate_reloads_total{{{I}}}[1h]))", "{{instance}} reloads {{outcome}} (1 h)", "B")], "short", w=24),
    panel("table", "Firing alerts", "Alerts firing now for engram-stream (from Prometheus's ALERTS series).",
          [target('sum by (alertname, severity, instance) (ALERTS{alertstate="firing", service="engram-stream"})', "", "A", "table")],
          "none", w=24, extra={"options": {"showHeader": True}}),
], spaces=True)

out = pathlib.Path(__file__).parent / "dashboards"
for name, d in [("streaming", streaming), ("api", api), ("overview", overview)]:
    (out / f"engram-{name}.json").write_text(json.dumps(d, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out / f'engram-{name}.json'}: {len(d['panels'])} panels")
