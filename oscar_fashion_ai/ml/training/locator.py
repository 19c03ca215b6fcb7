"""Train the garment locator (:mod:`..locator`) on scenes built from the training split's photos.

    python -m oscar_fashion_ai.ml.training.locator --source PATH [--scenes 20000] [--epochs 20] [--max-minutes 30]
    python manage.py fashion_train_locator            (the same options; writes into the data directory)

No box annotations exist for the photos, so the scenes are composed, and the box is known: a photo of the training
split (the *garment*: the shopper's subject) is pasted on a background, with up to two photos of other categories
beside it (pasted behind it, smaller: 45-95 % of its height, maybe cut off by the frame), JPEG-encoded and decoded
as the server decodes uploads. With other photos in the frame the garment is the more central one; alone it may be
anywhere; one scene in five is the photo alone (the box is then the whole photo, as a clean upload should be
searched). Backgrounds: mosaics of 1-9 random crops of other photos, plain colours with noise, or a blurred photo.
The benchmark's own composites (``benchmarks/photo_crop.py``: fixed 2 x 2 mosaics of corner patches, fixed
placements) are a different recipe, and only its validation split is used to choose how the box is used.

Only photos of the training split (neither ``sha1 % 5 == 0`` test nor ``== 1`` validation) appear in the scenes.
The trunk is frozen: each scene's 224 px feature map is computed once and cached (``--cache``), the head trains on
the cache in a few minutes. A tenth of the scenes (by garment photo) is held out to report the box IoU.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .. import crop, datasets, locator, preprocessing, weights
from .cards import machine_info, write_card
from .config import config_from

SIZE = crop.PRESET_SIZE
#: Share of the scenes that are the photo alone (box = the whole photo).
ALONE = 0.2


@dataclass
class LocatorTrainConfig:
    source: str
    out: str
    extra_sources: tuple = ()
    photo_weights: str | None = None
    cache: str | None = None
    scenes: int = 20000
    epochs: int = 20
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    hidden: int = 64
    seed: int = 0
    max_minutes: float = 30.0
    threads: int = 0
    progress: bool = True
    command: str = ""


# --- scenes ---------------------------------------------------------------------------------------------------------


def _rgb(path):
    from PIL import Image

    with Image.open(path) as img:
        img.draft("RGB", (512, 512))
        return img.convert("RGB")


def _background(width, height, pool, rng):
    from PIL import Image, ImageFilter

    kind = rng.random()
    if kind < 0.5:  # mosaic of random crops of other photos
        gx, gy = rng.randint(1, 3), rng.randint(1, 3)
        canvas = Image.new("RGB", (width, height))
        for i in range(gx):
            for j in range(gy):
                src = _rgb(pool[rng.randrange(len(pool))].path)
                f = rng.uniform(0.2, 0.6)
                cw, ch = max(1, int(src.width * f)), max(1, int(src.height * f))
                cx, cy = rng.randint(0, src.width - cw), rng.randint(0, src.height - ch)
                x0, x1 = i * width // gx, (i + 1) * width // gx
                y0, y1 = j * height // gy, (j + 1) * height // gy
                patch = src.crop((cx, cy, cx + cw, cy + ch)).resize((max(1, x1 - x0), max(1, y1 - y0)))
                canvas.paste(patch, (x0, y0))
        return canvas
    if kind < 0.75:  # plain colour with noise
        colour = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float32)
        noise = np.random.default_rng(rng.randrange(2**32)).normal(0, rng.uniform(0, 20), (height, width, 1))
        return Image.fromarray(np.clip(colour[None, None] + noise, 0, 255).astype(np.uint8))
    src = _rgb(pool[rng.randrange(len(pool))].path).resize((width, height))  # a blurred photo
    return src.filter(ImageFilter.GaussianBlur(rng.uniform(2, 8)))


def _fit(img, height, rng):
    from PIL import Image

    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return img.resize((max(1, round(img.width * height / img.height)), max(1, int(height))))


def scene(garment, others, pool, rng):
    """(JPEG bytes, the garment's box x, y, w, h in pixels of the scene) for a garment record."""
    a = _rgb(garment.path)
    if rng.random() < ALONE:  # the photo alone
        canvas = _fit(a, rng.randint(240, 520), rng)
        truth = (0, 0, canvas.width, canvas.height)
    else:
        height = rng.randint(300, 480)
        a = _fit(a, height * rng.uniform(0.6, 1.0), rng)
        n = rng.choices((0, 1, 2), weights=(0.25, 0.55, 0.2))[0]
        width = max(a.width + 1, round(a.width * rng.uniform(1.25, 2.3)))
        canvas = _background(width, height, pool, rng)
        if n == 0:
            qx, qy = rng.randint(0, width - a.width), rng.randint(0, height - a.height)
        else:
            qx = round((width - a.width) / 2 + rng.uniform(-0.1, 0.1) * width)
            qx = min(max(qx, 0), width - a.width)
            qy = rng.randint(0, height - a.height)
            sides = rng.sample(("left", "right"), 2)[:n]
            for side in sides:
                b = _fit(_rgb(others[rng.randrange(len(others))].path), a.height * rng.uniform(0.45, 0.95), rng)
                gap = round(rng.uniform(-0.03, 0.08) * height)
                bx = qx + a.width + gap if side == "right" else qx - gap - b.width
                canvas.paste(b, (bx, rng.randint(0, max(0, height - b.height))))
        canvas.paste(a, (qx, qy))
        truth = (qx, qy, a.width, a.height)
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=rng.randint(75, 95))
    return buf.getvalue(), truth


# --- features -------------------------------------------------------------------------------------------------------


def training_records(source, extra_sources=()):
    """The training split of ``source`` and of each of ``extra_sources``; with extra sources every label is written
    "<source>:<label>" so that categories of different sets stay apart."""
    if extra_sources:
        out = []
        for path in (source, *extra_sources):
            name = Path(path).resolve().name
            out += [datasets.Record(r.source_id, f"{name}:{r.label}", r.path) for r in training_records(path)]
        return out
    records = datasets.labelled_records(Path(source))
    return [r for r in records if not datasets.is_test(r.source_id) and not datasets.is_validation(r.source_id)]


def build_features(cfg: LocatorTrainConfig, embedder, deadline: float, records=None) -> dict:
    """Scenes and their feature maps, cached in chunks (a rerun goes on where the last one stopped). ``records``:
    the photos to compose from (``source_id``, ``label``, ``path``; default: the training split of ``cfg.source``)."""
    records = training_records(cfg.source, cfg.extra_sources) if records is None else list(records)
    if len(records) < 4 or len({r.label for r in records}) < 2:
        raise ValueError(
            f"{cfg.source} has too few labelled training photos to compose scenes from: {len(records)} in "
            f"{len({r.label for r in records})} categories (at least 4 in 2 categories are needed)."
        )
    cache = Path(cfg.cache) if cfg.cache else Path(cfg.out).with_suffix(".scenes")
    cache.mkdir(parents=True, exist_ok=True)
    ids = hashlib.sha1("|".join(sorted(r.source_id for r in records)).encode()).hexdigest()
    stamp = {"photo": embedder.sha256, "photos": ids, "size": SIZE, "seed": cfg.seed, "alone": ALONE}
    stamp_file = cache / "stamp.json"
    if stamp_file.exists() and json.loads(stamp_file.read_text()) != stamp:
        for f in cache.glob("chunk-*.npz"):
            f.unlink()
    stamp_file.write_text(json.dumps(stamp))
    by_label = {}
    for r in records:
        by_label.setdefault(r.label, []).append(r)
    chunk = 200
    started = time.perf_counter()
    for c in range(0, cfg.scenes, chunk):
        path = cache / f"chunk-{c // chunk:04d}.npz"
        if path.exists():
            continue
        if time.perf_counter() > deadline:
            break
        feats, sizes, truths, ids = [], [], [], []
        images = []
        for i in range(c, min(c + chunk, cfg.scenes)):
            rng = random.Random(cfg.seed * 1_000_003 + i)
            garment = records[rng.randrange(len(records))]
            others = [r for label, rs in by_label.items() if label != garment.label for r in rs]
            data, truth = scene(garment, others, records, rng)
            img = preprocessing.open_image(data, decode_size=crop.PRESET_DECODE)
            images.append(img)
            full = _jpeg_size(data)
            sx, sy = img.width / full[0], img.height / full[1]
            box = (truth[0] * sx, truth[1] * sy, truth[2] * sx, truth[3] * sy)
            sizes.append(img.size)
            truths.append(locator.to_square(box, img.width, img.height))
            ids.append(garment.source_id)
        for i in range(0, len(images), 16):
            feats.append(embedder.feature_maps(preprocessing.batch(images[i : i + 16], SIZE)).astype(np.float16))
        np.savez(path, feats=np.concatenate(feats), sizes=np.array(sizes), truths=np.array(truths), ids=np.array(ids))
        if cfg.progress:
            done = min(c + chunk, cfg.scenes)
            print(f"scenes {done}/{cfg.scenes} ({time.perf_counter() - started:.0f} s)", flush=True)
    parts = [np.load(p) for p in sorted(cache.glob("chunk-*.npz"))]
    if not parts:
        raise ValueError("No scenes were built within the time budget.")
    return {k: np.concatenate([p[k] for p in parts]) for k in ("feats", "sizes", "truths", "ids")}


def _jpeg_size(data):
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return img.size


# --- training -------------------------------------------------------------------------------------------------------


def targets(truths: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(N, R, K) 1 where the cell's centre lies in the garment's box (at least the cell under its centre)."""
    cx, cy = locator.cell_centres(rows, cols)
    t = truths[:, :, None, None]
    pos = (cx[None, None] >= t[:, 0]) & (cx[None, None] <= t[:, 2]) & (cy[None, :, None] >= t[:, 1])
    pos &= cy[None, :, None] <= t[:, 3]
    centre_r = np.clip(((truths[:, 1] + truths[:, 3]) / 2 * rows).astype(int), 0, rows - 1)
    centre_c = np.clip(((truths[:, 0] + truths[:, 2]) / 2 * cols).astype(int), 0, cols - 1)
    pos[np.arange(len(truths)), centre_r, centre_c] = True
    return pos.astype(np.float32)


def _giou_loss(pred, truth):
    ix0, iy0 = torch.maximum(pred[:, 0], truth[:, 0]), torch.maximum(pred[:, 1], truth[:, 1])
    ix1, iy1 = torch.minimum(pred[:, 2], truth[:, 2]), torch.minimum(pred[:, 3], truth[:, 3])
    inter = (ix1 - ix0).clamp(min=0) * (iy1 - iy0).clamp(min=0)
    area = lambda b: (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)  # noqa: E731
    union = area(pred) + area(truth) - inter
    iou = inter / union.clamp(min=1e-9)
    ex0, ey0 = torch.minimum(pred[:, 0], truth[:, 0]), torch.minimum(pred[:, 1], truth[:, 1])
    ex1, ey1 = torch.maximum(pred[:, 2], truth[:, 2]), torch.maximum(pred[:, 3], truth[:, 3])
    enclosing = ((ex1 - ex0) * (ey1 - ey0)).clamp(min=1e-9)
    return 1 - iou + (enclosing - union) / enclosing


def _loss(out, coords, pos, truths):
    inside = coords[:, 2]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], pos, reduction="none")
    cls = (bce * inside).sum() / inside.sum().clamp(min=1)
    rows, cols = out.shape[2:]
    cx = ((torch.arange(cols) + 0.5) / cols)[None, None].expand(out.shape[0], rows, cols)
    cy = ((torch.arange(rows) + 0.5) / rows)[None, :, None].expand(out.shape[0], rows, cols)
    d = out[:, 1:].clamp(-8, 2).exp()
    boxes = torch.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], dim=1)  # (B, 4, R, K)
    mask = (pos * inside) > 0
    pred = boxes.permute(0, 2, 3, 1)[mask]
    want = truths[:, None, None, :].expand(-1, rows, cols, -1)[mask]
    reg = (_giou_loss(pred, want) + (pred - want).abs().sum(dim=1)).mean() if len(pred) else out.sum() * 0
    return cls + reg


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / max(union, 1e-12)


def held_out_iou(head, feats, coords, truths, sizes) -> float:
    """Mean IoU (pixels of the photo) of the decoded box with the garment's box."""
    head.eval()
    values = []
    with torch.inference_mode():
        for i in range(0, len(feats), 256):
            out = head(torch.from_numpy(feats[i : i + 256].astype(np.float32)), coords[i : i + 256]).numpy()
            for j, o in enumerate(out):
                w, h = sizes[i + j]
                xyxy, _ = locator.decode(o, coords[i + j, 2].numpy())
                x, y, bw, bh = locator.from_square(xyxy, w, h)
                tx, ty, tw, th = locator.from_square(truths[i + j], w, h)
                values.append(box_iou((x, y, x + bw, y + bh), (tx, ty, tx + tw, ty + th)))
    head.train()
    return float(np.mean(values))


def train(cfg: LocatorTrainConfig, records=None) -> dict:
    """Train and write a head (and its card) for ``cfg.photo_weights``; ``records`` as for :func:`build_features`."""
    from ..embedder import PACKAGE_WEIGHTS, Embedder

    started = time.perf_counter()
    deadline = started + cfg.max_minutes * 60
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    photo_path = Path(cfg.photo_weights) if cfg.photo_weights else PACKAGE_WEIGHTS
    embedder = Embedder(photo_path, threads=cfg.threads)
    data = build_features(cfg, embedder, started + cfg.max_minutes * 60 * 0.7, records)
    feats, sizes, truths, ids = data["feats"], data["sizes"], data["truths"].astype(np.float32), data["ids"]
    n, channels, rows, cols = feats.shape
    coords = torch.from_numpy(np.stack([locator.coord_channels(rows, cols, int(w), int(h)) for w, h in sizes]))
    held = np.array([int(hashlib.sha1(f"locator|{i}".encode()).hexdigest(), 16) % 10 == 0 for i in ids])
    train_idx, held_idx = np.flatnonzero(~held), np.flatnonzero(held)
    head = locator.BoxHead(channels, cfg.hidden)
    some = np.random.default_rng(cfg.seed).permutation(train_idx)[:2000]  # the channels' statistics
    inside = coords[some, 2].numpy() > 0  # (n, R, K)
    sample = feats[some].astype(np.float32).transpose(0, 2, 3, 1)[inside]  # (cells, C)
    head.mean.copy_(torch.from_numpy(sample.mean(axis=0)))
    head.std.copy_(torch.from_numpy(sample.std(axis=0) + 1e-3))
    del sample
    pos = torch.from_numpy(targets(truths, rows, cols))
    truths_t = torch.from_numpy(truths)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * int(np.ceil(len(train_idx) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(steps, 1), pct_start=0.1)
    rng = np.random.default_rng(cfg.seed)
    history = []
    epochs_run = 0
    for epoch in range(cfg.epochs):
        if time.perf_counter() > deadline:
            break
        order = rng.permutation(train_idx)
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            out = head(torch.from_numpy(feats[idx].astype(np.float32)), coords[idx])
            loss = _loss(out, coords[idx], pos[idx], truths_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        epochs_run = epoch + 1
        row = {"epoch": epochs_run, "loss": round(total / len(order), 4)}
        if epochs_run % 10 == 0 or epochs_run == cfg.epochs:
            row["held_out_iou"] = round(
                held_out_iou(head, feats[held_idx], coords[held_idx], truths[held_idx], sizes[held_idx]), 4
            )
        history.append(row)
        if cfg.progress:
            print(json.dumps(row), flush=True)
    head.eval()
    iou = held_out_iou(head, feats[held_idx], coords[held_idx], truths[held_idx], sizes[held_idx])
    out = Path(cfg.out)
    meta = {"role": "locator", "pairs_with": embedder.sha256, "channels": channels, "hidden": cfg.hidden, "size": SIZE}
    digest = weights.save(head, out, meta, dtype=torch.float16)
    card = {
        "model": "garment locator (box head on the photo model's 224 px feature map)",
        "weights_file": out.name,
        "weights_sha256": digest,
        "weights_bytes": out.stat().st_size,
        "weights_dtype": "float16",
        "pairs_with": {"photo_weights_sha256": embedder.sha256, "photo_version": embedder.version},
        "data": {
            "source": ", ".join(Path(p).name for p in (cfg.source, *cfg.extra_sources))
            if records is None
            else cfg.source,
            "photos": "training split only (sha1(id) % 5 not 0 (test) and not 1 (validation))"
            if records is None
            else f"{len(records)} photos given by the caller (the store's: its test split left out)",
            "scenes": int(n),
            "scenes_trained": int(len(train_idx)),
            "scenes_held_out": int(len(held_idx)),
            "recipe": __doc__.split("\n\n")[2].replace("\n", " "),
        },
        "training": {
            k: v
            for k, v in asdict(cfg).items()
            if k not in ("source", "out", "cache", "progress", "photo_weights", "command")
        },
        "epochs_run": epochs_run,
        "history": history,
        "metrics": {"held_out_scenes_box_iou": round(iou, 4)},
        "command": cfg.command or weights.command_line(),
        "machine": machine_info(torch.device("cpu")),
        "wall_s": round(time.perf_counter() - started, 1),
        "date": time.strftime("%Y-%m-%d"),
    }
    write_card(out, card)
    return card


def add_arguments(parser):
    parser.add_argument("--source", default=None, help="labelled photo set (images.csv + images/)")
    parser.add_argument("--out", default=None, help="weights file to write (.safetensors)")
    parser.add_argument(
        "--extra-source",
        dest="extra_sources",
        action="append",
        default=None,
        help="another labelled photo set whose training split joins the scenes (repeatable)",
    )
    parser.add_argument("--photo-weights", default=None, help="the photo model whose feature map the head reads")
    parser.add_argument("--cache", default=None, help="folder for the scenes' feature maps (resumable)")
    defaults = LocatorTrainConfig("", "")
    for name in ("scenes", "epochs", "batch_size", "hidden", "seed", "threads"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    for name in ("lr", "weight_decay", "max_minutes"):
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))


def config_from_args(options, **overrides) -> LocatorTrainConfig:
    """A :class:`LocatorTrainConfig` from parsed options (a namespace or a management command's options dict)."""
    values = options if isinstance(options, dict) else vars(options)
    extra = values.get("extra_sources")
    return config_from(LocatorTrainConfig, values, **({"extra_sources": tuple(extra)} if extra else {}), **overrides)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if not args.source or not args.out:
        parser.error("--source and --out are required")
    cfg = config_from_args(vars(args), command=weights.command_line())
    card = train(cfg)
    print(f"Wrote {cfg.out}: held-out scenes box IoU {card['metrics']['held_out_scenes_box_iou']:.3f}")


if __name__ == "__main__":
    main()
