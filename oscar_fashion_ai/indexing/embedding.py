"""Writing vectors: the function that turns product ids into stored vectors, and the vector column's dimension.

The models themselves are loaded (once per process) by :mod:`oscar_fashion_ai.runtime`."""

from __future__ import annotations

import hashlib
import logging

import numpy as np
from django.db import connection, transaction
from django.utils import timezone
from oscar.core.loading import get_model

from .. import conf, runtime
from ..ml import preprocessing
from ..ml.embedder import ModelUnavailable

logger = logging.getLogger(__name__)

# --- vector column dimension ---------------------------------------------------------------


def stored_dimensions() -> int | None:
    """Dimension of the vector column as it is in the database."""
    from ..models import ProductEmbedding

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.atttypmod FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attname = 'vector'",
            [ProductEmbedding._meta.db_table],
        )
        row = cursor.fetchone()
    return row[0] if row and row[0] > 0 else None


class IndexMismatch(RuntimeError):
    """Stored vectors were made by another model than the configured one."""


def check_index(info=None):
    """Raise :class:`IndexMismatch` with a clear message when searching would compare apples and pears."""
    from ..models import ProductEmbedding

    info = info or runtime.model_info()
    dims = stored_dimensions()
    if dims != info.dim:
        raise IndexMismatch(
            f"The configured model makes {info.dim}-d vectors but the index stores {dims}-d vectors. "
            "Run `python manage.py fashion_reindex --all` to rebuild the index."
        )
    if not ProductEmbedding.objects.filter(status="indexed", model_version=info.version).exists():
        other = ProductEmbedding.objects.filter(status="indexed").exclude(model_version=info.version).first()
        if other is not None:
            raise IndexMismatch(
                f"The index was built with model {other.model_version}, but the configured model is {info.version}. "
                "Run `python manage.py fashion_reindex --all`."
            )


def ensure_dimensions(dim: int) -> bool:
    """Resize the vector column (and rebuild its HNSW index) for ``dim``-d vectors. Returns True if changed."""
    from ..models import ProductEmbedding

    if stored_dimensions() == dim:
        return False
    table = connection.ops.quote_name(ProductEmbedding._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        # Flush deferred FK checks first: PostgreSQL refuses ALTER TABLE with pending trigger events.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("DROP INDEX IF EXISTS fashion_ai_embedding_hnsw")
        cursor.execute(f"UPDATE {table} SET vector = NULL, status = 'pending'")
        cursor.execute(f"ALTER TABLE {table} ALTER COLUMN vector TYPE vector({int(dim)})")
        from . import hnsw

        cursor.execute(  # graph parameters for the catalog size (oscar_fashion_ai.indexing.hnsw)
            f"CREATE INDEX fashion_ai_embedding_hnsw ON {table} USING hnsw (vector vector_cosine_ops) "
            + hnsw.with_clause(hnsw.catalog_size(max_age=0))
        )
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    logger.warning("Fashion AI: resized the vector index to %d dimensions", dim)
    return True


# --- indexing ------------------------------------------------------------------------------


def primary_image(product):
    image = product.images.order_by("display_order", "pk").first()
    if image is None and product.parent_id:
        image = product.parent.images.order_by("display_order", "pk").first()
    return image


def _read(image) -> bytes:
    with image.original.open("rb") as fh:
        return fh.read()


def _write_target():
    """(embedder, table, build): where vectors written now go. During an index build: the build's model and the
    second table; otherwise the model in use and the table search reads (recording that model on first use)."""
    from ..models import ProductEmbedding, ProductEmbeddingNext
    from . import builds

    state = builds.state()
    if state.building is not None:
        try:
            return runtime.embedder_for(state.building), ProductEmbeddingNext, state.building
        except ModelUnavailable as exc:
            builds.abandon(f"its model cannot be loaded: {exc}")
    embedder = runtime.get_embedder()
    if state.active is None:
        builds.adopt(embedder)
    return embedder, ProductEmbedding, None


def _still_valid(table, build, version) -> bool:
    """Under the writers' lock: the batch's table still takes vectors of ``version``."""
    from ..models import ProductEmbedding
    from . import builds

    state = builds.state()
    if build is not None:
        return state.building is not None and state.building.pk == build.pk
    return table is ProductEmbedding and (state.active is None or state.active.version == version)


def embed_products(product_ids, force: bool = False, _retry: bool = True) -> dict:
    """Embed the primary image of each product and store it. Idempotent.

    Returns counts: indexed, skipped (unchanged), failed (permanent: no/corrupt/missing image).
    Transient errors (database, storage I/O) propagate so that the Celery task retries.
    During an index build the vectors go to the build's table, and the last batch switches search over
    (``oscar_fashion_ai.indexing.builds``).
    """
    from . import builds

    Product = get_model("catalogue", "Product")
    embedder, Table, build = _write_target()
    info = embedder.info
    if build is None and stored_dimensions() != info.dim:
        ensure_dimensions(info.dim)
    counts = {"indexed": 0, "skipped": 0, "failed": 0}
    products = Product.objects.filter(pk__in=list(product_ids)).select_related("parent")
    existing = {row.product_id: row for row in Table.objects.filter(product_id__in=list(product_ids))}
    to_embed = []  # (product, image, checksum, rgb)
    failures = []  # (product, image, message)
    max_pixels = conf.get("MAX_IMAGE_PIXELS")
    for product in products:
        image = primary_image(product)
        if image is None or not image.original:
            failures.append((product, None, "The product has no image."))
            continue
        try:
            data = _read(image)
        except FileNotFoundError:
            failures.append((product, image, f"The image file {image.original.name} is missing."))
            continue
        checksum = hashlib.sha1(data).hexdigest()
        row = existing.get(product.pk)
        if (
            not force
            and row is not None
            and row.status == Table.Status.INDEXED
            and row.image_checksum == checksum
            and row.model_version == info.version
            and row.image_id == image.pk
        ):
            counts["skipped"] += 1
            continue
        try:
            rgb = embedder.load_image(data, max_pixels=max_pixels)
        except preprocessing.InvalidImage as exc:
            failures.append((product, image, f"Image {image.original.name}: {exc}"))
            continue
        to_embed.append((product, image, checksum, rgb))
    vectors = (
        embedder.embed_images([item[3] for item in to_embed], batch_size=conf.get("BATCH_SIZE")) if to_embed else []
    )
    now = timezone.now()
    with transaction.atomic():
        builds.shared_lock()
        if not _still_valid(Table, build, info.version):
            valid = False
        else:
            valid = True
            for (product, image, checksum, _), vector in zip(to_embed, vectors):
                Table.objects.update_or_create(
                    product=product,
                    defaults={
                        "image": image,
                        "vector": np.asarray(vector, dtype=np.float32),
                        "model_version": info.version,
                        "image_checksum": checksum,
                        "status": Table.Status.INDEXED,
                        "error": "",
                        "date_indexed": now,
                    },
                )
                counts["indexed"] += 1
            for product, image, message in failures:
                row, _ = Table.objects.update_or_create(
                    product=product,
                    defaults={
                        "image": image,
                        "vector": None,
                        "model_version": info.version,
                        "image_checksum": "",
                        "status": Table.Status.FAILED,
                        "error": message[:2000],
                    },
                )
                Table.objects.filter(pk=row.pk).update(attempts=row.attempts + 1)
                counts["failed"] += 1
                logger.warning("Fashion AI: product %s not indexed: %s", product.pk, message)
    if not valid:  # the index switched models while this batch was embedded: embed it again for the new target
        if _retry:
            return embed_products(product_ids, force=force, _retry=False)
        raise builds.IndexChanged("the index switched models twice while a batch was embedded")
    if build is not None and builds.complete():
        builds.try_activate()
    return counts


def mark_pending(product_ids):
    """Record that products need (re)indexing, so a sweep finds them even if no task ever runs. During an index
    build the build's rows are marked (search keeps the current vectors until the switch)."""
    from ..models import ProductEmbedding, ProductEmbeddingNext
    from . import builds

    Product = get_model("catalogue", "Product")
    ids = list(Product.objects.filter(pk__in=list(product_ids)).values_list("pk", flat=True))
    with transaction.atomic():
        builds.shared_lock()
        Table = ProductEmbeddingNext if builds.state().building is not None else ProductEmbedding
        Table.objects.filter(product_id__in=ids).update(status=Table.Status.PENDING)
        have = set(Table.objects.filter(product_id__in=ids).values_list("product_id", flat=True))
        Table.objects.bulk_create([Table(product_id=pk) for pk in ids if pk not in have], ignore_conflicts=True)


__all__ = [
    "embed_products",
    "mark_pending",
    "check_index",
    "ensure_dimensions",
    "stored_dimensions",
    "IndexMismatch",
    "ModelUnavailable",
]
