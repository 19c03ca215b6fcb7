import json
from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = ("Measure retrieval quality. --task image: P@5 and mAP@10 (relevant = same category, query excluded, "
            "whole catalog as gallery). Without --source it evaluates the store's own index (test-split products, "
            "found by UPC); with --source it embeds the data set's files directly.")

    def add_arguments(self, parser):
        parser.add_argument("--task", choices=["image"], default="image")
        parser.add_argument("--source", type=Path, default=None)
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args, task, source=None, json=False, **options):
        from oscar_fashion_ai import embedding

        try:
            embedder = embedding.get_embedder()
        except embedding.ModelUnavailable as exc:
            raise CommandError(str(exc)) from exc
        if source is not None:
            from oscar_fashion_ai.ml.datasets import SourceError
            from oscar_fashion_ai.ml.evaluate import evaluate_image_retrieval

            try:
                result = evaluate_image_retrieval(embedder, source, progress=not json and options["verbosity"] > 0)
            except SourceError as exc:
                raise CommandError(str(exc)) from exc
        else:
            result = self._evaluate_index(embedder)
        self._print(result, json)

    def _evaluate_index(self, embedder):
        from oscar_fashion_ai.ml import datasets, metrics
        from oscar_fashion_ai.models import ProductEmbedding

        rows = list(
            ProductEmbedding.objects.filter(status="indexed", model_version=embedder.version)
            .select_related("product")
            .prefetch_related("product__categories")
        )
        rows = [r for r in rows if r.product.categories.all()]
        if not rows:
            raise CommandError("The index is empty for the configured model; run `fashion_reindex` first "
                               "(or pass --source to evaluate on files).")
        vecs = np.asarray([r.vector for r in rows], dtype=np.float32)
        labels = np.array([r.product.categories.all()[0].name for r in rows])
        q = np.flatnonzero([datasets.is_test(r.product.upc or str(r.product_id)) for r in rows])
        if not len(q):
            raise CommandError("No indexed product falls in the test split.")
        result = metrics.category_retrieval(vecs[q], labels[q], vecs, labels, query_gallery_index=q)
        return {"task": "image", **result, "model_version": embedder.version, "source": "store index"}

    def _print(self, result, as_json):
        if as_json:
            self.stdout.write(json.dumps(result))
            return
        self.stdout.write(
            f"{result['task']} retrieval on {result['source']}: P@5 {result['p_at_5']:.4f}, "
            f"mAP@10 {result['map_at_10']:.4f} ({result['queries']} queries, gallery {result['gallery']}, "
            f"model {result['model_version']})")
