#!/usr/bin/env python3
"""Print docs/benchmarks.md's tables from the committed reports.

Usage: benches/scripts/benchmark-tables.py [DIR]   (default: docs/benchmarks)

Reads DIR/raw-DATASET-BACKEND.json (benches/examples/index_raw.rs) and
DIR/loads/DATASET-BACKEND-{saturated,paced}.json (benches/scripts/backend-loads.sh) and prints:
the per-backend table (raw), the recall sweep, the engine-overhead pairs
(DIR/overhead/summary-*.json from benches/scripts/engine-overhead.sh), and the end-to-end table
with the p99 at the paced rate and resident memory per vector.
"""
import json
import pathlib
import statistics
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "docs/benchmarks")
SETS = ["minilm-384-stdlib", "glove-50-angular-100k"]
BACKENDS = ["usearch", "hnsw_rs"]


def load(path):
    return json.loads(path.read_text())


print("### Raw index (benches/examples/index_raw.rs, 2 insert threads, ef_search 64 and 128)\n")
print("| data set | backend | vectors | insert/s | query ms (mean, ef 128) | recall@10 ef 64 | recall@10 ef 128 "
      "| index bytes/vector (backend's accounting) | RSS growth bytes/vector |")
print("|---|---|---|---|---|---|---|---|---|")
raw = {}
for s in SETS:
    for b in BACKENDS:
        r = load(root / f"raw-{s}-{b}.json")
        raw[(s, b)] = r
        at = {x["ef_search"]: x for x in r["sweep"]}
        print(f"| {s} | {b} | {r['vectors']:,} | {r['insert_per_s']:,.0f} | {at[128]['query_ms_mean']:.3f} "
              f"| {at[64]['recall_at_10']:.4f} | {at[128]['recall_at_10']:.4f} | {r['index_bytes_per_vector']:,.0f} "
              f"| {r['rss_growth_bytes_per_vector']:,.0f} |")

print("\n### Recall against query time (same runs)\n")
print("| data set | backend | " + " | ".join(f"ef {e}" for e in [32, 64, 96, 128, 192, 256]) + " |")
print("|---|---|" + "---|" * 6)
for s in SETS:
    for b in BACKENDS:
        cells = [f"{x['recall_at_10']:.4f} / {x['query_ms_mean']:.3f} ms" for x in raw[(s, b)]["sweep"]]
        print(f"| {s} | {b} | " + " | ".join(cells) + " |")

print("\n### End to end (`load` over gRPC, benches/scripts/backend-loads.sh)\n")
print("| data set | backend | indexed/s saturated (whole run / second half) | recall@10 (ef 128) "
      "| paced rate (share of second half) | p99 accepted→indexed per observation | within 50 ms | RSS growth bytes/vector "
      "| RSS after ÷ vectors | lost |")
print("|---|---|---|---|---|---|---|---|---|---|")
for s in SETS:
    for b in BACKENDS:
        sat_path = root / "loads" / f"{s}-{b}-saturated.json"
        if not sat_path.exists():
            continue
        sat = load(sat_path)
        paced = load(root / "loads" / f"{s}-{b}-paced.json")
        st, pst = sat["server_stats"], paced["server_stats"]
        growth = (st["rss_bytes_after"] - st["rss_bytes_before"]) / sat["observations"]
        print(f"| {s} | {b} | {sat['ingest_rate_per_s']:,.0f} / {sat['ingest_rate_second_half_per_s']:,.0f} "
              f"| {sat['recall_at_10']:.4f} | {paced['ingest_rate_per_s']:,.0f} ({paced['ingest_rate_per_s'] / sat['ingest_rate_second_half_per_s']:.2f}) "
              f"| {pst['observation_latency_p99_seconds'] * 1e3:.1f} ms | {pst['observation_latency_share_within_50ms']:.4f} "
              f"| {growth:,.0f} | {st['rss_bytes_after'] / sat['observations']:,.0f} | {sat['lost'] + paced['lost']} |")

print("\n### Engine overhead (benches/scripts/engine-overhead.sh: raw insert and `load` back to back)\n")
print("| data set | backend | threads | pairs | raw insert/s (median) | engine indexed/s (median) | ratio of medians | ratio per pair |")
print("|---|---|---|---|---|---|---|---|")
for s in SETS:
    for b in BACKENDS:
        p = root / "overhead" / f"summary-{s}-{b}.json"
        if p.exists():
            o = load(p)
            print(f"| {s} | {b} | {o['threads']} | {o['pairs']} | {o['raw_median_per_s']:,} | {o['engine_median_per_s']:,} "
                  f"| {o['ratio_of_medians']:.3f} | {', '.join(f'{r:.3f}' for r in o['pair_ratios'])} |")

QUANT = ["none", "f16", "bf16", "i8"]
qdir = root / "quantization"
rounds = sorted({int(p.name.split("-")[0][1:]) for p in qdir.glob("r*-*.json")}) if qdir.exists() else []
if rounds:
    def q_report(r, s, what):
        p = qdir / f"r{r}-{s}-{what}.json"
        return load(p) if p.exists() else None

    print("\n### Quantization: ingest until searchable, side by side (benches/scripts/quantization-bench.sh)\n")
    print("| data set | round | hnswlib raw insert/s (2 threads) | engine in process, fsync: none / f16 / bf16 / i8 "
          "| `load` over gRPC, fsync, INDEXED: none / f16 / bf16 / i8 | gRPC i8 ÷ hnswlib | gRPC recall@10 ef 128: none / f16 / bf16 / i8 | hnswlib recall@10 ef 128 |")
    print("|---|---|---|---|---|---|---|---|")
    for s in SETS:
        for r in rounds:
            h = q_report(r, s, "hnswlib")
            eng = [q_report(r, s, f"engine-{q}") for q in QUANT]
            grpc = [q_report(r, s, f"grpc-{q}") for q in QUANT]
            if h is None or None in eng or None in grpc:
                continue
            h128 = {x["ef_search"]: x for x in h["sweep"]}[128]["recall_at_10"]
            in_process = " / ".join(format(e["ingest_per_s"], ",.0f") for e in eng)
            over_grpc = " / ".join(format(g["ingest_rate_per_s"], ",.0f") for g in grpc)
            recalls = " / ".join(format(g["recall_at_10"], ".4f") for g in grpc)
            print(f"| {s} | {r} | {h['insert_per_s']:,.0f} | {in_process} | {over_grpc} "
                  f"| {grpc[3]['ingest_rate_per_s'] / h['insert_per_s']:.2f} | {recalls} | {h128:.4f} |")

    last = rounds[-1]
    print(f"\n### Quantization: recall@10 / mean query time at each ef_search (round {last}; the engine through `Engine::recall`, one thread)\n")
    print("| data set | system | " + " | ".join(f"ef {e}" for e in [32, 64, 96, 128, 192, 256]) + " |")
    print("|---|---|" + "---|" * 6)
    for s in SETS:
        systems = [("hnswlib", q_report(last, s, "hnswlib"))] + [(f"engram {q}", q_report(last, s, f"engine-{q}")) for q in QUANT]
        for name, rep in systems:
            if rep is None:
                continue
            cells = [f"{x['recall_at_10']:.4f} / {x['query_ms_mean']:.3f} ms" for x in rep["sweep"]]
            print(f"| {s} | {name} | " + " | ".join(cells) + " |")

    print(f"\n### Quantization: query time at equal recall (round {last}: the smallest swept ef_search reaching hnswlib's recall@10 at ef 64 and at ef 128)\n")
    print("| data set | recall@10 ≥ | hnswlib | engram none | engram f16 | engram bf16 | engram i8 | i8 ÷ hnswlib |")
    print("|---|---|---|---|---|---|---|---|")

    def at_recall(rep, target):
        for x in rep["sweep"]:
            if x["recall_at_10"] >= target - 1e-9:
                return x
        return None

    for s in SETS:
        h = q_report(last, s, "hnswlib")
        eng = [q_report(last, s, f"engine-{q}") for q in QUANT]
        if h is None or None in eng:
            continue
        for ef in (64, 128):
            target = {x["ef_search"]: x for x in h["sweep"]}[ef]["recall_at_10"]
            cells = []
            for rep in [h] + eng:
                x = at_recall(rep, target)
                cells.append(f"{x['query_ms_mean']:.3f} ms (ef {x['ef_search']})" if x else "not reached")
            hx, ix = at_recall(h, target), at_recall(eng[3], target)
            ratio = f"{ix['query_ms_mean'] / hx['query_ms_mean']:.2f}" if hx and ix else "–"
            print(f"| {s} | {target:.4f} | " + " | ".join(cells) + f" | {ratio} |")

    print(f"\n### Quantization: memory per vector (round {last}; the engine in process, content in the store)\n")
    print("| data set | system | index bytes/vector (accounting) | RSS growth bytes/vector, second half | ÷ raw f32 vector | RSS growth bytes/vector, whole ingest |")
    print("|---|---|---|---|---|---|")
    for s in SETS:
        h = q_report(last, s, "hnswlib")
        if h is not None:
            raw = h["dim"] * 4
            print(f"| {s} | hnswlib | – | – | – | {h['rss_growth_bytes_per_vector']:,.0f} |")
        for q in QUANT:
            e = q_report(last, s, f"engine-{q}")
            if e is None:
                continue
            raw = e["dim"] * 4
            half = e["rss_growth_second_half_bytes_per_vector"]
            print(f"| {s} | engram {q} | {e['index_memory_bytes'] / e['vectors']:,.0f} | {half:,.0f} | {half / raw:.2f} "
                  f"| {e['rss_growth_bytes_per_vector']:,.0f} |")

rdir = root / "rescore"
if rdir.exists():
    print("\n### Quantization: rescore factor (i8, the engine in process on the durable path; benches/examples/engine_sweep.rs with RESCORE_FACTOR)\n")
    print("| data set | rescore_factor | recall@10 / query ms, ef 64 | ef 128 | ef 192 |")
    print("|---|---|---|---|---|")
    for s in SETS:
        for f in sorted(int(p.stem.rsplit("-rf", 1)[1]) for p in rdir.glob(f"{s}-rf*.json")):
            r = load(rdir / f"{s}-rf{f}.json")
            cells = [f"{x['recall_at_10']:.4f} / {x['query_ms_mean']:.3f}" for x in r["sweep"]]
            print(f"| {s} | {f} | " + " | ".join(cells) + " |")

pdir = root / "query-pairs"
if pdir.exists():
    print("\n### Quantization: query time at equal recall, alternating pairs (benches/scripts/query-pairs.sh; i8, the engine through `Engine::recall`)\n")
    print("| data set | pair | recall@10 ≥ (hnswlib at ef 64) | hnswlib | engram i8 | ratio | recall@10 ≥ (hnswlib at ef 128) | hnswlib | engram i8 | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")

    def reach(rep, target):
        return next((x for x in rep["sweep"] if x["recall_at_10"] >= target - 1e-9), None)

    for s in SETS:
        pairs = sorted(int(p.name.split("-")[0][1:]) for p in pdir.glob(f"p*-{s}-hnswlib.json"))
        ratios = {64: [], 128: []}
        for n in pairs:
            e_path = pdir / f"p{n}-{s}-engine-i8.json"
            if not e_path.exists():
                continue
            h, e = load(pdir / f"p{n}-{s}-hnswlib.json"), load(e_path)
            cells = []
            for ef in (64, 128):
                target = {x["ef_search"]: x for x in h["sweep"]}[ef]["recall_at_10"]
                hx, ex = reach(h, target), reach(e, target)
                if ex is None:
                    cells += [f"{target:.4f}", f"{hx['query_ms_mean']:.3f} ms (ef {hx['ef_search']})", "not reached", "–"]
                    continue
                ratio = ex["query_ms_mean"] / hx["query_ms_mean"]
                ratios[ef].append(ratio)
                cells += [f"{target:.4f}", f"{hx['query_ms_mean']:.3f} ms (ef {hx['ef_search']})",
                          f"{ex['query_ms_mean']:.3f} ms (ef {ex['ef_search']})", f"{ratio:.2f}"]
            print(f"| {s} | {n} | " + " | ".join(cells) + " |")
        if ratios[64] and ratios[128]:
            med = {ef: sorted(r)[len(r) // 2] for ef, r in ratios.items()}
            print(f"| {s} | median | | | | {med[64]:.2f} | | | | {med[128]:.2f} |")

edir = root / "query-pairs-engram"
if edir.exists():
    print("\n### The engram backend: query time against hnswlib, alternating pairs (benches/scripts/query-pairs.sh DIR DATASET PAIRS none engram)\n")
    print("| data set | pair | content read | same ef_search: ratio at ef 32 / 64 / 128 / 256 | recall@10 at ef 128, hnswlib / ours "
          "| equal recall: ratio (ef ours / hnswlib's) at hnswlib's ef-64 recall | at its ef-128 recall |")
    print("|---|---|---|---|---|---|---|")

    def reach(rep, target):
        return next((x for x in rep["sweep"] if x["recall_at_10"] >= target - 1e-9), None)

    for s in SETS:
        ratios = {64: [], 128: []}
        for n in sorted(int(p.name.split("-")[0][1:]) for p in edir.glob(f"p*-{s}-hnswlib.json")):
            e_path = edir / f"p{n}-{s}-engine-engram-none.json"
            if not e_path.exists():
                continue
            h, e = load(edir / f"p{n}-{s}-hnswlib.json"), load(e_path)
            hs, es = ({x["ef_search"]: x for x in r["sweep"]} for r in (h, e))
            same = " / ".join(f"{es[ef]['query_ms_mean'] / hs[ef]['query_ms_mean']:.2f}" for ef in (32, 64, 128, 256))
            equal = []
            for ef in (64, 128):
                # Each side at the smallest swept ef_search reaching hnswlib's recall at `ef`.
                target = hs[ef]["recall_at_10"]
                hx, ex = reach(h, target), reach(e, target)
                if ex is None:
                    equal.append("not reached")
                    continue
                ratios[ef].append(ex["query_ms_mean"] / hx["query_ms_mean"])
                equal.append(f"{ratios[ef][-1]:.2f} (ef {ex['ef_search']} / {hx['ef_search']})")
            content = "yes" if e.get("with_content", True) else "no"
            print(f"| {s} | {n} | {content} | {same} | {hs[128]['recall_at_10']:.4f} / {es[128]['recall_at_10']:.4f} "
                  f"| {equal[0]} | {equal[1]} |")
        if ratios[64] and ratios[128]:
            print(f"| {s} | median | | | | {statistics.median(ratios[64]):.2f} | {statistics.median(ratios[128]):.2f} |")

tdir = root / "recall-rtt"
if tdir.exists():
    print("\n### Query path: what the gRPC `Recall` round trip adds (benches/examples/recall_rtt.rs; server and client in one process, loopback)\n")
    print("| data set | quantization | ef_search | in process p50 | gRPC round trip p50 | added p50 (median of rounds) | rounds' added p50 | GetSpace round trip p50 |")
    print("|---|---|---|---|---|---|---|---|")
    for s in SETS:
        path = tdir / f"{s}.json"
        if not path.exists():
            continue
        r = load(path)
        med = lambda key: sorted(x[key] for x in r["rounds"])[len(r["rounds"]) // 2]
        added = ", ".join(f"{x['added_ms_p50']:.2f}" for x in r["rounds"])
        print(f"| {s} | {r['quantization']} | {r['ef_search']} | {med('in_process_ms_p50'):.3f} ms | {med('grpc_ms_p50'):.3f} ms "
              f"| {r['added_ms_p50']:.3f} ms | {added} | {med('get_space_ms_p50'):.3f} ms |")

sdir = root / "embedded-stores"
if sdir.exists():
    print("\n### Against the embedded stores (benches/scripts/embedded-stores.sh; one run side by side)\n")
    print("| data set | round | system | ingest/s until searchable | ÷ best store | recall@10 | query p50 | resident after | resident growth |")
    print("|---|---|---|---|---|---|---|---|---|")
    STORES = ["chromadb", "milvus-lite", "lancedb"]
    for s in SETS:
        rounds = sorted({int(p.name.split("-")[0][1:]) for p in sdir.glob(f"r*-{s}-engram.json")})
        for n in rounds:
            e = load(sdir / f"r{n}-{s}-engram.json")
            ef = "" if e.get("ef_search", 128) == 128 else f", ef_search {e['ef_search']}"
            rows = [(f"engram-stream (gRPC, fsync, {e.get('index', 'usearch')}, {e.get('quantization', 'none')}{ef})", e["ingest_rate_per_s"], e["recall_at_10"],
                     e["recall_latency_seconds"]["p50"] * 1e3, e["server_stats"]["rss_bytes_after"],
                     e["server_stats"]["rss_bytes_after"] - e["server_stats"]["rss_bytes_before"])]
            for st in STORES:
                p = sdir / f"r{n}-{s}-{st}.json"
                if p.exists():
                    r = load(p)
                    rows.append((f"{st} {r['version'].split(', ')[0].removeprefix('milvus-lite ')}", r["ingest_per_s"],
                                 r["recall_at_10"], r["query_ms_p50"], r["rss_after_bytes"], r["rss_growth_bytes"]))
            best = max((r[1] for r in rows[1:]), default=None)
            for name, rate, recall, p50, rss, growth in rows:
                ratio = f"{rate / best:.2f}" if best else "–"
                print(f"| {s} | {n} | {name} | {rate:,.0f} | {ratio} | {recall:.4f} | {p50:.2f} ms "
                      f"| {rss / 2**20:,.0f} MiB | {growth / 2**20:,.0f} MiB |")

kdir = root / "f32-kernel"
if kdir.exists():
    print("\n### f32 distance kernel: USearch's (NumKong) against the engine's, alternating pairs (benches/scripts/f32-kernel.sh; raw index, 2 insert threads)\n")
    print("| data set | pair | insert/s NumKong | insert/s engine kernel | ratio | query ms ef 128 NumKong | engine kernel | ratio | recall@10 ef 128 NumKong | engine kernel |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for s in SETS:
        pairs = sorted(int(p.name.split("-")[0][1:]) for p in kdir.glob(f"p*-{s}-numkong.json"))
        ins, qry = [], []
        for n in pairs:
            b_path = kdir / f"p{n}-{s}-engram.json"
            if not b_path.exists():
                continue
            a, b = load(kdir / f"p{n}-{s}-numkong.json"), load(b_path)
            qa, qb = ({x["ef_search"]: x for x in r["sweep"]}[128] for r in (a, b))
            ins.append(b["insert_per_s"] / a["insert_per_s"])
            qry.append(qb["query_ms_mean"] / qa["query_ms_mean"])
            print(f"| {s} | {n} | {a['insert_per_s']:,.0f} | {b['insert_per_s']:,.0f} | {ins[-1]:.2f} "
                  f"| {qa['query_ms_mean']:.3f} | {qb['query_ms_mean']:.3f} | {qry[-1]:.2f} "
                  f"| {qa['recall_at_10']:.4f} | {qb['recall_at_10']:.4f} |")
        if ins:
            print(f"| {s} | median | | | {statistics.median(ins):.2f} | | | {statistics.median(qry):.2f} | | |")

cdir = root / "tracing-cost"
if (cdir / "summary.json").exists():
    c = load(cdir / "summary.json")
    print("\n### Tracing cost: ingest with traces exported against tracing off, alternating rounds (benches/scripts/tracing-cost.sh; gRPC `load`, INDEXED acks, fsync; rate and server CPU seconds ÷ off)\n")
    print("| data set | round | off obs/s | sampled (1 %) ÷ off: rate / CPU | collector down ÷ off: rate / CPU | always_on ÷ off: rate / CPU | traces exported (sampled, always_on) | spans dropped (down) |")
    print("|---|---|---|---|---|---|---|---|")
    for s in SETS:
        e = c[s]
        for i, (row, cpu) in enumerate(zip(e["rates_per_round"], e["cpu_seconds_per_round"])):
            m = e["trace_metrics_per_round"][i]
            traced = lambda mode: sum(v for k, v in m[mode].items() if k.startswith("engram_traces_sampled_total"))
            dropped = sum(v for k, v in m["down"].items() if k.startswith("engram_trace_spans_dropped_total"))
            cells = " | ".join(f"{row[x] / row['off']:.3f} / {cpu[x] / cpu['off']:.3f}" for x in ["sampled", "down", "all"])
            print(f"| {s} | {i + 1} | {row['off']:,.0f} | {cells} | {traced('sampled'):,.0f}, {traced('all'):,.0f} | {dropped:,.0f} |")
        cells = " | ".join(f"{e[x + '_over_off_median']:.3f} / {e[x + '_cpu_over_off_median']:.3f}" for x in ["sampled", "down", "all"])
        print(f"| {s} | median | | {cells} | | |")
