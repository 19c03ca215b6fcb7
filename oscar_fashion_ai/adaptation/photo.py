"""One adaptation run: train a photo model candidate, measure it against the model in use, install it only if it
is better, reindex with no gap; and the rollback."""

from __future__ import annotations

import json
import logging
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from .. import conf, model_store
from .catalog import AdaptError, Options, Reporter, check_catalog, collect, records_fingerprint
from .locator import adapt_locator
from .measuring import compare, embed_catalog, measure, public_result
from .sketch import adapt_sketch, sketch_notice

logger = logging.getLogger(__name__)


def run(options: Options, reporter: Reporter, run_row=None) -> dict:
    """Adapt, measure, and install a better candidate. Returns the outcome (``installed``: True/False, metrics).
    Raises :class:`AdaptError` for a store that cannot be adapted; the model in use is never touched unless the
    candidate is better and fully written."""
    from .. import runtime
    from ..indexing import builds
    from ..ml import adaptation, datasets

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
    fingerprint = records_fingerprint(records)
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
    now_gallery = embed_catalog(current, catalog.items, options.progress)
    cand_gallery = embed_catalog(candidate, catalog.items, options.progress)
    now_result = measure(current, catalog, gallery=now_gallery)
    cand_result = measure(candidate, catalog, gallery=cand_gallery)
    diff = compare(now_result, cand_result)
    better = diff["gain"] > options.min_gain
    image_epochs = len(records) * max(epochs_done, 1)
    result = {
        "model_in_use": public_result(now_result),
        "candidate": public_result(cand_result),
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
            previous = (current, runtime.get_sketch_embedder(current), now_gallery)
            result["sketch_encoder"] = adapt_sketch(
                installed, candidate, catalog, work, sketch_minutes, options, reporter, previous, cand_gallery
            )
        if not result.get("sketch_encoder", {}).get("installed"):
            result["sketch"] = sketch_notice()
            reporter.line(result["sketch"])
        locator_minutes = (
            options.locator_minutes
            if options.locator_minutes is not None
            else float(conf.get("ADAPT_LOCATOR_MAX_MINUTES"))
        )
        if locator_minutes > 0 and model_store.locator_for(candidate.sha256) is None:
            result["locator"] = adapt_locator(
                installed, candidate, catalog, work, locator_minutes, options, reporter, cand_gallery
            )
        if model_store.locator_for(candidate.sha256) is None:
            result["photo_crop"] = LOCATOR_NOTICE
            reporter.line(LOCATOR_NOTICE)
        result["reindex"] = reindex(options.reindex, reporter, "fashion_adapt")
    if not options.keep_work:
        for name in ("pairs", "sketch-pairs", "sketch-checkpoints"):
            shutil.rmtree(work / name, ignore_errors=True)
    if result.get("installed") or not result["training"]["stopped_early"]:
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
        state_file.unlink(missing_ok=True)
    result["seconds"] = round(time.time() - started, 1)
    return result


#: What search by photo's preset crop box does after the photo model changed (the trained locator reads the
#: previous model's features).
LOCATOR_NOTICE = (
    "Search by photo keeps its preset crop box: until a garment locator is trained for the new photo model "
    "(`manage.py fashion_train_locator --from-store`, about 5-12 minutes on 2 cores), the box comes from the model's "
    "activation map, which fits the garment less tightly."
)


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
    from ..indexing import index

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


def rollback(version: str | None, reindex_mode: str, reporter: Reporter) -> dict:
    """Point the models folder back at an installed version (default: the previous one), then reindex with no gap."""
    from .. import runtime
    from ..indexing import builds

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
