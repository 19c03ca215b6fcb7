"""Nearest-neighbour queries over the pgvector index (HNSW, cosine distance): the model in use, the search session,
the neighbours of a vector or a product, and the JSON shape of results."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Exists, OuterRef
from oscar.core.loading import get_model
from pgvector.django import CosineDistance

from .. import conf, routers, runtime
from ..indexing import embedding, hnsw


class SearchUnavailable(RuntimeError):
    """Search cannot run (no model, or an index built by another model); the message says what to do."""


def clamp_k(value, default=None) -> int:
    """Parse a user-supplied ``k``. Raises ValueError with a user-facing message."""
    maximum = int(conf.get("MAX_K"))
    if value in (None, ""):
        return int(default or conf.get("DEFAULT_K"))
    try:
        k = int(str(value).strip())
    except (TypeError, ValueError):
        raise ValueError("k must be a whole number.") from None
    if not 1 <= k <= maximum:
        raise ValueError(f"k must be between 1 and {maximum}.")
    return k


def model_in_use():
    """(embedder, info) of the model search reads with, once its index is checked; raises :class:`SearchUnavailable`
    with the reason. A request looks this up once and passes both on (each lookup reads the index state).

    The index state and the vector column are read by two statements: when a new model's index is switched in
    between them, the first reading is of the model before the switch, so a mismatch is read once more before it
    is reported (a real mismatch fails twice)."""
    for attempt in (1, 2):
        try:
            embedder = runtime.get_embedder()
        except runtime.ModelUnavailable as exc:
            raise SearchUnavailable(str(exc)) from exc
        try:
            embedding.check_index(embedder.info)
        except embedding.IndexMismatch as exc:
            if attempt == 2:
                raise SearchUnavailable(str(exc)) from exc
            continue
        return embedder, embedder.info
    raise AssertionError("unreachable")


def ready_model():
    """The :class:`ModelInfo` of the model in use, once its index is checked (see :func:`model_in_use`)."""
    return model_in_use()[1]


def search_alias() -> str:
    """The database alias search reads go to (``FASHION_AI["SEARCH_DATABASE"]``, e.g. a read replica)."""
    return conf.get("SEARCH_DATABASE") or DEFAULT_DB_ALIAS


@contextmanager
def search_session(limit: int, filtered: bool = False):
    """Where and how the queries of one search run; evaluate the querysets inside the block.

    The block's reads go to the search database (:func:`search_alias`; :class:`oscar_fashion_ai.routers.SearchRouter`
    routes them), inside one transaction on it whose HNSW parameters (``hnsw.ef_search``, ``hnsw.iterative_scan``,
    ``hnsw.max_scan_tuples``) fit the catalog size, the number of rows wanted and the filter
    (:func:`oscar_fashion_ai.hnsw.query_parameters`), set with ``set_config(..., true)`` (``SET LOCAL``): they end
    with the transaction, so a pooled connection never keeps them. Yields the alias."""
    alias = search_alias()
    params = hnsw.query_parameters(hnsw.catalog_size(alias), limit, filtered)
    with routers.search_reads(alias), transaction.atomic(using=alias):
        hnsw.set_local(connections[alias], params)
        yield alias


def nearest(
    vector,
    k: int,
    exclude_ids=(),
    category=None,
    category_boost: float = 0.0,
    depth: int = 0,
    price_range=None,
    info=None,
):
    """The ``k`` public, in-stock products nearest to ``vector``, best first, as (product, score).

    ``info``: the model that made ``vector`` (default: the model in use). With ``category_boost`` the
    ``max(k, depth)`` nearest are re-ordered so that those sharing a category with the best match come first
    (:func:`oscar_fashion_ai.ml.sketch_pipeline.best_match_order`); scores stay the cosine similarities."""
    info = info or ready_model()
    vector = np.asarray(vector, dtype=np.float32)
    if vector.shape != (info.dim,):
        raise SearchUnavailable(f"query vector has {vector.shape} dimensions, the model makes {info.dim}")
    limit = max(k, depth if category_boost else 0)
    with search_session(limit, filtered=category is not None or price_range is not None) as alias:
        rows = list(
            nearest_queryset(vector, info.version, exclude_ids, category, price_range)
            .defer("vector")
            .using(alias)[:limit]
        )
        # An iterative scan in relaxed order may return rows slightly out of order: sort them.
        found = sorted(((row.product, 1.0 - float(row.distance)) for row in rows), key=lambda item: -item[1])
        if category_boost and len(found) > 1:
            from ..ml.sketch_pipeline import best_match_order

            order = best_match_order(
                [score for _, score in found], product_categories([p for p, _ in found]), category_boost
            )
            found = [found[i] for i in order]
    return found[:k]


def product_categories(products) -> list[set]:
    """Each product's category ids (a variant has its parent's), in one query."""
    ProductCategory = get_model("catalogue", "ProductCategory")
    owners = [p.parent_id or p.pk for p in products]
    by_owner: dict[int, set] = {}
    for product_id, category_id in ProductCategory.objects.filter(product_id__in=set(owners)).values_list(
        "product_id", "category_id"
    ):
        by_owner.setdefault(product_id, set()).add(category_id)
    return [by_owner.get(owner, set()) for owner in owners]


def nearest_queryset(vector, version, exclude_ids=(), category=None, price_range=None):
    """``ORDER BY vector <=> query`` over current rows; the availability filters are EXISTS subqueries
    (no joins that multiply rows, no DISTINCT), so PostgreSQL can walk the HNSW index and filter as it goes
    (``hnsw.iterative_scan``; evaluate it inside :func:`search_session`, which sets the HNSW parameters).
    ``price_range`` (low, high; either may be None) keeps products with an in-stock record priced within it."""
    from ..models import ProductEmbedding

    StockRecord = get_model("partner", "StockRecord")
    ProductCategory = get_model("catalogue", "ProductCategory")
    stock = StockRecord.objects.filter(product_id=OuterRef("product_id"), num_in_stock__gt=0)
    low, high = price_range or (None, None)
    if low is not None:
        stock = stock.filter(price__gte=low)
    if high is not None:
        stock = stock.filter(price__lte=high)
    qs = (
        ProductEmbedding.objects.filter(
            status=ProductEmbedding.Status.INDEXED, model_version=version, product__is_public=True
        )
        .filter(Exists(stock))
        .annotate(distance=CosineDistance("vector", vector))
        .order_by("distance")
        .select_related("product")
        # result_dicts() shows each product's primary image (a variant's falls back to its parent's): one query
        # for all of them instead of one per product.
        .prefetch_related("product__images", "product__parent__images")
    )
    exclude_ids = list(exclude_ids)
    if exclude_ids:
        qs = qs.exclude(product_id__in=exclude_ids)
    if category is not None:
        qs = qs.filter(
            Exists(
                ProductCategory.objects.filter(
                    product_id=OuterRef("product_id"), category__in=category.get_descendants_and_self()
                )
            )
        )
    return qs


def expanded_query(vector, n: int, category=None, price_range=None, info=None, exclude_ids=(), alpha: float = 3.0):
    """The query vector expanded with its ``n`` nearest product vectors
    (:func:`oscar_fashion_ai.ml.query_expansion.expand_query`, weights similarity to the power ``alpha``), found
    among the products a search with these filters could show; the vector itself when ``n`` is 0 or nothing is
    found."""
    from ..ml.query_expansion import expand_query

    vector = np.asarray(vector, dtype=np.float32)
    if n <= 0:
        return vector
    info = info or ready_model()
    with search_session(n, filtered=category is not None or price_range is not None) as alias:
        found = list(
            nearest_queryset(vector, info.version, exclude_ids, category, price_range)
            .using(alias)
            .values_list("vector", flat=True)[:n]
        )
    if not found:
        return vector
    return expand_query(vector[None], np.asarray(found, dtype=np.float32)[None], alpha=alpha)[0]


def similar_products(product, k: int, category=None, price_range=None):
    """Products that look like ``product`` (empty when it has no vector yet), nearest to its vector expanded with
    its ``SIMILAR_QUERY_EXPANSION`` nearest products (0: its vector alone; docs/PHOTO_SEARCH.md)."""
    from ..ml.query_expansion import SIMILAR_ALPHA
    from ..models import ProductEmbedding

    for _ in range(2):  # twice when the index switched models between reading the row and searching
        info = ready_model()
        with routers.search_reads(search_alias()):
            row = (
                ProductEmbedding.objects.filter(product=product, status=ProductEmbedding.Status.INDEXED)
                .only("vector", "model_version")
                .first()
            )
        if row is None or row.vector is None:
            return []
        if row.model_version == info.version:
            query = expanded_query(
                row.vector,
                int(conf.get("SIMILAR_QUERY_EXPANSION")),
                category=category,
                price_range=price_range,
                info=info,
                exclude_ids=[product.pk],
                alpha=SIMILAR_ALPHA,
            )
            found = nearest(query, k, exclude_ids=[product.pk], category=category, price_range=price_range, info=info)
            if found or ready_model().version == info.version:
                return found
    return []


def has_vector(product) -> bool:
    from ..models import ProductEmbedding

    return ProductEmbedding.objects.filter(
        product=product, status=ProductEmbedding.Status.INDEXED, vector__isnull=False
    ).exists()


def search_by_image(rgb_image, k: int, category=None):
    for _ in range(2):  # twice when the index switched models while the query was embedded
        info = ready_model()  # a model that cannot load is SearchUnavailable (503 with the reason), not a server error
        embedder = runtime.get_embedder()
        if embedder.version != info.version:
            continue
        found = nearest(embedder.embed_images([rgb_image])[0], k, category=category, info=info)
        if found or ready_model().version == info.version:
            return found
    return []


def result_dicts(results, request=None):
    """The JSON shape shared by every search endpoint."""
    out = []
    for product, score in results:
        image = product.primary_image()
        original = getattr(image, "original", None)
        image_url = original.url if original and getattr(original, "name", None) else None
        url = product.get_absolute_url()
        if request is not None:
            url = request.build_absolute_uri(url)
            image_url = request.build_absolute_uri(image_url) if image_url else None
        out.append(
            {
                "product_id": product.pk,
                "title": product.get_title(),
                "url": url,
                "image_url": image_url,
                "score": round(float(score), 6),
            }
        )
    return out
