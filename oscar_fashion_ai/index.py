"""Django-side operations on the vector index: stats, staleness, requesting reindex work."""

from __future__ import annotations

import logging

from django.db.models import Q
from oscar.core.loading import get_model

logger = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The task broker refused the work; nothing was queued."""


def _models():
    from .models import IndexRun, ProductEmbedding

    return get_model("catalogue", "Product"), ProductEmbedding, IndexRun


def current_model_version() -> str | None:
    """The configured embedder's version string, or None if the model cannot be loaded."""
    from . import embedding

    try:
        return embedding.model_info().version
    except Exception:  # noqa: BLE001 - stats must render even when the model is broken
        logger.exception("Fashion AI: the embedding model could not be loaded")
        return None


def model_status():
    """(version, problem) for the dashboard: the configured model's version (None if it cannot load) and, when
    search is switched off, the reason (model error, or an index built by another model/dimension)."""
    from . import embedding

    try:
        info = embedding.model_info()
    except Exception as exc:  # noqa: BLE001 - the dashboard must render even when the model is broken
        logger.error("Fashion AI: the embedding model could not be loaded: %s", exc)
        return None, str(exc)
    try:
        embedding.check_index(info)
    except embedding.IndexMismatch as exc:
        return info.version, str(exc)
    return info.version, None


def sketch_status() -> dict:
    """What search by sketch runs: the configured pipeline, the one in effect, and the generator (or why not)."""
    from . import conf, embedding

    configured = conf.get("SKETCH_PIPELINE")
    generator = embedding.get_generator()
    try:
        photo, drawings = embedding.get_embedder(), embedding.get_sketch_embedder()
        encoder = drawings.version if drawings is not photo else None
    except embedding.ModelUnavailable:
        encoder = None
    common = {"configured": configured, "encoder": encoder, "expansion": conf.get("SKETCH_QUERY_EXPANSION"),
              "category_boost": conf.get("SKETCH_CATEGORY_BOOST"), "rerank_depth": conf.get("SKETCH_RERANK_DEPTH")}
    if generator is None:
        return common | {"pipeline": "direct", "generator": None,
                         "problem": "The sketch generator could not be loaded (see the web log): searches embed the "
                                    "drawing directly and show it instead of a generated picture."}
    return common | {"pipeline": configured, "generator": generator.version, "runtime": generator.runtime,
                     "problem": None}


def products_needing_index(scope: str = "stale", category_slug: str | None = None):
    """Product ids to (re)index for ``scope`` in {"all", "stale", "failed"}."""
    Product, ProductEmbedding, _ = _models()
    qs = Product.objects.exclude(structure=Product.PARENT)
    if category_slug:
        qs = qs.filter(categories__slug=category_slug)
    if scope == "all":
        pass
    elif scope == "failed":
        qs = qs.filter(fashion_embedding__status=ProductEmbedding.Status.FAILED)
    elif scope == "stale":
        version = current_model_version()
        qs = qs.filter(
            Q(fashion_embedding__isnull=True)
            | ~Q(fashion_embedding__status=ProductEmbedding.Status.INDEXED)
            | ~Q(fashion_embedding__model_version=version or "")
        ).exclude(fashion_embedding__status=ProductEmbedding.Status.FAILED, fashion_embedding__model_version=version or "")
    else:
        raise ValueError(f"unknown scope {scope!r}; use all, stale or failed")
    return list(qs.order_by("pk").values_list("pk", flat=True).distinct())


def index_stats() -> dict:
    Product, ProductEmbedding, IndexRun = _models()
    version, problem = model_status()
    total = Product.objects.exclude(structure=Product.PARENT).count()
    rows = ProductEmbedding.objects
    indexed_current = rows.filter(status=ProductEmbedding.Status.INDEXED, model_version=version or "").count()
    failed = rows.filter(status=ProductEmbedding.Status.FAILED).count()
    return {
        "total": total,
        "indexed": indexed_current,
        "coverage": (indexed_current / total) if total else 0.0,
        "stale": max(total - indexed_current - failed, 0),
        "failed": failed,
        "failures": list(
            rows.filter(status=ProductEmbedding.Status.FAILED).select_related("product").order_by("-date_updated")[:20]
        ),
        "model_version": version,
        "model_ok": version is not None,
        "problem": problem,
        "last_run": IndexRun.objects.first(),
        "last_indexed": rows.filter(date_indexed__isnull=False).order_by("-date_indexed").values_list(
            "date_indexed", flat=True
        ).first(),
    }


def request_reindex(scope: str = "stale", requested_by: str = "", product_ids=None, category_slug=None) -> int:
    """Queue reindex work on the broker. Returns the number of products queued."""
    from . import tasks

    _, _, IndexRun = _models()
    ids = list(product_ids) if product_ids is not None else products_needing_index(scope, category_slug)
    if scope == "all" or product_ids is not None:
        tasks.mark_pending(ids)
    try:
        tasks.enqueue_embedding(ids, force=(scope in {"all", "failed"} or product_ids is not None))
    except Exception as exc:  # kombu raises OperationalError and friends
        logger.error("Fashion AI: could not queue reindex work: %s", exc)
        raise BrokerUnavailable(
            f"The task broker is unreachable ({exc}). Nothing was queued; start Redis/the worker, "
            "or run `python manage.py fashion_reindex --sync`."
        ) from exc
    IndexRun.objects.create(requested_by=requested_by[:150], scope=scope, products=len(ids))
    return len(ids)
