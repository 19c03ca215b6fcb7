from datetime import timedelta

from django.core.management.base import BaseCommand
from django.db.models import Max
from django.utils import timezone

from oscar_fashion_ai import conf
from oscar_fashion_ai.models import CustomerPreference, PreferenceEvent


class Command(BaseCommand):
    help = (
        "Delete anonymous shopper profiles and events older than FASHION_AI['ANONYMOUS_PROFILE_DAYS']. "
        "Schedule it daily, e.g. with Celery beat (see README)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=float, default=None)

    def handle(self, *args, days=None, **options):
        days = float(days if days is not None else conf.get("ANONYMOUS_PROFILE_DAYS"))
        cutoff = timezone.now() - timedelta(days=days)
        stale_keys = list(
            PreferenceEvent.objects.filter(user__isnull=True)
            .values("shopper_key")
            .annotate(last=Max("date_created"))
            .filter(last__lt=cutoff)
            .values_list("shopper_key", flat=True)
        )
        events, _ = PreferenceEvent.objects.filter(user__isnull=True, shopper_key__in=stale_keys).delete()
        profiles, _ = CustomerPreference.objects.filter(user__isnull=True).filter(shopper_key__in=stale_keys).delete()
        orphans, _ = CustomerPreference.objects.filter(user__isnull=True, date_updated__lt=cutoff).delete()
        self.stdout.write(
            self.style.SUCCESS(
                f"Deleted {profiles + orphans} anonymous profiles and {events} events older than {days:g} days."
            )
        )
