"""pgvector HNSW at scale: similar-products query latency and recall@10 against exact search.

    python benchmarks/hnsw_scale.py [--rows 100000] [--queries 200] [--dim 256] [--ef-search 100]

Uses synthetic clustered unit vectors (like product embeddings: many products per style) in a scratch
table `fashion_bench_vectors` of the configured database, with the same index the plugin creates
(HNSW, m=16, ef_construction=64, vector_cosine_ops). Latency is measured per query from Python over
the real connection (ORDER BY cosine distance LIMIT 10, the plan the plugin uses).
"""

import argparse
import time

import numpy as np
from _common import django_setup, percentile, spread, write


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--ef-search", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="Keep the scratch table.")
    args = parser.parse_args()
    django_setup()
    from django.db import connection
    from pgvector.psycopg import register_vector

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(args.clusters, args.dim)).astype(np.float32)
    assign = rng.integers(0, args.clusters, args.rows)
    data = centres[assign] + rng.normal(scale=0.6, size=(args.rows, args.dim)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)

    connection.ensure_connection()
    raw = connection.connection
    register_vector(raw)
    with raw.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS fashion_bench_vectors")
        cur.execute(f"CREATE TABLE fashion_bench_vectors (id integer PRIMARY KEY, v vector({args.dim}))")
        t = time.perf_counter()
        with cur.copy("COPY fashion_bench_vectors (id, v) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "vector"])
            for i, row in enumerate(data):
                copy.write_row((i, row))
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        cur.execute("SET maintenance_work_mem = '512MB'")
        cur.execute("CREATE INDEX ON fashion_bench_vectors USING hnsw (v vector_cosine_ops) WITH (m = 16, ef_construction = 64)")
        build_s = time.perf_counter() - t
        cur.execute("ANALYZE fashion_bench_vectors")
    raw.commit()

    query_idx = rng.choice(args.rows, args.queries, replace=False)
    queries = data[query_idx] + rng.normal(scale=0.05, size=(args.queries, args.dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :10]

    p95s, p50s, recalls = [], [], []
    with raw.cursor() as cur:
        cur.execute(f"SET hnsw.ef_search = {int(args.ef_search)}")
        cur.execute("EXPLAIN SELECT id FROM fashion_bench_vectors ORDER BY v <=> %s LIMIT 10", (queries[0],))
        plan = "\n".join(r[0] for r in cur.fetchall())
        for q in queries[:20]:  # warm-up
            cur.execute("SELECT id FROM fashion_bench_vectors ORDER BY v <=> %s LIMIT 10", (q,))
            cur.fetchall()
        for _ in range(args.runs):
            latencies, hits = [], 0
            for qi, q in enumerate(queries):
                t = time.perf_counter()
                cur.execute("SELECT id FROM fashion_bench_vectors ORDER BY v <=> %s LIMIT 10", (q,))
                ids = [r[0] for r in cur.fetchall()]
                latencies.append((time.perf_counter() - t) * 1000)
                hits += len(set(ids) & set(exact[qi].tolist()))
            p95s.append(percentile(latencies, 95))
            p50s.append(percentile(latencies, 50))
            recalls.append(hits / (10 * len(queries)))
        if not args.keep:
            cur.execute("DROP TABLE fashion_bench_vectors")
    raw.commit()
    write("hnsw_scale", {
        "command": f"python benchmarks/hnsw_scale.py --rows {args.rows} --queries {args.queries} --dim {args.dim} --ef-search {args.ef_search}",
        "rows": args.rows, "dim": args.dim, "ef_search": args.ef_search, "index": "hnsw m=16 ef_construction=64 cosine",
        "uses_index": "Index Scan" in plan and "hnsw" in plan.lower() or "fashion_bench_vectors_v_idx" in plan,
        "load_s": round(load_s, 2), "index_build_s": round(build_s, 1),
        "query_p50_ms": spread(p50s), "query_p95_ms": spread(p95s), "recall_at_10": spread(recalls),
        "targets": {"query_p95_ms": 20, "recall_at_10": 0.95},
    })


if __name__ == "__main__":
    main()
