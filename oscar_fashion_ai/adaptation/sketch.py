"""A sketch encoder for a newly installed photo model, trained on the store's own products."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from .. import conf
from .catalog import Catalog, Options, Reporter
from .measuring import SKETCH_MEASURE_STYLES, compare, embed_catalog, measure_sketch, public_result

logger = logging.getLogger(__name__)


def adapt_sketch(
    photo_path: Path,
    photo,
    catalog: Catalog,
    work: Path,
    minutes: float,
    options: Options,
    reporter: Reporter,
    previous=None,
    gallery=None,
) -> dict:
    """Train a sketch encoder for the newly installed photo model, measure it against drawings embedded by the photo
    model itself (what search by sketch does without one) on the store's test split, and install it into the
    models folder's sketch/ only if it is better. ``previous`` is the pair search by sketch used before (the
    previous photo model, its sketch encoder and the catalog embedded by that photo model; ``gallery``: the catalog
    embedded by ``photo``; both from :func:`.measuring.embed_catalog`): it is measured on the same drawings, so the
    outcome says whether search by sketch got better or worse than before, and its sketch encoder is where the new
    one starts (``SKETCH_RECIPE["init"]``). A failure here never touches the photo model just installed."""
    from .. import runtime
    from ..ml import adaptation, datasets

    if conf.get("SKETCH_ENCODER_WEIGHTS"):
        text = (
            "FASHION_AI['SKETCH_ENCODER_WEIGHTS'] is set, so an installed sketch encoder would not be used: no "
            "sketch encoder trained (set it to None to use the models folder)."
        )
        reporter.line(text)
        return {"installed": False, "message": text}
    reporter.stage("Training a sketch encoder for the new photo model", 0.91)
    records = [datasets.Record(it.split_id, it.label, it.path) for it in catalog.items]
    out = work / "sketch-candidate.safetensors"
    recipe = {**adaptation.SKETCH_RECIPE, **(options.sketch_recipe or {})}
    previous_photo, previous_sketch, previous_gallery = previous or (None, None, None)
    if recipe["init"] == "in-use":  # the encoder in use, when there is one of the new photo model's network
        usable = (
            previous_sketch is not None
            and previous_sketch is not previous_photo
            and (previous_sketch.info.backbone, previous_sketch.info.dim) == (photo.info.backbone, photo.info.dim)
        )
        recipe["init"] = str(previous_sketch.path) if usable else "photo"
    budget = adaptation.Budget(
        max_minutes=minutes,
        resume=False,
        threads=options.threads,
        workers=options.workers,
        seed=options.seed,
        progress=options.progress,
    )
    started = time.time()
    try:
        card = adaptation.train_sketch_candidate(
            records,
            photo_path,
            out,
            work,
            budget,
            recipe,
            on_epoch=lambda e, n, _: reporter.stage(f"Sketch encoder: epoch {e}/{n}", 0.91 + 0.02 * e / max(n, 1)),
            command=options.command,
        )
        encoder = runtime.load_embedder(out)
    except (ValueError, RuntimeError, OSError, runtime.ModelUnavailable) as exc:
        text = f"The sketch encoder could not be trained ({exc}); search by sketch uses the photo model."
        reporter.line(text)
        return {"installed": False, "message": text}
    seconds = time.time() - started
    gallery = gallery if gallery is not None else embed_catalog(photo, catalog.items)
    drawings = {}  # the test split's drawings, made once for the three measurements
    without = measure_sketch(photo, photo, catalog, gallery, drawings=drawings)
    with_encoder = measure_sketch(photo, encoder, catalog, gallery, drawings=drawings)
    diff = compare(without, with_encoder)
    result = {
        "photo_model_alone": public_result(without),
        "candidate": public_result(with_encoder),
        "difference": diff,
        "seconds": round(seconds, 1),
        "epochs": sum(1 for h in card.get("history", []) if "epoch" in h),
        "styles": list(SKETCH_MEASURE_STYLES),
        "started_from": card["recipe"]["init"],
    }
    rows = [("photo model alone", without), ("sketch encoder", with_encoder)]
    if previous_photo is not None:
        before = measure_sketch(previous_photo, previous_sketch, catalog, previous_gallery, drawings=drawings)
        result["before"] = public_result(before)
        result["difference_to_before"] = compare(before, with_encoder)
        rows.insert(0, ("before (pair in use)", before))
    reporter.line(
        "Search by sketch on the store's test split (drawings: {}; P@5, acc@10 = the drawn product in the "
        "top 10):".format(", ".join(SKETCH_MEASURE_STYLES))
    )
    for name, r in rows:
        acc = ", ".join(f"{s} acc@10 {v['source_hit_at_10']:.3f}" for s, v in r["styles"].items())
        reporter.line(f"  {name:20s} P@5 {r['p_at_5']:.4f} ({r['p_at_5_se']:.4f}); {acc}")
    if diff["gain"] > 0:
        from .. import model_store

        card["adaptation"] = {k: result[k] for k in ("photo_model_alone", "candidate", "difference")}
        out.with_suffix(".card.json").write_text(json.dumps(card, indent=2) + "\n")
        model_store.add_version(out, encoder.version, folder=model_store.sketch_dir())
        result["installed"], result["version"] = True, encoder.version
        result["message"] = f"Installed the sketch encoder {encoder.version} for the new photo model."
        change = result.get("difference_to_before")
        if change and change["gain"] < 0:
            result["message"] += (
                " Search by sketch is {:.3f} ({:.3f}) P@5 below the pair used before on these drawings: a longer "
                "sketch training (--sketch-minutes) may close the gap; --rollback restores the previous pair."
            ).format(-change["gain"], change["gain_se"])
    else:
        result["installed"] = False
        result["message"] = "Kept no sketch encoder: it did not beat the photo model on the store's drawings."
    reporter.line(result["message"])
    out.unlink(missing_ok=True)
    return result


def sketch_notice() -> str:
    """What search by sketch does after the photo model changed (its encoder belongs to the previous model)."""
    return (
        "Search by sketch keeps working: until a sketch encoder is trained for the new photo model (`manage.py "
        "fashion_train_sketch_encoder --photo-weights <installed file>`, then install it into the models folder's "
        "sketch/), drawings are embedded by the photo model itself, which finds fewer matches."
    )
