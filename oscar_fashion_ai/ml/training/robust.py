"""Train the shipped photo model so that it keeps what ImageNet gave: LP-FT + relational distillation + WiSE-FT.

    python -m oscar_fashion_ai.ml.training.robust --source CC0 [--source STUDIO ...] --out lite0-fashion.safetensors
        [--exclude-labels A,B] [--split-block 5] [--lp-epochs 30] [--ft-epochs 20] [--ft-lr 1e-3] [--distill 1]
        [--wise-alphas 0,0.25,0.5,0.75,1] [--cache var/robust] [--threads 1] [--max-minutes M]

(``python -m oscar_fashion_ai.ml.train_robust`` takes the same options.) The recipe, every stage on the CPU in
bounded time (the frozen part of the trunk runs once, through ONNX Runtime):

1. **LP** (Kumar et al. 2022, "Fine-tuning can distort pretrained features"): a linear projection of the GeM-pooled
   ImageNet EfficientNet-Lite0 features (ReLU6, as the weights were trained) is trained with a CosFace classifier
   over the labels of every ``--source`` (labels kept apart per source) plus a relational distillation term that
   keeps the pairwise cosine similarities of the untrained ImageNet features (what the labels say nothing about).
2. **FT**: from the LP head, the trunk's blocks from ``--split-block`` on (and its head convolution) are fine-tuned
   with a small learning rate, same losses, BatchNorm statistics frozen at ImageNet's; inputs are the cached
   frozen-part features of three views per image (original, mirrored, a random crop with colour and resolution
   jitter that imitates phone and small studio photos).
3. **WiSE-FT** (Wortsman et al. 2022): every weight interpolated between the LP model (alpha 0: ImageNet trunk +
   LP head) and the fine-tuned one (alpha 1); alpha is **chosen on the validation split** of every source (the
   project's sha1 split: test = % 5 == 0, validation = 1, never trained on): the largest mean validation P@5 among
   the alphas that are not below the untrained ImageNet-features baseline on any source.

Writes the weights (float16 unless ``--float32``) and a model card beside them with the data, split, settings,
history and the validation figures of every alpha and of the baseline. Pure PyTorch / NumPy; the source arrays
are prepared by :mod:`.robust_data`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import backbones, datasets, preprocessing, weights
from .. import generalisation as G
from ..embedder import version_string
from .cards import training_entry, weights_entry, write_card
from .checkpoint import Deadline
from .config import BaseConfig, add_precision_arguments, add_run_arguments, config_from, log
from .losses import CosFace, relational_distillation
from .robust_data import VIEWS, Sources, choose_alpha, gather
from .schedule import one_cycle
from .splits import source_name


@dataclass(kw_only=True)
class RobustConfig(BaseConfig):
    sources: list
    exclude_labels: tuple = ()
    image_size: int = 160
    dim: int = 256
    # blocks 5-15 fine-tuned for 20 epochs at 1e-3: chosen on the validation splits over blocks 11-15 for 6 epochs
    # at 3e-4 (the release before) and blocks 5-15 for 12 epochs (docs/MODELS.md)
    split_block: int = 5
    lp_epochs: int = 30
    ft_epochs: int = 20
    batch_size: int = 64
    lp_lr: float = 3e-3
    ft_lr: float = 1e-3
    weight_decay: float = 1e-4
    margin: float = 0.2
    scale: float = 24.0
    label_smoothing: float = 0.1
    distill_weight: float = 1.0
    feature_dropout: float = 0.1
    wise_alphas: tuple = (0.0, 0.25, 0.5, 0.75, 1.0)
    threads: int = 1
    cache: str | None = None
    half: bool = True


def train(cfg: RobustConfig) -> dict:
    started = time.time()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(max(1, cfg.threads))
    if not cfg.sources:
        raise ValueError("give at least one --source")
    model = backbones.build("lite0", dim=cfg.dim, image_size=cfg.image_size, pretrained=True)
    s = gather(cfg, model.trunk.eval())
    log(
        cfg,
        f"{len(s.records)} images from {len(cfg.sources)} source(s), {len(set(s.labels))} labels; "
        f"{len(s.train_idx)} train / {(s.splits == 'validation').sum()} validation / "
        f"{(s.splits == 'test').sum()} test",
    )
    # classes = the labels with training images (the others still count as gallery and validation labels)
    names = sorted({s.labels[i] for i in s.train_idx})

    # 1. linear probe on the frozen ImageNet features (all three views of the training images)
    classifier, lp_history = _linear_probe(cfg, model, s)
    lp_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    # 2. fine-tune the blocks from split_block on, from the LP head
    history = _fine_tune(cfg, model, classifier, names, s, started)
    ft_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    # 3. WiSE-FT: alpha chosen on the validation split of every source
    selection = choose_alpha(cfg, model, lp_state, ft_state, s)
    model.load_state_dict(G.interpolate(lp_state, ft_state, float(selection["chosen_alpha"])))
    model.eval()
    return _write(cfg, model, s, names, selection, {"lp": lp_history[-1:], "ft": history}, started)


def _linear_probe(cfg, model, s: Sources):
    """Train the projection on the GeM-pooled ImageNet features (CosFace + distillation to their GAP geometry) and
    copy it into ``model``; returns (the CosFace classifier, history)."""
    lp_cfg = G.HeadConfig(
        dim=cfg.dim,
        epochs=cfg.lp_epochs,
        batch_size=128,
        lr=cfg.lp_lr,
        weight_decay=cfg.weight_decay,
        margin=cfg.margin,
        scale=cfg.scale,
        label_smoothing=cfg.label_smoothing,
        distill_weight=cfg.distill_weight,
        feature_dropout=cfg.feature_dropout,
        init="random",
        seed=cfg.seed,
    )
    lp_x = np.concatenate([np.asarray(p[1])[s.train_idx] for p in s.pooled])
    lp_t = np.concatenate([t[s.train_idx] for t in s.teacher])
    lp_y = [s.labels[i] for i in s.train_idx] * len(VIEWS)
    t0 = time.time()
    proj, classifier, lp_history = G.train_head(lp_x, lp_y, lp_t, lp_cfg, return_classifier=True)
    log(cfg, f"LP: {cfg.lp_epochs} epochs in {time.time() - t0:.0f} s; {lp_history[-1]}")
    with torch.no_grad():
        model.proj.weight.copy_(proj.weight)
        model.proj.bias.copy_(proj.bias)
    return classifier, lp_history


def _set_trainable(model, split):
    model.trunk.freeze_until(split)
    # BatchNorm statistics stay ImageNet's everywhere (small batches of cached features; WiSE interpolation
    # between two models with the same statistics)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
            m.weight.requires_grad_(True)


def _fine_tune(cfg, model, classifier, names, s: Sources, started) -> list:
    """FT from the LP head on the cached frozen-part features; returns the history. (Seeded here: the same run
    whether the features came from the cache or were just computed.)"""
    torch.manual_seed(cfg.seed + 1)
    _set_trainable(model, cfg.split_block)
    head = CosFace(cfg.dim, len(names), cfg.scale, cfg.margin)
    head.load_state_dict(classifier.state_dict())
    params = [p for p in list(model.parameters()) + list(head.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.ft_lr, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(s.train_idx) / cfg.batch_size)
    epochs = cfg.ft_epochs
    scheduler = one_cycle(optimizer, cfg.ft_lr, steps * epochs)
    index = {n: i for i, n in enumerate(names)}
    y = torch.tensor([index.get(n, -1) for n in s.labels])
    teacher_t = [torch.from_numpy(np.array(t, dtype=np.float32)) for t in s.teacher]
    deadline = Deadline(cfg.max_minutes, started)
    history, ft_started = [], time.time()
    for epoch in range(cfg.ft_epochs):
        if epoch >= epochs:
            break
        model.train()
        _set_trainable(model, cfg.split_block)
        history.append(_ft_epoch(cfg, model, head, optimizer, scheduler, s, y, teacher_t, epoch, epochs, steps))
        log(cfg, f"FT epoch {epoch + 1}: {history[-1]}")
        fitted = deadline.fit(ft_started, epoch + 1, epoch, epochs)
        if fitted:  # fit the remaining epochs to the budget, schedule re-planned
            epochs, per_epoch = fitted
            scheduler = one_cycle(optimizer, cfg.ft_lr, steps * epochs, (epoch + 1) * steps)
            history.append({"epochs_fitted_to_budget": epochs, "seconds_per_epoch": round(per_epoch, 1)})
    return history


def _ft_epoch(cfg, model, head, optimizer, scheduler, s: Sources, y, teacher_t, epoch, epochs, steps) -> dict:
    from tqdm import tqdm

    rng = np.random.default_rng(cfg.seed * 7919 + epoch)
    order = rng.permutation(s.train_idx)
    sums = [0.0, 0.0, 0]
    bar = tqdm(range(steps), desc=f"FT epoch {epoch + 1}/{epochs}", disable=not cfg.progress)
    for step in bar:
        idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        if len(idx) < 2:
            continue
        view = rng.integers(0, len(VIEWS), len(idx))
        x = torch.from_numpy(np.stack([np.asarray(s.split_feats[v][i], dtype=np.float32) for v, i in zip(view, idx)]))
        if cfg.feature_dropout:
            x = F.dropout2d(x, cfg.feature_dropout, training=True)
        emb = model.embed_features(model.trunk.forward_from(x, cfg.split_block))
        target = y[idx]
        cls = F.cross_entropy(head(emb, target), target, label_smoothing=cfg.label_smoothing)
        dist = relational_distillation(emb, torch.stack([teacher_t[v][i] for v, i in zip(view, idx)]))
        loss = cls + cfg.distill_weight * 10.0 * dist
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        sums[0] += cls.item() * len(idx)
        sums[1] += dist.item() * len(idx)
        sums[2] += len(idx)
        bar.set_postfix(cls=f"{sums[0] / sums[2]:.3f}", distill=f"{sums[1] / sums[2]:.4f}")
    return {
        "epoch": epoch + 1,
        "cls": round(sums[0] / max(sums[2], 1), 4),
        "distill": round(sums[1] / max(sums[2], 1), 5),
    }


def _write(cfg, model, s: Sources, names, selection, history, started) -> dict:
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "backbone": "lite0",
        "dim": cfg.dim,
        "image_size": cfg.image_size,
        "preprocessing": preprocessing.PREPROCESSING_VERSION,
        "labels": json.dumps(names),
        "recipe": "lp-ft-distill-wise",
    } | backbones.model_meta(model)
    digest = weights.save(model, out, meta, dtype=torch.float16 if cfg.half else None)
    splits, src = s.splits, s.src
    card = {
        "model": "Image2Vec embedder",
        "version": version_string("lite0", cfg.dim, cfg.image_size, digest),
        **weights_entry(out, digest, cfg.half),
        "architecture": "lite0 (ImageNet init, ReLU6) + GeM pooling + linear 256-d, L2-normalised; "
        f"blocks {cfg.split_block}-15 and the head fine-tuned (LP-FT), WiSE-FT alpha "
        f"{selection['chosen_alpha']:g}",
        "data": {
            "sources": [
                {
                    "name": source_name(p),
                    "images": int((src == i).sum()),
                    "train": int(((src == i) & (splits == "train")).sum()),
                    "validation": int(((src == i) & (splits == "validation")).sum()),
                    "test": int(((src == i) & (splits == "test")).sum()),
                }
                for i, p in enumerate(cfg.sources)
            ],
            "labels": names,
            "excluded_labels": list(cfg.exclude_labels),
            "ignored_labels": list(datasets.IGNORED_LABELS),
        },
        "split": {
            "rule": "test when int(sha1(image_id).hexdigest(), 16) % 5 == 0; validation (held out, for choosing "
            "alpha) when it is 1; train otherwise",
            "test_split_used": False,
        },
        "training": training_entry(cfg, leave_out=("out", "progress", "command", "sources"))
        | {"sources": [source_name(p) for p in cfg.sources]},
        "history": history,
        "selection": selection,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
            "device": "cpu",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "wall_time_s": round(time.time() - started, 1),
        "command": cfg.command,
    }
    write_card(out, card)
    log(cfg, f"alpha {selection['chosen_alpha']:g} chosen; {card['version']} -> {out} ({card['wall_time_s']:.0f} s)")
    return card


def main(argv=None):
    d = RobustConfig(sources=[], out="")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", action="append", required=True, help="a labelled image set (repeatable)")
    p.add_argument("--out", required=True, help="weights file to write (.safetensors); the card goes beside it")
    p.add_argument("--exclude-labels", default="", help="comma-separated labels left out (e.g. unseen classes)")
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--split-block", type=int, default=d.split_block)
    p.add_argument("--lp-epochs", type=int, default=d.lp_epochs)
    p.add_argument("--ft-epochs", type=int, default=d.ft_epochs)
    p.add_argument("--ft-lr", type=float, default=d.ft_lr)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--distill", dest="distill_weight", type=float, default=d.distill_weight)
    p.add_argument("--wise-alphas", default=",".join(f"{a:g}" for a in d.wise_alphas))
    p.add_argument("--cache", default=None, help="keep decoded images and frozen features here (git-ignored)")
    add_run_arguments(
        p,
        d,
        device=False,
        threads_help="1 is fastest on a busy 2-core machine",
        minutes_help="Fit the fine-tuning epochs to this budget (the schedule is re-planned).",
    )
    add_precision_arguments(p, d.half)
    a = p.parse_args(argv)
    train(
        config_from(
            RobustConfig,
            a,
            sources=a.source,
            exclude_labels=tuple(x for x in a.exclude_labels.split(",") if x),
            wise_alphas=tuple(float(x) for x in a.wise_alphas.split(",")),
        )
    )


if __name__ == "__main__":
    main()
