import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from oscar_fashion_ai import conf
from oscar_fashion_ai.catalog_import import CatalogImporter, SourceError


class Command(BaseCommand):
    help = "Import a labelled image set (images.csv + images/, or <category>/<file>.jpg) as Oscar products."

    def add_arguments(self, parser):
        parser.add_argument(
            "--source",
            type=Path,
            help="Data set folder (default: FASHION_AI DATASET_PATH, "
            "else the FASHION_AI_DATASET environment variable).",
        )
        parser.add_argument("--limit", type=int, default=None, help="Import at most N products.")
        parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")

    def handle(self, *args, source=None, limit=None, no_progress=False, **options):
        source = source or conf.dataset_path()
        if source is None:
            raise CommandError("No --source given and no default data set found (set FASHION_AI_DATASET).")
        if limit is not None and limit < 0:
            raise CommandError("--limit must be zero or positive")
        started = time.monotonic()
        self.stdout.write(f"Importing {source} ...")
        try:
            report = CatalogImporter(stdout_progress=not no_progress).run(Path(source), limit=limit)
        except SourceError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(report.summary())
        self.stdout.write(self.style.SUCCESS(f"Done in {time.monotonic() - started:.1f} s."))
        return None
