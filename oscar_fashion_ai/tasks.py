"""Celery tasks. Idempotent, acked late, rejected (redelivered) if the worker dies mid-batch.

No task stores a result (``ignore_result=True``): nothing reads them, and a result store that is down would
otherwise hold up every request that publishes a task. Publishing gives up after about two seconds on a dead or
silent broker; the work stays pending in the database for the sweep (``fashion_reindex --stale``).
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import conf
from .builds import IndexChanged

logger = logging.getLogger(__name__)

TRANSIENT = (OperationalError, InterfaceError, ConnectionError, TimeoutError, IndexChanged)
PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
#: Socket timeouts of the publishing connection (Redis transport options; other transports ignore them).
PUBLISH_TIMEOUTS = {"socket_connect_timeout": 1.0, "socket_timeout": 1.0}


def _publish(task, calls):
    """Publish ``task`` once per (args, kwargs) in ``calls`` on one short-lived connection with short timeouts,
    whatever the shop's own broker settings."""
    with task.app.connection_for_write(transport_options=PUBLISH_TIMEOUTS) as connection:
        for args, kwargs in calls:
            task.apply_async(args=args, kwargs=kwargs, queue=conf.get("QUEUE"), connection=connection, retry=True,
                             retry_policy=PUBLISH_RETRY)


@shared_task(
    name="oscar_fashion_ai.embed_products",
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


def mark_pending(product_ids):
    from .embedding import mark_pending as run

    run(product_ids)


def enqueue_embedding(product_ids, force=False):
    """Publish embedding work in batches of ``FASHION_AI["BATCH_SIZE"]``. Raises if the broker is down."""
    ids = sorted(set(int(pk) for pk in product_ids))
    size = max(int(conf.get("BATCH_SIZE")), 1)
    if ids:
        _publish(embed_products,
                 [([ids[start : start + size]], {"force": force}) for start in range(0, len(ids), size)])
    return len(ids)


def enqueue_embedding_quietly(product_ids, force=False):
    """For signal receivers: never raise into the request. Pending rows stay for ``fashion_reindex --stale``."""
    try:
        enqueue_embedding(product_ids, force=force)
    except Exception as exc:  # noqa: BLE001 - any broker failure
        logger.error("Fashion AI: broker unavailable, %d products left pending for the next sweep: %s",
                     len(product_ids), exc)


@shared_task(
    name="oscar_fashion_ai.update_preference",
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


def enqueue_preference_update(owner):
    """Publish a preference update; on a dead broker the events stay pending (rebuild picks them up)."""
    try:
        _publish(update_preference, [(owner.as_task_args(), {})])
    except Exception as exc:  # noqa: BLE001
        logger.error("Fashion AI: broker unavailable, preference update left pending: %s", exc)


@shared_task(name="oscar_fashion_ai.cleanup_anonymous_profiles", ignore_result=True)
def cleanup_anonymous_profiles():
    """Periodic: delete expired anonymous profiles (see README for the beat schedule)."""
    from django.core.management import call_command

    call_command("fashion_cleanup_preferences")


@shared_task(name="oscar_fashion_ai.sweep", ignore_result=True)
def sweep():
    """Periodic: queue products left pending and fold pending preference events (e.g. after a broker outage)."""
    from django.core.management import call_command

    call_command("fashion_rebuild_preferences")
    from . import builds, index

    if builds.state().building is not None and builds.complete():  # a switch postponed by busy tables
        builds.try_activate()
    ids = index.products_needing_index("stale")
    enqueue_embedding(ids)


@shared_task(name="oscar_fashion_ai.adapt_catalog", bind=True, acks_late=True, reject_on_worker_lost=True)
def adapt_catalog(self, run_id):
    """The dashboard's "Adapt to my catalog": train, measure and (if better) install a photo model, then reindex.
    Goes to ``FASHION_AI["TRAINING_QUEUE"]``; a redelivered message resumes from the last checkpoint."""
    from .adaptation import run_queued
    from .models import AdaptationRun

    if not AdaptationRun.objects.filter(pk=run_id).exists():  # published before the request's transaction committed
        raise self.retry(countdown=2, max_retries=30)
    return run_queued(run_id)
