"""Celery tasks. Idempotent, acked late, rejected (redelivered) if the worker dies mid-batch.

No task stores a result (``ignore_result=True``): nothing reads them, and a result store that is down would
otherwise hold up every request that publishes a task. Code that queues work uses ``publishing`` (tasks by name),
never this module, so that no module imports the tasks back.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from .builds import IndexChanged
from .publishing import (
    ADAPT_CATALOG,
    CLEANUP_ANONYMOUS_PROFILES,
    EMBED_PRODUCTS,
    SWEEP,
    UPDATE_PREFERENCE,
    enqueue_embedding,
)

logger = logging.getLogger(__name__)

TRANSIENT = (OperationalError, InterfaceError, ConnectionError, TimeoutError, IndexChanged)


@shared_task(
    name=EMBED_PRODUCTS,
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=8,
)
def embed_products(product_ids, force=False):
    """Embed a batch of products in one forward pass and store their vectors."""
    from .embedding import embed_products as run

    counts = run(product_ids, force=force)
    logger.info("Fashion AI: embedded batch of %d: %s", len(product_ids), counts)
    return counts


@shared_task(
    name=UPDATE_PREFERENCE,
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_jitter=True,
    max_retries=8,
)
def update_preference(user_id=None, shopper_key=None):
    """Fold a shopper's pending events into their preference vector."""
    from .preferences import Owner, apply_pending

    pref = apply_pending(Owner(user_id=user_id, shopper_key=shopper_key))
    return {"events": pref.event_count}


@shared_task(name=CLEANUP_ANONYMOUS_PROFILES, ignore_result=True)
def cleanup_anonymous_profiles():
    """Periodic: delete expired anonymous profiles (see README for the beat schedule)."""
    from django.core.management import call_command

    call_command("fashion_cleanup_preferences")


@shared_task(name=SWEEP, ignore_result=True)
def sweep():
    """Periodic: queue products left pending and fold pending preference events (e.g. after a broker outage)."""
    from django.core.management import call_command

    call_command("fashion_rebuild_preferences")
    from . import builds, index

    if builds.state().building is not None and builds.complete():  # a switch postponed by busy tables
        builds.try_activate()
    ids = index.products_needing_index("stale")
    enqueue_embedding(ids)


@shared_task(name=ADAPT_CATALOG, bind=True, acks_late=True, reject_on_worker_lost=True)
def adapt_catalog(self, run_id):
    """The dashboard's "Adapt to my catalog": train, measure and (if better) install a photo model, then reindex.
    Goes to ``FASHION_AI["TRAINING_QUEUE"]``; a redelivered message resumes from the last checkpoint."""
    from .adaptation import run_queued
    from .models import AdaptationRun

    if not AdaptationRun.objects.filter(pk=run_id).exists():  # published before the request's transaction committed
        raise self.retry(countdown=2, max_retries=30)
    return run_queued(run_id)
