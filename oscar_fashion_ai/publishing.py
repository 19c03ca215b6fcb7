"""Publishing work to the Celery worker, by task name.

Code that queues work (receivers, the catalog importer, reindex requests, preference events, the adaptation button)
imports this module, never ``tasks``: the tasks call back into that code, so importing them back would make an import
cycle. The task objects are looked up in the current Celery app, where ``tasks`` registered them (the app config
imports it in ``ready()``; a worker finds it by autodiscovery).

No task stores a result; publishing gives up after about two seconds on a dead or silent broker, and the work stays
pending in the database for the sweep (``fashion_reindex --stale``).
"""

from __future__ import annotations

import logging

from . import conf

logger = logging.getLogger(__name__)

EMBED_PRODUCTS = "oscar_fashion_ai.embed_products"
UPDATE_PREFERENCE = "oscar_fashion_ai.update_preference"
CLEANUP_ANONYMOUS_PROFILES = "oscar_fashion_ai.cleanup_anonymous_profiles"
REFRESH_COOCCURRENCE = "oscar_fashion_ai.refresh_cooccurrence"
SWEEP = "oscar_fashion_ai.sweep"
ADAPT_CATALOG = "oscar_fashion_ai.adapt_catalog"

PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
#: Socket timeouts of the publishing connection (Redis transport options; other transports ignore them).
PUBLISH_TIMEOUTS = {"socket_connect_timeout": 1.0, "socket_timeout": 1.0}


def task(name: str):
    """The registered task called ``name`` (what ``tasks.<name>`` resolves to)."""
    from celery import current_app

    return current_app.tasks[name]


def _publish(name: str, calls):
    """Publish the task ``name`` once per (args, kwargs) in ``calls`` on one short-lived connection with short
    timeouts, whatever the shop's own broker settings."""
    target = task(name)
    with target.app.connection_for_write(transport_options=PUBLISH_TIMEOUTS) as connection:
        for args, kwargs in calls:
            target.apply_async(
                args=args,
                kwargs=kwargs,
                queue=conf.get("QUEUE"),
                connection=connection,
                retry=True,
                retry_policy=PUBLISH_RETRY,
            )


def enqueue_embedding(product_ids, force=False):
    """Publish embedding work in batches of ``FASHION_AI["BATCH_SIZE"]``. Raises if the broker is down."""
    ids = sorted(set(int(pk) for pk in product_ids))
    size = max(int(conf.get("BATCH_SIZE")), 1)
    if ids:
        _publish(
            EMBED_PRODUCTS, [([ids[start : start + size]], {"force": force}) for start in range(0, len(ids), size)]
        )
    return len(ids)


def enqueue_embedding_quietly(product_ids, force=False):
    """For signal receivers: never raise into the request. Pending rows stay for ``fashion_reindex --stale``."""
    try:
        enqueue_embedding(product_ids, force=force)
    except Exception as exc:  # noqa: BLE001 - any broker failure
        logger.error(
            "Fashion AI: broker unavailable, %d products left pending for the next sweep: %s", len(product_ids), exc
        )


def enqueue_cooccurrence_refresh():
    """Publish a co-occurrence refresh (the dashboard's button; Celery beat sends the same task). Raises if the broker
    is down."""
    _publish(REFRESH_COOCCURRENCE, [((), {})])


def enqueue_preference_update(owner):
    """Publish a preference update; on a dead broker the events stay pending (rebuild picks them up)."""
    try:
        _publish(UPDATE_PREFERENCE, [(owner.as_task_args(), {})])
    except Exception as exc:  # noqa: BLE001
        logger.error("Fashion AI: broker unavailable, preference update left pending: %s", exc)
