"""Train the sketch encoder: a second copy of the embedding network that maps a shopper's drawing into the
photo embedder's vector space.

One network for photos and drawings has to trade one against the other (docs/SKETCH.md): the
more it is pulled towards drawings, the worse photo-to-photo search gets. Here the photo embedder is frozen
and only the sketch encoder learns. For each training photo its frozen vector is the target of that photo's
synthetic drawings (:mod:`..pairs`):

* an instance term: softmax over *every* training photo's vector, so a drawing finds its own product
  among the whole catalog, not only among the batch;
* a category term: softmax over the categories' mean photo vectors, so near misses stay in the category.

The photo index is untouched (no reindex). The weights record the checksum of the photo weights they were
trained against; the plugin uses the encoder only with that photo model.

    python -m oscar_fashion_ai.ml.training.sketch_encoder --source DATA --photo-weights PHOTO --out FILE [...]

(``python -m oscar_fashion_ai.ml.train_sketch_encoder`` and ``fashion_train_sketch_encoder`` take the same options.)
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics, weights
from ..embedder import version_string
from ..evaluate import sketch_retrieval
from .augment import normalise_uint8
from .cards import SKETCH_QUERIES, save_sketch_encoder, training_entry
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
from .features import embed_uint8, frozen_drawings, load_network
from .schedule import one_cycle
from .splits import LabelledData, load_pairs, prefixed_records, split_card


@dataclass(kw_only=True)
class SketchTrainConfig(PairsConfig):
    photo_weights: str
    init_weights: str | None = None  # default: start from the photo weights
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.05
    category_weight: float = 0.5
    validation: bool = False  # hold out the validation split (datasets.is_validation) and report metrics on it
    extra_sources: tuple = ()  # further labelled sets trained on beside ``source`` (labels kept apart per set)
    split_block: int = 0  # > 0: blocks before it stay frozen and their outputs are computed once (CPU-friendly)
    half: bool = True


class _Targets:
    """The frozen photo model's vectors: every photo's (the gallery of the card's figures), the training photos'
    (the instance term's classes) and the categories' normalised means over them (the category term's)."""

    def __init__(self, photo_vecs, data: LabelledData, device):
        train_idx = torch.as_tensor(data.train_idx, device=device)
        self.all = photo_vecs
        self.gallery = photo_vecs[train_idx]
        self.train_pos = torch.full((len(data.records),), -1, dtype=torch.long, device=device)
        self.train_pos[train_idx] = torch.arange(len(train_idx), device=device)
        prototypes = torch.zeros(len(data.labels), photo_vecs.shape[1], device=device)
        self.prototypes = F.normalize(prototypes.index_add_(0, data.y[train_idx], self.gallery), dim=1)


def train(cfg: SketchTrainConfig, records=None, on_epoch=None) -> dict:
    """Train and write the encoder and its card; returns the card. ``records``: the labelled images
    (:class:`..datasets.Record`) to use instead of reading ``cfg.source`` (their test split is held out);
    ``on_epoch(epoch, epochs, entry)`` is called after every epoch."""
    started = time.time()
    device = setup(cfg)
    amp = device.type == "cuda"
    photo_net, meta = load_network(cfg.photo_weights, device)
    photo_net.eval()
    photo_sha = weights.sha256(Path(cfg.photo_weights))
    backbone, dim, size = meta.get("backbone", "lite0"), int(meta.get("dim", 256)), int(meta.get("image_size", 160))
    net, _ = load_network(cfg.init_weights or cfg.photo_weights, device, like=meta)

    given = records is not None
    if not given and cfg.extra_sources:  # labels kept apart per set ("<set>:<label>"), as in the robust recipe
        records = prefixed_records((cfg.source, *cfg.extra_sources))
    data = LabelledData.split(cfg.source, cfg.limit, cfg.seed, cfg.validation, records=records)
    photos, drawings, _, kept = load_pairs(cfg, data.records, size, cfg.variants)
    data = data.keep(kept)
    data.y = data.y.to(device)
    log(
        cfg,
        f"{len(data.records)} images, {len(data.labels)} labels, {len(data.train_idx)} train / "
        f"{data.val_mask.sum()} validation / {data.test_mask.sum()} test; device={device}; photo model "
        f"{version_string(backbone, dim, size, photo_sha)}",
    )

    targets = _Targets(embed_uint8(photo_net, photos, device, amp), data, device)
    del photo_net
    drawings_t = torch.from_numpy(drawings)
    if device.type == "cuda":
        drawings_t = drawings_t.to(device)
    cached = None
    if cfg.split_block:  # frozen prefix: its outputs once per drawing (ONNX Runtime on the CPU), only the rest trains
        net.trunk.freeze_until(cfg.split_block)
        _freeze_batchnorm(net)  # BatchNorm statistics stay as they are (small batches of cached features)
        cached = frozen_drawings(net.trunk, cfg.split_block, drawings, device, cfg.progress)
    optimizer = torch.optim.AdamW(
        [p for p in net.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    steps_per_epoch = max(1, math.ceil(len(data.train_idx) / cfg.batch_size))
    checkpoint = Checkpoint(cfg.out, cfg.checkpoint_dir)
    start_epoch, history = checkpoint.resume(cfg, device, model=net, optimizer=optimizer)
    scheduler = one_cycle(optimizer, cfg.lr, steps_per_epoch * cfg.epochs, start_epoch * steps_per_epoch)
    if device.type == "cuda" and cached is None:
        net = net.to(memory_format=torch.channels_last)

    deadline = Deadline(cfg.max_minutes, started)
    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs):
        net.train()
        if cached is not None:
            _freeze_batchnorm(net)
        history.append(
            _epoch(
                cfg, net, optimizer, scheduler, targets, data, drawings_t, cached, epoch, steps_per_epoch, device, amp
            )
        )
        if on_epoch is not None:
            on_epoch(epoch + 1, cfg.epochs, history[-1])
        checkpoint.save(epoch + 1, history, model=net, optimizer=optimizer, scheduler=scheduler)
        if deadline.passed(cfg, epoch + 1, cfg.epochs):
            stopped_early = True
            break

    net.eval()
    metrics_out = _measure(net, drawings, targets, data, device, amp)
    history.append({"stopped_early": stopped_early})
    card = {
        "model": "Sketch encoder (drawings into the Image2Vec photo space)",
        "architecture": f"{backbone} + GeM pooling + linear {dim}-d, L2-normalised (same as the photo model); "
        f"initialised from {Path(cfg.init_weights or cfg.photo_weights).name}; photo model frozen",
        "data": {
            "source": cfg.source if given else Path(cfg.source).name,
            "extra_sources": [Path(x).name for x in cfg.extra_sources],
            "images": len(data.records),
            "labels": data.labels,
            "drawings": f"{cfg.variants} synthetic drawings per photo, styles {cfg.styles} (ml/sketches.py)",
        },
        "split": split_card(data.train_idx, data.masks),
        "training": training_entry(cfg),
        "history": history,
        "metrics": metrics_out,
        "command": cfg.command,
    }
    card = save_sketch_encoder(
        net,
        Path(cfg.out),
        Path(cfg.photo_weights),
        meta | {"labels": json.dumps(data.labels)},
        cfg.half,
        card,
        device,
        started,
    )
    log(cfg, f"{json.dumps(metrics_out)}  ({card['wall_time_s']:.0f} s) -> {cfg.out}")
    return card


def _freeze_batchnorm(net) -> None:
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()


def _epoch(
    cfg, net, optimizer, scheduler, targets: _Targets, data, drawings_t, cached, epoch, steps, device, amp
) -> dict:
    """One epoch on random drawing variants (mirrored half the time); returns its history entry."""
    from tqdm import tqdm

    rng = np.random.default_rng(cfg.seed * 7919 + epoch)
    order = rng.permutation(data.train_idx)
    sums = {"loss": 0.0, "instance": 0.0, "category": 0.0, "top1": 0.0}
    done = 0
    bar = tqdm(range(steps), desc=f"Epoch {epoch + 1}/{cfg.epochs}", disable=not cfg.progress)
    for step in bar:
        idx = torch.from_numpy(order[step * cfg.batch_size : (step + 1) * cfg.batch_size])
        if len(idx) < 2:
            continue
        variant = torch.from_numpy(rng.integers(0, cfg.variants, len(idx)))
        flip = torch.from_numpy(rng.random(len(idx)) < 0.5).to(device).view(-1, 1, 1, 1)
        idx_d = idx.to(device)
        if cached is not None:
            xf = torch.from_numpy(
                np.stack([np.asarray(cached[i, v], dtype=np.float32) for i, v in zip(idx.tolist(), variant.tolist())])
            ).to(device)
            emb = net.embed_features(net.trunk.forward_from(xf, cfg.split_block))
        else:
            xd = normalise_uint8(drawings_t[idx.to(drawings_t.device), variant.to(drawings_t.device)].to(device))
            xd = torch.where(flip, xd.flip(-1), xd).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                emb = net(xd).float()
        instance = F.cross_entropy(emb @ targets.gallery.T / cfg.temperature, targets.train_pos[idx_d])
        category = F.cross_entropy(emb @ targets.prototypes.T / cfg.temperature, data.y[idx_d])
        loss = instance + cfg.category_weight * category
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        done += 1
        sums["loss"] += loss.item()
        sums["instance"] += instance.item()
        sums["category"] += category.item()
        sums["top1"] += float(((emb.detach() @ targets.gallery.T).argmax(1) == targets.train_pos[idx_d]).float().mean())
        bar.set_postfix(loss=f"{sums['loss'] / done:.3f}", top1=f"{sums['top1'] / done:.3f}")
    return {"epoch": epoch + 1, **{k: round(v / max(done, 1), 5) for k, v in sums.items()}}


def _measure(net, drawings, targets: _Targets, data, device, amp) -> dict:
    """Sketch->image retrieval against every photo's frozen vector. With a validation split the card holds
    validation figures only: the test split is reported once, after the choice (benchmarks/compare_models.py
    --split test)."""
    label_arr = data.label_array()
    gallery_all = targets.all.cpu().numpy()
    metrics_out = {}
    for name, mask in (("", data.test_mask), ("validation_", data.val_mask)):
        q = np.flatnonzero(mask)
        if not len(q) or (name == "" and data.val_mask.any()):
            continue
        sketch_vecs = embed_uint8(net, drawings[q, 0], device, amp).cpu().numpy()
        metrics_out[f"{name}sketch_to_image"] = (
            sketch_retrieval(sketch_vecs, label_arr[q], gallery_all, label_arr, source_index=q)
            | SKETCH_QUERIES
            | {"gallery_is": "every image, embedded by the frozen photo model"}
        )
        metrics_out[f"{name}photo_model_image_to_image"] = metrics.category_retrieval(
            gallery_all[q], label_arr[q], gallery_all, label_arr, query_gallery_index=q
        )
    return metrics_out


# --- command line -------------------------------------------------------------------------------------------------


def add_arguments(parser):
    d = SketchTrainConfig(source="", out="", photo_weights="")
    add_source_arguments(parser, "Weights file to write (.safetensors); the model card goes beside it.")
    parser.add_argument("--photo-weights", help="The photo embedder (.safetensors) whose vector space to learn.")
    parser.add_argument(
        "--init-weights", default=None, help="Start from these embedder weights (default: the photo weights)."
    )
    parser.add_argument("--temperature", type=float, default=d.temperature)
    parser.add_argument(
        "--category-weight",
        type=float,
        default=d.category_weight,
        help="Weight of the category term beside the instance term.",
    )
    add_validation_argument(parser)
    parser.add_argument(
        "--extra-source",
        dest="extra_sources",
        action="append",
        default=[],
        help="Another labelled set to train on (repeatable; labels kept apart per set).",
    )
    parser.add_argument(
        "--split-block",
        type=int,
        default=d.split_block,
        help="Freeze the blocks before this one and compute their outputs once (0: train it all; "
        "11 makes a CPU run practical).",
    )
    add_precision_arguments(parser, d.half)
    add_pairs_arguments(parser, d, variants_help="Synthetic drawings per photo.")


def config_from_args(args, **overrides) -> SketchTrainConfig:
    """A :class:`SketchTrainConfig` from parsed options (a namespace or a management command's options dict)."""
    return config_from(SketchTrainConfig, args, **overrides)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description="Train the sketch encoder; writes weights + a model card.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    if not args.source or not args.out or not args.photo_weights:
        parser.error("--source, --out and --photo-weights are required")
    train(config_from_args(args))


if __name__ == "__main__":
    main()
