"""Train the shipped photo model so that it keeps what ImageNet gave: LP-FT + relational distillation + WiSE-FT.

    python -m oscar_fashion_ai.ml.train_robust --source CC0 [--source STUDIO ...] --out lite0-fashion.safetensors
        [--exclude-labels A,B] [--split-block 11] [--lp-epochs 30] [--ft-epochs 6] [--distill 1]
        [--wise-alphas 0,0.25,0.5,0.75,1] [--cache var/robust] [--threads 1] [--max-minutes M]

The recipe, every stage on the CPU in bounded time (the frozen part of the trunk runs once, through ONNX Runtime):

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

Writes the weights (float16) and a model card beside them with the data, split, settings, history and the
validation figures of every alpha and of the baseline. Pure PyTorch / NumPy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import backbones, datasets, metrics, preprocessing, weights
from . import generalisation as G
from .embedder import version_string
from .train_embedder import CosFace, epochs_within_budget, one_cycle

VIEWS = ("original", "mirrored", "jittered")


@dataclass
class RobustConfig:
    sources: list
    out: str
    exclude_labels: tuple = ()
    image_size: int = 160
    dim: int = 256
    split_block: int = 11
    lp_epochs: int = 30
    ft_epochs: int = 6
    batch_size: int = 64
    lp_lr: float = 3e-3
    ft_lr: float = 3e-4
    weight_decay: float = 1e-4
    margin: float = 0.2
    scale: float = 24.0
    label_smoothing: float = 0.1
    distill_weight: float = 1.0
    feature_dropout: float = 0.1
    wise_alphas: tuple = (0.0, 0.25, 0.5, 0.75, 1.0)
    seed: int = 0
    threads: int = 1
    cache: str | None = None
    max_minutes: float | None = None
    half: bool = True
    progress: bool = True
    command: str = field(default_factory=weights.command_line)


def _log(cfg, msg):
    if cfg.progress:
        print(msg, flush=True)


# --- data -----------------------------------------------------------------------------------------------------


def source_name(path) -> str:
    return Path(path).resolve().name


def source_records(path) -> tuple[list, list]:
    """(records, "<source>:<label>" labels) of one labelled set."""
    name = source_name(path)
    records = datasets.labelled_records(Path(path))
    return records, [f"{name}:{r.label}" for r in records]


def is_excluded(label: str, excluded) -> bool:
    """``label`` ("<source>:<label>") matches an excluded name given with or without its source."""
    return label in excluded or label.split(":", 1)[1] in excluded


def _jitter(images: np.ndarray, seed: int) -> np.ndarray:
    """A random resized crop (scale 0.6-1), a colour shift, and for a third of the images a trip through a small
    resolution (64-112 px), as in phone photos of a garment and in small studio thumbnails."""
    from PIL import Image, ImageEnhance

    rng = np.random.default_rng(seed)
    out = np.empty_like(images)
    size = images.shape[1]
    for i, arr in enumerate(images):
        img = Image.fromarray(arr)
        s = rng.uniform(0.6, 1.0)
        w = int(size * math.sqrt(s) * rng.uniform(0.9, 1.1))
        h = int(size * s * size / max(w, 1))
        w, h = min(max(w, 16), size), min(max(h, 16), size)
        x0, y0 = rng.integers(0, size - w + 1), rng.integers(0, size - h + 1)
        img = img.crop((x0, y0, x0 + w, y0 + h)).resize((size, size), Image.BILINEAR)
        if rng.random() < 1 / 3:
            small = int(rng.integers(64, 113))
            img = img.resize((small, small), Image.BILINEAR).resize((size, size), Image.BILINEAR)
        img = ImageEnhance.Color(img).enhance(rng.uniform(0.6, 1.4))
        img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.8, 1.2))
        img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.8, 1.2))
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        out[i] = np.asarray(img)
    return out


class _Cache:
    """Arrays kept under ``cfg.cache`` (keyed by the records, size and code settings); in memory without it."""

    def __init__(self, folder):
        self.folder = Path(folder) if folder else None

    def get(self, key: str, make):
        if self.folder is None:
            return make()
        path = self.folder / f"{key}.npy"
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            arr = make()
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, arr)
            tmp.replace(path)
        return np.load(path, mmap_mode="r")


def _key(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()[:16]


class _TrunkPart(torch.nn.Module):
    """The trunk before block ``split`` (``until=True``) or from it on, as a module to export."""

    def __init__(self, trunk, split, until: bool):
        super().__init__()
        self.trunk, self.split, self.until = trunk, split, until

    def forward(self, x):
        return self.trunk.forward_until(x, self.split) if self.until else self.trunk.forward_from(x, self.split)


def _features(module, inputs, example, threads, batch=64, desc="", progress=False):
    """``module`` over ``inputs`` (a function of a start index range -> float32 batch) through one ONNX session."""
    import tempfile

    from tqdm import tqdm

    from . import onnx_cache

    with tempfile.TemporaryDirectory(prefix="fashion-ai-robust-") as tmp:
        session = onnx_cache.session(module.eval(), name="part", source_sha256=_key(desc, tuple(example.shape)),
                                     example=example, input_names=["x"], output_names=["y"], cache_dir=tmp,
                                     threads=threads, dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    n = inputs.n
    out = []
    for start in tqdm(range(0, n, batch), desc=desc, disable=not progress):
        out.append(session.run(["y"], {"x": inputs(start, min(n, start + batch))})[0].astype(np.float16))
    return np.concatenate(out)


class _Images:
    def __init__(self, images):
        self.images, self.n = images, len(images)

    def __call__(self, a, b):
        return G.normalise(np.asarray(self.images[a:b]))


class _Maps:
    def __init__(self, maps):
        self.maps, self.n = maps, len(maps)

    def __call__(self, a, b):
        return np.ascontiguousarray(self.maps[a:b], dtype=np.float32)


# --- training -------------------------------------------------------------------------------------------------


def _set_trainable(model, split):
    trunk = model.trunk
    trunk.freeze_until(split)
    # BatchNorm statistics stay ImageNet's everywhere (small batches of cached features; WiSE interpolation
    # between two models with the same statistics)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
            m.weight.requires_grad_(True)


def _embed_maps(model, split, feats, batch=256):
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(feats), batch):
            x = torch.from_numpy(np.ascontiguousarray(feats[start : start + batch], dtype=np.float32))
            out.append(model.embed_features(model.trunk.forward_from(x, split)))
    return torch.cat(out).numpy()


def _source_arrays(path, cfg, cache, trunk):
    """One source's readable records, labels, frozen-part features per view and pooled ImageNet features per view
    ((2, N, 1280): GAP, the distillation target and baseline; GeM, the probe's input)."""
    size = cfg.image_size
    records, labels = source_records(path)
    key = _key([(str(r.path), r.label) for r in records], size, cfg.seed)
    decoded = {}

    def _decode():
        decoded["images"], kept = G.decode(records, size, progress=cfg.progress)
        ids = {id(r) for r in kept}
        return np.array([i for i, r in enumerate(records) if id(r) in ids], dtype=np.int64)

    kept = np.asarray(cache.get(f"kept-{key}", _decode))
    images = cache.get(f"images-{key}", lambda: decoded.pop("images", None)
                       if "images" in decoded else G.decode(records, size)[0])
    if len(kept) < len(records):
        _log(cfg, f"{source_name(path)}: {len(records) - len(kept)} unreadable images skipped")
    records, labels = [records[i] for i in kept], [labels[i] for i in kept]
    views = [images, cache.get(f"mirror-{key}", lambda: np.ascontiguousarray(np.asarray(images)[:, :, ::-1])),
             cache.get(f"jitter-{key}", lambda: _jitter(np.asarray(images), cfg.seed))]
    example = torch.zeros(2, 3, size, size)
    feats, pooled = [], []
    prefix, rest = _TrunkPart(trunk, cfg.split_block, until=True), _TrunkPart(trunk, cfg.split_block, until=False)
    for v, arr in enumerate(views):
        desc = f"{source_name(path)}, {VIEWS[v]}"
        f = cache.get(f"split{cfg.split_block}-{key}-v{v}",
                      lambda arr=arr, desc=desc: _features(prefix, _Images(arr), example, cfg.threads,
                                                           desc=f"{desc}: blocks 0-{cfg.split_block - 1}",
                                                           progress=cfg.progress))

        def _pooled(f=f, desc=desc):
            maps = _features(rest, _Maps(f), torch.zeros(2, *f.shape[1:]), cfg.threads,
                             desc=f"{desc}: rest of the ImageNet trunk", progress=cfg.progress)
            return np.stack([G.gap(maps), G.gem(maps)])

        feats.append(f)
        pooled.append(cache.get(f"pooled{cfg.split_block}-{key}-v{v}", _pooled))
    return records, labels, feats, pooled


def train(cfg: RobustConfig) -> dict:
    started = time.time()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(max(1, cfg.threads))
    if not cfg.sources:
        raise ValueError("give at least one --source")
    cache = _Cache(cfg.cache)
    size = cfg.image_size
    model = backbones.build("lite0", dim=cfg.dim, image_size=size, pretrained=True)
    trunk = model.trunk.eval()
    records, labels, src, split_feats, final_pooled = [], [], [], [[] for _ in VIEWS], [[] for _ in VIEWS]
    for i, path in enumerate(cfg.sources):  # each source's arrays are cached on their own (reused across runs)
        recs, labs, feats, pooled = _source_arrays(path, cfg, cache, trunk)
        records += recs
        labels += labs
        src += [i] * len(recs)
        for v in range(len(VIEWS)):
            split_feats[v].append(feats[v])
            final_pooled[v].append(pooled[v])
    keep = np.array([not is_excluded(lab, set(cfg.exclude_labels)) for lab in labels], dtype=bool)
    split_feats = [np.concatenate(f)[keep] if len(f) > 1 or not keep.all() else np.asarray(f[0]) for f in split_feats]
    final_pooled = [np.concatenate(p, axis=1)[:, keep] for p in final_pooled]
    records = [r for r, k in zip(records, keep) if k]
    labels = [lab for lab, k in zip(labels, keep) if k]
    src = np.asarray(src)[keep]
    ids = [r.source_id for r in records]
    splits = np.array([G.split_of(i) for i in ids])
    train_idx = np.flatnonzero(splits == "train")
    val_idx = np.flatnonzero(splits == "validation")
    _log(cfg, f"{len(records)} images from {len(cfg.sources)} source(s), {len(set(labels))} labels; "
              f"{len(train_idx)} train / {len(val_idx)} validation / {(splits == 'test').sum()} test")
    teacher = [np.asarray(p[0]) for p in final_pooled]  # ImageNet GAP per view: the distillation target
    # classes = the labels with training images (the others still count as gallery and validation labels)
    names = sorted({labels[i] for i in train_idx})
    index = {n: i for i, n in enumerate(names)}
    y = torch.tensor([index.get(n, -1) for n in labels])

    # 1. linear probe on the frozen ImageNet features (all three views of the training images)
    lp_cfg = G.HeadConfig(dim=cfg.dim, epochs=cfg.lp_epochs, batch_size=128, lr=cfg.lp_lr,
                          weight_decay=cfg.weight_decay,
                          margin=cfg.margin, scale=cfg.scale, label_smoothing=cfg.label_smoothing,
                          distill_weight=cfg.distill_weight, feature_dropout=cfg.feature_dropout, init="random",
                          seed=cfg.seed)
    lp_x = np.concatenate([np.asarray(p[1])[train_idx] for p in final_pooled])
    lp_t = np.concatenate([t[train_idx] for t in teacher])
    lp_y = [labels[i] for i in train_idx] * len(VIEWS)
    t0 = time.time()
    proj, classifier, lp_history = G.train_head(lp_x, lp_y, lp_t, lp_cfg, return_classifier=True)
    _log(cfg, f"LP: {cfg.lp_epochs} epochs in {time.time() - t0:.0f} s; {lp_history[-1]}")
    with torch.no_grad():
        model.proj.weight.copy_(proj.weight)
        model.proj.bias.copy_(proj.bias)
    lp_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    # 2. fine-tune the blocks from split_block on, from the LP head (seeded here: the same run whether the
    # features came from the cache or were just computed)
    torch.manual_seed(cfg.seed + 1)
    _set_trainable(model, cfg.split_block)
    head = CosFace(cfg.dim, len(names), cfg.scale, cfg.margin)
    head.load_state_dict(classifier.state_dict())
    params = [p for p in list(model.parameters()) + list(head.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.ft_lr, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(train_idx) / cfg.batch_size)
    epochs = cfg.ft_epochs
    scheduler = one_cycle(optimizer, cfg.ft_lr, steps * epochs)
    teacher_t = [torch.from_numpy(np.array(t, dtype=np.float32)) for t in teacher]
    history, ft_started = [], time.time()
    from tqdm import tqdm

    for epoch in range(cfg.ft_epochs):
        if epoch >= epochs:
            break
        model.train()
        _set_trainable(model, cfg.split_block)
        rng = np.random.default_rng(cfg.seed * 7919 + epoch)
        order = rng.permutation(train_idx)
        sums = [0.0, 0.0, 0]
        bar = tqdm(range(steps), desc=f"FT epoch {epoch + 1}/{epochs}", disable=not cfg.progress)
        for step in bar:
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            if len(idx) < 2:
                continue
            view = rng.integers(0, len(VIEWS), len(idx))
            x = torch.from_numpy(np.stack([np.asarray(split_feats[v][i], dtype=np.float32) for v, i in zip(view, idx)]))
            if cfg.feature_dropout:
                x = F.dropout2d(x, cfg.feature_dropout, training=True)
            emb = model.embed_features(model.trunk.forward_from(x, cfg.split_block))
            target = y[idx]
            cls = F.cross_entropy(head(emb, target), target, label_smoothing=cfg.label_smoothing)
            t = torch.stack([teacher_t[v][i] for v, i in zip(view, idx)])
            dist = F.mse_loss(emb @ emb.T, t @ t.T)
            loss = cls + cfg.distill_weight * 10.0 * dist
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            sums[0] += cls.item() * len(idx)
            sums[1] += dist.item() * len(idx)
            sums[2] += len(idx)
            bar.set_postfix(cls=f"{sums[0] / sums[2]:.3f}", distill=f"{sums[1] / sums[2]:.4f}")
        history.append({"epoch": epoch + 1, "cls": round(sums[0] / max(sums[2], 1), 4),
                        "distill": round(sums[1] / max(sums[2], 1), 5)})
        _log(cfg, f"FT epoch {epoch + 1}: {history[-1]}")
        if cfg.max_minutes and epoch + 1 < epochs:  # fit the remaining epochs to the budget, schedule re-planned
            fit, per_epoch = epochs_within_budget(cfg.max_minutes, started, ft_started, epoch + 1, epoch, epochs)
            if fit < epochs:
                epochs = fit
                scheduler = one_cycle(optimizer, cfg.ft_lr, steps * epochs, (epoch + 1) * steps)
                history.append({"epochs_fitted_to_budget": epochs, "seconds_per_epoch": round(per_epoch, 1)})
    ft_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    # 3. WiSE-FT: alpha chosen on the validation split of every source
    val_feats = split_feats[0]
    label_arr = np.asarray(labels)
    baseline = {}
    for i, path in enumerate(cfg.sources):
        sel = np.flatnonzero(src == i)
        baseline[source_name(path)] = _val_p5(teacher[0][sel], label_arr[sel], splits[sel])
    candidates = {}
    for alpha in cfg.wise_alphas:
        model.load_state_dict(G.interpolate(lp_state, ft_state, float(alpha)))
        vecs = _embed_maps(model, cfg.split_block, val_feats)
        candidates[f"{alpha:g}"] = {source_name(p): _val_p5(vecs[src == i], label_arr[src == i], splits[src == i])
                                    for i, p in enumerate(cfg.sources)}
        shown = {k: round(v["p_at_5"], 4) for k, v in candidates[f"{alpha:g}"].items()}
        _log(cfg, f"alpha {alpha:g}: validation P@5 {json.dumps(shown)}")
    ok = [a for a, m in candidates.items() if all(m[s]["p_at_5"] >= baseline[s]["p_at_5"] for s in m)]
    pool = ok or list(candidates)
    chosen = max(pool, key=lambda a: np.mean([m["p_at_5"] for m in candidates[a].values()]))
    model.load_state_dict(G.interpolate(lp_state, ft_state, float(chosen)))
    model.eval()

    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"backbone": "lite0", "dim": cfg.dim, "image_size": size,
            "preprocessing": preprocessing.PREPROCESSING_VERSION,
            "labels": json.dumps(names), "recipe": "lp-ft-distill-wise"} | backbones.model_meta(model)
    digest = weights.save(model, out, meta, dtype=torch.float16 if cfg.half else None)
    card = {
        "model": "Image2Vec embedder",
        "version": version_string("lite0", cfg.dim, size, digest),
        "weights_file": out.name,
        "weights_sha256": digest,
        "weights_bytes": out.stat().st_size,
        "weights_dtype": "float16" if cfg.half else "float32",
        "architecture": "lite0 (ImageNet init, ReLU6) + GeM pooling + linear 256-d, L2-normalised; "
                        f"blocks {cfg.split_block}-15 and the head fine-tuned (LP-FT), WiSE-FT alpha {chosen}",
        "data": {"sources": [{"name": source_name(p), "images": int((src == i).sum()),
                              "train": int(((src == i) & (splits == "train")).sum()),
                              "validation": int(((src == i) & (splits == "validation")).sum()),
                              "test": int(((src == i) & (splits == "test")).sum())}
                             for i, p in enumerate(cfg.sources)],
                 "labels": names, "excluded_labels": list(cfg.exclude_labels),
                 "ignored_labels": list(datasets.IGNORED_LABELS)},
        "split": {"rule": "test when int(sha1(image_id).hexdigest(), 16) % 5 == 0; validation (held out, for choosing "
                          "alpha) when it is 1; train otherwise", "test_split_used": False},
        "training": {k: v for k, v in asdict(cfg).items() if k not in {"out", "progress", "command", "sources"}}
        | {"sources": [source_name(p) for p in cfg.sources]},
        "history": {"lp": lp_history[-1:], "ft": history},
        "selection": {"rule": "largest mean validation P@5 over the sources among the alphas not below the "
                              "ImageNet-features baseline on any source (all alphas if none qualifies)",
                      "chosen_alpha": float(chosen), "any_alpha_qualified": bool(ok),
                      "validation_p_at_5": candidates, "imagenet_gap_baseline": baseline},
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count(),
                    "device": "cpu",
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
        "wall_time_s": round(time.time() - started, 1),
        "command": cfg.command,
    }
    out.with_suffix(".card.json").write_text(json.dumps(card, indent=2) + "\n")
    _log(cfg, f"alpha {chosen} chosen; {card['version']} -> {out} ({card['wall_time_s']:.0f} s)")
    return card


def _val_p5(vecs, labels, splits) -> dict:
    vecs = np.asarray(vecs, dtype=np.float32)
    vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    q = np.flatnonzero(splits == "validation")
    r = metrics.category_retrieval(vecs[q], labels[q], vecs, labels, query_gallery_index=q)
    return {"p_at_5": round(r["p_at_5"], 4), "p_at_5_se": round(r.get("p_at_5_se", 0.0), 4), "queries": len(q)}


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
    p.add_argument("--distill", type=float, default=d.distill_weight)
    p.add_argument("--wise-alphas", default=",".join(f"{a:g}" for a in d.wise_alphas))
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads, help="1 is fastest on a busy 2-core machine")
    p.add_argument("--cache", default=None, help="keep decoded images and frozen features here (git-ignored)")
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--float32", dest="half", action="store_false")
    a = p.parse_args(argv)
    cfg = RobustConfig(sources=a.source, out=a.out, image_size=a.image_size,
                       exclude_labels=tuple(x for x in a.exclude_labels.split(",") if x),
                       split_block=a.split_block, lp_epochs=a.lp_epochs, ft_epochs=a.ft_epochs, ft_lr=a.ft_lr,
                       batch_size=a.batch_size, distill_weight=a.distill,
                       wise_alphas=tuple(float(x) for x in a.wise_alphas.split(",")), seed=a.seed, threads=a.threads,
                       cache=a.cache, max_minutes=a.max_minutes, half=a.half)
    train(cfg)


if __name__ == "__main__":
    main()
