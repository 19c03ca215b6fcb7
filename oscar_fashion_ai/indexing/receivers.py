"""Indexing receivers: keep the vector index fresh as products and images change.

Work is recorded in the database first (the product's row becomes ``pending``) and published to
the broker only after the transaction commits, so a rolled-back change queues nothing and a dead
broker loses nothing (``fashion_reindex --stale`` picks pending rows up).
"""

import threading
from contextlib import contextmanager
from functools import partial

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from oscar.core.loading import get_model

from .. import publishing

ProductImage = get_model("catalogue", "ProductImage")


_state = threading.local()


@contextmanager
def paused():
    """Suspend the per-image receivers in this thread (bulk imports queue their own batches)."""
    previous = getattr(_state, "paused", False)
    _state.paused = True
    try:
        yield
    finally:
        _state.paused = previous


def _schedule(product_id):
    if getattr(_state, "paused", False):
        return
    from .embedding import mark_pending

    mark_pending([product_id])
    transaction.on_commit(partial(publishing.enqueue_embedding_quietly, [product_id]))


@receiver(post_save, sender=ProductImage, dispatch_uid="fashion_ai_image_saved")
def image_saved(sender, instance, raw=False, **kwargs):
    if not raw:
        _schedule(instance.product_id)


@receiver(post_delete, sender=ProductImage, dispatch_uid="fashion_ai_image_deleted")
def image_deleted(sender, instance, **kwargs):
    Product = get_model("catalogue", "Product")
    # When the whole product is being deleted its embedding row goes with it (ON DELETE CASCADE).
    if Product.objects.filter(pk=instance.product_id).exists():
        _schedule(instance.product_id)
