"""A garment locator (search by photo's preset crop box) for a newly installed photo model, trained on the store's
own products and installed only if it beats the activation-map preset on the store's test split."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from .. import model_store
from .catalog import Catalog, Options, Reporter

logger = logging.getLogger(__name__)

#: The locator step of fashion_adapt: at most ``scenes`` scenes, ``scenes_per_product`` per training product
#: (a small store gets fewer), and the training epochs. The shipped head used 20,000 scenes and 20 epochs
#: (docs/PHOTO_SEARCH.md); a store's step fits its 6-minute default budget on 2 CPU cores.
LOCATOR_RECIPE = {"scenes": 6000, "scenes_per_product": 4, "min_scenes": 64, "epochs": 20}


def measure_locators(photo, head, catalog: Catalog, gallery) -> dict:
    """P@5 on the store's test split of search by photo with each test product's photo pasted beside a product of
    another category on a busy background (:func:`oscar_fashion_ai.ml.composites.compose`, ``beside``): the
    activation-map preset against the trained ``head``, on the same composites; ``gallery``: the catalog embedded
    by ``photo`` (:func:`.measuring.embed_catalog`). The products in a composite are left out of its results."""
    from ..ml import composites, crop, datasets, metrics, preprocessing

    vecs, ok = gallery
    items = [catalog.items[i] for i in ok]
    records = [datasets.Record(str(it.product_id), it.label, it.path) for it in items]
    labels = np.array([it.label for it in items])
    position = {r.source_id: n for n, r in enumerate(records)}
    queries = [n for n, i in enumerate(ok) if catalog.test[i]]
    presets = {
        "activation_map": crop.GarmentLocator(photo, head=False),
        "trained": crop.GarmentLocator(photo, head=head),
    }
    per = {name: [] for name in presets}
    for n in queries:
        others = [r for r in records if r.label != records[n].label]
        if not others:
            continue
        c = composites.compose(records[n], "beside", records, others, composites.seeded(records[n].source_id, "adapt"))
        excluded = [position[u] for u in c.used if u in position]
        for name, loc in presets.items():
            try:
                img = preprocessing.open_image(c.data, decode_size=loc.decode_size)
            except preprocessing.InvalidImage:
                continue
            v = loc.locate(img).vector
            sims = vecs @ v
            sims[excluded] = -np.inf
            top = np.argsort(-sims)[:5]
            per[name].append(float((labels[top] == labels[n]).mean()))
    out = {
        name: {"p_at_5": float(np.mean(v)) if v else 0.0, "p_at_5_se": metrics.standard_error(np.array(v))}
        for name, v in per.items()
    }
    diff = np.array(per["trained"]) - np.array(per["activation_map"])
    out["gain"] = float(diff.mean()) if len(diff) else 0.0
    out["gain_se"] = metrics.standard_error(diff)
    out["queries"] = int(len(diff))
    return out


def adapt_locator(
    photo_path: Path,
    photo,
    catalog: Catalog,
    work: Path,
    minutes: float,
    options: Options,
    reporter: Reporter,
    gallery,
    install: bool = True,
) -> dict:
    """Train a garment locator for the newly installed photo model ``photo`` (weights at ``photo_path``) on the
    store's training products, measure it against the activation-map preset on the store's test split
    (:func:`measure_locators`) and install it into the models folder's locator/ only if it finds more. A failure
    here never touches the photo model just installed. ``install=False`` measures only (benchmarks)."""
    from ..ml import datasets, locator
    from ..ml.training.locator import LocatorTrainConfig, train

    started = time.time()
    reporter.stage("Training a garment locator for search by photo", 0.95)
    records = [datasets.Record(it.split_id, it.label, it.path) for it in catalog.training]
    recipe = {**LOCATOR_RECIPE, **(options.locator_recipe or {})}
    scenes = int(min(recipe["scenes"], max(recipe["min_scenes"], recipe["scenes_per_product"] * len(records))))
    out = work / "locator-candidate.safetensors"
    cfg = LocatorTrainConfig(
        source="the store's products",
        out=str(out),
        photo_weights=str(photo_path),
        cache=str(work / "locator-scenes"),
        scenes=scenes,
        epochs=int(recipe["epochs"]),
        max_minutes=minutes,
        threads=options.threads,
        seed=options.seed,
        progress=options.progress,
        command=options.command,
    )
    try:
        card = train(cfg, records)
        head = locator.load(out, photo_sha256=photo.sha256)
        if head is None:
            raise ValueError("the trained locator could not be read back")
        reporter.stage("Measuring the garment locator on the store's test split", 0.97)
        measured = measure_locators(photo, head, catalog, gallery)
    except (ValueError, OSError, RuntimeError) as exc:
        logger.exception("Fashion AI adaptation: the garment locator failed")
        text = f"No garment locator trained ({exc}); search by photo's box comes from the activation map."
        reporter.line(text)
        return {"installed": False, "message": text, "seconds": round(time.time() - started, 1)}
    finally:
        if not options.keep_work:
            shutil.rmtree(work / "locator-scenes", ignore_errors=True)
    result = {
        "scenes": card["data"]["scenes"],
        "epochs": card["epochs_run"],
        "held_out_scenes_box_iou": card["metrics"]["held_out_scenes_box_iou"],
        **measured,
    }
    line = (
        f"Search by photo with another product beside the photo, the store's test split ({measured['queries']} "
        f"composites): activation-map box P@5 {measured['activation_map']['p_at_5']:.4f} "
        f"± {measured['activation_map']['p_at_5_se']:.4f}, trained locator {measured['trained']['p_at_5']:.4f} "
        f"± {measured['trained']['p_at_5_se']:.4f} (difference {measured['gain']:+.4f} ± {measured['gain_se']:.4f})."
    )
    reporter.line(line)
    if install and measured["queries"] and measured["gain"] > 0:
        folder = model_store.locator_dir()
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"locator-{photo.sha256[:12]}.safetensors"
        card = {**card, "weights_file": target.name, "store_test_split": measured}
        target.with_suffix(".card.json").write_text(json.dumps(card, indent=2) + "\n")
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(out, tmp)
        tmp.replace(target)
        result.update(installed=True, path=str(target), message="Installed the garment locator: " + line)
        reporter.line("Installed the garment locator for the new photo model.")
    elif not install:
        result.update(installed=False, message="Measured only, nothing installed. " + line)
    else:
        result.update(
            installed=False,
            message="Kept the activation-map box: the trained locator did not find more. " + line,
        )
        reporter.line("Kept the activation-map box for search by photo (the trained locator did not find more).")
    out.unlink(missing_ok=True)
    out.with_suffix(".card.json").unlink(missing_ok=True)
    result["seconds"] = round(time.time() - started, 1)
    return result
