"""Adapt the photo model to the shop's own catalog (``manage.py fashion_adapt`` and the dashboard's "Adapt to my
catalog" task).

1. The store's public products with an image are labelled with their first category. Products in the test split
   (``sha1(upc) % 5 == 0``, the rule ``fashion_evaluate`` uses) are never trained on; categories with too few
   training products are left out of training (and named).
2. A candidate is trained by the recipe in :mod:`oscar_fashion_ai.ml.adaptation` (within a time budget, resumable).
3. The candidate and the model in use are measured on the test-split products the same way (P@5 with the whole
   catalog as gallery, query excluded, relevant = same first category), side by side with standard errors.
4. Only a better candidate is installed into ``FASHION_AI["MODELS_DIR"]`` (every version kept, the pointer replaced
   in one rename), and the catalog is reindexed with no gap in search (:mod:`oscar_fashion_ai.indexing.builds`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from django.utils import timezone
from oscar.core.loading import get_model

from . import conf, model_store, publishing

logger = logging.getLogger(__name__)


class AdaptError(RuntimeError):
    """The adaptation cannot run or must stop (the message says why; nothing was installed)."""


@dataclass
class Options:
    max_minutes: float | None = None  # None: FASHION_AI["ADAPT_MAX_MINUTES"]
    resume: bool = False
    min_per_category: int = 5  # training products a category needs to be trained on
    min_products: int = 30  # training products in all
    min_test: int = 10  # test-split products to measure on
    min_gain: float = 0.0  # the candidate's P@5 must beat the model in use's by more than this
    install: bool = True
    reindex: str = "queue"  # queue | sync | none
    threads: int = 0
    workers: int = 0
    seed: int = 0
    progress: bool = True
    keep_work: bool = False
    recipe: dict = field(default_factory=dict)
    sketch_minutes: float | None = None  # None: FASHION_AI["ADAPT_SKETCH_MAX_MINUTES"]; 0: no sketch encoder
    sketch_recipe: dict = field(default_factory=dict)  # overrides of ml.adaptation.SKETCH_RECIPE
    command: str = "python manage.py fashion_adapt"


class Reporter:
    """Where progress goes: printed by the command, stored on the run's row by the task."""

    def __init__(self, run=None, write=None):
        self.run = run
        self.write = write or (lambda text: None)

    def line(self, text: str):
        self.write(text)
        logger.info("Fashion AI adaptation: %s", text)

    def stage(self, text: str, fraction: float):
        if self.run is not None:
            type(self.run).objects.filter(pk=self.run.pk).update(
                stage=text[:200], progress=round(fraction, 4), date_updated=timezone.now()
            )


@dataclass
class Item:
    product_id: int
    split_id: str  # the id the test split is computed from (UPC, else the primary key)
    label: str
    path: Path


@dataclass
class Catalog:
    items: list  # every product that can be measured (image + category)
    test: np.ndarray  # boolean mask over items
    train_labels: dict  # label -> training products, for the categories that are trained on
    skipped_categories: dict  # label -> training products, for the ones left out
    without_category: int
    without_image: int

    @property
    def training(self) -> list:
        return [it for it, t in zip(self.items, self.test) if not t and it.label in self.train_labels]


def _image_path(image, work: Path) -> Path | None:
    """A local file of a product image: the storage's own path, or a copy (for storages without local files)."""
    try:
        path = Path(image.original.path)
        if path.exists():
            return path
    except (NotImplementedError, ValueError):
        pass
    try:
        with image.original.open("rb") as fh:
            data = fh.read()
    except (OSError, ValueError):
        return None
    target = work / "images" / f"{image.pk}{Path(image.original.name).suffix.lower() or '.jpg'}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.write_bytes(data)
    return target


def collect(min_per_category: int, work: Path) -> Catalog:
    """The store's public products with an image, labelled with their first category (a variant: its parent's)."""
    from .ml import datasets

    Product = get_model("catalogue", "Product")
    products = (
        Product.objects.filter(is_public=True)
        .exclude(structure=Product.PARENT)
        .select_related("parent")
        .prefetch_related("categories", "images", "parent__categories", "parent__images")
        .order_by("pk")
    )
    items, without_category, without_image = [], 0, 0
    for product in products:
        categories = list(product.categories.all()) or (
            list(product.parent.categories.all()) if product.parent_id else []
        )
        images = sorted(product.images.all(), key=lambda im: (im.display_order, im.pk))
        if not images and product.parent_id:
            images = sorted(product.parent.images.all(), key=lambda im: (im.display_order, im.pk))
        if not images or not images[0].original:
            without_image += 1
            continue
        if not categories:
            without_category += 1
            continue
        path = _image_path(images[0], work)
        if path is None:
            without_image += 1
            continue
        items.append(Item(product.pk, product.upc or str(product.pk), categories[0].name, path))
    test = np.array([datasets.is_test(it.split_id) for it in items], dtype=bool)
    counts: dict = {}
    for it, t in zip(items, test):
        if not t:
            counts[it.label] = counts.get(it.label, 0) + 1
    train_labels = {k: v for k, v in sorted(counts.items()) if v >= min_per_category}
    skipped = {k: v for k, v in sorted(counts.items()) if v < min_per_category}
    return Catalog(items, test, train_labels, skipped, without_category, without_image)


def check_catalog(catalog: Catalog, options: Options):
    """Refuse, with the reason, a store that cannot be adapted (nothing is trained or installed)."""
    if not catalog.items:
        raise AdaptError(
            "The store has no public products with an image and a category: there is nothing to train "
            f"on ({catalog.without_image} without an image, {catalog.without_category} without a "
            "category)."
        )
    if len(catalog.train_labels) < 2:
        have = ", ".join(f"{k} ({v})" for k, v in {**catalog.train_labels, **catalog.skipped_categories}.items())
        raise AdaptError(
            "Adapting needs at least 2 categories with at least "
            f"{options.min_per_category} training products each; the store has "
            f"{len(catalog.train_labels)} ({have or 'none'}). Products are labelled with their first "
            "category."
        )
    training = len(catalog.training)
    if training < options.min_products:
        raise AdaptError(
            f"Too few products to train on: {training} outside the test split in trained categories, "
            f"at least {options.min_products} are needed (--min-products)."
        )
    tests = int(catalog.test.sum())
    if tests < options.min_test:
        raise AdaptError(
            f"Too few products to measure a candidate on: {tests} in the test split (sha1(upc) % 5 == 0), "
            f"at least {options.min_test} are needed (--min-test)."
        )


def _fingerprint(records) -> str:
    blob = json.dumps([(r.source_id, r.label, str(r.path), r.path.stat().st_size) for r in records])
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def measure(embedder, catalog: Catalog, progress: bool = False, k: int = 5) -> dict:
    """P@5 of ``embedder`` on the store's test split: the whole measurable catalog as gallery, query excluded,
    relevant = same first category. Returns the mean, its standard error and the per-query precisions."""
    from .ml import metrics

    items = catalog.items
    vecs, ok = embed_catalog(embedder, items, progress)
    labels = np.array([items[i].label for i in ok])
    q = np.flatnonzero(catalog.test[ok]) if len(ok) else np.zeros(0, np.int64)
    idx = metrics.neighbours(vecs[q], vecs, k, exclude=q)
    per_query = (labels[idx] == labels[q][:, None]).mean(axis=1) if len(q) else np.zeros(0)
    return {
        "p_at_5": float(per_query.mean()) if len(q) else 0.0,
        "p_at_5_se": metrics.standard_error(per_query),
        "queries": int(len(q)),
        "gallery": int(len(ok)),
        "model_version": embedder.version,
        "per_query": dict(zip([items[i].product_id for i in ok[q]], per_query.tolist())),
    }


def embed_catalog(embedder, items, progress: bool = False):
    """The items' photo vectors and the indices of the items whose image could be read."""
    from tqdm import tqdm

    from .ml import preprocessing

    vecs, ok = [], []
    batch = 64
    for start in tqdm(range(0, len(items), batch), desc=f"Measuring {embedder.version[:40]}", disable=not progress):
        images = []
        for i in range(start, min(start + batch, len(items))):
            try:
                images.append(embedder.load_image(items[i].path))
                ok.append(i)
            except preprocessing.InvalidImage:
                continue
        if images:
            vecs.append(embedder.embed_images(images, batch_size=batch))
    vecs = np.concatenate(vecs) if vecs else np.zeros((0, embedder.info.dim), np.float32)
    return vecs, np.asarray(ok, dtype=np.int64)


def compare(current: dict, candidate: dict) -> dict:
    """The candidate minus the model in use on the queries both measured, with the paired standard error."""
    from .ml import metrics

    common = sorted(set(current["per_query"]) & set(candidate["per_query"]))
    diff = np.array([candidate["per_query"][pk] - current["per_query"][pk] for pk in common])
    return {
        "gain": float(diff.mean()) if len(diff) else 0.0,
        "gain_se": metrics.standard_error(diff),
        "queries": len(common),
    }


def _public(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "per_query"}


def run(options: Options, reporter: Reporter, run_row=None) -> dict:
    """Adapt, measure, and install a better candidate. Returns the outcome (``installed``: True/False, metrics).
    Raises :class:`AdaptError` for a store that cannot be adapted; the model in use is never touched unless the
    candidate is better and fully written."""
    from . import runtime
    from .indexing import builds
    from .ml import adaptation, datasets

    started = time.time()
    if options.install and conf.get("EMBEDDER_WEIGHTS"):
        raise AdaptError(
            "FASHION_AI['EMBEDDER_WEIGHTS'] is set, so an installed model would not be used: set it to "
            "None to use the models folder, or run with --no-install to measure only."
        )
    try:
        current = runtime.get_embedder()
    except runtime.ModelUnavailable as exc:
        raise AdaptError(f"The model in use cannot be loaded: {exc}") from exc
    if options.install:
        builds.adopt(current, requested_by="fashion_adapt")  # search keeps it while the new vectors are written
    work = model_store.work_dir()
    work.mkdir(parents=True, exist_ok=True)

    reporter.stage("Reading the catalog", 0.01)
    catalog = collect(options.min_per_category, work)
    check_catalog(catalog, options)
    training = catalog.training
    if any(datasets.is_test(it.split_id) for it in training):  # the split is the contract: never train on test
        raise AdaptError("internal error: a test-split product was selected for training")
    reporter.line(
        f"{len(catalog.items)} products with an image and a category: {len(training)} to train on in "
        f"{len(catalog.train_labels)} categories, {int(catalog.test.sum())} in the test split (never trained "
        "on, used to measure)"
    )
    if catalog.skipped_categories:
        reporter.line(
            "Left out of training (fewer than {} training products): {}".format(
                options.min_per_category, ", ".join(f"{k} ({v})" for k, v in catalog.skipped_categories.items())
            )
        )
    if catalog.without_image or catalog.without_category:
        reporter.line(
            f"Not used: {catalog.without_image} products without an image, {catalog.without_category} "
            "without a category"
        )

    records = [datasets.Record(it.split_id, it.label, it.path) for it in training]
    fingerprint = _fingerprint(records)
    state_file = work / "candidate.json"
    resume = options.resume
    if resume and state_file.exists() and json.loads(state_file.read_text()).get("fingerprint") != fingerprint:
        reporter.line("The catalog changed since the interrupted run: starting over")
        resume = False
    if not resume:
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
    state_file.write_text(json.dumps({"fingerprint": fingerprint, "started": time.time()}))
    candidate_path = work / "candidate.safetensors"
    max_minutes = options.max_minutes if options.max_minutes is not None else float(conf.get("ADAPT_MAX_MINUTES"))

    def on_epoch(epoch, epochs, entry):
        reporter.stage(f"Training: epoch {epoch}/{epochs}", 0.1 + 0.7 * epoch / max(epochs, 1))

    reporter.stage("Training the candidate", 0.05)
    train_started = time.time()
    budget = adaptation.Budget(
        max_minutes=max_minutes,
        resume=resume,
        threads=options.threads,
        workers=options.workers,
        seed=options.seed,
        progress=options.progress,
    )
    try:
        card = adaptation.train_candidate(
            records, candidate_path, work, budget, options.recipe, on_epoch=on_epoch, command=options.command
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise AdaptError(f"Training failed: {exc}") from exc
    train_seconds = time.time() - train_started
    epochs_done = sum(1 for h in card.get("history", []) if "epoch" in h)

    reporter.stage("Measuring the candidate and the model in use", 0.82)
    try:
        candidate = runtime.load_embedder(candidate_path)
    except runtime.ModelUnavailable as exc:
        raise AdaptError(f"The candidate cannot be loaded: {exc}") from exc
    now_result = measure(current, catalog, progress=options.progress)
    cand_result = measure(candidate, catalog, progress=options.progress)
    diff = compare(now_result, cand_result)
    better = diff["gain"] > options.min_gain
    image_epochs = len(records) * max(epochs_done, 1)
    result = {
        "model_in_use": _public(now_result),
        "candidate": _public(cand_result),
        "difference": diff,
        "better": better,
        "min_gain": options.min_gain,
        "training": {
            "products": len(records),
            "categories": catalog.train_labels,
            "skipped_categories": catalog.skipped_categories,
            "epochs": epochs_done,
            "seconds": round(train_seconds, 1),
            "ms_per_image_epoch": round(1000 * train_seconds / image_epochs, 2),
            "max_minutes": max_minutes,
            "recipe": card.get("recipe"),
            "stopped_early": any(h.get("stopped_early") for h in card.get("history", [])),
        },
        "test_split": "sha1(upc) % 5 == 0 (products never trained on)",
    }
    reporter.line(
        "P@5 on the store's test split ({} queries, gallery {} products; standard errors in brackets):".format(
            now_result["queries"], now_result["gallery"]
        )
    )
    reporter.line(f"  model in use  {now_result['p_at_5']:.4f} ({now_result['p_at_5_se']:.4f})  {current.version}")
    reporter.line(f"  candidate     {cand_result['p_at_5']:.4f} ({cand_result['p_at_5_se']:.4f})  {candidate.version}")
    reporter.line(f"  difference    {diff['gain']:+.4f} ({diff['gain_se']:.4f}, paired)")
    reporter.line(
        f"Training: {len(records)} products x {epochs_done} epochs in {train_seconds:.0f} s "
        f"({result['training']['ms_per_image_epoch']:.1f} ms per image and epoch)"
        + (" - stopped by the time budget" if result["training"]["stopped_early"] else "")
    )

    if not better:
        result["installed"] = False
        result["message"] = (
            f"Kept the model in use: the candidate's P@5 {cand_result['p_at_5']:.4f} does not beat "
            f"{now_result['p_at_5']:.4f} by more than {options.min_gain}."
        )
        reporter.line(result["message"])
    elif not options.install:
        result["installed"] = False
        result["message"] = "The candidate is better; not installed (--no-install)."
        reporter.line(result["message"])
    else:
        reporter.stage("Installing", 0.9)
        installed = install(candidate_path, candidate.version, card, result)
        result["installed"] = True
        result["version"] = candidate.version
        result["path"] = str(installed)
        result["message"] = (
            f"Installed {candidate.version}: P@5 {now_result['p_at_5']:.4f} -> "
            f"{cand_result['p_at_5']:.4f} on the store's test split."
        )
        reporter.line(result["message"])
        sketch_minutes = (
            options.sketch_minutes
            if options.sketch_minutes is not None
            else float(conf.get("ADAPT_SKETCH_MAX_MINUTES"))
        )
        if sketch_minutes > 0:
            result["sketch_encoder"] = adapt_sketch(
                installed, candidate, catalog, work, sketch_minutes, options, reporter
            )
        if not result.get("sketch_encoder", {}).get("installed"):
            result["sketch"] = sketch_notice()
            reporter.line(result["sketch"])
        result["reindex"] = reindex(options.reindex, reporter, "fashion_adapt")
    if not options.keep_work:
        for name in ("pairs", "sketch-pairs", "sketch-checkpoints"):
            shutil.rmtree(work / name, ignore_errors=True)
    if result.get("installed") or not result["training"]["stopped_early"]:
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
        state_file.unlink(missing_ok=True)
    result["seconds"] = round(time.time() - started, 1)
    return result


def install(candidate_path: Path, version: str, card: dict, result: dict) -> Path:
    """Copy the candidate into the models folder (with its measurements in its card) and point ACTIVE.json at it."""
    card = dict(card)
    card["adaptation"] = {k: result[k] for k in ("model_in_use", "candidate", "difference", "training", "test_split")}
    card["adaptation"]["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    candidate_path.with_suffix(".card.json").write_text(json.dumps(card, indent=2) + "\n")
    installed = model_store.add_version(candidate_path, version)
    model_store.activate_version(version, reason="fashion_adapt: better on the store's test split")
    return installed


def reindex(mode: str, reporter: Reporter, requested_by: str) -> str:
    """Index the catalog with the newly configured model; search keeps the model in use until it is complete."""
    from .indexing import index

    if mode == "none":
        text = (
            "Not reindexed (--reindex none): search keeps the model in use until `fashion_reindex` builds the new "
            "model's vectors."
        )
    elif mode == "sync":
        from django.core.management import call_command

        reporter.stage("Indexing the catalog with the new model", 0.93)
        call_command("fashion_reindex", "--sync", verbosity=1 if reporter.write else 0)
        status = index.build_status()
        text = (
            "Reindexed: search uses the new model."
            if status is None
            else f"Reindexed {status['done']}/{status['total']}; search keeps the model in use until the rest is done."
        )
    else:
        try:
            count = index.request_reindex(scope="all", requested_by=requested_by)
        except index.BrokerUnavailable as exc:
            text = (
                f"Could not queue the reindex ({exc}); search keeps the model in use. Run `python manage.py "
                "fashion_reindex --sync`."
            )
        else:
            text = (
                f"Queued {count} products for indexing with the new model; search keeps the model in use until "
                "their vectors are complete, then switches."
            )
    reporter.line(text)
    return text


#: The drawings a sketch encoder is measured with on the store's test split: an edge map of the product photo and
#: a from-memory doodle of its silhouette (:mod:`oscar_fashion_ai.ml.sketches`).
SKETCH_MEASURE_STYLES = ("xdog", "doodle")


def measure_sketch(photo, drawing_embedder, catalog: Catalog, gallery=None, styles=SKETCH_MEASURE_STYLES) -> dict:
    """Search by sketch on the store's test split: synthetic drawings of each test-split product (``styles``)
    against the whole measurable catalog embedded by ``photo``. Category P@5 (the mean over the styles; per-query
    values for the paired comparison) and acc@1 / acc@10, the drawn product itself found."""
    from .ml import evaluate, metrics, preprocessing, sketches

    vecs, ok = gallery if gallery is not None else embed_catalog(photo, catalog.items)
    items = [catalog.items[i] for i in ok]
    labels = np.array([it.label for it in items])
    q = np.flatnonzero(catalog.test[ok]) if len(ok) else np.zeros(0, np.int64)
    size = drawing_embedder.info.image_size
    out = {"styles": {}, "model_version": drawing_embedder.version, "queries": int(len(q)), "gallery": len(vecs)}
    per_query = np.zeros(len(q))
    for style in styles:
        drawings = [
            evaluate.synthetic_sketch(
                preprocessing.open_image(items[i].path, decode_size=sketches.DRAW_RES), size, style, seed=int(i)
            )
            for i in q
        ]
        dv = drawing_embedder.embed_images(drawings)
        result = evaluate.sketch_retrieval(dv, labels[q], vecs, labels, source_index=q)
        idx = metrics.neighbours(dv, vecs, 5)
        per_query += (labels[idx] == labels[q][:, None]).mean(axis=1) / len(styles)
        out["styles"][style] = {k: result[k] for k in ("p_at_5", "p_at_5_se", "source_hit_at_1", "source_hit_at_10")}
    out["p_at_5"] = float(per_query.mean()) if len(q) else 0.0
    out["p_at_5_se"] = metrics.standard_error(per_query)
    out["per_query"] = dict(zip([items[i].product_id for i in q], per_query.tolist()))
    return out


def adapt_sketch(
    photo_path: Path, photo, catalog: Catalog, work: Path, minutes: float, options: Options, reporter: Reporter
) -> dict:
    """Train a sketch encoder for the newly installed photo model, measure it against drawings embedded by the photo
    model itself (what search by sketch does without one) on the store's test split, and install it into the
    models folder's sketch/ only if it is better. A failure here never touches the photo model just installed."""
    from . import runtime
    from .ml import adaptation, datasets

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
            options.sketch_recipe,
            on_epoch=lambda e, n, _: reporter.stage(f"Sketch encoder: epoch {e}/{n}", 0.91 + 0.02 * e / max(n, 1)),
            command=options.command,
        )
        encoder = runtime.load_embedder(out)
    except (ValueError, RuntimeError, OSError, runtime.ModelUnavailable) as exc:
        text = f"The sketch encoder could not be trained ({exc}); search by sketch uses the photo model."
        reporter.line(text)
        return {"installed": False, "message": text}
    seconds = time.time() - started
    gallery = embed_catalog(photo, catalog.items)
    without = measure_sketch(photo, photo, catalog, gallery)
    with_encoder = measure_sketch(photo, encoder, catalog, gallery)
    diff = compare(without, with_encoder)
    result = {
        "photo_model_alone": _public(without),
        "candidate": _public(with_encoder),
        "difference": diff,
        "seconds": round(seconds, 1),
        "epochs": sum(1 for h in card.get("history", []) if "epoch" in h),
        "styles": list(SKETCH_MEASURE_STYLES),
    }
    reporter.line(
        "Search by sketch on the store's test split (drawings: {}; P@5, acc@10 = the drawn product in the "
        "top 10):".format(", ".join(SKETCH_MEASURE_STYLES))
    )
    for name, r in (("photo model alone", without), ("sketch encoder", with_encoder)):
        acc = ", ".join(f"{s} acc@10 {v['source_hit_at_10']:.3f}" for s, v in r["styles"].items())
        reporter.line(f"  {name:18s} P@5 {r['p_at_5']:.4f} ({r['p_at_5_se']:.4f}); {acc}")
    if diff["gain"] > 0:
        from . import model_store

        card["adaptation"] = {k: result[k] for k in ("photo_model_alone", "candidate", "difference")}
        out.with_suffix(".card.json").write_text(json.dumps(card, indent=2) + "\n")
        model_store.add_version(out, encoder.version, folder=model_store.sketch_dir())
        result["installed"], result["version"] = True, encoder.version
        result["message"] = f"Installed the sketch encoder {encoder.version} for the new photo model."
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


def rollback(version: str | None, reindex_mode: str, reporter: Reporter) -> dict:
    """Point the models folder back at an installed version (default: the previous one), then reindex with no gap."""
    from . import runtime
    from .indexing import builds

    if conf.get("EMBEDDER_WEIGHTS"):
        raise AdaptError(
            "FASHION_AI['EMBEDDER_WEIGHTS'] is set, so the models folder is not used: change that setting instead."
        )
    try:
        builds.adopt(runtime.get_embedder(), requested_by="fashion_adapt --rollback")
    except runtime.ModelUnavailable:
        pass
    try:
        target = version or model_store.previous_version()
        pointer = model_store.activate_version(target, reason="fashion_adapt --rollback")
    except model_store.StoreError as exc:
        raise AdaptError(str(exc)) from exc
    reporter.line(f"The shop's photo model is now {pointer['version']}.")
    return {"version": pointer["version"], "reindex": reindex(reindex_mode, reporter, "fashion_adapt --rollback")}


# --- the dashboard's task ------------------------------------------------------------------------------------

#: Options of the dashboard's task beyond the defaults (a shop's own code, or tests, may set thresholds here).
TASK_OPTIONS: dict = {}
STALE_AFTER_S = 15 * 60  # a running row without progress for this long belongs to a worker that died


def busy_run():
    """The adaptation queued or running now (None when there is none, or when its worker stopped reporting)."""
    from .models import AdaptationRun

    row = AdaptationRun.objects.filter(state__in=[AdaptationRun.State.QUEUED, AdaptationRun.State.RUNNING]).first()
    if row is None:
        return None
    if (timezone.now() - row.date_updated).total_seconds() > STALE_AFTER_S and row.state == AdaptationRun.State.RUNNING:
        return None
    return row


def run_queued(run_id: int, max_attempts: int = 3) -> dict:
    """The task's body: run the adaptation recorded in ``AdaptationRun`` ``run_id``, storing progress and outcome."""
    from .models import AdaptationRun

    row = AdaptationRun.objects.filter(pk=run_id).first()
    if row is None or row.done:
        return {"skipped": True}
    if row.state == AdaptationRun.State.RUNNING and (timezone.now() - row.date_updated).total_seconds() < STALE_AFTER_S:
        return {"skipped": True, "reason": "already running"}  # a redelivered message while the first still runs
    attempts = row.attempts + 1
    if attempts > max_attempts:
        AdaptationRun.objects.filter(pk=run_id).update(
            state=AdaptationRun.State.FAILED,
            date_finished=timezone.now(),
            message=f"Stopped after {max_attempts} attempts (the worker died each time; see its log).",
        )
        return {"failed": True}
    AdaptationRun.objects.filter(pk=run_id).update(
        state=AdaptationRun.State.RUNNING,
        attempts=attempts,
        date_started=row.date_started or timezone.now(),
        stage="Starting",
    )
    row.refresh_from_db()
    lines = []
    reporter = Reporter(row, write=lines.append)
    try:
        result = run(
            Options(
                **{
                    **TASK_OPTIONS,
                    "resume": attempts > 1,
                    "progress": False,
                    "command": "dashboard: Adapt to my catalog",
                }
            ),
            reporter,
            row,
        )
    except AdaptError as exc:
        AdaptationRun.objects.filter(pk=run_id).update(
            state=AdaptationRun.State.FAILED, message=str(exc), date_finished=timezone.now(), stage="", progress=1.0
        )
        return {"failed": True, "error": str(exc)}
    except Exception as exc:  # kombu's connection errors
        logger.exception("Fashion AI: adaptation %s crashed", run_id)
        AdaptationRun.objects.filter(pk=run_id).update(
            state=AdaptationRun.State.FAILED,
            date_finished=timezone.now(),
            message=f"Crashed: {type(exc).__name__}: {exc}. The model in use is unchanged.",
            stage="",
            progress=1.0,
        )
        raise
    AdaptationRun.objects.filter(pk=run_id).update(
        state=AdaptationRun.State.INSTALLED if result.get("installed") else AdaptationRun.State.KEPT,
        message="\n".join(lines),
        result=result,
        installed_version=result.get("version", ""),
        date_finished=timezone.now(),
        stage="Done",
        progress=1.0,
    )
    return {"installed": bool(result.get("installed")), "version": result.get("version")}


def queue_run(requested_by: str):
    """Record and queue an adaptation (the dashboard button). Raises AdaptError when one is already under way or the
    broker refuses the task (then nothing stays queued)."""
    from .models import AdaptationRun

    busy = busy_run()
    if busy is not None:
        raise AdaptError(
            f"An adaptation is already {busy.get_state_display().lower()} (requested by "
            f"{busy.requested_by or 'someone'} at {busy.date_created:%Y-%m-%d %H:%M})."
        )
    if conf.get("EMBEDDER_WEIGHTS"):
        raise AdaptError(
            "FASHION_AI['EMBEDDER_WEIGHTS'] is set, so an adapted model would not be used: set it to None "
            "to use the models folder."
        )
    row = AdaptationRun.objects.create(requested_by=requested_by[:150])
    try:
        result = publishing.task(publishing.ADAPT_CATALOG).apply_async(
            args=[row.pk], queue=conf.get("TRAINING_QUEUE"), retry=True, retry_policy=publishing.PUBLISH_RETRY
        )
    except Exception as exc:
        row.delete()
        raise AdaptError(
            f"The task broker is unreachable ({exc}); nothing was queued. Start Redis and a worker, or "
            "run `python manage.py fashion_adapt`."
        ) from exc
    AdaptationRun.objects.filter(pk=row.pk).update(task_id=result.id or "")
    return row
