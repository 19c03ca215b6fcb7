import time

from django.core.management.base import BaseCommand, CommandError

from oscar_fashion_ai import conf
from oscar_fashion_ai.indexing import index


class Command(BaseCommand):
    help = "Queue (or, with --sync, run in-process) Image2Vec indexing of products."

    def add_arguments(self, parser):
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument("--all", dest="scope", action="store_const", const="all", help="Every product.")
        scope.add_argument(
            "--stale",
            dest="scope",
            action="store_const",
            const="stale",
            help="Products never indexed, pending, or indexed by another model (default).",
        )
        scope.add_argument(
            "--failed", dest="scope", action="store_const", const="failed", help="Products whose last attempt failed."
        )
        parser.add_argument("--category", help="Only products in the category with this slug.")
        parser.add_argument("--sync", action="store_true", help="Embed in this process; no broker or worker needed.")
        parser.add_argument(
            "--tune-index",
            action="store_true",
            help="Only rebuild the HNSW index (concurrently: search keeps working) if its m / "
            "ef_construction are not the ones for the catalog size (docs/SCALING.md); "
            "embeds nothing. --all --sync does this at its end.",
        )
        parser.add_argument(
            "--rebuild-index",
            action="store_true",
            help="Like --tune-index, but rebuild even when the parameters already match.",
        )
        parser.set_defaults(scope="stale")

    def tune(self, force=False):
        from oscar_fashion_ai.indexing import hnsw

        try:
            result = hnsw.tune_index(force=force)
        except LookupError as exc:
            raise CommandError(str(exc)) from exc
        before, after = result["before"], result["after"]
        if result["rebuilt"]:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Rebuilt the HNSW index for {result['rows']:,} vectors in {result['seconds']:.1f} s: "
                    f"m {before['m']} -> {after['m']}, ef_construction {before['ef_construction']} -> "
                    f"{after['ef_construction']} (maintenance_work_mem {result['maintenance_work_mem']})."
                )
            )
        else:
            self.stdout.write(
                f"The HNSW index already has m {after['m']}, ef_construction "
                f"{after['ef_construction']}, the parameters for {result['rows']:,} vectors."
            )
        return result

    def handle(self, *args, scope, category=None, sync=False, tune_index=False, rebuild_index=False, **options):
        from oscar.core.loading import get_model

        if tune_index or rebuild_index:
            self.tune(force=rebuild_index)
            return

        if category and not get_model("catalogue", "Category").objects.filter(slug=category).exists():
            raise CommandError(f"No category with slug {category!r}.")
        started = time.monotonic()
        if not sync:
            try:
                count = index.request_reindex(scope=scope, requested_by="fashion_reindex", category_slug=category)
            except index.BrokerUnavailable as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(self.style.SUCCESS(f"Queued {count} products ({scope}); a worker will index them."))
            status = index.build_status()
            if status is not None:
                self.stdout.write(
                    f"They get vectors of {status['version']}; search keeps using "
                    f"{status['serving'] or 'the model in use'} until every product is done."
                )
            return
        from tqdm import tqdm

        from oscar_fashion_ai import runtime
        from oscar_fashion_ai.indexing import builds, embedding
        from oscar_fashion_ai.models import IndexRun

        try:
            info = runtime.model_info()
            ids, force, build = index.prepare_reindex(scope, category, requested_by="fashion_reindex --sync")
        except runtime.ModelUnavailable as exc:
            raise CommandError(str(exc)) from exc
        if build is None and embedding.ensure_dimensions(info.dim):
            self.stdout.write(f"Resized the index to {info.dim}-d vectors; every product will be reindexed.")
            scope = "all" if scope == "stale" else scope
            ids, force = index.products_needing_index(scope, category), True
        if build is not None:
            self.stdout.write(
                f"Indexing with {build.version}; search keeps using "
                f"{builds.state().active.version if builds.state().active else 'the model in use'} "
                "until every product is done."
            )
            info = runtime.embedder_for(build).info
        totals = {"indexed": 0, "skipped": 0, "failed": 0}
        batch = max(int(conf.get("BATCH_SIZE")), 1)
        with tqdm(total=len(ids), desc="Indexing", unit="product", disable=options["verbosity"] < 1) as bar:
            for start in range(0, len(ids), batch):
                chunk = ids[start : start + batch]
                for key, value in embedding.embed_products(chunk, force=force).items():
                    totals[key] += value
                bar.update(len(chunk))
        IndexRun.objects.create(
            requested_by="fashion_reindex --sync",
            scope=scope if build is None else f"{scope} (new model)",
            products=len(ids),
        )
        elapsed = time.monotonic() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(ids)} products in {elapsed:.1f} s: indexed {totals['indexed']}, unchanged {totals['skipped']}, "
                f"failed {totals['failed']} (model {info.version})."
            )
        )
        if build is not None:
            if builds.state().building is not None and builds.complete():
                builds.try_activate()
            state = builds.state()
            if state.active is not None and state.active.pk == build.pk:
                self.stdout.write(self.style.SUCCESS(f"Search now uses {build.version}."))
            else:
                self.stdout.write(
                    "Some products are still pending: search keeps the model in use until they are "
                    "done (`fashion_reindex --stale`)."
                )
        if totals["failed"]:
            self.stdout.write("Failures are listed on the dashboard's Fashion AI page and in the admin.")
        if scope == "all" and not category:
            from oscar_fashion_ai.indexing import hnsw

            hnsw.forget_catalog_size()
            self.tune()
