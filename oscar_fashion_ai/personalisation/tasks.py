"""Personalisation tasks: fold a shopper's pending events into their profile; expire anonymous profiles; refresh the
co-occurrence table.
Published by name through ``oscar_fashion_ai.publishing``."""

from __future__ import annotations

from celery import shared_task

from ..indexing.tasks import RETRIED
from ..publishing import CLEANUP_ANONYMOUS_PROFILES, REFRESH_COOCCURRENCE, UPDATE_PREFERENCE


@shared_task(name=UPDATE_PREFERENCE, **RETRIED)
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


@shared_task(name=REFRESH_COOCCURRENCE, ignore_result=True)
def refresh_cooccurrence():
    """Periodic: relearn which products shoppers engage with together (see README for the beat schedule)."""
    from .cooccurrence import refresh

    return refresh()
