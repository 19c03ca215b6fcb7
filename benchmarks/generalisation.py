"""Generalisation protocols for photo models, each beside the untrained ImageNet-features baseline.

    python benchmarks/generalisation.py [--photo P.safetensors ...] [--recipes] [--split validation|test]
        [--cc0 PATH] [--studio PATH] [--cache var/generalisation] [--out results.json]

Protocols (oscar_fashion_ai/ml/generalisation.py): in-domain (CC0 clothing photos), cross-domain (studio
catalog), unseen classes (five CC0 classes, fixed by name hash, left out of training; retrieval among them).
Queries are the ``--split`` images of each set (query excluded, gallery = every image of the set, or of the five
classes); P@5 with its standard error.

* ``imagenet-gap-160`` / ``imagenet-gap-224``: ImageNet EfficientNet-Lite0 (ReLU6, as the weights were trained),
  global-average-pooled trunk features, no training at all;
* each ``--photo``: the model file exactly as the store runs it (oscar_fashion_ai.ml.embedder.Embedder);
* ``--recipes``: linear-probe heads (GeM + 256-d projection, CosFace, relational distillation to the ImageNet
  features) on the frozen ImageNet trunk, trained here on the train split (sha1 % 5 not in {0, 1}) of CC0 only
  ("never saw studio") and of CC0 + studio; for the unseen-classes figure the same head is retrained without the
  five classes. Choose on ``--split validation``; report ``--split test`` once, after the choice.
Trunk feature maps are cached under ``--cache`` (outside the repository's tracked files).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import repo_path  # noqa: E402
from oscar_fashion_ai.ml import datasets, evaluate  # noqa: E402
from oscar_fashion_ai.ml import generalisation as G  # noqa: E402
from oscar_fashion_ai.ml.embedder import Embedder  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets"


class Sets:
    """Decoded images and cached ImageNet trunk maps of both data sets."""

    def __init__(self, sources: dict, cache: Path, threads: int):
        self.sources, self.cache, self.threads = sources, cache, threads
        cache.mkdir(parents=True, exist_ok=True)
        self.records = {n: datasets.labelled_records(p) for n, p in sources.items()}

    def images(self, name, size):
        path, ids = self.cache / f"{name}-{size}.npy", self.cache / f"{name}-ids.json"
        if not path.exists():
            arr, kept = G.decode(self.records[name], size)
            np.save(path, arr)
            ids.write_text(json.dumps({"ids": [r.source_id for r in kept], "labels": [r.label for r in kept]}))
        meta = json.loads(ids.read_text())
        return np.load(path, mmap_mode="r"), meta["ids"], meta["labels"]

    def imagenet_maps(self, name, size):
        path = self.cache / f"{name}-imagenet-relu6-{size}.maps.npy"
        if not path.exists():
            arr, _, _ = self.images(name, size)
            np.save(path, G.trunk_maps(G.imagenet_trunk_state(size), np.asarray(arr), size, threads=self.threads))
        return np.load(path, mmap_mode="r")


def protocols(vectors: dict, sets: Sets, split: str, unseen_vectors=None) -> dict:
    out = {}
    for name, key in (("cc0", "in_domain"), ("studio", "cross_domain")):
        _, ids, labels = sets.images(name, 160)
        out[key] = G.retrieval(vectors[name], labels, ids, split)
    _, ids, labels = sets.images("cc0", 160)
    unseen = G.unseen_classes(labels)
    out["unseen_classes"] = G.retrieval(
        unseen_vectors if unseen_vectors is not None else vectors["cc0"], labels, ids, split, restrict=unseen
    ) | {"classes": unseen}
    return out


def _train_split(sets, names, pooled, teacher, drop=()):
    feats, labels, teach = [], [], []
    for n in names:
        _, ids, labs = sets.images(n, 160)
        sel = [i for i, (s, lab) in enumerate(zip(ids, labs)) if G.split_of(s) == "train" and lab not in drop]
        feats.append(pooled[n][sel])
        teach.append(teacher[n][sel])
        labels += [f"{n}:{labs[i]}" for i in sel]
    return np.concatenate(feats), labels, np.concatenate(teach)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", action="append", default=[], help="a photo model file (repeatable)")
    parser.add_argument(
        "--unseen-photo",
        action="append",
        default=[],
        help="for the --photo at the same position: the same recipe trained without the five unseen "
        "classes (train_robust --exclude-labels), measured on the unseen-classes protocol",
    )
    parser.add_argument("--recipes", action="store_true", help="train and measure the linear-probe recipes")
    parser.add_argument("--distill", default="1", help="distillation weights of the recipes (comma-separated)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--split", choices=["validation", "test"], default="validation")
    parser.add_argument(
        "--cc0", type=Path, default=Path(os.environ.get("FASHION_AI_DATASET") or DATA / "clothing-dataset")
    )
    parser.add_argument(
        "--studio", type=Path, default=Path(os.environ.get("FASHION_AI_STUDIO_DATASET") or DATA / "studio-catalog")
    )
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "generalisation")
    parser.add_argument(
        "--threads", type=int, default=1, help="inference/training threads (1 is fastest on a busy 2-core machine)"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    started = time.time()
    sets = Sets({"cc0": args.cc0, "studio": args.studio}, args.cache, args.threads)
    result = {
        "split": args.split,
        "data": {"cc0": args.cc0.name, "studio": args.studio.name},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "models": {},
    }
    maps = {n: sets.imagenet_maps(n, 160) for n in ("cc0", "studio")}
    gap160 = {n: G.gap(np.asarray(m)) for n, m in maps.items()}
    result["models"]["imagenet-gap-160"] = protocols(gap160, sets, args.split)
    gap224 = {n: G.gap(np.asarray(sets.imagenet_maps(n, 224))) for n in ("cc0", "studio")}
    result["models"]["imagenet-gap-224"] = protocols(gap224, sets, args.split)

    def embed_all(photo, names=("cc0", "studio")):
        embedder = Embedder(photo, threads=args.threads)
        vecs = {}
        for n in names:
            v, kept = evaluate.embed_records(embedder, sets.records[n])
            _, ids, _ = sets.images(n, 160)
            if [r.source_id for r in kept] != ids:
                raise SystemExit(f"{photo}: images readable by the decoder differ from the cache; delete {args.cache}")
            vecs[n] = v
        return embedder, vecs

    if len(args.unseen_photo) > len(args.photo):
        parser.error("more --unseen-photo than --photo")
    for i, photo in enumerate(args.photo):
        embedder, vecs = embed_all(photo)
        unseen_vecs, unseen_version = None, None
        if i < len(args.unseen_photo):
            unseen_embedder, unseen_all = embed_all(args.unseen_photo[i], names=("cc0",))
            unseen_vecs, unseen_version = unseen_all["cc0"], unseen_embedder.version
        result["models"][repo_path(photo)] = protocols(vecs, sets, args.split, unseen_vectors=unseen_vecs) | {
            "version": embedder.version,
            "unseen_classes_model": unseen_version,
            "note": "trained on which data: see its model card",
        }
    if args.recipes:
        pooled = {n: G.gem(np.asarray(m)) for n, m in maps.items()}
        _, _, cc0_labels = sets.images("cc0", 160)
        unseen = G.unseen_classes(cc0_labels)
        for weight in [float(x) for x in args.distill.split(",")]:
            for names in (("cc0",), ("cc0", "studio")):
                cfg = G.HeadConfig(distill_weight=weight, epochs=args.epochs, init="random")
                x, y, t = _train_split(sets, names, pooled, gap160)
                proj, history = G.train_head(x, y, t, cfg)
                vecs = {n: G.project(proj, pooled[n]) for n in ("cc0", "studio")}
                x, y, t = _train_split(sets, names, pooled, gap160, drop=unseen)
                proj_unseen, _ = G.train_head(x, y, t, cfg)
                entry = protocols(vecs, sets, args.split, unseen_vectors=G.project(proj_unseen, pooled["cc0"]))
                entry["trained_on"] = "+".join(names) + " train split"
                entry["config"] = cfg.__dict__
                entry["final_epoch"] = history[-1]
                result["models"][f"lp-{'+'.join(names)}-distill{weight:g}"] = entry
    result["wall_s"] = round(time.time() - started, 1)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    print("\nP@5 (+-SE), split", args.split, file=sys.stderr)
    for model, entry in result["models"].items():
        cells = [
            f"{entry[k]['p_at_5']:.3f}+-{entry[k]['p_at_5_se']:.3f}"
            for k in ("in_domain", "cross_domain", "unseen_classes")
        ]
        print(f"{model:50s} in-domain {cells[0]}  studio {cells[1]}  unseen {cells[2]}", file=sys.stderr)


if __name__ == "__main__":
    main()
