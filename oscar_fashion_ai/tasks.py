"""Celery tasks: the module Celery's autodiscovery finds. The feature tasks live with their feature
(``indexing.tasks``, ``personalisation.tasks``) and are imported here; the two that span features are defined here.
Idempotent, acked late, rejected (redelivered) if the worker dies mid-batch.

No task stores a result (``ignore_result=True``): nothing reads them, and a result store that is down would
otherwise hold up every request that publishes a task. Code that queues work uses ``publishing`` (tasks by name),
never this module, so that no module imports the tasks back.
"""

from __future__ import annotations

from celery import shared_task

from .indexing.tasks import TRANSIENT, embed_products
from .personalisation.tasks import cleanup_anonymous_profiles, update_preference
from .publishing import ADAPT_CATALOG, SWEEP, enqueue_embedding

__all__ = ["TRANSIENT", "adapt_catalog", "cleanup_anonymous_profiles", "embed_products", "sweep", "update_preference"]


@shared_task(name=SWEEP, ignore_result=True)
def sweep():
    """Periodic: queue products left pending and fold pending preference events (e.g. after a broker outage)."""
    from django.core.management import call_command

    call_command("fashion_rebuild_preferences")
    from .indexing import builds, index

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
