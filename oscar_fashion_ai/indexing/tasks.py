"""The indexing task: embed a batch of products. Idempotent, acked late, rejected (redelivered) if the worker dies
mid-batch; published by name through ``oscar_fashion_ai.publishing``."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from ..publishing import EMBED_PRODUCTS
from .builds import IndexChanged

logger = logging.getLogger(__name__)

TRANSIENT = (OperationalError, InterfaceError, ConnectionError, TimeoutError, IndexChanged)

#: The options of an idempotent task: acked after it ran, redelivered when its worker dies, retried with backoff on
#: transient errors (the database or the broker away for a moment); no result stored.
RETRIED = {
    "ignore_result": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": TRANSIENT,
    "retry_backoff": True,
    "retry_jitter": True,
    "max_retries": 8,
}


@shared_task(name=EMBED_PRODUCTS, retry_backoff_max=300, **RETRIED)
def embed_products(product_ids, force=False):
    """Embed a batch of products in one forward pass and store their vectors."""
    from .embedding import embed_products as run

    counts = run(product_ids, force=force)
    logger.info("Fashion AI: embedded batch of %d: %s", len(product_ids), counts)
    return counts
