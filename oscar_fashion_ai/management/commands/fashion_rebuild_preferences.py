from django.core.management.base import BaseCommand

from oscar_fashion_ai.models import PreferenceEvent
from oscar_fashion_ai.personalisation import preferences


class Command(BaseCommand):
    help = (
        "Recompute shopper preference vectors from their stored events. By default only shoppers with "
        "pending (unapplied) events, e.g. after a broker outage; --all recomputes every profile."
    )

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="Recompute every profile from all its events.")

    def handle(self, *args, all=False, **options):
        qs = PreferenceEvent.objects.all() if all else PreferenceEvent.objects.filter(applied=False)
        owners = {(u, s) for u, s in qs.values_list("user_id", "shopper_key").distinct()}
        for user_id, key in owners:
            owner = preferences.Owner(user_id=user_id) if user_id else preferences.Owner(shopper_key=key)
            (preferences.rebuild if all else preferences.apply_pending)(owner)
        self.stdout.write(self.style.SUCCESS(f"Updated {len(owners)} shopper profiles."))
