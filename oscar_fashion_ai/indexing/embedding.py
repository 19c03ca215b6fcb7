"""Django glue around the pure-PyTorch embedder: one lazily loaded model per process, and the
function that turns product ids into stored vectors."""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

import numpy as np
from django.db import connection, transaction
from django.utils import timezone
from oscar.core.loading import get_model

from .. import conf
from ..ml import preprocessing
from ..ml.embedder import Embedder, ModelUnavailable

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_embedders: dict = {}  # (weights path, file stamp, threads) -> Embedder; a few models at most
_generator = None
_generator_key = None
_sketch = None
_sketch_key = None
_sketch_notice = None


def _stamp(path: Path):
    """Changes when the weights file or its card changes (a replaced file is loaded again)."""
    stamps = []
    for p in (path, path.with_suffix(".card.json")):
        try:
            st = p.stat()
            stamps.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            stamps.append(None)
    return tuple(stamps)


def load_embedder(path) -> Embedder:
    """The process-wide embedder for one weights file (None: the package's), loaded on first use."""
    from ..ml.embedder import PACKAGE_WEIGHTS

    path = Path(path) if path else PACKAGE_WEIGHTS
    key = (str(path), _stamp(path), conf.get("TORCH_THREADS"), conf.cache_dir())
    embedder = _embedders.get(key)
    if embedder is None:
        with _lock:
            embedder = _embedders.get(key)
            if embedder is None:
                embedder = Embedder(path, threads=conf.get("TORCH_THREADS"), cache_dir=conf.cache_dir())
                for old in [k for k in _embedders if k[0] == key[0]]:
                    del _embedders[old]
                while len(_embedders) >= 4:
                    del _embedders[next(iter(_embedders))]
                _embedders[key] = embedder
                logger.info("Fashion AI: loaded embedder %s (%s)", embedder.version, embedder.runtime)
    return embedder


def configured_embedder() -> Embedder:
    """The photo model the shop is configured to use (``EMBEDDER_WEIGHTS``, else the one installed in
    ``MODELS_DIR`` by ``fashion_adapt``, else the package's): the model the next index build uses."""
    from .. import model_store

    return load_embedder(model_store.configured_weights())


def embedder_for(record) -> Embedder:
    """The embedder of an :class:`~oscar_fashion_ai.models.IndexBuild` (its weights file, checked against the
    checksum recorded when its index was started)."""
    embedder = load_embedder(record.weights)
    if embedder.sha256 != record.weights_sha256:
        raise ModelUnavailable(f"The weights file {record.weights} of model {record.version} has changed since its "
                               "index was built.")
    return embedder


def _index_state():
    from . import builds

    try:
        return builds.state()
    except Exception as exc:  # noqa: BLE001 - no database (e.g. an offline evaluation): the configured model
        logger.debug("Fashion AI: no index state: %s", exc)
        return None


def get_embedder() -> Embedder:
    """The model in use: the one whose vectors search reads and that embeds search queries.

    That is the configured model, except while the index holds another model's vectors (a new model's vectors are
    being written, or have not been requested yet): then it is the model that made the index, so that search keeps
    answering until the switch (see ``oscar_fashion_ai.indexing.builds``). A configured model that cannot be
    loaded raises :class:`ModelUnavailable` (search is off with the reason)."""
    configured = configured_embedder()
    state = _index_state()
    active = state.active if state is not None else None
    if active is None or active.version == configured.version:
        return configured
    try:
        return embedder_for(active)
    except ModelUnavailable as exc:
        logger.error("Fashion AI: the model in use cannot be loaded (%s); search uses the configured model %s",
                     exc, configured.version)
        return configured


def get_generator():
    """The process-wide sketch generator, loaded on first use; None (with one logged error per process and
    weights file) when it cannot be loaded: sketch search then embeds the drawing directly."""
    global _generator, _generator_key
    from ..ml.generator import PACKAGE_GENERATOR, GeneratorUnavailable, SketchGenerator

    key = (conf.get("SKETCH_GENERATOR_WEIGHTS"), conf.get("TORCH_THREADS"))
    if _generator_key != key:
        with _lock:
            if _generator_key != key:
                if not key[0] and not PACKAGE_GENERATOR.exists():
                    # None configured and none installed into the package (`fashion_train_gan --install`): the
                    # default since the GAN lost to embedding the drawing directly (docs/SKETCH.md). Not an error.
                    _generator, _generator_key = None, key
                    return None
                try:
                    _generator = SketchGenerator(conf.get("SKETCH_GENERATOR_WEIGHTS"),
                                                 threads=conf.get("TORCH_THREADS"), cache_dir=conf.cache_dir())
                    logger.info("Fashion AI: loaded sketch generator %s (%s)", _generator.version, _generator.runtime)
                except GeneratorUnavailable as exc:
                    _generator = None
                    logger.error("Fashion AI: %s; sketch search embeds drawings directly", exc)
                _generator_key = key
    return _generator


def get_sketch_embedder(photo: Embedder | None = None) -> Embedder:
    """The network that embeds drawings: the sketch encoder made for the photo model in use (``photo``, looked up
    when not given), or (when there is none, it cannot be loaded, or it belongs to another photo model; logged
    once) the photo model."""
    global _sketch, _sketch_key, _sketch_notice
    from .. import model_store
    from ..ml.embedder import PACKAGE_SKETCH_WEIGHTS

    photo = photo or get_embedder()
    configured = conf.get("SKETCH_ENCODER_WEIGHTS") or model_store.sketch_encoder_for(photo.sha256)
    key = (str(configured) if configured else None, photo.sha256, conf.get("TORCH_THREADS"))
    if _sketch_key != key:
        with _lock:
            if _sketch_key != key:
                _sketch = photo
                _sketch_notice = None
                path = Path(configured or PACKAGE_SKETCH_WEIGHTS)
                if configured or path.exists():
                    try:
                        from ..ml import weights

                        pairs_with = weights.read_metadata(path).get("pairs_with") if path.exists() else None
                        if path.exists() and pairs_with != photo.sha256:
                            _sketch_notice = (
                                f"The sketch encoder {path.name} was trained for another photo model than the one in "
                                f"use ({photo.version}): search by sketch works, with drawings embedded by the photo "
                                "model, which finds fewer matches. Train a sketch encoder for it with `manage.py "
                                "fashion_train_sketch_encoder` (or `fashion_adapt --sketch-minutes N`).")
                            logger.error("Fashion AI: %s", _sketch_notice)
                        else:
                            candidate = Embedder(path, threads=conf.get("TORCH_THREADS"), cache_dir=conf.cache_dir())
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


def sketch_encoder_notice() -> str | None:
    """Why drawings are embedded by the photo model although a sketch encoder exists (None when they are not)."""
    get_sketch_embedder()
    return _sketch_notice


def model_info():
    return get_embedder().info


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
            return embedder_for(state.building), ProductEmbeddingNext, state.building
        except ModelUnavailable as exc:
            builds.abandon(f"its model cannot be loaded: {exc}")
    embedder = get_embedder()
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
        if (not force and row is not None and row.status == Table.Status.INDEXED
                and row.image_checksum == checksum and row.model_version == info.version and row.image_id == image.pk):
            counts["skipped"] += 1
            continue
        try:
            rgb = embedder.load_image(data, max_pixels=max_pixels)
        except preprocessing.InvalidImage as exc:
            failures.append((product, image, f"Image {image.original.name}: {exc}"))
            continue
        to_embed.append((product, image, checksum, rgb))
    vectors = (embedder.embed_images([item[3] for item in to_embed], batch_size=conf.get("BATCH_SIZE"))
               if to_embed else [])
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
                    defaults={"image": image, "vector": np.asarray(vector, dtype=np.float32),
                              "model_version": info.version, "image_checksum": checksum,
                              "status": Table.Status.INDEXED, "error": "", "date_indexed": now},
                )
                counts["indexed"] += 1
            for product, image, message in failures:
                row, _ = Table.objects.update_or_create(
                    product=product,
                    defaults={"image": image, "vector": None, "model_version": info.version, "image_checksum": "",
                              "status": Table.Status.FAILED, "error": message[:2000]},
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


__all__ = ["get_embedder", "configured_embedder", "load_embedder", "get_sketch_embedder", "model_info",
           "embed_products", "mark_pending", "check_index", "ensure_dimensions", "IndexMismatch", "ModelUnavailable"]
