"""Generalisation protocols and the robust fine-tuning recipe of the shipped photo model.

Protocols (every figure beside the untrained ImageNet-features baseline, measured the same way):

* ``in_domain``: CC0 clothing photos, queries = a split of CC0, gallery = every CC0 photo;
* ``cross_domain``: studio product photos, queries = a split of the studio catalog, gallery = every studio photo,
  with a model that was never trained on studio images;
* ``unseen_classes``: five CC0 classes (:data:`UNSEEN_CLASSES`) left out of training; queries = a split of those
  classes, gallery = every photo of those classes.

Recipe (``robust``): the trunk is a WiSE-FT interpolation (Wortsman et al. 2022) between the ImageNet
EfficientNet-Lite0 trunk and a fine-tuned trunk, ``(1 - alpha) * imagenet + alpha * fine_tuned``; the
frozen trunk's feature maps are computed once (ONNX Runtime on the CPU), and only the head (GeM pooling +
linear projection) is trained on them: a linear probe (LP-FT's first stage, Kumar et al. 2022) with a CosFace
classifier, plus a relational distillation term that keeps the pairwise similarities of the ImageNet features
(so what ImageNet gave on other domains is kept). Everything here is pure PyTorch / NumPy.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import backbones, datasets, metrics, onnx_cache, preprocessing
from .training.losses import CosFace

#: CC0 classes left out of training for the unseen-classes protocol (a fixed choice: the five labels with the
#: smallest sha1 of their name, so it is not picked by looking at results).
UNSEEN_COUNT = 5


def unseen_classes(labels) -> list[str]:
    names = sorted(set(labels))
    return sorted(sorted(names, key=lambda s: hashlib.sha1(s.encode()).hexdigest())[:UNSEEN_COUNT])


def split_of(source_id: str) -> str:
    """``test`` (sha1 % 5 == 0), ``validation`` (== 1) or ``train``: the project's split."""
    if datasets.is_test(source_id):
        return "test"
    if datasets.is_validation(source_id):
        return "validation"
    return "train"


# --- decoded images -------------------------------------------------------------------------------------------


def decode(records, size: int, progress: bool = False) -> tuple[np.ndarray, list]:
    """Decode and square-pad every record at ``size`` px as uint8 (N, size, size, 3); unreadable files skipped."""
    from tqdm import tqdm

    out, kept = [], []
    for record in tqdm(records, desc=f"Decoding at {size} px", disable=not progress):
        try:
            img = preprocessing.open_image(record.path, decode_size=size)
        except preprocessing.InvalidImage:
            continue
        square = preprocessing.pad_to_square(img).resize((size, size), preprocessing.Image.BILINEAR, reducing_gap=2.0)
        out.append(np.asarray(square, dtype=np.uint8))
        kept.append(record)
    return (np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)), kept


def normalise(batch_uint8: np.ndarray) -> np.ndarray:
    x = (batch_uint8.astype(np.float32) - preprocessing.MEAN) / preprocessing.STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


# --- trunks ---------------------------------------------------------------------------------------------------


def imagenet_trunk_state(image_size: int) -> dict:
    return backbones.Lite0Trunk(image_size=image_size, pretrained=True).state_dict()


def interpolate(pre: dict, fine: dict, alpha: float) -> dict:
    """WiSE-FT: ``(1 - alpha) * pre + alpha * fine`` for every floating tensor (BatchNorm statistics included);
    integer buffers (``num_batches_tracked``) come from ``fine``."""
    if pre.keys() != fine.keys():
        raise ValueError("the two trunks have different parameters")
    out = {}
    for key, value in fine.items():
        if value.is_floating_point():
            out[key] = (1.0 - alpha) * pre[key].float() + alpha * value.float()
        else:
            out[key] = value
    return out


@torch.inference_mode()
def trunk_maps(
    trunk_state: dict,
    images: np.ndarray,
    image_size: int,
    batch_size: int = 64,
    threads: int = 0,
    progress: bool = False,
    activation: str = backbones.DEFAULT_ACTIVATION,
) -> np.ndarray:
    """The trunk's last feature maps (N, 1280, s, s) as float16, through ONNX Runtime (an order of magnitude faster
    than eager PyTorch on the CPU); eager PyTorch on CUDA."""
    from tqdm import tqdm

    trunk = backbones.Lite0Trunk(image_size=image_size, pretrained=False, activation=activation)
    trunk.load_state_dict(trunk_state, strict=True)
    trunk.eval()
    if torch.cuda.is_available():
        trunk.cuda()
        run = lambda x: trunk(torch.from_numpy(x).cuda()).half().cpu().numpy()  # noqa: E731
    else:
        with tempfile.TemporaryDirectory(prefix="fashion-ai-trunk-") as tmp:
            session = onnx_cache.session(
                trunk,
                name="trunk",
                source_sha256=f"trunk-{image_size}-{activation}",
                example=torch.zeros(2, 3, image_size, image_size),
                input_names=["images"],
                output_names=["maps"],
                cache_dir=tmp,
                threads=threads,
            )
        run = lambda x: session.run(["maps"], {"images": x})[0].astype(np.float16)  # noqa: E731
    chunks = []
    for start in tqdm(range(0, len(images), batch_size), desc="Trunk features", disable=not progress):
        chunks.append(run(normalise(images[start : start + batch_size])))
    return np.concatenate(chunks)


def gap(maps: np.ndarray) -> np.ndarray:
    """Global-average-pooled, L2-normalised features: the untrained ImageNet-features baseline."""
    v = maps.astype(np.float32).mean(axis=(2, 3))
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


# --- protocols ------------------------------------------------------------------------------------------------


def retrieval(vecs: np.ndarray, labels, ids, split: str, restrict=None) -> dict:
    """P@5 / mAP@10 of the ``split`` images as queries against every image (query excluded); ``restrict`` keeps
    only images whose label is in it (gallery and queries)."""
    labels = np.asarray(labels)
    keep = np.ones(len(labels), bool) if restrict is None else np.isin(labels, list(restrict))
    vecs, labels = vecs[keep], labels[keep]
    ids = [i for i, k in zip(ids, keep) if k]
    q = np.flatnonzero([split_of(i) == split for i in ids])
    return metrics.category_retrieval(vecs[q], labels[q], vecs, labels, query_gallery_index=q)


# --- head training --------------------------------------------------------------------------------------------


@dataclass
class HeadConfig:
    dim: int = 256
    epochs: int = 30
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    margin: float = 0.2
    scale: float = 24.0
    label_smoothing: float = 0.1
    distill_weight: float = 1.0  # relational distillation towards the ImageNet features' pairwise similarities
    feature_dropout: float = 0.1
    init: str = "pca"  # "pca": start from the projection onto the features' top principal components; "random"
    seed: int = 0


def gem(maps: np.ndarray, p: float = 3.0, batch_size: int = 512) -> np.ndarray:
    """Generalised-mean pooling of feature maps (N, C, s, s) -> (N, C), float32 (the head's pooling, p fixed)."""
    out = []
    for start in range(0, len(maps), batch_size):
        x = np.clip(maps[start : start + batch_size].astype(np.float32), 1e-6, None)
        out.append((x**p).mean(axis=(2, 3)) ** (1.0 / p))
    return np.concatenate(out) if out else np.zeros((0, maps.shape[1]), np.float32)


def train_head(
    pooled: np.ndarray,
    labels,
    teacher: np.ndarray | None,
    cfg: HeadConfig,
    max_minutes: float | None = None,
    progress: bool = False,
    return_classifier: bool = False,
):
    """Train a linear projection of GeM-pooled frozen features: CosFace over ``labels`` plus ``distill_weight`` x
    MSE between the batch's pairwise cosine similarities and those of ``teacher`` (the ImageNet GAP features of the
    same images), which keeps the ImageNet neighbourhoods the labels say nothing about. Returns (proj, history), or
    (proj, classifier, history) with ``return_classifier`` (the CosFace weights, classes in sorted label order)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    names = sorted(set(labels))
    index = {n: i for i, n in enumerate(names)}
    y = torch.tensor([index[n] for n in labels])
    feats = torch.from_numpy(np.ascontiguousarray(pooled, dtype=np.float32))
    proj = nn.Linear(feats.shape[1], cfg.dim)
    if cfg.init == "pca":  # the 256-d projection that best keeps the frozen features' geometry
        centred = F.normalize(feats, dim=1)
        mean = centred.mean(0)
        _, _, v = torch.linalg.svd(centred - mean, full_matrices=False)
        with torch.no_grad():
            proj.weight.copy_(v[: cfg.dim] * math.sqrt(cfg.dim))
            proj.bias.copy_(-(proj.weight @ mean))
    head = CosFace(cfg.dim, len(names), cfg.scale, cfg.margin)
    params = list(proj.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(y) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=max(1, steps * cfg.epochs), pct_start=0.15
    )
    teacher_t = torch.from_numpy(np.ascontiguousarray(teacher, dtype=np.float32)) if teacher is not None else None
    history, started = [], time.time()
    for epoch in range(cfg.epochs):
        order = torch.from_numpy(rng.permutation(len(y)))
        sums = [0.0, 0.0, 0]
        for step in range(steps):
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            if len(idx) < 2:
                continue
            x = feats[idx]
            if cfg.feature_dropout:
                x = F.dropout(x, cfg.feature_dropout, training=True)
            emb = F.normalize(proj(x), dim=1)
            target = y[idx]
            cls = F.cross_entropy(head(emb, target), target, label_smoothing=cfg.label_smoothing)
            loss = cls
            dist = torch.zeros(())
            if teacher_t is not None and cfg.distill_weight:
                t = teacher_t[idx]
                dist = F.mse_loss(emb @ emb.T, t @ t.T)
                loss = loss + cfg.distill_weight * 10.0 * dist
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            sums[0] += cls.item() * len(idx)
            sums[1] += dist.item() * len(idx)
            sums[2] += len(idx)
        history.append(
            {
                "epoch": epoch + 1,
                "cls": round(sums[0] / max(sums[2], 1), 4),
                "distill": round(sums[1] / max(sums[2], 1), 5),
            }
        )
        if progress:
            print(f"  head epoch {epoch + 1}/{cfg.epochs} {history[-1]}", flush=True)
        if max_minutes and time.time() - started > max_minutes * 60:
            history.append({"stopped_early": True})
            break
    proj.eval()
    return (proj, head, history) if return_classifier else (proj, history)


def project(proj: nn.Linear, pooled: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return F.normalize(proj(torch.from_numpy(np.ascontiguousarray(pooled, dtype=np.float32))), dim=1).numpy()
