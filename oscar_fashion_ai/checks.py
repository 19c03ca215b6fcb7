"""Django system checks for the search settings of ``FASHION_AI`` (``manage.py check`` and every server start):
a bad value is reported with what is allowed, instead of failing a shopper's search later."""

from __future__ import annotations

from numbers import Real
from os import PathLike
from pathlib import Path

from django.core import checks

from . import conf


def _number(name, low, high, integer=False):
    value = conf.get(name)
    kind = int if integer else Real
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        what = "a whole number" if integer else "a number"
        return [
            checks.Error(
                f"FASHION_AI[{name!r}] is {value!r}; it must be {what} from {low} to {high}.",
                hint=f"Default: {conf.DEFAULTS[name]!r} (see oscar_fashion_ai/conf.py).",
                id="oscar_fashion_ai.E001",
            )
        ]
    return []


def _rate(name):
    from .ratelimit import parse_rate

    value = conf.get(name)
    if value is None:
        return []
    try:
        count, _ = parse_rate(value)
        if count < 1:
            raise ValueError
    except (KeyError, ValueError, TypeError):
        return [
            checks.Error(
                f"FASHION_AI[{name!r}] is {value!r}; use e.g. '120/min' ('N/s', 'N/min', 'N/hour') or None to disable.",
                id="oscar_fashion_ai.E006",
            )
        ]
    return []


@checks.register()
def check_search_settings(app_configs=None, **kwargs):
    from .ml.sketch_pipeline import PIPELINES

    errors = []
    errors += _number("DEFAULT_K", 1, 10_000, integer=True)
    errors += _number("MAX_K", 1, 10_000, integer=True)
    errors += _number("SKETCH_FUSION_WEIGHT", 0, 1)
    errors += _number("SKETCH_QUERY_EXPANSION", 0, 100, integer=True)
    errors += _number("SIMILAR_QUERY_EXPANSION", 0, 100, integer=True)
    errors += _number("SKETCH_CATEGORY_BOOST", 0, 1)
    errors += _number("SKETCH_RERANK_DEPTH", 1, 1000, integer=True)
    errors += _number("ADAPT_MAX_MINUTES", 1, 10_000)
    errors += _number("ADAPT_SKETCH_MAX_MINUTES", 0, 10_000)
    errors += _number("ADAPT_LOCATOR_MAX_MINUTES", 0, 10_000)
    for name in ("QUEUE", "TRAINING_QUEUE"):
        if not isinstance(conf.get(name), str) or not conf.get(name).strip():
            errors.append(
                checks.Error(
                    f"FASHION_AI[{name!r}] is {conf.get(name)!r}; it must be a Celery queue name.",
                    hint=f"Default: {conf.DEFAULTS[name]!r}.",
                    id="oscar_fashion_ai.E006",
                )
            )
    models_dir = conf.get("MODELS_DIR")
    if models_dir is not None and not isinstance(models_dir, (str, PathLike)):
        errors.append(
            checks.Error(
                f"FASHION_AI['MODELS_DIR'] is {models_dir!r}; it must be a folder path or None.",
                id="oscar_fashion_ai.E007",
            )
        )
    elif models_dir is not None and Path(models_dir).exists() and not Path(models_dir).is_dir():
        errors.append(
            checks.Error(
                f"FASHION_AI['MODELS_DIR'] ({models_dir}) is a file, not a folder.", id="oscar_fashion_ai.E007"
            )
        )
    errors += _number("PREFERENCE_MAX_INTERESTS", 1, 20, integer=True)
    errors += _number("PREFERENCE_INTEREST_SIMILARITY", -1, 1)
    errors += _number("RECOMMENDATION_MIN_INTEREST_SHARE", 0, 1)
    errors += _number("RECOMMENDATION_DIVERSITY", 0, 1)
    errors += _number("RECOMMENDATION_CANDIDATES_PER_SLOT", 1, 50, integer=True)
    errors += _number("RECOMMENDATION_COOCCURRENCE_WEIGHT", 0, 10)
    errors += _number("COOCCURRENCE_NEIGHBOURS", 1, 1000, integer=True)
    errors += _number("COOCCURRENCE_MIN_SHOPPERS", 1, 1000, integer=True)
    errors += _number("COOCCURRENCE_WINDOW_DAYS", 1, 3650, integer=True)
    errors += _rate("EVENT_RATE_LIMIT")
    pipeline = conf.get("SKETCH_PIPELINE")
    if pipeline not in PIPELINES:
        errors.append(
            checks.Error(
                f"FASHION_AI['SKETCH_PIPELINE'] is {pipeline!r}; use one of {', '.join(PIPELINES)}.",
                id="oscar_fashion_ai.E002",
            )
        )
    return errors


@checks.register()
def check_install_settings(app_configs=None, **kwargs):
    """The switches and folders of ``FASHION_AI`` (see README, "Installing into your own Oscar shop")."""
    from pathlib import PurePath

    from django.conf import settings

    errors = []
    value = conf.get("PERSONALISATION")
    if not isinstance(value, bool):
        errors.append(
            checks.Error(
                f"FASHION_AI['PERSONALISATION'] is {value!r}; it must be True or False.",
                hint="Default: True (see oscar_fashion_ai/conf.py).",
                id="oscar_fashion_ai.E003",
            )
        )
    for name in ("DATA_DIR", "CACHE_DIR"):
        value = conf.get(name)
        if value is not None and not isinstance(value, (str, PurePath)):
            errors.append(
                checks.Error(
                    f"FASHION_AI[{name!r}] is {value!r}; it must be a folder path or None.",
                    hint="Default: None (see oscar_fashion_ai/conf.py).",
                    id="oscar_fashion_ai.E004",
                )
            )
    if not errors:
        from pathlib import Path

        for name, folder in (("DATA_DIR", conf.data_dir()), ("CACHE_DIR", conf.cache_dir())):
            for served in ("MEDIA_ROOT", "STATIC_ROOT"):
                root = getattr(settings, served, None)
                if root and Path(folder).resolve().is_relative_to(Path(root).resolve()):
                    errors.append(
                        checks.Error(
                            f"FASHION_AI[{name!r}] ({folder}) is inside {served} ({root}): its files would be served "
                            "to anyone.",
                            hint="Use a folder outside MEDIA_ROOT and STATIC_ROOT.",
                            id="oscar_fashion_ai.E005",
                        )
                    )
    return errors


# --- scale: HNSW parameters and the search database (docs/SCALING.md) ------------------------------------------


@checks.register()
def check_scale_settings(app_configs=None, **kwargs):
    from django.conf import settings

    from .indexing.hnsw import MAX_EF_SEARCH, MAX_M, parse_size

    errors = []
    for name, low, high in (
        ("HNSW_M", 2, MAX_M),
        ("HNSW_EF_CONSTRUCTION", 4, 1000),
        ("HNSW_EF_SEARCH", 1, MAX_EF_SEARCH),
        ("HNSW_MAX_SCAN_TUPLES", 1, 2**31 - 1),
        ("HNSW_BUILD_WORKERS", 0, 1024),
    ):
        if conf.get(name) is not None:
            errors += _number(name, low, high, integer=True)
    m, ef_construction = conf.get("HNSW_M"), conf.get("HNSW_EF_CONSTRUCTION")
    if not errors and m is not None and ef_construction is not None and ef_construction < 2 * m:
        errors.append(
            checks.Error(
                f"FASHION_AI['HNSW_EF_CONSTRUCTION'] is {ef_construction!r}; pgvector needs at least 2 x HNSW_M "
                f"({2 * m}).",
                id="oscar_fashion_ai.E010",
            )
        )
    memory = conf.get("HNSW_BUILD_MEMORY")
    if memory is not None:
        try:
            if parse_size(memory) < 2**20:
                raise ValueError
        except ValueError:
            errors.append(
                checks.Error(
                    f"FASHION_AI['HNSW_BUILD_MEMORY'] is {memory!r}; use a PostgreSQL memory size of at least 1MB such "
                    "as '2GB' or '512MB', or None to estimate it from the catalog size.",
                    id="oscar_fashion_ai.E011",
                )
            )
    alias = conf.get("SEARCH_DATABASE")
    if alias is not None:
        if alias not in settings.DATABASES:
            errors.append(
                checks.Error(
                    f"FASHION_AI['SEARCH_DATABASE'] is {alias!r}, which is not in DATABASES "
                    f"({', '.join(settings.DATABASES)}).",
                    hint="Add the replica to DATABASES, or set SEARCH_DATABASE to None to search the default database.",
                    id="oscar_fashion_ai.E012",
                )
            )
        elif "oscar_fashion_ai.routers.SearchRouter" not in [
            r if isinstance(r, str) else f"{type(r).__module__}.{type(r).__name__}"
            for r in getattr(settings, "DATABASE_ROUTERS", [])
        ]:
            errors.append(
                checks.Warning(
                    f"FASHION_AI['SEARCH_DATABASE'] is {alias!r} but oscar_fashion_ai.routers.SearchRouter is not in "
                    "DATABASE_ROUTERS: only the nearest-neighbour queries go there, not the reads around them.",
                    id="oscar_fashion_ai.W010",
                )
            )
    return errors


@checks.register(checks.Tags.database)
def check_index_for_catalog_size(app_configs=None, databases=None, **kwargs):
    """With ``manage.py check --database default``: the live HNSW index and ef_search against the catalog's band."""
    from django.db import DEFAULT_DB_ALIAS, DatabaseError

    from .indexing import hnsw

    if not databases or DEFAULT_DB_ALIAS not in databases:
        return []
    try:
        rows = hnsw.catalog_size(DEFAULT_DB_ALIAS, max_age=0)
        live = hnsw.live_index_parameters(DEFAULT_DB_ALIAS)
    except DatabaseError:
        return []  # not migrated yet: migrate's own checks say so
    if live is None:
        return []
    band = hnsw.band_for(rows)
    wanted = hnsw.index_parameters(rows)
    problems = []
    if live["m"] < wanted["m"] or live["ef_construction"] < wanted["ef_construction"]:
        problems.append(
            checks.Warning(
                f"The HNSW index has m={live['m']}, ef_construction={live['ef_construction']}; a catalog of about "
                f"{rows:,} vectors needs m={wanted['m']}, ef_construction={wanted['ef_construction']} to keep its "
                "recall.",
                hint="Run `manage.py fashion_reindex --tune-index` (rebuilds concurrently; search keeps working).",
                id="oscar_fashion_ai.W011",
            )
        )
    try:
        from django.db import connections

        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute(
                "SELECT pg_relation_size(to_regclass(%s)), current_setting('shared_buffers')", [hnsw.INDEX_NAME]
            )
            size, shared_buffers = cursor.fetchone()
    except DatabaseError:
        size, shared_buffers = None, None
    if size and shared_buffers and size > hnsw.parse_size(shared_buffers):
        problems.append(
            checks.Warning(
                f"The HNSW index ({size / 2**20:,.0f} MiB) is larger than shared_buffers ({shared_buffers}): searches "
                "read index pages from outside PostgreSQL's buffer cache, which made them up to 2x slower at 1M "
                "vectors.",
                hint="Set shared_buffers above the index size on the database (and its replicas) and restart it "
                "(docs/SCALING.md).",
                id="oscar_fashion_ai.W013",
            )
        )
    ef = conf.get("HNSW_EF_SEARCH")
    if ef is not None and ef < band.ef_search:
        problems.append(
            checks.Warning(
                f"FASHION_AI['HNSW_EF_SEARCH'] is {ef}; a catalog of about {rows:,} vectors needs {band.ef_search} "
                "to keep recall@10 at 0.95 (docs/SCALING.md).",
                hint="Set it to None to follow the catalog size.",
                id="oscar_fashion_ai.W012",
            )
        )
    return problems


@checks.register()
def check_photo_search_settings(app_configs=None, **kwargs):
    errors = _number("PHOTO_MIN_SIMILARITY", 0, 1) + _number("SKETCH_MIN_SIMILARITY", 0, 1)
    if not isinstance(conf.get("PHOTO_AUTO_CROP"), bool):
        errors.append(
            checks.Error(
                f"FASHION_AI['PHOTO_AUTO_CROP'] is {conf.get('PHOTO_AUTO_CROP')!r}; use True or False.",
                id="oscar_fashion_ai.E019",
            )
        )
    return errors
