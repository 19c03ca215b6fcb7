"""The data of the robust recipe (:mod:`.robust`) and the measurements its WiSE-FT alpha is chosen on.

Per source, kept under ``--cache``: decoded images in three views (original, mirrored, jittered), the frozen part of
the ImageNet trunk over each view, and the pooled ImageNet features (GAP: the distillation target and the baseline;
GeM: the linear probe's input). :func:`choose_alpha` measures every alpha and the baseline on the validation split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from .. import generalisation as G
from .. import metrics
from .augment import jitter_photos
from .config import log
from .features import ArrayBatches, ArrayCache, TrunkPart, cache_key, onnx_features
from .splits import is_excluded, source_name, source_records

VIEWS = ("original", "mirrored", "jittered")


@dataclass
class Sources:
    """Every source's readable, not excluded images, side by side."""

    records: list
    labels: list  # "<source>:<label>"
    src: np.ndarray  # the index of each image's source in cfg.sources
    split_feats: list  # per view: the frozen part's features (N, C, h, w)
    pooled: list  # per view: (2, N, 1280) GAP and GeM of the ImageNet trunk's last maps
    splits: np.ndarray  # "train" / "validation" / "test" per image

    @property
    def train_idx(self) -> np.ndarray:
        return np.flatnonzero(self.splits == "train")

    @property
    def teacher(self) -> list:
        """ImageNet GAP per view: the distillation target."""
        return [np.asarray(p[0]) for p in self.pooled]


def gather(cfg, trunk) -> Sources:
    """The arrays of every source in ``cfg.sources`` (each source's cached on its own, reused across runs), less
    the images whose label is in ``cfg.exclude_labels``."""
    cache = ArrayCache(cfg.cache)
    records, labels, src, split_feats, pooled = [], [], [], [[] for _ in VIEWS], [[] for _ in VIEWS]
    for i, path in enumerate(cfg.sources):
        recs, labs, feats, pool = _source_arrays(path, cfg, cache, trunk)
        records += recs
        labels += labs
        src += [i] * len(recs)
        for v in range(len(VIEWS)):
            split_feats[v].append(feats[v])
            pooled[v].append(pool[v])
    keep = np.array([not is_excluded(lab, set(cfg.exclude_labels)) for lab in labels], dtype=bool)
    split_feats = [np.concatenate(f)[keep] if len(f) > 1 or not keep.all() else np.asarray(f[0]) for f in split_feats]
    pooled = [np.concatenate(p, axis=1)[:, keep] for p in pooled]
    records = [r for r, k in zip(records, keep) if k]
    labels = [lab for lab, k in zip(labels, keep) if k]
    splits = np.array([G.split_of(r.source_id) for r in records])
    return Sources(records, labels, np.asarray(src)[keep], split_feats, pooled, splits)


def _source_arrays(path, cfg, cache, trunk):
    """One source's readable records, labels, frozen-part features per view and pooled ImageNet features per view
    ((2, N, 1280): GAP, the distillation target and baseline; GeM, the probe's input)."""
    size = cfg.image_size
    records, labels = source_records(path)
    key = cache_key([(str(r.path), r.label) for r in records], size, cfg.seed)
    decoded = {}

    def _decode():
        decoded["images"], kept = G.decode(records, size, progress=cfg.progress)
        ids = {id(r) for r in kept}
        return np.array([i for i, r in enumerate(records) if id(r) in ids], dtype=np.int64)

    kept = np.asarray(cache.get(f"kept-{key}", _decode))
    images = cache.get(
        f"images-{key}", lambda: decoded.pop("images", None) if "images" in decoded else G.decode(records, size)[0]
    )
    if len(kept) < len(records):
        log(cfg, f"{source_name(path)}: {len(records) - len(kept)} unreadable images skipped")
    records, labels = [records[i] for i in kept], [labels[i] for i in kept]
    views = [
        images,
        cache.get(f"mirror-{key}", lambda: np.ascontiguousarray(np.asarray(images)[:, :, ::-1])),
        cache.get(f"jitter-{key}", lambda: jitter_photos(np.asarray(images), cfg.seed)),
    ]
    example = torch.zeros(2, 3, size, size)
    feats, pooled = [], []
    prefix, rest = TrunkPart(trunk, cfg.split_block, until=True), TrunkPart(trunk, cfg.split_block, until=False)
    for v, arr in enumerate(views):
        desc = f"{source_name(path)}, {VIEWS[v]}"
        f = cache.get(
            f"split{cfg.split_block}-{key}-v{v}",
            lambda arr=arr, desc=desc: onnx_features(
                prefix,
                ArrayBatches(arr, _images),
                example,
                cfg.threads,
                desc=f"{desc}: blocks 0-{cfg.split_block - 1}",
                progress=cfg.progress,
            ),
        )

        def _pooled(f=f, desc=desc):
            maps = onnx_features(
                rest,
                ArrayBatches(f, _maps),
                torch.zeros(2, *f.shape[1:]),
                cfg.threads,
                desc=f"{desc}: rest of the ImageNet trunk",
                progress=cfg.progress,
            )
            return np.stack([G.gap(maps), G.gem(maps)])

        feats.append(f)
        pooled.append(cache.get(f"pooled{cfg.split_block}-{key}-v{v}", _pooled))
    return records, labels, feats, pooled


def _images(rows):
    return G.normalise(np.asarray(rows))


def _maps(rows):
    return np.ascontiguousarray(rows, dtype=np.float32)


def val_p5(vecs, labels, splits) -> dict:
    """P@5 of the validation images among all of ``vecs`` (normalised here)."""
    vecs = np.asarray(vecs, dtype=np.float32)
    vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    q = np.flatnonzero(splits == "validation")
    r = metrics.category_retrieval(vecs[q], labels[q], vecs, labels, query_gallery_index=q)
    return {"p_at_5": round(r["p_at_5"], 4), "p_at_5_se": round(r.get("p_at_5_se", 0.0), 4), "queries": len(q)}


# --- WiSE-FT: the alpha chosen on validation -----------------------------------------------------------------------


def choose_alpha(cfg, model, lp_state, ft_state, s: Sources) -> dict:
    """Validation P@5 of every alpha and of the ImageNet GAP baseline, per source; the card's ``selection``."""
    label_arr = np.asarray(s.labels)
    baseline = {}
    for i, path in enumerate(cfg.sources):
        sel = np.flatnonzero(s.src == i)
        baseline[source_name(path)] = val_p5(s.teacher[0][sel], label_arr[sel], s.splits[sel])
    candidates = {}
    for alpha in cfg.wise_alphas:
        model.load_state_dict(G.interpolate(lp_state, ft_state, float(alpha)))
        vecs = _embed_maps(model, cfg.split_block, s.split_feats[0])
        candidates[f"{alpha:g}"] = {
            source_name(p): val_p5(vecs[s.src == i], label_arr[s.src == i], s.splits[s.src == i])
            for i, p in enumerate(cfg.sources)
        }
        shown = {k: round(v["p_at_5"], 4) for k, v in candidates[f"{alpha:g}"].items()}
        log(cfg, f"alpha {alpha:g}: validation P@5 {json.dumps(shown)}")
    ok = [a for a, m in candidates.items() if all(m[k]["p_at_5"] >= baseline[k]["p_at_5"] for k in m)]
    chosen = max(ok or list(candidates), key=lambda a: np.mean([m["p_at_5"] for m in candidates[a].values()]))
    return {
        "rule": "largest mean validation P@5 over the sources among the alphas not below the "
        "ImageNet-features baseline on any source (all alphas if none qualifies)",
        "chosen_alpha": float(chosen),
        "any_alpha_qualified": bool(ok),
        "validation_p_at_5": candidates,
        "imagenet_gap_baseline": baseline,
    }


def _embed_maps(model, split, feats, batch=256):
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(feats), batch):
            x = torch.from_numpy(np.ascontiguousarray(feats[start : start + batch], dtype=np.float32))
            out.append(model.embed_features(model.trunk.forward_from(x, split)))
    return torch.cat(out).numpy()
