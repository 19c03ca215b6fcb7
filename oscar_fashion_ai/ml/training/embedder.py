"""Fine-tune the Image2Vec embedder on a labelled image set.

Two modes:

* ``cached`` (the CPU configuration, here): the stem and the first ``split`` blocks of the pretrained
  EfficientNet-Lite0 are frozen; their outputs for every training image (and its mirror image) are
  computed once and cached, and the remaining blocks, pooling and projection are trained on the
  cache. On 2 CPU cores this finishes in minutes instead of hours.
* ``full`` (the GPU configuration, :mod:`.embedder_full`): end-to-end fine-tuning with random crops, flips and
  colour jitter, trained jointly on photos and synthetic drawings of them (:mod:`..pairs`): besides the classifier
  on both, a symmetric InfoNCE term pulls each drawing towards its own photo and away from the other photos in the
  batch, so a drawing finds its product, not only its category.

Both train a cosine-margin classifier (CosFace) on top of the normalised embedding, which shapes
the embedding space for nearest-neighbour retrieval; the classifier is discarded afterwards.
The split is the project's fixed one (:func:`oscar_fashion_ai.ml.datasets.is_test`).

    python -m oscar_fashion_ai.ml.training.embedder --source DATA --out lite0-fashion.safetensors [...]

(``python -m oscar_fashion_ai.ml.train_embedder`` and the management command ``fashion_train_embedder`` take the
same options.)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import backbones, metrics, weights
from .augment import jitter_photos, normalise_uint8
from .cards import RELEVANCE, save_photo_model
from .checkpoint import Checkpoint, Deadline
from .config import (
    PairsConfig,
    add_pairs_arguments,
    add_precision_arguments,
    add_source_arguments,
    add_validation_argument,
    config_from,
    log,
    setup,
)
from .features import frozen_views
from .losses import CosFace
from .schedule import one_cycle
from .splits import LabelledData, load_pairs


@dataclass(kw_only=True)
class TrainConfig(PairsConfig):
    mode: str = "auto"  # auto -> full on CUDA, cached on CPU
    backbone: str = "lite0"
    backbone_weights: str | None = None
    dim: int = 256
    image_size: int = 160
    split_block: int = 5
    epochs: int = 14
    sketch_share: float = 0.3  # share of training samples shown as XDoG line drawings
    feature_dropout: float = 0.1  # cached mode: channel dropout on the cached features
    jitter_views: int = 0  # cached mode: jittered copies of each photo cached beside it (augment.jitter_photos)
    instance_weight: float = 0.0  # cached mode: weight of a CosFace term over products (each product its own class)
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    margin: float = 0.2
    scale: float = 24.0
    label_smoothing: float = 0.1
    init_weights: str | None = None  # start from a trained embedder (.safetensors) instead of ImageNet
    pair_weight: float = 1.0  # full mode: weight of the drawing<->photo InfoNCE term
    photos_only: bool = False  # full mode: train on photos alone (drawings get their own encoder, see
    #                            sketch_encoder)
    validation: bool = False  # hold out the validation split (datasets.is_validation) and report metrics on it
    sketch_tower: bool = False  # full mode: drawings go through a second network (the sketch encoder), trained
    #                             jointly; written beside --out as <name>-sketch.safetensors
    temperature: float = 0.05


def train(cfg: TrainConfig, records=None, on_epoch=None) -> dict:
    """Train and write the weights and model card; returns the card. ``records``: the labelled images
    (:class:`..datasets.Record`) to use instead of reading ``cfg.source``; ``on_epoch(epoch, epochs, entry)`` is
    called after every epoch with its history entry (e.g. to report progress)."""
    started = time.time()
    device = setup(cfg)
    mode = cfg.mode if cfg.mode != "auto" else ("full" if device.type == "cuda" else "cached")
    if mode == "cached" and cfg.backbone != "lite0":
        raise ValueError("cached mode supports the lite0 backbone; use --mode full for others")

    data = LabelledData.split(cfg.source, cfg.limit, cfg.seed, cfg.validation, records=records)
    log(
        cfg,
        f"{len(data.records)} images, {len(data.labels)} labels, {len(data.train_idx)} train / "
        f"{data.val_mask.sum()} validation / {data.test_mask.sum()} test; mode={mode}, device={device}",
    )
    model = start_model(cfg)
    head = CosFace(cfg.dim, len(data.labels), cfg.scale, cfg.margin)
    model.to(device)
    head.to(device)
    # photos and synthetic drawings (full: cfg.variants per image; cached: the deterministic one + one randomised)
    photos, drawings, _, kept = load_pairs(cfg, data.records, cfg.image_size, cfg.variants if mode == "full" else 2)
    if len(kept) < len(data.records):
        log(cfg, f"{len(data.records) - len(kept)} unreadable images skipped")
        data = data.keep(kept)
    if mode == "full":
        from .embedder_full import train_full

        return train_full(cfg, model, head, data, device, started, photos, drawings, on_epoch)
    return _train_cached(cfg, model, head, data, device, started, photos, drawings, on_epoch)


def start_model(cfg: TrainConfig):
    """The network to fine-tune: ImageNet-initialised, or ``cfg.init_weights`` (with that file's activation)."""
    activation = backbones.DEFAULT_ACTIVATION
    if cfg.init_weights:  # the start point's own activation (files from before it was recorded: swish)
        try:
            activation = backbones.activation_of(weights.read_metadata(Path(cfg.init_weights)))
        except (OSError, ValueError) as exc:
            raise ValueError(f"Cannot start from {cfg.init_weights}: {exc}") from exc
    model = backbones.build(
        cfg.backbone,
        dim=cfg.dim,
        image_size=cfg.image_size,
        backbone_weights=cfg.backbone_weights,
        pretrained=cfg.init_weights is None,
        activation=activation,
    )
    if cfg.init_weights:
        try:
            state, _ = weights.load(Path(cfg.init_weights))
            model.load_state_dict(state, strict=True)
        except (OSError, RuntimeError, ValueError) as exc:
            raise ValueError(f"Cannot start from {cfg.init_weights}: {exc}") from exc
    return model


def _train_cached(cfg, model, head, data: LabelledData, device, started, photos, drawings, on_epoch):
    """The later blocks, pooling and projection trained on the cached frozen-prefix features of the views: original,
    mirrored, the line drawing (with ``sketch_share``) and ``jitter_views`` jittered copies."""
    images = normalise_uint8(torch.from_numpy(photos))
    drawings = normalise_uint8(torch.from_numpy(drawings[:, 1])) if cfg.sketch_share > 0 else None
    jittered = [jitter_photos(photos, seed=cfg.seed * 1000 + k) for k in range(cfg.jitter_views)]
    trunk = model.trunk
    trunk.freeze_until(cfg.split_block)
    # (V, N, C, H, W) half precision; views: original, mirrored[, line drawing], jittered copies
    feats = frozen_views(trunk, cfg.split_block, images, drawings, device, cfg.image_size, cfg.progress, jittered)
    forward = lambda x: model.embed_features(trunk.forward_from(x, cfg.split_block))  # noqa: E731
    # with instance_weight: one class per product, so that a product's views stay apart from its category's others
    instances = CosFace(cfg.dim, len(data.records), cfg.scale, cfg.margin).to(device) if cfg.instance_weight else None
    heads = {"head": head} | ({"instances": instances} if instances is not None else {})
    params = [p for m in (model, *heads.values()) for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(data.train_idx) / cfg.batch_size)
    checkpoint = Checkpoint(cfg.out, cfg.checkpoint_dir)
    start_epoch, history = checkpoint.resume(cfg, device, model=model, optimizer=optimizer, **heads)
    scheduler = one_cycle(optimizer, cfg.lr, steps_per_epoch * cfg.epochs, start_epoch * steps_per_epoch)
    deadline = Deadline(cfg.max_minutes, started)

    epochs, loop_started = cfg.epochs, time.time()
    for epoch in range(start_epoch, cfg.epochs):
        if epoch >= epochs:
            break
        model.train()
        head.train()
        entry = _cached_epoch(
            cfg,
            forward,
            heads,
            optimizer,
            scheduler,
            feats,
            drawings is not None,
            data,
            epoch,
            epochs,
            steps_per_epoch,
            device,
        )
        history.append(entry)
        checkpoint.save(epoch + 1, history, model=model, optimizer=optimizer, scheduler=scheduler, **heads)
        # Fit the epochs to the budget: at the measured pace, how many fit in what is left? The learning-rate
        # schedule is re-planned for that many (it still ends annealed instead of being cut off at its peak).
        fitted = deadline.fit(loop_started, epoch + 1 - start_epoch, epoch, epochs)
        if fitted:
            epochs, per_epoch = fitted
            scheduler = one_cycle(optimizer, cfg.lr, steps_per_epoch * epochs, (epoch + 1) * steps_per_epoch)
            history.append({"epochs_fitted_to_budget": epochs, "seconds_per_epoch": round(per_epoch, 1)})
            log(cfg, f"--max-minutes {cfg.max_minutes}: {epochs} epochs fit ({per_epoch:.0f} s each)")
            if epochs == epoch + 1:
                history.append({"stopped_early": True})
        if on_epoch is not None:
            on_epoch(epoch + 1, epochs, entry)

    model.eval()
    with torch.inference_mode():
        vecs = torch.cat(
            [
                forward(feats[0, start : start + 128].to(device).float()).float().cpu()
                for start in range(0, len(data.records), 128)
            ]
        ).numpy()
    label_arr = data.label_array()
    out = {}
    for name, mask in (("", data.test_mask), ("validation_", data.val_mask)):
        q = np.flatnonzero(mask)
        if len(q):
            out[f"{name}image_to_image"] = (
                metrics.category_retrieval(vecs[q], label_arr[q], vecs, label_arr, query_gallery_index=q) | RELEVANCE
            )
    return save_photo_model(cfg, model, data, "cached", device, history, started, out)


def _cached_epoch(
    cfg, forward, heads, optimizer, scheduler, feats, with_drawings, data, epoch, epochs, steps, device
) -> dict:
    """One epoch on the cached features: each sample is shown as its original, mirrored or one of its jittered
    views (equally likely) or (a share ``cfg.sketch_share``) its drawn view; CosFace loss. Returns the epoch's
    history entry. With ``cfg.instance_weight`` the loss adds that weight x a CosFace term over products."""
    from tqdm import tqdm

    head, instances = heads["head"], heads.get("instances")
    order = np.random.default_rng(cfg.seed + epoch).permutation(data.train_idx)
    total, correct, loss_sum = 0, 0, 0.0
    bar = tqdm(range(steps), desc=f"Epoch {epoch + 1}/{epochs}", disable=not cfg.progress)
    for step in bar:
        idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        if len(idx) < 2:
            continue
        rng = np.random.default_rng(cfg.seed * 7919 + epoch * 1000 + step)
        # 0 original, 1 mirrored, then the drawing (with drawings) and the jittered copies
        view = rng.integers(0, 2 + cfg.jitter_views, len(idx))
        if with_drawings:
            view[view >= 2] += 1
            view[rng.random(len(idx)) < cfg.sketch_share] = 2
        x = torch.stack([feats[v, i] for v, i in zip(view, idx)]).to(device).float()
        if cfg.feature_dropout:
            x = F.dropout2d(x, cfg.feature_dropout, training=True)
        target = data.y[idx].to(device)
        emb = forward(x)
        loss = F.cross_entropy(head(emb, target), target, label_smoothing=cfg.label_smoothing)
        if instances is not None:
            own = torch.as_tensor(idx, device=device)
            loss = loss + cfg.instance_weight * F.cross_entropy(instances(emb, own), own)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += loss.item() * len(idx)
        total += len(idx)
        correct += int((head(emb.detach()).argmax(1) == target).sum())
        bar.set_postfix(loss=f"{loss_sum / total:.3f}", acc=f"{correct / total:.3f}")
    return {"epoch": epoch + 1, "loss": loss_sum / max(total, 1), "train_acc": correct / max(total, 1)}


# --- command line -------------------------------------------------------------------------------------------------


def add_arguments(parser):
    """The training options, shared by ``python -m oscar_fashion_ai.ml.training.embedder`` and the management
    command ``fashion_train_embedder``."""
    d = TrainConfig(source="", out="")
    add_source_arguments(parser, "Weights file to write (.safetensors); the model card goes beside it.")
    parser.add_argument(
        "--mode",
        choices=["auto", "cached", "full"],
        default=d.mode,
        help="auto: full on CUDA, cached (frozen early blocks) on the CPU.",
    )
    parser.add_argument("--backbone", default=d.backbone)
    parser.add_argument("--backbone-weights", default=None, help="Local ImageNet weights for torchvision:<arch>.")
    parser.add_argument("--init-weights", default=None, help="Start from a trained embedder (.safetensors).")
    parser.add_argument("--dim", type=int, default=d.dim)
    parser.add_argument("--image-size", type=int, default=d.image_size)
    parser.add_argument("--split-block", type=int, default=d.split_block)
    parser.add_argument(
        "--sketch-share",
        type=float,
        default=d.sketch_share,
        help="cached mode: share of samples shown as XDoG line drawings (0 = photos only).",
    )
    parser.add_argument(
        "--jitter-views",
        type=int,
        default=d.jitter_views,
        help="cached mode: jittered copies of each photo (crop, colour, low resolution) cached as extra views.",
    )
    parser.add_argument(
        "--instance-weight",
        type=float,
        default=d.instance_weight,
        help="cached mode: weight of a CosFace term with each product its own class (0 = off).",
    )
    parser.add_argument(
        "--pair-weight",
        type=float,
        default=d.pair_weight,
        help="full mode: weight of the drawing<->photo InfoNCE term.",
    )
    parser.add_argument(
        "--photos-only",
        action="store_true",
        help="full mode: train on photos alone; drawings get their own encoder (fashion_train_sketch_encoder).",
    )
    add_validation_argument(parser)
    parser.add_argument(
        "--sketch-tower",
        action="store_true",
        help="full mode: drawings go through their own network, trained jointly; written beside "
        "--out as <name>-sketch.safetensors.",
    )
    add_precision_arguments(parser, d.half)
    add_pairs_arguments(parser, d, variants_help="full mode: synthetic drawings per image.")


def config_from_args(args, **overrides) -> TrainConfig:
    """A :class:`TrainConfig` from parsed options (a namespace or a management command's options dict)."""
    return config_from(TrainConfig, args, **overrides)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description="Fine-tune the Image2Vec embedder; writes weights + a model card.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    if not args.source or not args.out:
        parser.error("--source and --out are required")
    if not 1 <= args.dim <= backbones.MAX_DIM:
        parser.error(f"--dim must be between 1 and {backbones.MAX_DIM}")
    train(config_from_args(args))


if __name__ == "__main__":
    main()
