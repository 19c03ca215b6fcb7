"""Train the sketch-to-photo generator (pix2pix: U-Net generator, PatchGAN discriminator, adversarial + L1).

Pairs come from the catalog's own photos: each training image gets several synthetic drawings (XDoG and edge
maps with hand-drawing augmentations, :mod:`..sketches`) and the photo crop aligned with each. Test-split images
(:func:`..datasets.is_test`) are never trained on; the model card reports L1 on them.

GPU: ``python -m oscar_fashion_ai.ml.training.gan --source DATA --out gen.safetensors`` (or ``python -m
oscar_fashion_ai.ml.train_gan``, or the management command ``fashion_train_gan``). CPU: add ``--limit 600 --epochs
8`` for a small run that finishes within an hour.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import datasets, gan, weights
from .cards import machine_info, training_entry, weights_entry, write_card
from .checkpoint import Checkpoint, Deadline
from .config import (
    PairsConfig,
    add_pairs_arguments,
    add_precision_arguments,
    add_source_arguments,
    config_from,
    log,
    setup,
)
from .losses import discriminator_loss, generator_adversarial_loss
from .schedule import linear_decay
from .splits import load_pairs


@dataclass(kw_only=True)
class GanConfig(PairsConfig):
    image_size: int = 128
    ngf: int = 32
    max_channels: int = 256
    epochs: int = 60
    batch_size: int = 32
    lr: float = 2e-4
    l1_weight: float = 100.0
    sample_every: int = 5
    half: bool = True  # the generator is shipped in float16 (inference runs in float32)


def sample_grid(drawings, generated, real, path: Path):
    """Save a PNG: one row per example, columns drawing | generated | real."""
    from PIL import Image

    n, size = len(drawings), drawings.shape[-1]
    grid = Image.new("RGB", (size * 3, size * n), "white")
    for i in range(n):
        grid.paste(Image.fromarray(drawings[i]).convert("RGB"), (0, i * size))
        grid.paste(Image.fromarray(generated[i]), (size, i * size))
        grid.paste(Image.fromarray(real[i]), (size * 2, i * size))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


def train(cfg: GanConfig) -> dict:
    started = time.time()
    device = setup(cfg)
    rng = np.random.default_rng(cfg.seed)
    records = datasets.labelled_records(Path(cfg.source))
    if cfg.limit:
        pick = np.sort(rng.choice(len(records), min(cfg.limit, len(records)), replace=False))
        records = [records[i] for i in pick]
    _, drawings, crops, kept = load_pairs(cfg, records, cfg.image_size, cfg.variants, aligned=True)
    skipped = len(records) - len(kept)
    records = [records[i] for i in kept]
    if len(records) < 2:
        raise ValueError("Fewer than 2 readable images: nothing to train on.")
    test_mask = np.array([datasets.is_test(r.source_id) for r in records])
    train_idx, test_idx = np.flatnonzero(~test_mask), np.flatnonzero(test_mask)
    log(
        cfg,
        f"{len(records)} images ({skipped} unreadable skipped): {len(train_idx)} train / {len(test_idx)} test; "
        f"device={device}",
    )
    gen = gan.UNetGenerator(1, 3, cfg.ngf, depth=int(np.log2(cfg.image_size)), max_channels=cfg.max_channels).to(device)
    disc = gan.PatchDiscriminator(4).to(device)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    sch_g, sch_d = linear_decay(opt_g, cfg.epochs), linear_decay(opt_d, cfg.epochs)
    out = Path(cfg.out)
    samples_dir = out.parent / (out.stem + "-samples")
    state = {"gen": gen, "disc": disc, "opt_g": opt_g, "opt_d": opt_d, "sch_g": sch_g, "sch_d": sch_d}
    checkpoint = Checkpoint(cfg.out, cfg.checkpoint_dir)
    start_epoch, history = checkpoint.resume(cfg, device, **state)
    amp = device.type == "cuda"
    fixed = test_idx[:8] if len(test_idx) else train_idx[:8]

    def batch(idx, variant):
        d = gan.drawing_to_tensor(torch.from_numpy(drawings[idx, variant])).to(device, non_blocking=True)
        p = gan.photo_to_tensor(torch.from_numpy(crops[idx, variant])).to(device, non_blocking=True)
        flip = torch.from_numpy(rng.random(len(idx)) < 0.5).to(device).view(-1, 1, 1, 1)
        return torch.where(flip, d.flip(-1), d), torch.where(flip, p.flip(-1), p)

    steps = max(1, len(train_idx) // cfg.batch_size)
    deadline = Deadline(cfg.max_minutes, started)
    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs):
        gen.train()
        disc.train()
        sums = _epoch(cfg, gen, disc, opt_g, opt_d, batch, rng.permutation(train_idx), rng, epoch, steps, amp, device)
        sch_g.step()
        sch_d.step()
        history.append({"epoch": epoch + 1, **{k: round(v / steps, 5) for k, v in sums.items()}})
        if cfg.sample_every and ((epoch + 1) % cfg.sample_every == 0 or epoch + 1 == cfg.epochs):
            sample_grid(
                drawings[fixed, 0],
                _generate(gen, drawings[fixed, 0], device),
                crops[fixed, 0],
                samples_dir / f"epoch_{epoch + 1:03d}.png",
            )
        checkpoint.save(epoch + 1, history, **state)
        if deadline.passed(cfg, epoch + 1, cfg.epochs):
            stopped_early = True
            break

    test_l1 = _test_l1(gen, drawings, crops, test_idx, device)
    gen = gen.cpu()
    if cfg.half:
        gen = gen.half()  # half the bytes; inference runs in float32
    meta = {
        "kind": "pix2pix-generator",
        "image_size": cfg.image_size,
        "ngf": cfg.ngf,
        "max_channels": cfg.max_channels,
        "depth": int(np.log2(cfg.image_size)),
        "in_channels": 1,
    }
    digest = weights.save(gen, out, meta)
    wall = time.time() - started
    card = {
        "model": "Sketch-to-photo generator (pix2pix: U-Net + PatchGAN, adversarial + L1)",
        "version": f"pix2pix-{cfg.image_size}px-ngf{cfg.ngf}-{digest[:12]}",
        **weights_entry(out, digest, cfg.half),
        "parameters": int(sum(p.numel() for p in gen.parameters())),
        "data": {
            "source": Path(cfg.source).name,
            "images": len(records),
            "unreadable_skipped": skipped,
            "pairs": "synthetic drawings of each photo: variant 0 deterministic XDoG; others XDoG or edge "
            "maps with hand-drawing augmentations (stroke width, jitter, dropped strokes, affine)",
        },
        "split": {
            "rule": "test when int(sha1(image_id).hexdigest(), 16) % 5 == 0",
            "train": int(len(train_idx)),
            "test": int(len(test_idx)),
        },
        "training": training_entry(cfg) | {"epochs_run": len(history), "stopped_early": stopped_early},
        "history": history,
        "metrics": {"test_l1": test_l1, "l1_note": "mean absolute error in [0, 2] image units on held-out pairs"},
        "machine": machine_info(device),
        "wall_time_s": round(wall, 1),
        "command": cfg.command,
    }
    write_card(out, card)
    log(cfg, f"test L1 {test_l1}  ({wall:.0f} s, {len(history)} epochs) -> {out}")
    return card


def _epoch(cfg, gen, disc, opt_g, opt_d, batch, order, rng, epoch, steps, amp, device) -> dict:
    """One epoch of alternating discriminator and generator steps; returns the sums of their losses."""
    from tqdm import tqdm

    sums = {"d": 0.0, "g_gan": 0.0, "g_l1": 0.0}
    bar = tqdm(range(steps), desc=f"Epoch {epoch + 1}/{cfg.epochs}", disable=not cfg.progress)
    for step in bar:
        idx = np.sort(order[step * cfg.batch_size : (step + 1) * cfg.batch_size])
        d, p = batch(idx, rng.integers(0, cfg.variants, len(idx)))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            fake = gen(d)
            loss_d = discriminator_loss(disc(d, p), disc(d, fake.detach()))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            g_gan = generator_adversarial_loss(disc(d, fake))
            g_l1 = F.l1_loss(fake.float(), p)
            loss_g = g_gan + cfg.l1_weight * g_l1
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        sums["d"] += loss_d.item()
        sums["g_gan"] += g_gan.item()
        sums["g_l1"] += g_l1.item()
        bar.set_postfix(d=f"{sums['d'] / (step + 1):.3f}", l1=f"{sums['g_l1'] / (step + 1):.3f}")
    return sums


def _test_l1(gen, drawings, crops, test_idx, device) -> float | None:
    if not len(test_idx):
        return None
    errs = []
    for start in range(0, len(test_idx), 128):
        idx = test_idx[start : start + 128]
        fake = _generate(gen, drawings[idx, 0], device).astype(np.float32)
        errs.append(np.abs(fake - crops[idx, 0].astype(np.float32)).mean(axis=(1, 2, 3)) / 127.5)
    return float(np.concatenate(errs).mean())


@torch.inference_mode()
def _generate(gen, drawings_uint8, device) -> np.ndarray:
    was_training = gen.training
    gen.eval()
    x = gan.drawing_to_tensor(torch.from_numpy(np.ascontiguousarray(drawings_uint8))).to(device)
    out = gan.tensor_to_uint8(gen(x).float()).cpu().numpy()
    gen.train(was_training)
    return out


# --- command line -------------------------------------------------------------------------------------------------


def add_arguments(parser):
    d = GanConfig(source="", out="")
    add_source_arguments(
        parser,
        "Generator weights file to write (.safetensors); the card goes beside it.",
        source_help="Labelled image set (images.csv layout or <category>/<file> folders).",
    )
    parser.add_argument("--image-size", type=int, default=d.image_size)
    parser.add_argument("--ngf", type=int, default=d.ngf, help="Generator base width.")
    parser.add_argument("--l1-weight", type=float, default=d.l1_weight)
    parser.add_argument("--sample-every", type=int, default=d.sample_every, help="Save a sample grid every N epochs.")
    add_precision_arguments(parser, d.half)
    add_pairs_arguments(parser, d, variants_help="Synthetic drawings per photo.")


def config_from_args(args, **overrides) -> GanConfig:
    """A :class:`GanConfig` from parsed options (a namespace or a management command's options dict)."""
    return config_from(GanConfig, args, **overrides)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if not args.source or not args.out:
        parser.error("--source and --out are required")
    train(config_from_args(args))


if __name__ == "__main__":
    main()
