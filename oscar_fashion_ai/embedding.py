"""Django glue around the pure-PyTorch embedder: one lazily loaded model per process, and the
function that turns product ids into stored vectors."""

from __future__ import annotations

import hashlib
import logging
import threading

import numpy as np
from django.db import connection, transaction
from django.utils import timezone
from oscar.core.loading import get_model

from . import conf
from .ml import preprocessing
from .ml.embedder import Embedder, ModelUnavailable

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_embedder: Embedder | None = None
_embedder_key = None
_generator = None
_generator_key = None
_sketch = None
_sketch_key = None


def get_embedder() -> Embedder:
    """The process-wide embedder, loaded on first use (workers load it once per child process)."""
    global _embedder, _embedder_key
    key = (conf.get("EMBEDDER_WEIGHTS"), conf.get("TORCH_THREADS"))
    if _embedder is None or _embedder_key != key:
        with _lock:
            if _embedder is None or _embedder_key != key:
                _embedder = Embedder(conf.get("EMBEDDER_WEIGHTS"), threads=conf.get("TORCH_THREADS"))
                _embedder_key = key
                logger.info("Fashion AI: loaded embedder %s (%s)", _embedder.version, _embedder.runtime)
    return _embedder


def get_generator():
    """The process-wide sketch generator, loaded on first use; None (with one logged error per process and
    weights file) when it cannot be loaded: sketch search then embeds the drawing directly."""
    global _generator, _generator_key
    from .ml.generator import GeneratorUnavailable, SketchGenerator

    key = (conf.get("SKETCH_GENERATOR_WEIGHTS"), conf.get("TORCH_THREADS"))
    if _generator_key != key:
        with _lock:
            if _generator_key != key:
                try:
                    _generator = SketchGenerator(conf.get("SKETCH_GENERATOR_WEIGHTS"), threads=conf.get("TORCH_THREADS"))
                    logger.info("Fashion AI: loaded sketch generator %s (%s)", _generator.version, _generator.runtime)
                except GeneratorUnavailable as exc:
                    _generator = None
                    logger.error("Fashion AI: %s; sketch search embeds drawings directly", exc)
                _generator_key = key
    return _generator


def get_sketch_embedder() -> Embedder:
    """The network that embeds drawings: the sketch encoder made for the configured photo model, or (when
    there is none, it cannot be loaded, or it belongs to another photo model; logged once) the photo model."""
    global _sketch, _sketch_key
    from .ml.embedder import PACKAGE_SKETCH_WEIGHTS

    photo = get_embedder()
    configured = conf.get("SKETCH_ENCODER_WEIGHTS")
    key = (configured, photo.sha256, conf.get("TORCH_THREADS"))
    if _sketch_key != key:
        with _lock:
            if _sketch_key != key:
                _sketch = photo
                from pathlib import Path

                path = Path(configured or PACKAGE_SKETCH_WEIGHTS)
                if configured or path.exists():
                    try:
                        from .ml import weights

                        pairs_with = weights.read_metadata(path).get("pairs_with") if path.exists() else None
                        if path.exists() and pairs_with != photo.sha256:
                            logger.error("Fashion AI: the sketch encoder %s was trained for another photo model than "
                                         "%s; drawings are embedded by the photo model. Train one with "
                                         "`manage.py fashion_train_sketch_encoder`.", path, photo.version)
                        else:
                            candidate = Embedder(path, threads=conf.get("TORCH_THREADS"))
                            if candidate.info.dim != photo.info.dim:
                                raise ModelUnavailable(f"{path} makes {candidate.info.dim}-d vectors, the photo "
                                                       f"model {photo.info.dim}-d")
                            _sketch = candidate
                            logger.info("Fashion AI: loaded sketch encoder %s (%s)", candidate.version,
                                        candidate.runtime)
                    except (ModelUnavailable, ValueError) as exc:
                        logger.error("Fashion AI: %s; drawings are embedded by the photo model", exc)
                _sketch_key = key
    return _sketch


def model_info():
    return get_embedder().info


# --- vector column dimension ---------------------------------------------------------------

def stored_dimensions() -> int | None:
    """Dimension of the vector column as it is in the database."""
    from .models import ProductEmbedding

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
    from .models import ProductEmbedding

    info = info or model_info()
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
    from .models import ProductEmbedding

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

        cursor.execute(  # graph parameters for the catalog size (oscar_fashion_ai.hnsw)
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


def embed_products(product_ids, force: bool = False) -> dict:
    """Embed the primary image of each product and store it. Idempotent.

    Returns counts: indexed, skipped (unchanged), failed (permanent: no/corrupt/missing image).
    Transient errors (database, storage I/O) propagate so that the Celery task retries.
    """
    from .models import ProductEmbedding

    Product = get_model("catalogue", "Product")
    embedder = get_embedder()
    info = embedder.info
    if stored_dimensions() != info.dim:
        ensure_dimensions(info.dim)
    counts = {"indexed": 0, "skipped": 0, "failed": 0}
    products = Product.objects.filter(pk__in=list(product_ids)).select_related("parent")
    existing = {row.product_id: row for row in ProductEmbedding.objects.filter(product_id__in=list(product_ids))}
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
        if (not force and row is not None and row.status == ProductEmbedding.Status.INDEXED
                and row.image_checksum == checksum and row.model_version == info.version and row.image_id == image.pk):
            counts["skipped"] += 1
            continue
        try:
            rgb = embedder.load_image(data, max_pixels=max_pixels)
        except preprocessing.InvalidImage as exc:
            failures.append((product, image, f"Image {image.original.name}: {exc}"))
            continue
        to_embed.append((product, image, checksum, rgb))
    vectors = embedder.embed_images([item[3] for item in to_embed], batch_size=conf.get("BATCH_SIZE")) if to_embed else []
    now = timezone.now()
    with transaction.atomic():
        for (product, image, checksum, _), vector in zip(to_embed, vectors):
            ProductEmbedding.objects.update_or_create(
                product=product,
                defaults={"image": image, "vector": np.asarray(vector, dtype=np.float32), "model_version": info.version,
                          "image_checksum": checksum, "status": ProductEmbedding.Status.INDEXED, "error": "",
                          "date_indexed": now},
            )
            counts["indexed"] += 1
        for product, image, message in failures:
            row, _ = ProductEmbedding.objects.update_or_create(
                product=product,
                defaults={"image": image, "vector": None, "model_version": info.version, "image_checksum": "",
                          "status": ProductEmbedding.Status.FAILED, "error": message[:2000]},
            )
            ProductEmbedding.objects.filter(pk=row.pk).update(attempts=row.attempts + 1)
            counts["failed"] += 1
            logger.warning("Fashion AI: product %s not indexed: %s", product.pk, message)
    return counts


def mark_pending(product_ids):
    """Record that products need (re)indexing, so a sweep finds them even if no task ever runs."""
    from .models import ProductEmbedding

    Product = get_model("catalogue", "Product")
    ids = list(Product.objects.filter(pk__in=list(product_ids)).values_list("pk", flat=True))
    ProductEmbedding.objects.filter(product_id__in=ids).update(status=ProductEmbedding.Status.PENDING)
    have = set(ProductEmbedding.objects.filter(product_id__in=ids).values_list("product_id", flat=True))
    ProductEmbedding.objects.bulk_create([ProductEmbedding(product_id=pk) for pk in ids if pk not in have],
                                         ignore_conflicts=True)


__all__ = ["get_embedder", "get_sketch_embedder", "model_info", "embed_products", "mark_pending", "check_index", "ensure_dimensions",
           "IndexMismatch", "ModelUnavailable"]
