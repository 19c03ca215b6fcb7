"""Signal receivers: keep the vector index fresh as products and images change.

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

from . import publishing

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


# --- Personalisation: shopper events -----------------------------------------------------------
import logging  # noqa: E402

from django.contrib.auth.signals import user_logged_in  # noqa: E402
from oscar.apps.basket.signals import basket_addition  # noqa: E402
from oscar.apps.catalogue.signals import product_viewed  # noqa: E402
from oscar.apps.order.signals import order_placed  # noqa: E402

from . import conf, preferences  # noqa: E402

logger = logging.getLogger(__name__)


def _shopper(request):
    """Whose event this request is, or None when nothing is to be recorded: personalisation is off, or the
    request came without a session that already holds a shopper key (a first visit, a bot without cookies).
    A browser seen for the first time is given a key, so its next views count."""
    if request is None or not conf.get("PERSONALISATION"):
        return None
    owner = preferences.owner_for_request(request)
    if owner is None:
        preferences.owner_for_request(request, create=True)
    return owner


def _safely(fn):
    """A receiver must never break or slow the shopper's request: log and carry on."""

    def wrapper(*args, **kwargs):
        try:
            fn(*args, **kwargs)
        except Exception:
            logger.exception("Fashion AI: could not record a shopper event")

    wrapper.__name__ = fn.__name__
    return wrapper


@receiver(product_viewed, dispatch_uid="fashion_ai_product_viewed")
@_safely
def on_product_viewed(sender, product, user=None, request=None, **kwargs):
    owner = _shopper(request)
    if owner is not None:
        preferences.record_event(owner, product.pk, "view")


@receiver(basket_addition, dispatch_uid="fashion_ai_basket_addition")
@_safely
def on_basket_addition(sender, product, user=None, request=None, **kwargs):
    owner = _shopper(request)
    if owner is not None:
        preferences.record_event(owner, product.pk, "basket")


@receiver(order_placed, dispatch_uid="fashion_ai_order_placed")
@_safely
def on_order_placed(sender, order, user=None, **kwargs):
    if not conf.get("PERSONALISATION"):
        return
    user = user or getattr(order, "user", None)
    if user is None or not user.is_authenticated:
        return  # guest orders carry no shopper identity
    owner = preferences.Owner(user_id=user.pk)
    for line in order.lines.all():
        if line.product_id:
            preferences.record_event(owner, line.product_id, "order")


@receiver(user_logged_in, dispatch_uid="fashion_ai_user_logged_in")
@_safely
def on_login(sender, request=None, user=None, **kwargs):
    session = getattr(request, "session", None)
    key = session.get(preferences.SESSION_KEY) if session is not None else None
    if key and user is not None:
        preferences.merge_into_user(key, user.pk)
        session.pop(preferences.SESSION_KEY, None)
