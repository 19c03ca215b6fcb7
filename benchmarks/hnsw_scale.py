"""pgvector HNSW at scale: build time, index size, recall@10 against exact search and query latency.

    python benchmarks/hnsw_scale.py [--rows 100000] [--queries 200] [--dim 256] [--ef-search 100]
                                    [--modes unfiltered,filter_off,filter_relaxed] [--runs 3]

Uses synthetic clustered unit vectors (like product embeddings: many products per style) in a scratch
table `fashion_bench_vectors` of the configured database, with the same index the plugin creates
(HNSW, m=16, ef_construction=64, vector_cosine_ops). Every row also gets a random category (one of
--categories, independent of the clusters, so a category filter keeps ~1/categories of the candidates).
Latency is measured per query from Python over the real connection (ORDER BY cosine distance LIMIT 10,
the plan the plugin uses), after a warm-up.

Modes (comma-separated, each run for every --ef-search value):
  unfiltered      ORDER BY v <=> q LIMIT 10
  filter_off      ... WHERE category = c, hnsw.iterative_scan = off (pgvector < 0.8 behaviour: the filter
                  applies after the ef_search candidates, so queries can return fewer than 10 rows)
  filter_relaxed  ... WHERE category = c, hnsw.iterative_scan = relaxed_order (the plugin's setting)
Recall of a filtered query is measured against the exact top 10 of the query's category.
"""

import argparse
import time

import numpy as np
from _common import django_setup, percentile, spread, write

MODES = {
    "unfiltered": ("off", False),
    "filter_off": ("off", True),
    "filter_relaxed": ("relaxed_order", True),
}


def int_list(text):
    return [int(x) for x in str(text).split(",") if x.strip()]


def make_data(rows, dim, clusters, categories, seed=0, chunk=100_000):
    """Clustered unit vectors (float32, generated in chunks to bound memory) and random categories."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    data = np.empty((rows, dim), dtype=np.float32)
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        block = centres[rng.integers(0, clusters, n)] + rng.normal(scale=0.6, size=(n, dim)).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        data[start : start + n] = block
    cats = rng.integers(0, categories, rows).astype(np.int16)
    return data, cats, rng


def exact_top10(queries, data, chunk=100_000):
    """Exact cosine top 10 (unit vectors: inner product) of each query, in chunks of the data."""
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(data), chunk):
        scores = queries @ data[start : start + chunk].T
        k = min(10, scores.shape[1])
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        s = np.concatenate([best_s, np.take_along_axis(scores, part, 1)], axis=1)
        i = np.concatenate([best_i, part + start], axis=1)
        keep = np.argsort(-s, axis=1)[:, :10]
        best_s, best_i = np.take_along_axis(s, keep, 1), np.take_along_axis(i, keep, 1)
    return best_i


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--categories", type=int, default=20)
    parser.add_argument("--ef-search", default="100", help="comma-separated hnsw.ef_search values")
    parser.add_argument("--modes", default="unfiltered", help=f"comma-separated, from {', '.join(MODES)}")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=20, help="warm-up queries per configuration")
    parser.add_argument("--maintenance-work-mem", default="2GB",
                        help="for the index build (1M x 256-d needs about 1.3 GB to build in memory)")
    parser.add_argument("--statement-timeout", type=int, default=0,
                        help="seconds; the server cancels a longer statement (0 = no limit)")
    parser.add_argument("--name", default="hnsw_scale", help="result file name (without .json)")
    parser.add_argument("--keep", action="store_true", help="Keep the scratch table.")
    args = parser.parse_args()
    ef_values = int_list(args.ef_search)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(sorted(unknown))}; use {', '.join(MODES)}")
    django_setup()
    from django.db import connection
    from pgvector.psycopg import register_vector

    t = time.perf_counter()
    data, cats, rng = make_data(args.rows, args.dim, args.clusters, args.categories)
    generate_s = time.perf_counter() - t

    connection.ensure_connection()
    raw = connection.connection
    register_vector(raw)
    with raw.cursor() as cur:
        if raw.info.server_version >= 140000:
            # If this process is killed mid-build, the server notices the lost client and stops building.
            cur.execute("SET client_connection_check_interval = '5s'")
        cur.execute(f"SET statement_timeout = '{int(args.statement_timeout)}s'")
        cur.execute("DROP TABLE IF EXISTS fashion_bench_vectors")
        cur.execute(f"CREATE TABLE fashion_bench_vectors (id integer PRIMARY KEY, category smallint NOT NULL, "
                    f"v vector({args.dim}))")
        t = time.perf_counter()
        with cur.copy("COPY fashion_bench_vectors (id, category, v) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "int2", "vector"])
            for i in range(args.rows):
                copy.write_row((i, int(cats[i]), data[i]))
        load_s = time.perf_counter() - t
        cur.execute(f"SET maintenance_work_mem = '{args.maintenance_work_mem}'")
        cur.execute("SHOW max_parallel_maintenance_workers")
        parallel_workers = cur.fetchone()[0]
        t = time.perf_counter()
        cur.execute("CREATE INDEX fashion_bench_vectors_v_idx ON fashion_bench_vectors "
                    "USING hnsw (v vector_cosine_ops) WITH (m = 16, ef_construction = 64)")
        build_s = time.perf_counter() - t
        cur.execute("ANALYZE fashion_bench_vectors")
        cur.execute("SELECT pg_relation_size('fashion_bench_vectors_v_idx'), "
                    "pg_total_relation_size('fashion_bench_vectors') - pg_relation_size('fashion_bench_vectors_v_idx')")
        index_bytes, table_bytes = cur.fetchone()
        cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        pgvector_version = cur.fetchone()[0]
    raw.commit()

    query_idx = rng.choice(args.rows, args.queries, replace=False)
    queries = data[query_idx] + rng.normal(scale=0.05, size=(args.queries, args.dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    query_cats = cats[query_idx]
    t = time.perf_counter()
    exact = {"unfiltered": exact_top10(queries, data)}
    if any(MODES[m][1] for m in modes):
        filtered = np.zeros((args.queries, 10), dtype=np.int64)
        for c in np.unique(query_cats):
            members = np.flatnonzero(cats == c)
            rows_q = np.flatnonzero(query_cats == c)
            filtered[rows_q] = members[exact_top10(queries[rows_q], data[members])]
        exact["filtered"] = filtered
    exact_s = time.perf_counter() - t

    plain_sql = "SELECT id FROM fashion_bench_vectors ORDER BY v <=> %s LIMIT 10"
    filter_sql = "SELECT id FROM fashion_bench_vectors WHERE category = %s ORDER BY v <=> %s LIMIT 10"
    configs = []
    with raw.cursor() as cur:
        for mode in modes:
            scan, filtered = MODES[mode]
            truth = exact["filtered" if filtered else "unfiltered"]
            cur.execute(f"SET hnsw.iterative_scan = {scan}")

            def query(qi):
                if filtered:
                    cur.execute(filter_sql, (int(query_cats[qi]), queries[qi]))
                else:
                    cur.execute(plain_sql, (queries[qi],))
                return [r[0] for r in cur.fetchall()]

            for ef in ef_values:
                cur.execute(f"SET hnsw.ef_search = {int(ef)}")
                params = (int(query_cats[0]), queries[0]) if filtered else (queries[0],)
                cur.execute("EXPLAIN " + (filter_sql if filtered else plain_sql), params)
                plan = "\n".join(r[0] for r in cur.fetchall())
                for qi in range(min(args.warmup, args.queries)):
                    query(qi)
                p50s, p95s, recalls, returned = [], [], [], []
                for _ in range(args.runs):
                    latencies, hits, count = [], 0, 0
                    for qi in range(args.queries):
                        t = time.perf_counter()
                        ids = query(qi)
                        latencies.append((time.perf_counter() - t) * 1000)
                        hits += len(set(ids) & set(truth[qi].tolist()))
                        count += len(ids)
                    p50s.append(percentile(latencies, 50))
                    p95s.append(percentile(latencies, 95))
                    recalls.append(hits / (10 * args.queries))
                    returned.append(count / args.queries)
                configs.append({
                    "mode": mode, "iterative_scan": scan, "category_filter": filtered, "ef_search": ef,
                    "uses_index": "fashion_bench_vectors_v_idx" in plan,
                    "query_p50_ms": spread(p50s), "query_p95_ms": spread(p95s), "recall_at_10": spread(recalls),
                    "mean_rows_returned": spread(returned),
                })
                print(f"rows {args.rows} {mode} ef_search {ef}: p95 {configs[-1]['query_p95_ms']['median']:.2f} ms, "
                      f"recall@10 {configs[-1]['recall_at_10']['median']:.3f}", flush=True)
        if not args.keep:
            cur.execute("DROP TABLE fashion_bench_vectors")
    raw.commit()
    payload = {
        "command": f"python benchmarks/hnsw_scale.py --rows {args.rows} --queries {args.queries} --dim {args.dim} "
                   f"--ef-search {args.ef_search} --modes {args.modes} --runs {args.runs}",
        "rows": args.rows, "dim": args.dim, "clusters": args.clusters, "categories": args.categories,
        "queries": args.queries, "index": "hnsw m=16 ef_construction=64 cosine", "pgvector": pgvector_version,
        "maintenance_work_mem": args.maintenance_work_mem, "max_parallel_maintenance_workers": parallel_workers,
        "generate_s": round(generate_s, 2), "load_s": round(load_s, 2), "index_build_s": round(build_s, 1),
        "exact_search_s": round(exact_s, 2), "index_bytes": index_bytes, "table_bytes": table_bytes,
        "configs": configs, "targets": {"query_p95_ms": 20, "recall_at_10": 0.95},
    }
    # The fields of the original single-configuration report (unfiltered, ef_search 100 or the first one).
    plain = [c for c in configs if c["mode"] == "unfiltered"]
    first = next((c for c in plain if c["ef_search"] == 100), plain[0] if plain else None)
    if first:
        payload.update({"ef_search": first["ef_search"], "uses_index": first["uses_index"],
                        "query_p50_ms": first["query_p50_ms"], "query_p95_ms": first["query_p95_ms"],
                        "recall_at_10": first["recall_at_10"]})
    write(args.name, payload)


if __name__ == "__main__":
    main()
