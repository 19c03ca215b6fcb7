"""Index builds: search keeps answering from the vectors of the model in use while a new model's vectors are written.

Two tables hold product vectors (``oscar_fashion_ai.models``): :class:`ProductEmbedding`, the one search reads, and
:class:`ProductEmbeddingNext`, which is empty unless a new model is being indexed. One :class:`IndexBuild` row per
model records its weights file and state:

* ``active``: the model in use. Search embeds queries with it and reads its vectors;
* ``building``: the model whose vectors are being written into the second table (its vector column has that
  model's dimension and its own HNSW index, maintained while rows arrive);
* when no product of the build is left pending, one transaction renames the two tables into each other (and
  their HNSW indexes), and the build becomes the active model. Readers never see a half-written index: before
  the switch they read the old table, after it the complete new one; the rename waits for in-flight queries
  only, for milliseconds.

Writers of vectors (``embedding.embed_products``) take a shared advisory lock and the switch an exclusive one,
so a batch computed for one table never lands in the other.

Without any record (a fresh shop, or a database from before builds existed) the configured model is in use; the
first vectors written in place record it (:func:`adopt`).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

#: pg_advisory_xact_lock key of vector writers (shared) against starting or switching a build (exclusive).
LOCK_KEY = 0x6661_5F69  # "fa_i"
LOCK_TIMEOUT = "3s"


@dataclass(frozen=True)
class State:
    active: object | None  # IndexBuild
    building: object | None  # IndexBuild


def _models():
    from ..models import IndexBuild, ProductEmbedding, ProductEmbeddingNext

    return IndexBuild, ProductEmbedding, ProductEmbeddingNext


def state() -> State:
    """The model in use and the build in progress (either may be None)."""
    IndexBuild, _, _ = _models()
    rows = list(IndexBuild.objects.filter(state__in=[IndexBuild.State.ACTIVE, IndexBuild.State.BUILDING]))
    by = {row.state: row for row in rows}
    return State(by.get(IndexBuild.State.ACTIVE), by.get(IndexBuild.State.BUILDING))


def shared_lock():
    """Inside a transaction: writers of vectors hold this while they decide which table a batch goes to."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [LOCK_KEY])


def _exclusive_lock():
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


MAIN_INDEX = "fashion_ai_embedding_hnsw"
NEXT_INDEX = "fashion_ai_embedding_next_hnsw"


def _index_options(index_name: str) -> str:
    """The WITH (...) options of an HNSW index (m, ef_construction, ...), so the next table's index is built like
    the one search uses (whatever a migration or a setting made it)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [index_name])
        row = cursor.fetchone()
    if row and " WITH (" in row[0]:
        return "WITH (" + row[0].split(" WITH (", 1)[1].split(")", 1)[0] + ")"
    return "WITH (m = 16, ef_construction = 64)"


def snapshot_weights(path: Path, sha256: str) -> Path:
    """Where a model in use keeps its weights: the package's own file is copied into the models folder first (a
    package upgrade replaces it in place, and search must keep embedding queries with the model that made the
    index); any other file stays where it is."""
    from .. import model_store
    from ..ml.embedder import PACKAGE_WEIGHTS

    path = Path(path)
    if path.resolve().parent != PACKAGE_WEIGHTS.resolve().parent:
        return path
    try:
        target = model_store.snapshot_path(sha256)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            shutil.copyfile(path, tmp)
            tmp.replace(target)
        return target
    except OSError as exc:  # a read-only models folder: keep the package path (a package upgrade then needs a reindex)
        logger.warning("Fashion AI: could not copy %s into the models folder: %s", path, exc)
        return path


def adopt(embedder, requested_by: str = "") -> object:
    """Record ``embedder`` as the model in use when no model is recorded yet (idempotent, race-safe)."""
    IndexBuild, _, _ = _models()
    current = state().active
    if current is not None:
        return current
    weights = snapshot_weights(embedder.path, embedder.sha256)
    try:
        with transaction.atomic():
            return IndexBuild.objects.create(
                version=embedder.version,
                weights=str(weights),
                weights_sha256=embedder.sha256,
                dim=embedder.info.dim,
                state=IndexBuild.State.ACTIVE,
                requested_by=requested_by[:150],
                date_activated=timezone.now(),
                message="the model in use when the first vectors were written",
            )
    except IntegrityError:  # another process recorded it first
        return state().active


def start(embedder, requested_by: str = "") -> object:
    """Prepare the second table for ``embedder``'s vectors and record the build (one pending row per product).

    A build of the same model already under way is kept (its finished rows too); one of another model is
    abandoned. The caller queues the products (see ``index.request_reindex``)."""
    IndexBuild, ProductEmbedding, ProductEmbeddingNext = _models()
    from oscar.core.loading import get_model

    Product = get_model("catalogue", "Product")
    current = state()
    if current.building is not None and current.building.version == embedder.version:
        return current.building
    weights = snapshot_weights(embedder.path, embedder.sha256)
    nxt = _table(ProductEmbeddingNext)
    with transaction.atomic():
        _exclusive_lock()
        if current.building is not None:
            IndexBuild.objects.filter(pk=current.building.pk, state=IndexBuild.State.BUILDING).update(
                state=IndexBuild.State.ABANDONED,
                date_finished=timezone.now(),
                message=f"replaced by a build of {embedder.version}",
            )
        options = _index_options(MAIN_INDEX)
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"TRUNCATE {nxt}")
            cursor.execute(f"DROP INDEX IF EXISTS {NEXT_INDEX}")
            cursor.execute(f"ALTER TABLE {nxt} ALTER COLUMN vector TYPE vector({int(embedder.info.dim)})")
            cursor.execute(f"CREATE INDEX {NEXT_INDEX} ON {nxt} USING hnsw (vector vector_cosine_ops) {options}")
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        ids = list(Product.objects.exclude(structure=Product.PARENT).values_list("pk", flat=True))
        ProductEmbeddingNext.objects.bulk_create([ProductEmbeddingNext(product_id=pk) for pk in ids], batch_size=2000)
        build = IndexBuild.objects.create(
            version=embedder.version,
            weights=str(weights),
            weights_sha256=embedder.sha256,
            dim=embedder.info.dim,
            state=IndexBuild.State.BUILDING,
            requested_by=requested_by[:150],
            products=len(ids),
        )
    logger.info(
        "Fashion AI: started indexing %d products with %s; search keeps using the model in use until they are done",
        len(ids),
        embedder.version,
    )
    return build


def progress(build=None) -> dict:
    """Counts of the build's rows: total, indexed, failed, pending."""
    _, _, ProductEmbeddingNext = _models()
    from django.db.models import Count

    counts = dict(ProductEmbeddingNext.objects.values_list("status").annotate(n=Count("pk")).order_by())
    total = sum(counts.values())
    return {
        "total": total,
        "indexed": counts.get("indexed", 0),
        "failed": counts.get("failed", 0),
        "pending": counts.get("pending", 0),
    }


def complete() -> bool:
    """Every product has its row in the second table, indexed or failed."""
    _, _, ProductEmbeddingNext = _models()
    from oscar.core.loading import get_model

    Product = get_model("catalogue", "Product")
    if ProductEmbeddingNext.objects.filter(status="pending").exists():
        return False
    return (
        not Product.objects.exclude(structure=Product.PARENT)
        .exclude(pk__in=ProductEmbeddingNext.objects.values("product_id"))
        .exists()
    )


def activate(build=None) -> bool:
    """Switch search to the build's vectors if they are complete. Returns True when it switched.

    Raises OperationalError when the tables stay locked beyond ``LOCK_TIMEOUT`` (callers retry)."""
    IndexBuild, ProductEmbedding, ProductEmbeddingNext = _models()
    main, nxt = _table(ProductEmbedding), _table(ProductEmbeddingNext)
    with transaction.atomic():
        _exclusive_lock()
        build = IndexBuild.objects.select_for_update().filter(state=IndexBuild.State.BUILDING).first()
        if build is None or not complete():
            return False
        spare = connection.ops.quote_name("oscar_fashion_ai_embedding_swap")
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"LOCK TABLE {main}, {nxt} IN ACCESS EXCLUSIVE MODE")
            cursor.execute(f"ALTER TABLE {main} RENAME TO {spare}")
            cursor.execute(f"ALTER TABLE {nxt} RENAME TO {main}")
            cursor.execute(f"ALTER TABLE {spare} RENAME TO {nxt}")
            cursor.execute(f"ALTER INDEX IF EXISTS {MAIN_INDEX} RENAME TO fashion_ai_embedding_swap_hnsw")
            cursor.execute(f"ALTER INDEX IF EXISTS {NEXT_INDEX} RENAME TO {MAIN_INDEX}")
            cursor.execute(f"ALTER INDEX IF EXISTS fashion_ai_embedding_swap_hnsw RENAME TO {NEXT_INDEX}")
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        now = timezone.now()
        IndexBuild.objects.filter(state=IndexBuild.State.ACTIVE).update(
            state=IndexBuild.State.RETIRED, date_finished=now
        )
        IndexBuild.objects.filter(pk=build.pk).update(state=IndexBuild.State.ACTIVE, date_activated=now)
    logger.warning("Fashion AI: search now uses the vectors of %s", build.version)
    clear_next()
    return True


def try_activate(attempts: int = 5, wait: float = 1.0) -> bool:
    """:func:`activate`, retried while the tables are busy."""
    for attempt in range(attempts):
        try:
            return activate()
        except OperationalError as exc:
            if attempt == attempts - 1:
                raise
            logger.info("Fashion AI: index switch postponed (%s); retrying", exc)
            time.sleep(wait)
    return False


def clear_next():
    """Empty the second table (the replaced model's vectors) to give the space back; best effort."""
    _, _, ProductEmbeddingNext = _models()
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [LOCK_KEY])
            if cursor.fetchone()[0]:
                cursor.execute(f"TRUNCATE {_table(ProductEmbeddingNext)}")
    except OperationalError as exc:  # emptied at the next build's start instead
        logger.info("Fashion AI: the replaced vectors stay until the next build: %s", exc)


def abandon(reason: str) -> bool:
    """Give up the build in progress (search keeps the model in use)."""
    IndexBuild, _, _ = _models()
    with transaction.atomic():
        _exclusive_lock()
        changed = IndexBuild.objects.filter(state=IndexBuild.State.BUILDING).update(
            state=IndexBuild.State.ABANDONED, date_finished=timezone.now(), message=reason[:2000]
        )
    if changed:
        logger.error("Fashion AI: index build abandoned: %s", reason)
        clear_next()
    return bool(changed)


class IndexChanged(RuntimeError):
    """The index switched models while a batch was being embedded (retried)."""
