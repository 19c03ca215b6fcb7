"""HNSW parameters that keep recall as the catalog grows, and the database operations that apply them.

pgvector's defaults (m=16, ef_construction=64, ef_search=100 for every catalog) lose recall as the graph grows,
because a fixed search budget covers a shrinking share of it; so the budget here follows the catalog size, in bands
chosen by measurement (``benchmarks/hnsw_scale.py``; docs/SCALING.md, "The size bands and why", has the figures):

* graph parameters (``m``, ``ef_construction``) are read when the index is built: ``fashion_reindex
  --tune-index`` (and ``--all --sync``) rebuilds it (``ALTER INDEX ... SET`` + ``REINDEX INDEX CONCURRENTLY``,
  searches keep working meanwhile) with ``maintenance_work_mem`` sized for the in-memory graph and parallel
  workers; ``manage.py check --database default`` warns when the live index is below its band;
* query parameters (``hnsw.ef_search``, ``hnsw.iterative_scan``, ``hnsw.max_scan_tuples``) are set for every
  search (``search.search_session``) from the catalog size, the number of rows wanted and whether a category
  filter applies.

Settings (``FASHION_AI``): ``HNSW_M``, ``HNSW_EF_CONSTRUCTION``, ``HNSW_EF_SEARCH``, ``HNSW_MAX_SCAN_TUPLES``,
``HNSW_BUILD_MEMORY``, ``HNSW_BUILD_WORKERS`` override the automatic choices (None = automatic).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, connections

from .. import conf

#: Name of the plugin's HNSW index (migration 0001).
INDEX_NAME = "fashion_ai_embedding_hnsw"
#: pgvector's limits.
MAX_EF_SEARCH = 1000
MAX_M = 100


@dataclass(frozen=True)
class Band:
    """Parameters for catalogs of up to ``max_rows`` vectors (None: no upper limit)."""

    max_rows: int | None
    m: int
    ef_construction: int
    #: hnsw.ef_search for 10 results without a category filter.
    ef_search: int
    #: hnsw.ef_search for 10 results with a category filter (iterative scan in relaxed order).
    filtered_ef_search: int
    #: hnsw.max_scan_tuples: how far an iterative scan may go to fill a filtered query.
    max_scan_tuples: int


#: Chosen by measurement (``benchmarks/hnsw_scale.py`` on synthetic and real vectors up to 1M): a larger graph
#: (m=24 / ef_construction=100) past 20,000 vectors, because m=16 caps recall whatever ef_search does; ef_search 400
#: for filtered queries past 20,000 vectors and for every query past 300,000. The figures behind each value, and
#: why halfvec indexes are not used: docs/SCALING.md ("The size bands and why", "halfvec").
BANDS = (
    Band(20_000, 16, 64, 100, 200, 20_000),
    Band(300_000, 24, 100, 100, 400, 20_000),
    Band(None, 24, 100, 400, 400, 40_000),
)


def band_for(rows: int) -> Band:
    for band in BANDS:
        if band.max_rows is None or rows <= band.max_rows:
            return band
    raise AssertionError("the last band has no upper limit")


def index_parameters(rows: int) -> dict:
    """``m`` and ``ef_construction`` for an index over ``rows`` vectors (settings override the band)."""
    band = band_for(rows)
    m = conf.get("HNSW_M") or band.m
    ef_construction = conf.get("HNSW_EF_CONSTRUCTION") or band.ef_construction
    return {"m": int(m), "ef_construction": max(int(ef_construction), 2 * int(m))}


#: ef_search is at least this many times the number of rows asked for (docs/SCALING.md: recall at k = 20 and 50).
EF_PER_ROW = 4


def query_parameters(rows: int, k: int = 10, filtered: bool = False) -> dict:
    """The HNSW settings of one query for ``k`` rows over ``rows`` vectors.

    ``ef_search`` is the band's (or ``HNSW_EF_SEARCH``) for 10 rows, raised as the band says for a category filter,
    at least ``EF_PER_ROW`` x k, and at most pgvector's 1,000. Queries use an iterative scan in relaxed order, so a
    filtered one keeps walking the graph until k rows pass the filter (or ``max_scan_tuples`` were visited); the
    caller sorts the rows (relaxed order may return them slightly out of order)."""
    band = band_for(rows)
    base = int(conf.get("HNSW_EF_SEARCH") or band.ef_search)
    if filtered:
        base = max(base, round(base * band.filtered_ef_search / band.ef_search))
    ef = min(MAX_EF_SEARCH, max(base, EF_PER_ROW * k, k))
    return {
        "hnsw.ef_search": ef,
        "hnsw.iterative_scan": "relaxed_order",
        "hnsw.max_scan_tuples": int(conf.get("HNSW_MAX_SCAN_TUPLES") or band.max_scan_tuples),
    }


def parse_size(text) -> int:
    """Bytes of a PostgreSQL memory setting such as "2GB", "512MB", "65536kB"."""
    match = re.fullmatch(r"\s*(\d+)\s*(kB|MB|GB|TB)?\s*", str(text))
    if not match:
        raise ValueError(f"{text!r} is not a PostgreSQL memory size such as '2GB' or '512MB'")
    return int(match.group(1)) * {"kB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40, None: 2**10}[match.group(2)]


def graph_bytes(rows: int, dim: int, m: int, half: bool = False) -> int:
    """Estimated memory of pgvector's in-memory HNSW graph during a build: the vector, 2m layer-0 and about
    m/(m-1) upper-layer neighbour slots of 16 bytes, and about 200 bytes of element bookkeeping per row."""
    value = (2 if half else 4) * dim + 8
    neighbours = (2 * m + m / max(m - 1, 1)) * 16
    return int(rows * (value + neighbours + 200))


def index_bytes(rows: int, dim: int, m: int, half: bool = False) -> int:
    """Estimated size of the built index (measured: 1,366 MB per million 256-d vectors at m=16, 1,638 MB at m=24),
    which ``shared_buffers`` should hold: an earlier session saw searches that read index pages from outside it up
    to 2x slower at 1M vectors (not re-measured; docs/SCALING.md runs all had the index inside it)."""
    return int(rows * ((2 if half else 4) * dim + 8 + 25 * m + 100))


def build_parameters(rows: int, dim: int, m: int, half: bool = False) -> dict:
    """``maintenance_work_mem`` (the graph estimate plus 25 %, at least 64 MB) and
    ``max_parallel_maintenance_workers`` (``HNSW_BUILD_WORKERS``; None keeps the server's) for a build."""
    memory = conf.get("HNSW_BUILD_MEMORY")
    if not memory:
        memory = f"{max(64, math.ceil(graph_bytes(rows, dim, m, half) * 1.25 / 2**20))}MB"
    workers = conf.get("HNSW_BUILD_WORKERS")
    return {"maintenance_work_mem": memory, "max_parallel_maintenance_workers": workers}


def set_config(connection, params: dict, local: bool = True) -> None:
    """Set server parameters in one round trip (``local``: until the end of the transaction, like SET LOCAL)."""
    params = {k: v for k, v in params.items() if v is not None}
    if not params:
        return
    sql = "SELECT " + ", ".join(["set_config(%s, %s, %s)"] * len(params))
    with connection.cursor() as cursor:
        cursor.execute(sql, [x for key, value in params.items() for x in (key, str(value), local)])


def set_local(connection, params: dict) -> None:
    set_config(connection, params, local=True)


_sizes: dict[str, tuple[float, int]] = {}


def catalog_size(alias: str = DEFAULT_DB_ALIAS, max_age: float = 300.0) -> int:
    """Rows in the embedding table (PostgreSQL's estimate, ``pg_class.reltuples``, kept fresh by autovacuum;
    a count when it has none yet), cached per process for ``max_age`` seconds."""
    now = time.monotonic()
    cached = _sizes.get(alias)
    if cached and now - cached[0] < max_age:
        return cached[1]
    from ..models import ProductEmbedding

    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)", [ProductEmbedding._meta.db_table])
        row = cursor.fetchone()
    if row and row[0] is not None and row[0] >= 0:
        rows = int(row[0])
    else:
        rows = ProductEmbedding.objects.using(alias).count()
    _sizes[alias] = (now, rows)
    return rows


def forget_catalog_size() -> None:
    _sizes.clear()


def live_index_parameters(alias: str = DEFAULT_DB_ALIAS, name: str = INDEX_NAME) -> dict | None:
    """``m`` and ``ef_construction`` of the index as built (pgvector's defaults 16 / 64 when not given), or None
    when there is no such index."""
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT c.reloptions FROM pg_class c WHERE c.oid = to_regclass(%s) AND c.relkind = 'i'", [name])
        row = cursor.fetchone()
    if row is None:
        return None
    options = dict(opt.split("=", 1) for opt in (row[0] or []))
    return {"m": int(options.get("m", 16)), "ef_construction": int(options.get("ef_construction", 64))}


def with_clause(rows: int) -> str:
    """``WITH (m = .., ef_construction = ..)`` for a CREATE INDEX over ``rows`` vectors."""
    params = index_parameters(rows)
    return f"WITH (m = {int(params['m'])}, ef_construction = {int(params['ef_construction'])})"


def tune_index(
    alias: str = DEFAULT_DB_ALIAS, rows: int | None = None, force: bool = False, name: str = INDEX_NAME
) -> dict:
    """Rebuild the HNSW index with the parameters for ``rows`` vectors (default: the live catalog size) when the
    live index has others (or ``force``). Outside a transaction the rebuild is ``REINDEX INDEX CONCURRENTLY``:
    searches keep using the old index until the new one is ready. Returns what was done."""
    from ..models import ProductEmbedding

    connection = connections[alias]
    if rows is None:
        rows = ProductEmbedding.objects.using(alias).count()
    live = live_index_parameters(alias, name)
    if live is None:
        raise LookupError(f"There is no index {name!r}; run `manage.py migrate`.")
    wanted = index_parameters(rows)
    result = {"rows": rows, "before": live, "after": wanted, "rebuilt": False, "seconds": 0.0}
    if live == wanted and not force:
        return result
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = 'vector'",
            [ProductEmbedding._meta.db_table],
        )
        dim = (cursor.fetchone() or [0])[0]
    build = build_parameters(rows, max(int(dim), 1), wanted["m"])
    quoted = connection.ops.quote_name(name)
    started = time.monotonic()
    concurrently = not connection.in_atomic_block

    def options(params):
        return f"ALTER INDEX {quoted} SET (m = {int(params['m'])}, ef_construction = {int(params['ef_construction'])})"

    with connection.cursor() as cursor:
        cursor.execute(options(wanted))
        set_config(
            connection,
            {
                "maintenance_work_mem": build["maintenance_work_mem"],
                "max_parallel_maintenance_workers": build["max_parallel_maintenance_workers"],
            },
            local=not concurrently,
        )
        try:
            cursor.execute(f"REINDEX INDEX {'CONCURRENTLY ' if concurrently else ''}{quoted}")
        except Exception:
            if concurrently:
                # A failed concurrent rebuild leaves an invalid copy behind, and the old graph (built with the
                # old parameters) in place: drop the copy and put the old parameters back.
                cursor.execute("SELECT 1 FROM pg_class WHERE oid = to_regclass(%s)", [f"{name}_ccnew"])
                if cursor.fetchone():
                    cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {connection.ops.quote_name(name + '_ccnew')}")
                cursor.execute(options(live))
            raise
        finally:
            if concurrently:
                cursor.execute("RESET maintenance_work_mem")
                cursor.execute("RESET max_parallel_maintenance_workers")
    result.update({"rebuilt": True, "seconds": round(time.monotonic() - started, 1), **build})
    return result
