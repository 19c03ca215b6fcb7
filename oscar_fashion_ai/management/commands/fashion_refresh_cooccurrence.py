from django.core.management.base import BaseCommand

from oscar_fashion_ai import conf
from oscar_fashion_ai.personalisation.cooccurrence import refresh


def _positive(value):
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = (
        "Relearn which products shoppers engage with together (the co-occurrence blended into recommendations) from "
        "the events of the last FASHION_AI['COOCCURRENCE_WINDOW_DAYS'] days. Schedule it daily, e.g. with Celery "
        "beat (task oscar_fashion_ai.refresh_cooccurrence; see README)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=_positive, default=None, help="event window (default: the setting)")
        parser.add_argument(
            "--neighbours", type=_positive, default=None, help="products kept per product (default: the setting)"
        )

        parser.add_argument(
            "--min-shoppers", type=_positive, default=None, help="shoppers a pair needs to count (default: the setting)"
        )

    def handle(self, *args, days=None, neighbours=None, min_shoppers=None, **options):
        stats = refresh(window_days=days, neighbours=neighbours, min_shoppers=min_shoppers)
        if not stats["rows"]:
            self.stdout.write(
                f"No two products share a shopper in the last {stats['window_days']} days yet: recommendations use "
                "the product vectors alone until they do."
            )
            return
        weight = conf.get("RECOMMENDATION_COOCCURRENCE_WEIGHT")
        note = "" if weight else " (RECOMMENDATION_COOCCURRENCE_WEIGHT is 0: recommendations do not use it)"
        self.stdout.write(
            self.style.SUCCESS(
                f"Co-occurrence from {stats['shoppers']} shoppers ({stats['window_days']} days): {stats['products']} "
                f"products, {stats['rows']} neighbour rows, {stats['seconds']:.1f} s{note}."
            )
        )
