import json
from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Measure retrieval quality. --task image: P@5 and mAP@10 (relevant = same category, query excluded, "
        "whole catalog as gallery). Without --source it evaluates the store's own index (test-split products, "
        "found by UPC); with --source it embeds the data set's files directly."
    )

    def add_arguments(self, parser):
        parser.add_argument("--task", choices=["image", "sketch", "recommend"], default="image")
        parser.add_argument(
            "--sketches",
            type=Path,
            default=None,
            help="sketch: folder of human drawings laid out as DIR/<label>/<file>.png",
        )
        parser.add_argument("--map", default="", help="sketch: label=category,... for --sketches folder names")
        parser.add_argument(
            "--pipeline",
            choices=["configured", "direct", "gan", "fusion", "all"],
            default="configured",
            help="sketch: how drawings become vectors (default: FASHION_AI['SKETCH_PIPELINE']); "
            "'all' adds an 'ablation' object with every pipeline",
        )
        parser.add_argument(
            "--drawings",
            choices=["xdog", "edges", "hed", "outline", "abstract", "doodle"],
            default="xdog",
            help="sketch: style of the synthetic drawings of the test-split products: edge maps "
            "(xdog, edges, hed; hed needs its weights, see ml/hed.py) or drawings like people "
            "make from memory (outline, abstract, doodle; ml/sketches.py). The result has acc@1 "
            "and acc@10 (the drawn product itself found) beside category P@5.",
        )
        parser.add_argument(
            "--expansion",
            type=int,
            default=None,
            help="query expansion neighbours (image, store index: default FASHION_AI['SIMILAR_QUERY_EXPANSION'], "
            "as 'Similar products' ranks; sketch: default FASHION_AI['SKETCH_QUERY_EXPANSION']; 0 = off). "
            "With expansion the JSON also has 'plain_similarity'.",
        )
        parser.add_argument(
            "--category-boost",
            type=float,
            default=None,
            help="sketch: score bonus for results sharing the best match's category (default: "
            "FASHION_AI['SKETCH_CATEGORY_BOOST']; 0 = off). The JSON also has "
            "'plain_similarity': the same drawings with neither expansion nor boost.",
        )
        parser.add_argument(
            "--write-card",
            action="store_true",
            help="sketch, with --pipeline all: record the ablation in the generator's model card",
        )
        parser.add_argument(
            "--shoppers", type=int, default=2000, help="recommend: simulated shoppers evaluated (per simulation)"
        )
        parser.add_argument(
            "--simulation",
            choices=["cc0", "studio", "both"],
            default="both",
            help="recommend: cc0 = the store's index with favourite categories x colour tone; studio "
            "= the studio catalog's files with attribute-defined interests, drift and noise",
        )
        parser.add_argument(
            "--split",
            choices=["validation", "test"],
            default="test",
            help="recommend: which seeded group of shoppers (settings are chosen on validation)",
        )
        parser.add_argument(
            "--population",
            type=int,
            default=1000,
            help="recommend: other simulated shoppers whose histories teach item-kNN and popularity",
        )
        parser.add_argument(
            "--studio",
            type=Path,
            default=None,
            help="recommend: the studio catalog folder (images.csv + images/; default: the "
            "FASHION_AI_STUDIO_DATASET environment variable)",
        )
        parser.add_argument(
            "--tune",
            action="store_true",
            help="recommend: score the settings grid of the multi-interest model instead (use with --split validation)",
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--source", type=Path, default=None)
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args, task, source=None, json=False, **options):
        from oscar_fashion_ai import runtime

        try:
            embedder = runtime.get_embedder()
        except runtime.ModelUnavailable as exc:
            raise CommandError(str(exc)) from exc
        if task == "sketch":
            result = self._evaluate_sketch(
                embedder,
                options["sketches"],
                options["map"],
                options["pipeline"],
                options["drawings"],
                options["expansion"],
                options["category_boost"],
            )
            if options["write_card"]:
                self._write_card(result)
            return self._print(result, json)
        if task == "recommend":
            from oscar_fashion_ai.personalisation import recommend_evaluation

            sims = ("cc0", "studio") if options["simulation"] == "both" else (options["simulation"],)
            if options["tune"] and options["split"] != "validation":
                raise CommandError("--tune chooses settings: run it on --split validation.")
            if options["shoppers"] < 2 or options["population"] < 1:
                raise CommandError("--shoppers must be at least 2 and --population at least 1.")
            try:
                result = recommend_evaluation.run(
                    embedder,
                    sims,
                    split=options["split"],
                    shoppers=options["shoppers"],
                    population=options["population"],
                    seed=options["seed"],
                    studio=options["studio"],
                    tune=options["tune"],
                )
            except recommend_evaluation.EvaluationError as exc:
                raise CommandError(str(exc)) from exc
            return self._print(result, json)
        if source is not None:
            from oscar_fashion_ai.ml.datasets import SourceError
            from oscar_fashion_ai.ml.evaluate import evaluate_image_retrieval

            try:
                result = evaluate_image_retrieval(embedder, source, progress=not json and options["verbosity"] > 0)
            except SourceError as exc:
                raise CommandError(str(exc)) from exc
        else:
            result = self._evaluate_index(embedder, options["expansion"])
        self._print(result, json)

    def _evaluate_index(self, embedder, expansion=None):
        """P@5 of the test-split products as "Similar products" ranks them: each product's vector expanded with its
        ``SIMILAR_QUERY_EXPANSION`` nearest products (exact search over the stored vectors), itself left out."""
        from oscar_fashion_ai import conf
        from oscar_fashion_ai.ml import datasets, metrics, query_expansion
        from oscar_fashion_ai.models import ProductEmbedding

        rows = list(
            ProductEmbedding.objects.filter(status="indexed", model_version=embedder.version)
            .select_related("product")
            .prefetch_related("product__categories")
        )
        rows = [r for r in rows if r.product.categories.all()]
        if not rows:
            raise CommandError(
                "The index is empty for the configured model; run `fashion_reindex` first "
                "(or pass --source to evaluate on files)."
            )
        vecs = np.asarray([r.vector for r in rows], dtype=np.float32)
        labels = np.array([r.product.categories.all()[0].name for r in rows])
        q = np.flatnonzero([datasets.is_test(r.product.upc or str(r.product_id)) for r in rows])
        if not len(q):
            raise CommandError("No indexed product falls in the test split.")
        n = int(conf.get("SIMILAR_QUERY_EXPANSION") if expansion is None else expansion)
        if n < 0:
            raise CommandError("--expansion must be 0 or more.")
        queries = query_expansion.expand_in_gallery(vecs[q], vecs, n, exclude=q)
        result = metrics.category_retrieval(queries, labels[q], vecs, labels, query_gallery_index=q)
        out = {"task": "image", **result, "model_version": embedder.version, "source": "store index"}
        out["query_expansion"] = n
        if n:
            out["plain_similarity"] = metrics.category_retrieval(
                vecs[q], labels[q], vecs, labels, query_gallery_index=q
            )
        return out

    def _gallery(self, embedder):
        from oscar_fashion_ai.models import ProductEmbedding

        rows = list(
            ProductEmbedding.objects.filter(status="indexed", model_version=embedder.version)
            .select_related("product", "image")
            .prefetch_related("product__categories")
            .order_by("product_id")
        )
        rows = [r for r in rows if r.product.categories.all()]
        if not rows:
            raise CommandError("The index is empty for the configured model; run `fashion_reindex` first.")
        vecs = np.asarray([r.vector for r in rows], dtype=np.float32)
        labels = np.array([r.product.categories.all()[0].name for r in rows])
        return rows, vecs, labels

    def _evaluate_sketch(
        self,
        embedder,
        sketches_dir,
        mapping,
        pipeline="configured",
        drawings="xdog",
        expansion=None,
        category_boost=None,
    ):
        """Drawings (synthetic from the test split, or human from --sketches) against the store's photo index."""
        from PIL import Image

        from oscar_fashion_ai import conf, runtime
        from oscar_fashion_ai.ml import (
            datasets,
            evaluate,
            hed,
            metrics,
            preprocessing,
            query_expansion,
            sketch_pipeline,
            sketches,
        )
        from oscar_fashion_ai.ml.sketch_input import BlankSketch

        expansion = int(conf.get("SKETCH_QUERY_EXPANSION") if expansion is None else expansion)
        if expansion < 0:
            raise CommandError("--expansion must be 0 (off) or a number of neighbours")
        boost = float(conf.get("SKETCH_CATEGORY_BOOST") if category_boost is None else category_boost)
        depth = int(conf.get("SKETCH_RERANK_DEPTH"))
        if not 0 <= boost <= 1:
            raise CommandError("--category-boost must be between 0 (off) and 1")

        generator = runtime.get_generator()
        sketch_embedder = runtime.get_sketch_embedder()
        size = sketch_embedder.info.image_size
        configured = conf.get("SKETCH_PIPELINE") if generator is not None else "direct"
        names = {"configured": [configured], "all": list(sketch_pipeline.PIPELINES)}.get(pipeline, [pipeline])
        if generator is None and set(names) - {"direct"}:
            if pipeline not in ("configured", "all"):
                raise CommandError("The sketch generator is not available (see the log); only --pipeline direct works.")
            names = ["direct"]
        rows, vecs, labels = self._gallery(embedder)
        direct, for_gan, query_labels, sources = [], [], [], []
        if sketches_dir is None:
            for i, r in enumerate(rows):
                if r.image is None or not datasets.is_test(r.product.upc or str(r.product_id)):
                    continue
                with r.image.original.open("rb") as fh:
                    photo = preprocessing.open_image(fh.read(), decode_size=sketches.DRAW_RES)
                try:
                    direct.append(evaluate.synthetic_sketch(photo, size, drawings, seed=i))
                    if generator is not None and set(names) != {"direct"}:
                        for_gan.append(evaluate.synthetic_sketch(photo, generator.image_size, drawings, seed=i))
                except hed.HEDUnavailable as exc:
                    raise CommandError(str(exc)) from exc
                query_labels.append(labels[i])
                sources.append(i)
            kind = (
                f"synthetic {dict(xdog='XDoG', edges='edge-map', hed='HED').get(drawings, drawings)} drawings of "
                "the test split"
            )
        else:
            categories = {c.casefold(): c for c in set(labels)}
            aliases = dict(part.split("=", 1) for part in mapping.split(",") if "=" in part)
            for path in sorted(Path(sketches_dir).glob("*/*.png")):
                label = aliases.get(path.parent.name, path.parent.name)
                category = categories.get(label.casefold())
                if category is None:
                    continue
                try:
                    d, g = sketch_pipeline.prepare(Image.open(path), embedder, generator, sketch_embedder)
                except (BlankSketch, OSError):
                    continue
                direct.append(d)
                for_gan.append(g)
                query_labels.append(category)
            sources = None
            kind = f"human drawings from {Path(sketches_dir).name}"
        if not direct:
            raise CommandError("No sketch queries: no test-split products indexed, or no matching label folders.")
        weight = float(conf.get("SKETCH_FUSION_WEIGHT"))
        results, plain = {}, {}
        for name in names:
            qv, _ = sketch_pipeline.vectors(embedder, generator, direct, for_gan, name, weight, sketch_embedder)
            plain[name] = evaluate.sketch_retrieval(qv, query_labels, vecs, labels, source_index=sources)
            if expansion > 0:
                qv = query_expansion.expand_query(qv, vecs[metrics.neighbours(qv, vecs, expansion)])
            results[name] = evaluate.sketch_retrieval(
                qv, query_labels, vecs, labels, source_index=sources, category_boost=boost, rerank_depth=depth
            )
        main = configured if configured in results else names[0]
        encoder = sketch_embedder.version if sketch_embedder is not embedder else None
        out = {
            "task": "sketch",
            **results[main],
            "pipeline": main,
            "query_expansion": expansion,
            "category_boost": boost,
            "rerank_depth": depth,
            "model_version": embedder.version,
            "sketch_encoder_version": encoder,
            "generator_version": generator.version if generator is not None else None,
            "source": kind,
        }
        if expansion > 0 or boost > 0:
            out["plain_similarity"] = plain[main]
        if pipeline == "all":
            out["ablation"] = results
            out["fusion_weight"] = weight
        return out

    def _write_card(self, result):
        """Record the GAN / direct / fusion ablation in the generator's model card (its weights are untouched)."""
        import json as json_module
        import platform
        from datetime import UTC, datetime

        from oscar_fashion_ai import runtime

        generator = runtime.get_generator()
        if "ablation" not in result or generator is None:
            raise CommandError("--write-card needs --pipeline all and a working generator.")
        card_path = generator.path.with_suffix(".card.json")
        card = json_module.loads(card_path.read_text()) if card_path.exists() else {}
        card.setdefault("metrics", {})["retrieval_ablation"] = {
            "task": result["source"],
            "embedder": result["model_version"],
            "fusion_weight": result["fusion_weight"],
            "sketch_encoder": result["sketch_encoder_version"],
            "query_expansion": result["query_expansion"],
            "category_boost": result["category_boost"],
            "rerank_depth": result["rerank_depth"],
            "pipelines": result["ablation"],
            "default": result["pipeline"],
            "direct_plain_similarity": result.get("plain_similarity"),
            "command": "manage.py fashion_evaluate --task sketch --pipeline all --write-card",
            "machine": f"{platform.platform()}, {platform.machine()}",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        card_path.write_text(json_module.dumps(card, indent=2) + "\n")

    def _print(self, result, as_json):
        if as_json:
            self.stdout.write(json.dumps(result))
            return
        if result["task"] == "sketch":
            hits = "".join(
                f", source in top {n}: {result[f'source_hit_at_{n}']:.3f}"
                for n in (1, 5, 10)
                if f"source_hit_at_{n}" in result
            )
            if "source_hit_at_1" in result:
                hits += (
                    f" (acc@1 {result['source_hit_at_1']:.3f}, acc@10 {result['source_hit_at_10']:.3f}: the "
                    f"drawn product itself; P@5 with it left out of the gallery "
                    f"{result['p_at_5_source_excluded']:.4f})"
                )
            self.stdout.write(
                f"sketch retrieval ({result['source']}, pipeline {result['pipeline']}): "
                f"P@5 {result['p_at_5']:.4f} (standard error {result.get('p_at_5_se', 0):.4f}){hits} "
                f"({result['queries']} queries, gallery "
                f"{result['gallery']}, model {result['model_version']}, sketch encoder "
                f"{result['sketch_encoder_version'] or 'none (photo model)'}, query expansion "
                f"{result['query_expansion'] or 'off'}, category boost "
                f"{result['category_boost'] or 'off'})"
            )
            if "plain_similarity" in result:
                r = result["plain_similarity"]
                self.stdout.write(
                    f"  plain similarity (no expansion, no boost): P@5 {r['p_at_5']:.4f}"
                    + "".join(
                        f", top {n}: {r[f'source_hit_at_{n}']:.3f}" for n in (1, 5, 10) if f"source_hit_at_{n}" in r
                    )
                )
            for name, r in result.get("ablation", {}).items():
                hits = "".join(
                    f", top {n}: {r[f'source_hit_at_{n}']:.3f}" for n in (1, 5, 10) if f"source_hit_at_{n}" in r
                )
                self.stdout.write(f"  {name:7s} P@5 {r['p_at_5']:.4f}{hits}")
            return
        if result["task"] == "recommend":
            return self._print_recommend(result)
        self.stdout.write(
            f"{result['task']} retrieval on {result['source']}: P@5 {result['p_at_5']:.4f} "
            f"(standard error {result.get('p_at_5_se', 0):.4f}), "
            f"mAP@10 {result['map_at_10']:.4f} ({result['queries']} queries, gallery {result['gallery']}, "
            f"model {result['model_version']}"
            + (f", query expansion {result['query_expansion']} neighbours" if result.get("query_expansion") else "")
            + ")"
        )
        if "plain_similarity" in result:
            r = result["plain_similarity"]
            self.stdout.write(
                f"  plain similarity (no expansion): P@5 {r['p_at_5']:.4f} (standard error {r['p_at_5_se']:.4f})"
            )

    def _print_recommend(self, result):
        settings = ", ".join(f"{k}={v}" for k, v in result["settings"].items())
        self.stdout.write(f"recommend, {result['split']} shoppers, model {result['model_version']} ({settings})")
        for name, sim in result["simulations"].items():
            if "skipped" in sim:
                self.stdout.write(f"\n{name}: skipped ({sim['skipped']})")
                continue
            self.stdout.write(
                f"\n{name}: {sim['shoppers']} shoppers, {sim['products']} products, item-kNN and "
                f"popularity learnt from {sim['population']} other shoppers"
            )
            if "grid" in sim:
                self.stdout.write("  max_int diversity min_share   HR@10 (se)       NDCG@10  coverage  ILD")
                for row in sim["grid"]:
                    self.stdout.write(
                        f"  {row['PREFERENCE_MAX_INTERESTS']:7d} {row['RECOMMENDATION_DIVERSITY']:9.2f} "
                        f"{row['RECOMMENDATION_MIN_INTEREST_SHARE']:9.2f}   {row['hit_rate_at_10']:.4f} "
                        f"({row['hit_rate_at_10_se']:.4f})  {row['ndcg_at_10']:.4f}   {row['coverage']:.3f}   "
                        f"{row['intra_list_diversity']:.3f}"
                    )
                self.stdout.write(f"  best: {sim['best']}")
                continue
            self.stdout.write("  model            HR@10 (se)        NDCG@10 (se)      coverage (se)    ILD (se)")
            rows = list(sim["models"].items()) + [("oracle (ceiling)", sim["oracle"])]
            for model, r in rows:
                self.stdout.write(
                    f"  {model:16s} {r['hit_rate_at_10']:.4f} ({r['hit_rate_at_10_se']:.4f})  "
                    f"{r['ndcg_at_10']:.4f} ({r['ndcg_at_10_se']:.4f})  {r['coverage']:.3f} ({r['coverage_se']:.3f})  "
                    f"{r['intra_list_diversity']:.3f} ({r['intra_list_diversity_se']:.3f})"
                )
            c = sim["comparison"]
            best = c["vs_best_baseline"]
            line = (
                f"  multi_interest / best baseline ({c['best_baseline']}): {best['ratio']:.2f}x "
                f"(difference {best['difference']:+.4f} +- {best['difference_se']:.4f})"
            )
            if "vs_mean_vector" in c:
                m = c["vs_mean_vector"]
                line += f"; / mean_vector: {m['ratio']:.2f}x ({m['difference']:+.4f} +- {m['difference_se']:.4f})"
            if "vs_vectors_only" in c:
                m = c["vs_vectors_only"]
                line += f"; / vectors_only: {m['ratio']:.2f}x ({m['difference']:+.4f} +- {m['difference_se']:.4f})"
            self.stdout.write(line)
