"""The training recipe of ``fashion_adapt``: a candidate photo model trained on a shop's own labelled products.

This is the one place ``fashion_adapt`` (and the dashboard's "Adapt to my catalog" task) trains: change the recipe
here. It runs :func:`oscar_fashion_ai.ml.training.embedder.train` in its cached mode on the CPU (frozen early blocks of
the ImageNet EfficientNet-Lite0 computed once, later blocks and the projection trained) and its full mode on a GPU.
Pure PyTorch: the caller hands in the labelled records (never the shop's test-split products).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

#: The default recipe (docs/MODELS.md, "Adapting the models to your catalog", says how it was measured).
DEFAULT_RECIPE = {
    "mode": "auto",  # cached on the CPU, full on CUDA
    "init": "imagenet",  # the ImageNet Lite0 trunk, not the model in use (which may be tuned to another domain)
    "epochs": 14,
    "sketch_share": 0.0,  # photos only: drawings keep their own encoder (or the photo model, see fashion_adapt)
    "image_size": 160,
    "dim": 256,
    "split_block": 5,
    "batch_size": 64,
    "lr": 2e-3,
    # jittered copies of each photo (crop, colour, low resolution) among the cached views: studio validation P@5
    # 0.805 against 0.789 without (+0.016 +- 0.009 paired; 2 copies 0.801, 8 copies 0.790; docs/MODELS.md)
    "jitter_views": 4,
    # an instance term (each product its own class, CosFace) at 0.15 of the category loss keeps a product's views
    # apart from the rest of its category, so a drawing finds the drawn product: studio validation, same run
    # conditions, photo P@5 0.802 against 0.785 without (+0.017 +- 0.009 paired), the sketch step's XDoG acc@10 0.164
    # against 0.121 (weight 0.5: photo P@5 -0.028; docs/MODELS.md, "An instance term in the photo step")
    "instance_weight": 0.15,
}


@dataclass
class Budget:
    max_minutes: float | None = None  # stop after the epoch that passes this (the model so far is the candidate)
    resume: bool = False  # continue from the checkpoint of an interrupted run with the same work folder
    threads: int = 0
    workers: int = 0  # processes that decode images (0 = CPUs)
    device: str | None = None
    seed: int = 0
    progress: bool = True


def train_candidate(
    records,
    out: Path,
    work_dir: Path,
    budget: Budget | None = None,
    recipe: dict | None = None,
    on_epoch=None,
    command: str = "python manage.py fashion_adapt",
) -> dict:
    """Train a candidate photo model on ``records`` (:class:`.datasets.Record` with the shop's labels) and write it
    to ``out`` (with its model card). Returns the card. ``work_dir`` keeps the decoded images and the checkpoint, so
    that ``budget.resume`` continues an interrupted run."""
    from .training.embedder import TrainConfig, train

    budget = budget or Budget()
    recipe = {**DEFAULT_RECIPE, **(recipe or {})}
    work_dir = Path(work_dir)
    init = recipe.pop("init")
    cfg = TrainConfig(
        source="shop catalog",
        out=str(out),
        mode=recipe.pop("mode"),
        init_weights=None if init == "imagenet" else init,
        checkpoint_dir=str(work_dir / "checkpoints"),
        pairs_cache=str(work_dir / "pairs"),
        **asdict(budget),
        command=command,
        **recipe,
    )
    card = train(cfg, records=records, on_epoch=on_epoch)
    card["recipe"] = {**DEFAULT_RECIPE, **{k: v for k, v in asdict(cfg).items() if k in DEFAULT_RECIPE}}
    return card


#: The sketch encoder ``fashion_adapt`` trains for a newly installed photo model (:mod:`.training.sketch_encoder` on
#: the CPU: the frozen prefix of the drawings computed once, the later blocks trained).
SKETCH_RECIPE = {
    # "in-use": start from the sketch encoder search by sketch used before (fashion_adapt hands its file in; its
    # drawing-adapted trunk is kept and aimed at the new photo space), "photo": from the new photo model's weights,
    # or a weights file. Chosen on validation: docs/SKETCH.md, "The shop's own catalog".
    "init": "in-use",
    "epochs": 8,
    "batch_size": 64,
    "lr": 1e-3,
    "category_weight": 4.0,
    "variants": 6,
    "styles": "xdog,edges,outline,abstract,doodle",  # the shipped encoder's mix, chosen on validation (docs/SKETCH.md)
    "split_block": 11,
}


def train_sketch_candidate(
    records,
    photo_weights: Path,
    out: Path,
    work_dir: Path,
    budget: Budget | None = None,
    recipe: dict | None = None,
    on_epoch=None,
    command: str = "python manage.py fashion_adapt",
) -> dict:
    """Train a sketch encoder for ``photo_weights`` on ``records`` (every measurable product of the shop: the
    test split, ``sha1(upc) % 5 == 0``, is held out by the trainer) and write it to ``out``; returns its card.
    ``recipe["init"]`` is a weights file to start from; anything else ("photo", or "in-use" when the caller had no
    sketch encoder to hand in) starts from the photo model's own weights."""
    from .training.sketch_encoder import SketchTrainConfig, train

    budget = budget or Budget()
    recipe = {**SKETCH_RECIPE, **(recipe or {})}
    work_dir = Path(work_dir)
    init = recipe.pop("init")
    cfg = SketchTrainConfig(
        source="shop catalog",
        out=str(out),
        photo_weights=str(photo_weights),
        init_weights=None if init in ("photo", "in-use") else str(init),
        checkpoint_dir=str(work_dir / "sketch-checkpoints"),
        pairs_cache=str(work_dir / "sketch-pairs"),
        **asdict(budget),
        command=command,
        **recipe,
    )
    card = train(cfg, records=records, on_epoch=on_epoch)
    card["recipe"] = {**recipe, "init": Path(cfg.init_weights).name if cfg.init_weights else "photo"}
    return card
