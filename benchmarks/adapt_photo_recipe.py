"""The photo step of ``fashion_adapt`` (epochs, start, augmentation: recipe arms), chosen on a validation split.

    python benchmarks/adapt_photo_recipe.py [--source ../shared/datasets/studio-catalog] [--epochs 14,24]
        [--recipe '{"init": "shipped", "lr": 5e-4}'] [--tag NAME] [--work var/adapt-photo] [--out results.json]

For each epoch count: a photo candidate trained with ``ml.adaptation.DEFAULT_RECIPE`` (that many epochs, no time
budget, so other work on the machine cannot change it) on the catalog's images outside its test split (sha1 % 5 ==
0, what ``fashion_adapt`` never trains on) *and* its validation split (sha1 % 5 == 1), then image P@5 of every
candidate and of the shipped model on the validation split (``benchmarks/compare_models.py --split validation``,
gallery = every image). The training cost per image and epoch is printed beside each. The test split is not read.
``--against`` names other photo models (e.g. an earlier arm's file): each candidate's paired P@5 difference
from each of them on the same validation queries is printed with its standard error.
``--recipe`` overrides keys of the recipe for every arm (``"init": "shipped"`` starts from the shipped photo model,
what ``fashion_adapt``'s ``"in-use"`` start does in a store that still runs it); ``--tag`` names the arm's files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import compare_on_validation, machine, repo_path  # noqa: E402
from oscar_fashion_ai.ml import adaptation, datasets  # noqa: E402

WEIGHTS = ROOT / "oscar_fashion_ai" / "weights"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "datasets" / "studio-catalog")
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "adapt-photo")
    parser.add_argument("--epochs", default="14,24")
    parser.add_argument("--recipe", type=json.loads, default={}, help="JSON object of recipe keys to override")
    parser.add_argument("--tag", default="", help="prefix of this arm's files under --work")
    parser.add_argument("--against", type=Path, action="append", default=[], help="a photo model to pair with")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    overrides = dict(args.recipe)
    if overrides.get("init") == "shipped":
        overrides["init"] = str(WEIGHTS / "lite0-fashion.safetensors")
    args.work.mkdir(parents=True, exist_ok=True)
    records = datasets.labelled_records(args.source)
    train = [r for r in records if not datasets.is_test(r.source_id) and not datasets.is_validation(r.source_id)]
    result = {
        "benchmark": "fashion_adapt photo step: planned epochs, chosen on validation",
        "machine": machine(),
        "source": args.source.name,
        "command": "python benchmarks/adapt_photo_recipe.py " + " ".join(argv or sys.argv[1:]),
        "recipe": {**adaptation.DEFAULT_RECIPE, **args.recipe},
        "train_images": len(train),
        "training": {},
    }
    photos = []
    for epochs in [int(e) for e in args.epochs.split(",")]:
        out = args.work / f"{args.tag}photo-{epochs}.safetensors"
        if not out.exists():
            started = time.time()
            card = adaptation.train_candidate(
                train, out, args.work / f"{args.tag}photo-{epochs}", recipe={**overrides, "epochs": epochs}
            )
            seconds = time.time() - started
            result["training"][epochs] = {
                "seconds": round(seconds, 1),
                "version": card.get("version"),
                "ms_per_image_epoch": round(1000 * seconds / (len(train) * epochs), 1),
            }
            print(json.dumps({epochs: result["training"][epochs]}), flush=True)
        photos.append(out)
    models = ["--photo", WEIGHTS / "lite0-fashion.safetensors"]
    for photo in photos:
        models += ["--photo", photo]
    result["validation"] = compare_on_validation(args.source, models)
    if args.against:
        per_query = {path: validation_hits(path, records) for path in [*args.against, *photos]}
        result["paired"] = [
            {"model": repo_path(p), "against": repo_path(a), **paired(per_query[p], per_query[a])}
            for p in photos
            for a in args.against
        ]
    text = json.dumps(result, indent=1) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text[:3000])


def validation_hits(path, records):
    """Per validation query, the share of its 5 nearest images (every image the gallery, itself left out) with its
    label, for the photo model at ``path``."""
    import numpy as np

    from oscar_fashion_ai.ml import evaluate, metrics
    from oscar_fashion_ai.ml.embedder import Embedder

    vecs, kept = evaluate.embed_records(Embedder(path), records)
    labels = np.array([r.label for r in kept])
    q = np.flatnonzero([datasets.is_validation(r.source_id) for r in kept])
    idx = metrics.neighbours(vecs[q], vecs, 5, exclude=q)
    return (labels[idx] == labels[q][:, None]).mean(axis=1)


def paired(mine, other) -> dict:
    from oscar_fashion_ai.ml import metrics

    diff = mine - other
    return {"p_at_5": float(mine.mean()), "difference": float(diff.mean()), "se": metrics.standard_error(diff)}


if __name__ == "__main__":
    main()
