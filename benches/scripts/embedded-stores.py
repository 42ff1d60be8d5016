#!/usr/bin/env python3
"""One embedded vector store, in process, on one shared data set: what a user would pick instead
of Engram Stream, measured the way `engram-stream load` measures us.

    python3 embedded-stores.py STORE DATASET [QUERIES]    # STORE: chromadb, lancedb, milvus-lite

Opens the store persistently on a fresh directory under the system temp directory, ingests every
base vector (id, vector, and base.txt as text where the set has it) in batches of 1,000 until
the data is searchable, then answers the first QUERIES (default 500) queries one at a time
(k 10) and scores recall@10 against groundtruth.ivecs. Prints one JSON object. Configured as
HNSW M 16 / ef_construction 200 / cosine / ef_search 128 where the store allows it:

- chromadb: a persistent client; collection configuration `hnsw` with `space` cosine,
  `max_neighbors` 16, `ef_construction` 200, `ef_search` 128. It indexes as it ingests (like
  us); searchable = every `add` returned and one query answered.
- milvus-lite (pymilvus `MilvusClient` on a local file): index `HNSW` with `M` 16,
  `efConstruction` 200, metric `COSINE`, search `ef` 128. Bulk insert, then `flush`, index
  build and `load_collection`; searchable = all of that done.
- lancedb: bulk insert (`add`), then `create_index` with `IVF_HNSW_FLAT` (f32 vectors; its
  default partition count), `m` 16, `ef_construction` 200, metric cosine; search `ef` 128 with
  `nprobes` at the partition count (every partition, as one HNSW graph would be); searchable =
  the index built.

"Durable" is each store's own: chromadb commits each `add` to its SQLite log, Milvus Lite
flushes segments on `flush`, lancedb writes a new table version per `add` (none of them is
asked to fsync per batch the way our `fsync` durability does). Resident memory: the process's
RSS after the queries minus before the store was opened (the data set is loaded before), and
the absolute RSS. Timings use `time.perf_counter`; Python's own cost per query is included, as
the client's is in our gRPC round trip.
"""

import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from benchdata import data_dir, read_vecs, rss_bytes


M, EF_CONSTRUCTION, EF_SEARCH, K, BATCH = 16, 200, 128, 10, 1000


def chromadb_store(path, name, base, text):
    import chromadb

    client = chromadb.PersistentClient(path=path)
    col = client.create_collection(
        name="bench",
        configuration={"hnsw": {"space": "cosine", "max_neighbors": M, "ef_construction": EF_CONSTRUCTION,
                                "ef_search": EF_SEARCH}},
    )
    batch = min(BATCH, client.get_max_batch_size())
    for start in range(0, len(base), batch):
        end = min(start + batch, len(base))
        col.add(ids=[str(i) for i in range(start, end)], embeddings=base[start:end],
                documents=text[start:end] if text else None)
    col.query(query_embeddings=base[:1], n_results=K)

    def search(q):
        r = col.query(query_embeddings=q[None, :], n_results=K, include=["documents", "distances"])
        return [int(i) for i in r["ids"][0]]

    return search, {"version": chromadb.__version__, "index": "HNSW (hnswlib in chromadb's core)"}


def milvus_store(path, name, base, text):
    import milvus_lite
    import pymilvus
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(os.path.join(path, "milvus.db"))
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=base.shape[1])
    if text:
        schema.add_field("text", DataType.VARCHAR, max_length=max(1, max(len(t.encode()) for t in text)))
    client.create_collection("bench", schema=schema)
    for start in range(0, len(base), BATCH):
        end = min(start + BATCH, len(base))
        rows = [{"id": i, "vector": base[i].tolist(), **({"text": text[i]} if text else {})} for i in range(start, end)]
        client.insert("bench", rows)
    client.flush("bench")
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type="HNSW", metric_type="COSINE",
                    params={"M": M, "efConstruction": EF_CONSTRUCTION})
    client.create_index("bench", index)
    client.load_collection("bench")

    def search(q):
        r = client.search("bench", data=[q.tolist()], limit=K, search_params={"params": {"ef": EF_SEARCH}},
                          output_fields=["text"] if text else [])
        return [int(h["id"]) for h in r[0]]

    return search, {"version": f"milvus-lite {milvus_lite.__version__}, pymilvus {pymilvus.__version__}",
                    "index": "HNSW"}


def lancedb_store(path, name, base, text):
    import lancedb
    import pyarrow as pa

    db = lancedb.connect(path)
    dim = base.shape[1]
    fields = [pa.field("id", pa.int64()), pa.field("vector", pa.list_(pa.float32(), dim))]
    if text:
        fields.append(pa.field("text", pa.string()))
    table = db.create_table("bench", schema=pa.schema(fields))
    for start in range(0, len(base), BATCH):
        end = min(start + BATCH, len(base))
        cols = [pa.array(np.arange(start, end, dtype=np.int64)),
                pa.FixedSizeListArray.from_arrays(pa.array(base[start:end].reshape(-1)), dim)]
        if text:
            cols.append(pa.array(text[start:end]))
        table.add(pa.Table.from_arrays(cols, schema=pa.schema(fields)))
    table.create_index(metric="cosine", vector_column_name="vector", index_type="IVF_HNSW_FLAT", m=M,
                       ef_construction=EF_CONSTRUCTION)
    stats = table.index_stats(table.list_indices()[0].name)
    partitions = getattr(stats, "num_partitions", None) or 1

    def search(q):
        r = (table.search(q, vector_column_name="vector").metric("cosine").limit(K).nprobes(partitions)
             .ef(EF_SEARCH).select(["id"] + (["text"] if text else [])).to_arrow())
        return r.column("id").to_pylist()

    return search, {"version": lancedb.__version__, "index": f"IVF_HNSW_FLAT, {partitions} partition(s), all probed"}


STORES = {"chromadb": chromadb_store, "milvus-lite": milvus_store, "lancedb": lancedb_store}


def main():
    store, name = sys.argv[1], sys.argv[2]
    nq = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    d = data_dir(name)
    base = np.ascontiguousarray(read_vecs(os.path.join(d, "base.fvecs"), np.float32))
    queries = read_vecs(os.path.join(d, "query.fvecs"), np.float32)[:nq]
    gt = read_vecs(os.path.join(d, "groundtruth.ivecs"), np.int32)[:nq, :K]
    total = len(base)
    n = int(os.environ.get("STORE_LIMIT", total))
    base = base[:n]
    if n < total:
        # cosine ground truth over the first n only (small test runs)
        unit = lambda v: v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-30)
        gt = np.argsort(-(unit(queries) @ unit(base).T), axis=1)[:, :K]
    text = None
    if os.path.exists(os.path.join(d, "base.txt")) and not os.environ.get("NO_CONTENT"):
        with open(os.path.join(d, "base.txt")) as f:
            text = f.read().split("\n")[:n]
    path = tempfile.mkdtemp(prefix=f"engram-{store}-")
    try:
        rss_before = rss_bytes()
        t0 = time.perf_counter()
        search, info = STORES[store](path, name, base, text)
        ingest = time.perf_counter() - t0
        hits, lat = 0, []
        for q in range(len(queries)):
            t = time.perf_counter()
            ids = search(queries[q])
            lat.append(time.perf_counter() - t)
            hits += len(set(ids[:K]) & set(int(x) for x in gt[q]))
        rss_after = rss_bytes()
        lat.sort()
        print(json.dumps({
            "system": store, **info, "dataset": name, "vectors": n, "dim": int(base.shape[1]),
            "content": text is not None, "m": M, "ef_construction": EF_CONSTRUCTION, "ef_search": EF_SEARCH,
            "ingest_seconds": ingest, "ingest_per_s": n / ingest, "queries": len(queries),
            "recall_at_10": hits / (K * len(queries)),
            "query_ms_p50": lat[len(lat) // 2] * 1e3, "query_ms_p99": lat[min(len(lat) - 1, len(lat) * 99 // 100)] * 1e3,
            "rss_growth_bytes": rss_after - rss_before, "rss_after_bytes": rss_after,
            "cores": os.cpu_count(),
        }))
    finally:
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
