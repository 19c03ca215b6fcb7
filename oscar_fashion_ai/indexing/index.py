"""Django-side operations on the vector index: stats, staleness, requesting reindex work."""

from __future__ import annotations

import logging

from django.db.models import Q
from oscar.core.loading import get_model

logger = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The task broker refused the work; nothing was queued."""


def _models():
    from ..models import IndexRun, ProductEmbedding

    return get_model("catalogue", "Product"), ProductEmbedding, IndexRun


def current_model_version() -> str | None:
    """The configured embedder's version string, or None if the model cannot be loaded."""
    from .. import runtime

    try:
        return runtime.model_info().version
    except Exception:  # stats must render even when the model is broken
        logger.exception("Fashion AI: the embedding model could not be loaded")
        return None


def model_status():
    """(version, problem) for the dashboard: the configured model's version (None if it cannot load) and, when
    search is switched off, the reason (model error, or an index built by another model/dimension)."""
    from .. import runtime
    from . import embedding

    try:
        info = runtime.model_info()
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
    from .. import conf, runtime

    configured = conf.get("SKETCH_PIPELINE")
    generator = runtime.get_generator()
    try:
        photo, drawings = runtime.get_embedder(), runtime.get_sketch_embedder()
        encoder = drawings.version if drawings is not photo else None
        notice = runtime.sketch_encoder_notice()
    except runtime.ModelUnavailable:
        encoder, notice = None, None
    common = {
        "configured": configured,
        "encoder": encoder,
        "encoder_notice": notice,
        "expansion": conf.get("SKETCH_QUERY_EXPANSION"),
        "category_boost": conf.get("SKETCH_CATEGORY_BOOST"),
        "rerank_depth": conf.get("SKETCH_RERANK_DEPTH"),
    }
    if generator is None:
        return common | {
            "pipeline": "direct",
            "generator": None,
            "problem": "The sketch generator could not be loaded (see the web log): searches embed the "
            "drawing directly and show it instead of a generated picture.",
        }
    return common | {
        "pipeline": configured,
        "generator": generator.version,
        "runtime": generator.runtime,
        "problem": None,
    }


def products_needing_index(scope: str = "stale", category_slug: str | None = None):
    """Product ids to (re)index for ``scope`` in {"all", "stale", "failed"}: during an index build, those of the
    build (its rows pending or missing, or failed), otherwise those of the index search reads."""
    from ..models import ProductEmbeddingNext
    from . import builds

    Product, ProductEmbedding, _ = _models()
    if scope not in {"all", "stale", "failed"}:
        raise ValueError(f"unknown scope {scope!r}; use all, stale or failed")
    qs = Product.objects.exclude(structure=Product.PARENT)
    if category_slug:
        qs = qs.filter(categories__slug=category_slug)
    building = builds.state().building
    if scope == "all":
        pass
    elif building is not None:
        rows = ProductEmbeddingNext.objects.values("product_id")
        if scope == "failed":
            qs = qs.filter(pk__in=rows.filter(status=ProductEmbedding.Status.FAILED))
        else:
            done = rows.exclude(status=ProductEmbedding.Status.PENDING)
            qs = qs.exclude(pk__in=done)
    elif scope == "failed":
        qs = qs.filter(fashion_embedding__status=ProductEmbedding.Status.FAILED)
    else:
        version = current_model_version()
        qs = qs.filter(
            Q(fashion_embedding__isnull=True)
            | ~Q(fashion_embedding__status=ProductEmbedding.Status.INDEXED)
            | ~Q(fashion_embedding__model_version=version or "")
        ).exclude(
            fashion_embedding__status=ProductEmbedding.Status.FAILED, fashion_embedding__model_version=version or ""
        )
    return list(qs.order_by("pk").values_list("pk", flat=True).distinct())


def model_switch_pending() -> tuple[object | None, str | None]:
    """(configured embedder, reason) when the configured model is not the one in use and no build of it is under
    way, i.e. when a reindex should build its vectors; (None, None) otherwise."""
    from .. import runtime
    from . import builds

    try:
        configured = runtime.configured_embedder()
    except runtime.ModelUnavailable:
        return None, None
    state = builds.state()
    if state.building is not None:
        return (
            (configured, "the configured model changed during the build")
            if (state.building.version != configured.version)
            else (None, None)
        )
    if state.active is not None and state.active.version != configured.version:
        return configured, f"the configured model {configured.version} is not the one in use ({state.active.version})"
    return None, None


def prepare_reindex(
    scope: str = "stale", category_slug: str | None = None, product_ids=None, requested_by: str = ""
) -> tuple[list, bool, object | None]:
    """What a reindex request does: (product ids, force, build). When the configured model is not the one in use,
    a full reindex (``all`` or ``stale``, whole catalog) starts an index build of it: its vectors are written beside
    the current ones, and search switches when they are complete. Otherwise products are re-embedded in place,
    their current vectors serving until each is replaced."""
    from . import builds, embedding

    whole = product_ids is None and not category_slug and scope in {"all", "stale"}
    target, _ = model_switch_pending() if whole else (None, None)
    if target is not None:
        build = builds.start(target, requested_by=requested_by)
        return products_needing_index("stale" if scope == "stale" else "all"), True, build
    building = builds.state().building
    if product_ids is not None:
        ids = list(product_ids)
    else:
        ids = products_needing_index(scope, category_slug)
    if building is not None:
        if scope in {"all", "failed"} or product_ids is not None:
            embedding.mark_pending(ids)
        return ids, scope in {"all", "failed"} or product_ids is not None, building
    if scope == "failed" or product_ids is not None:
        embedding.mark_pending(ids)  # the sweep finds them if no worker ever runs; indexed rows keep serving
    elif scope == "all":
        _add_missing_rows(ids)
    return ids, scope in {"all", "failed"} or product_ids is not None, None


def _add_missing_rows(ids):
    """Pending rows for products that have none (indexed rows are left serving while they are re-embedded)."""
    _, ProductEmbedding, _ = _models()
    have = set(ProductEmbedding.objects.filter(product_id__in=ids).values_list("product_id", flat=True))
    ProductEmbedding.objects.bulk_create(
        [ProductEmbedding(product_id=pk) for pk in ids if pk not in have], ignore_conflicts=True
    )


def build_status() -> dict | None:
    """The index build in progress, for the dashboard and the commands (None when there is none)."""
    from . import builds

    state = builds.state()
    if state.building is None:
        return None
    counts = builds.progress()
    done = counts["indexed"] + counts["failed"]
    return {
        "build": state.building,
        "version": state.building.version,
        **counts,
        "done": done,
        "fraction": done / counts["total"] if counts["total"] else 0.0,
        "serving": state.active.version if state.active else None,
    }


def index_stats() -> dict:
    from . import builds

    Product, ProductEmbedding, IndexRun = _models()
    version, problem = model_status()
    total = Product.objects.exclude(structure=Product.PARENT).count()
    rows = ProductEmbedding.objects
    indexed_current = rows.filter(status=ProductEmbedding.Status.INDEXED, model_version=version or "").count()
    failed = rows.filter(status=ProductEmbedding.Status.FAILED).count()
    configured, switch = model_switch_pending()
    state = builds.state()
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
        "build": build_status(),
        "switch_pending": switch,
        "configured_version": configured.version if configured is not None else None,
        "active_since": state.active.date_activated if state.active else None,
        "last_run": IndexRun.objects.first(),
        "last_indexed": rows.filter(date_indexed__isnull=False)
        .order_by("-date_indexed")
        .values_list("date_indexed", flat=True)
        .first(),
    }


def request_reindex(scope: str = "stale", requested_by: str = "", product_ids=None, category_slug=None) -> int:
    """Queue reindex work on the broker. Returns the number of products queued."""
    from .. import publishing

    _, _, IndexRun = _models()
    ids, force, build = prepare_reindex(scope, category_slug, product_ids, requested_by)
    try:
        publishing.enqueue_embedding(ids, force=force)
    except Exception as exc:  # kombu raises OperationalError and friends
        logger.error("Fashion AI: could not queue reindex work: %s", exc)
        raise BrokerUnavailable(
            f"The task broker is unreachable ({exc}). Nothing was queued; start Redis/the worker, "
            "or run `python manage.py fashion_reindex --sync`."
            + (" Search keeps using the model in use meanwhile." if build is not None else "")
        ) from exc
    IndexRun.objects.create(
        requested_by=requested_by[:150], scope=scope if build is None else f"{scope} (new model)", products=len(ids)
    )
    return len(ids)
