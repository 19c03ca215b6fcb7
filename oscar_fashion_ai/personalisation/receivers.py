"""Personalisation receivers: Oscar's product-view, basket, order and login signals become shopper events.

Nothing is recorded (and nothing merged at login) with ``FASHION_AI["PERSONALISATION"]`` off, nor for a request
without a session cookie; a receiver never breaks or slows the shopper's request (errors are logged).
"""

import logging

from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from oscar.apps.basket.signals import basket_addition
from oscar.apps.catalogue.signals import product_viewed
from oscar.apps.order.signals import order_placed

from .. import conf
from . import preferences

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


_PRODUCT_EVENT_KINDS = {product_viewed: "view", basket_addition: "basket"}


@receiver(product_viewed, dispatch_uid="fashion_ai_product_viewed")
@receiver(basket_addition, dispatch_uid="fashion_ai_basket_addition")
@_safely
def on_product_event(sender, signal, product, user=None, request=None, **kwargs):
    """A product view or a basket addition: one event of that kind for the request's shopper."""
    owner = _shopper(request)
    if owner is not None:
        preferences.record_event(owner, product.pk, _PRODUCT_EVENT_KINDS[signal])


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
    """The anonymous shopper's events become the account's (nothing is merged with personalisation off)."""
    if not conf.get("PERSONALISATION"):
        return
    session = getattr(request, "session", None)
    key = session.get(preferences.SESSION_KEY) if session is not None else None
    if key and user is not None:
        preferences.merge_into_user(key, user.pk)
        session.pop(preferences.SESSION_KEY, None)
