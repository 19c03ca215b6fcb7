"""Which start the sketch step of ``fashion_adapt`` should take, chosen on a validation split.

    python benchmarks/adapt_sketch_recipe.py [--source ../shared/datasets/studio-catalog] [--work var/adapt-sketch]
        [--photo-minutes 20 | --photo-epochs 8] [--sketch-minutes 8] [--out results.json]

Mirrors what ``fashion_adapt`` does on a store whose products are ``--source``: a photo candidate trained with
``ml.adaptation.DEFAULT_RECIPE`` on every non-test image (the store's rule, sha1 % 5 != 0), then a sketch encoder for
it with ``ml.adaptation.SKETCH_RECIPE`` and the same budget, once per start:

* ``photo``: the new photo model's own weights (the recipe before this benchmark);
* ``in-use``: the sketch encoder shipped with the package (trained on drawings of CC0 and studio train images; its
  validation images held out), so its drawing-adapted trunk is kept and re-aimed at the new photo space.

Both sketch encoders hold out the validation split (sha1 % 5 == 1) and are measured on it with
``benchmarks/compare_models.py --split validation`` (drawings xdog and doodle, gallery = every image), beside the
pair in use (the shipped photo model and its sketch encoder) measured the same way. The test split is not read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import compare_on_validation, machine  # noqa: E402
from oscar_fashion_ai.ml import adaptation, datasets  # noqa: E402

WEIGHTS = ROOT / "oscar_fashion_ai" / "weights"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "datasets" / "studio-catalog")
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "adapt-sketch")
    parser.add_argument("--photo-minutes", type=float, default=20.0)
    parser.add_argument(
        "--photo-epochs",
        type=int,
        default=None,
        help="train the photo candidate for exactly this many epochs instead of --photo-minutes (what fashion_adapt "
        "fits in its budget on an idle machine), so that other work on the machine cannot change it",
    )
    parser.add_argument(
        "--photo",
        type=Path,
        default=None,
        help="a photo candidate fashion_adapt already trained (on every non-test image) instead of training one",
    )
    parser.add_argument("--sketch-minutes", type=float, default=8.0)
    parser.add_argument(
        "--sketch-epochs",
        type=int,
        default=None,
        help="train each sketch encoder for exactly this many epochs instead of --sketch-minutes",
    )
    parser.add_argument("--variants", type=int, default=None, help="drawings per product (SKETCH_RECIPE's otherwise)")
    parser.add_argument("--starts", default="photo,in-use")
    parser.add_argument("--drawings", default="xdog,doodle")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    records = datasets.labelled_records(args.source)
    result = {
        "benchmark": "fashion_adapt sketch step: start of the sketch encoder, chosen on validation",
        "machine": machine(),
        "source": args.source.name,
        "command": "python benchmarks/adapt_sketch_recipe.py " + " ".join(argv or sys.argv[1:]),
        "sketch_recipe": adaptation.SKETCH_RECIPE,
        "sketch_recipe_overrides": {
            k: v for k, v in (("epochs", args.sketch_epochs), ("variants", args.variants)) if v is not None
        },
    }
    photo = args.photo or work / "photo-candidate.safetensors"
    if not photo.exists():
        started = time.time()
        fixed = args.photo_epochs is not None
        card = adaptation.train_candidate(
            [r for r in records if not datasets.is_test(r.source_id)],
            photo,
            work / "photo",
            adaptation.Budget(max_minutes=None if fixed else args.photo_minutes),
            {"epochs": args.photo_epochs} if fixed else None,
        )
        result["photo_training"] = {
            "seconds": round(time.time() - started, 1),
            "version": card.get("version"),
            "epochs": sum(1 for h in card.get("history", []) if "epoch" in h),
        }
    budget = adaptation.Budget(max_minutes=None if args.sketch_epochs else args.sketch_minutes)
    overrides = {"epochs": args.sketch_epochs} if args.sketch_epochs else {}
    if args.variants:
        overrides["variants"] = args.variants
    starts = {"photo": "photo", "in-use": str(WEIGHTS / "lite0-fashion-sketch.safetensors")}
    sketch_files = []
    result["sketch_training"] = {}
    for name in args.starts.split(","):
        out = work / f"sketch-{name}.safetensors"
        if not out.exists():
            started = time.time()
            recipe = {"validation": True, "init": starts[name], **overrides}
            card = adaptation.train_sketch_candidate(records, photo, out, work / f"sketch-{name}", budget, recipe)
            result["sketch_training"][name] = {
                "seconds": round(time.time() - started, 1),
                "epochs": sum(1 for h in card.get("history", []) if "epoch" in h),
            }
        sketch_files.append(str(out))
    models = ["--drawings", args.drawings, "--expansion", "0", "--category-boost", "0,0.05"]
    models += [
        "--photo",
        WEIGHTS / "lite0-fashion.safetensors",
        "--sketch",
        WEIGHTS / "lite0-fashion-sketch.safetensors",
    ]
    models += ["--photo", photo, "--sketch", ",".join(sketch_files)]
    result["validation"] = compare_on_validation(args.source, models)
    text = json.dumps(result, indent=1) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text[:4000])


if __name__ == "__main__":
    main()
