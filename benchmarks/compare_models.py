"""Compare candidate models on a labelled data set's test split, without a database.

    python benchmarks/compare_models.py --photo P.safetensors [--sketch S1.safetensors,S2.safetensors] \
        [--photo P2.safetensors --sketch ...] [--expansion 0,1,2,3,5] [--category-boost 0,0.05] \
        [--drawings xdog,outline,abstract,doodle] [--source PATH] [--split test|validation|test-a|test-b] \
        [--generator G.safetensors --pipelines direct,gan,fusion --fusion-weight 0.5]

For each photo model: image->image P@5 and mAP@10 (test-split queries, query excluded, every image as gallery,
as `manage.py fashion_evaluate --task image --source PATH`). For each sketch encoder given after it: the test
split's synthetic drawings against that gallery (category P@5, the same with the source product left out of the
gallery, and acc@1/5/10: the source product in the top 1/5/10), for each drawing style (``--drawings``, comma
separated: edge maps xdog/edges/hed, human-like outline/abstract/doodle), each query expansion setting and each
category boost (without expansion), as `fashion_evaluate --task sketch` computes them on a store's index.
Prints one JSON object. ``test-a`` / ``test-b`` are the two halves of the test split (sha1 % 10 == 0 / 5):
choose a query-time setting on one, confirm it once on the other. This is how the candidates in docs/MODELS.md
were measured. With ``--generator`` the pix2pix GAN's pipelines (:mod:`oscar_fashion_ai.ml.sketch_pipeline`: the
generated picture embedded by the photo model, or fused with the drawing's vector) are measured beside ``direct``
on the same drawings (``pipelines`` in each drawing style's entry).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import repo_path  # noqa: E402
from oscar_fashion_ai.ml import (  # noqa: E402
    datasets,
    evaluate,
    metrics,
    preprocessing,
    query_expansion,
    sketch_pipeline,
    sketches,
)
from oscar_fashion_ai.ml.embedder import Embedder  # noqa: E402

DEFAULT_SOURCE = ROOT.parent / "shared" / "datasets" / "clothing-dataset"


def _test_half(remainder):
    return lambda image_id: int(hashlib.sha1(image_id.encode()).hexdigest(), 16) % 10 == remainder


SPLITS = {
    "test": datasets.is_test,
    "validation": datasets.is_validation,
    "test-a": _test_half(0),
    "test-b": _test_half(5),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", action="append", required=True, help="a photo model (repeatable)")
    parser.add_argument(
        "--sketch",
        action="append",
        default=[],
        help="comma-separated sketch encoders for the preceding --photo (repeatable)",
    )
    parser.add_argument("--expansion", default="0,3", help="query expansion settings to measure")
    parser.add_argument(
        "--category-boost", default="0,0.05", help="category boost settings to measure (each without query expansion)"
    )
    parser.add_argument("--rerank-depth", type=int, default=20)
    parser.add_argument(
        "--drawings", default="xdog", help=f"comma-separated drawing styles ({', '.join(sketches.STYLES)})"
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="labelled data set (default: FASHION_AI_DATASET or ../shared/datasets/clothing-dataset)",
    )
    parser.add_argument(
        "--split",
        choices=sorted(SPLITS),
        default="test",
        help="queries: the test split, the validation split (for models trained with --validation), "
        "or one half of the test split",
    )
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--generator", type=Path, default=None, help="pix2pix generator weights (GAN ablation)")
    parser.add_argument("--pipelines", default="direct,gan,fusion", help="with --generator: pipelines to measure")
    parser.add_argument("--fusion-weight", type=float, default=0.5, help="with --generator: the GAN's share")
    args = parser.parse_args(argv)
    import os

    source = args.source or Path(os.environ.get("FASHION_AI_DATASET") or DEFAULT_SOURCE)
    if len(args.sketch) > len(args.photo):
        parser.error("each --sketch belongs to the --photo before it")
    sketch_lists = [s.split(",") for s in args.sketch] + [[]] * (len(args.photo) - len(args.sketch))
    expansions = [int(x) for x in args.expansion.split(",") if x.strip()]
    boosts = [float(x) for x in args.category_boost.split(",") if x.strip()]
    styles = [x.strip() for x in args.drawings.split(",") if x.strip()]
    if not styles or set(styles) - set(sketches.STYLES):
        parser.error(f"--drawings: use {', '.join(sketches.STYLES)}")

    generator = None
    pipelines = [x.strip() for x in args.pipelines.split(",") if x.strip()]
    if set(pipelines) - set(sketch_pipeline.PIPELINES):
        parser.error(f"--pipelines: use {', '.join(sketch_pipeline.PIPELINES)}")
    if args.generator is not None:
        from oscar_fashion_ai.ml.generator import SketchGenerator

        generator = SketchGenerator(args.generator, threads=args.threads)
    records = datasets.labelled_records(source)
    drawings_cache: dict[tuple, list] = {}
    out = {
        "source": source.name,
        "split": args.split,
        "drawings": args.drawings,
        "photo_models": [],
        "generator": repo_path(args.generator) if args.generator else None,
        "fusion_weight": args.fusion_weight,
    }
    for photo_path, sketch_paths in zip(args.photo, sketch_lists):
        photo = Embedder(photo_path, threads=args.threads)
        vecs, kept = evaluate.embed_records(photo, records)
        labels = np.array([r.label for r in kept])
        in_split = SPLITS[args.split]
        q = np.flatnonzero([in_split(r.source_id) for r in kept])
        entry = {
            "photo_model": repo_path(photo_path),
            "version": photo.version,
            "image": metrics.category_retrieval(vecs[q], labels[q], vecs, labels, query_gallery_index=q),
            "sketch_encoders": [],
        }
        for sketch_path in sketch_paths:
            encoder = Embedder(sketch_path, threads=args.threads)
            if encoder.pairs_with not in (None, photo.sha256):
                print(f"warning: {sketch_path} was trained for another photo model", file=sys.stderr)
            size = encoder.info.image_size
            by_style = {}
            for style in styles:
                if (size, style) not in drawings_cache:
                    drawings_cache[size, style] = [
                        evaluate.synthetic_sketch(
                            preprocessing.open_image(kept[i].path, decode_size=sketches.DRAW_RES),
                            size,
                            style,
                            seed=int(i),
                        )
                        for i in q
                    ]
                sv = encoder.embed_images(drawings_cache[size, style])
                results = {}
                for n in expansions:
                    qv = sv if n == 0 else query_expansion.expand_query(sv, vecs[metrics.neighbours(sv, vecs, n)])
                    results[str(n)] = evaluate.sketch_retrieval(qv, labels[q], vecs, labels, source_index=q)
                by_boost = {
                    str(w): evaluate.sketch_retrieval(
                        sv, labels[q], vecs, labels, source_index=q, category_boost=w, rerank_depth=args.rerank_depth
                    )
                    for w in boosts
                }
                by_style[style] = {"by_query_expansion": results, "by_category_boost": by_boost}
                if generator is not None:
                    key = (generator.image_size, style)
                    if key not in drawings_cache:
                        drawings_cache[key] = [
                            evaluate.synthetic_sketch(
                                preprocessing.open_image(kept[i].path, decode_size=sketches.DRAW_RES),
                                generator.image_size,
                                style,
                                seed=int(i),
                            )
                            for i in q
                        ]
                    by_style[style]["pipelines"] = {}
                    for name in pipelines:
                        pv, _ = sketch_pipeline.vectors(
                            photo,
                            generator,
                            drawings_cache[size, style],
                            drawings_cache[key],
                            name,
                            args.fusion_weight,
                            encoder,
                        )
                        by_style[style]["pipelines"][name] = {
                            str(w): evaluate.sketch_retrieval(
                                pv,
                                labels[q],
                                vecs,
                                labels,
                                source_index=q,
                                category_boost=w,
                                rerank_depth=args.rerank_depth,
                            )
                            for w in boosts
                        }
            record = {
                "sketch_encoder": repo_path(sketch_path),
                "version": encoder.version,
                "rerank_depth": args.rerank_depth,
                "by_drawings": by_style,
            }
            if len(styles) == 1:  # the layout of earlier result files
                record |= by_style[styles[0]]
            entry["sketch_encoders"].append(record)
        out["photo_models"].append(entry)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
