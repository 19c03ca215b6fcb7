"""The shop's co-occurrence table (item-kNN): learnt from its shoppers' events, blended into recommendations.

:func:`refresh` (``fashion_refresh_cooccurrence``, the periodic task ``oscar_fashion_ai.refresh_cooccurrence``)
groups the events of the last ``COOCCURRENCE_WINDOW_DAYS`` by shopper, computes each product's
``COOCCURRENCE_NEIGHBOURS`` most co-occurring products among those sharing at least ``COOCCURRENCE_MIN_SHOPPERS``
shoppers with it (:func:`oscar_fashion_ai.ml.cooccurrence.neighbours`) and
replaces :class:`~oscar_fashion_ai.models.ProductNeighbour` in one transaction, so recommendations read either the
old table or the new one. :func:`table_for` reads the rows of a shopper's remembered products.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import numpy as np
from django.db import transaction
from django.utils import timezone

from .. import conf
from ..ml import cooccurrence

logger = logging.getLogger(__name__)
BATCH = 5000


def baskets(since):
    """The set of products each shopper (account or anonymous key) engaged with since ``since``."""
    from ..models import PreferenceEvent

    out: dict = {}
    rows = PreferenceEvent.objects.filter(date_created__gte=since).values_list("user_id", "shopper_key", "product_id")
    for user_id, shopper_key, product_id in rows.iterator(chunk_size=BATCH):
        owner = ("u", user_id) if user_id is not None else ("s", shopper_key)
        out.setdefault(owner, set()).add(product_id)
    return list(out.values())


def refresh(window_days=None, neighbours=None, min_shoppers=None) -> dict:
    """Recompute and replace the co-occurrence table; returns what it did (shoppers, products, rows, seconds)."""
    from ..models import ProductNeighbour

    start = time.monotonic()
    window_days = int(window_days or conf.get("COOCCURRENCE_WINDOW_DAYS"))
    neighbours = int(neighbours or conf.get("COOCCURRENCE_NEIGHBOURS"))
    min_shoppers = int(min_shoppers or conf.get("COOCCURRENCE_MIN_SHOPPERS"))
    groups = baskets(timezone.now() - timedelta(days=window_days))
    table = cooccurrence.neighbours(groups, top_n=neighbours, min_count=min_shoppers)
    now = timezone.now()
    rows = [
        ProductNeighbour(product_id=product, neighbour_id=int(other), score=float(score), date_refreshed=now)
        for product, (ids, scores) in table.items()
        for other, score in zip(ids, scores)
    ]
    with transaction.atomic():
        ProductNeighbour.objects.all().delete()
        ProductNeighbour.objects.bulk_create(rows, batch_size=BATCH)
    stats = {
        "shoppers": len(groups),
        "products": len(table),
        "rows": len(rows),
        "window_days": window_days,
        "neighbours": neighbours,
        "min_shoppers": min_shoppers,
        "seconds": round(time.monotonic() - start, 2),
    }
    logger.info("Fashion AI: co-occurrence refreshed: %s", stats)
    return stats


def table_for(product_ids) -> dict:
    """{product: (neighbour ids, scores)} of ``product_ids``, the form :func:`ml.cooccurrence.interest_scores` reads."""
    from ..models import ProductNeighbour

    grouped: dict = {}
    rows = ProductNeighbour.objects.filter(product_id__in=list(product_ids)).values_list(
        "product_id", "neighbour_id", "score"
    )
    for product, other, score in rows:
        grouped.setdefault(product, ([], []))
        grouped[product][0].append(other)
        grouped[product][1].append(score)
    return {p: (np.asarray(ids), np.asarray(scores, dtype=np.float64)) for p, (ids, scores) in grouped.items()}


def status() -> dict:
    """What the dashboard shows: the table's size, when it was last refreshed, and the settings that use it."""
    from django.db.models import Count, Max

    from ..models import ProductNeighbour

    summary = ProductNeighbour.objects.aggregate(
        rows=Count("pk"), products=Count("product_id", distinct=True), refreshed=Max("date_refreshed")
    )
    return {
        **summary,
        "weight": conf.get("RECOMMENDATION_COOCCURRENCE_WEIGHT"),
        "min_shoppers": conf.get("COOCCURRENCE_MIN_SHOPPERS"),
        "window_days": conf.get("COOCCURRENCE_WINDOW_DAYS"),
        "personalisation": conf.get("PERSONALISATION"),
    }
