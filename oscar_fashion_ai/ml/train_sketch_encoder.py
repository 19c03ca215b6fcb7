"""Train the sketch encoder: a second copy of the embedding network that maps a shopper's drawing into the
photo embedder's vector space.

One network for photos and drawings has to trade one against the other (README, "Search by sketch"): the
more it is pulled towards drawings, the worse photo-to-photo search gets. Here the photo embedder is frozen
and only the sketch encoder learns. For each training photo its frozen vector is the target of that photo's
synthetic drawings (:mod:`.pairs`):

* an instance term: softmax over *every* training photo's vector, so a drawing finds its own product
  among the whole catalog, not only among the batch;
* a category term: softmax over the categories' mean photo vectors, so near misses stay in the category.

The photo index is untouched (no reindex). The weights record the checksum of the photo weights they were
trained against; the plugin uses the encoder only with that photo model.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import backbones, datasets, metrics, pairs, preprocessing, weights
from .embedder import version_string
from .evaluate import sketch_retrieval
from .train_embedder import (
    SKETCH_QUERIES,
    _frozen_runner,
    _log,
    _normalise_uint8,
    dataclass_from_args,
    labelled_split,
    machine_info,
    one_cycle,
    setup,
    split_card,
)

ROLE = "sketch"


@dataclass
class SketchTrainConfig:
    source: str
    out: str
    photo_weights: str
    init_weights: str | None = None  # default: start from the photo weights
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.05
    category_weight: float = 0.5
    variants: int = 4
    styles: str = "xdog,xdog,edges"
    limit: int | None = None
    seed: int = 0
    threads: int = 0
    device: str | None = None
    workers: int = 0
    checkpoint_dir: str | None = None
    resume: bool = False
    max_minutes: float | None = None
    pairs_cache: str | None = None
    rebuild_pairs: bool = False
    validation: bool = False  # hold out the validation split (datasets.is_validation) and report metrics on it
    extra_sources: tuple = ()  # further labelled sets trained on beside ``source`` (labels kept apart per set)
    split_block: int = 0  # > 0: blocks before it stay frozen and their outputs are computed once (CPU-friendly)
    half: bool = True  # store the weights in float16 (half the size; cosine to the float32 vectors > 0.99999)
    progress: bool = True
    command: str = field(default_factory=weights.command_line)


def _load_net(path, device, like: dict | None = None):
    """An embedding network from a weights file (ValueError with the reason when it cannot be used; ``like``:
    the photo model's metadata, whose backbone and dimension it must share)."""
    try:
        state, meta = weights.load(Path(path))
        net = backbones.build_from_meta(meta)
        net.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise ValueError(f"Cannot load the embedding network {path}: {exc}") from exc
    if like is not None and (meta.get("backbone", "lite0"), meta.get("dim", "256")) != (
            like.get("backbone", "lite0"), like.get("dim", "256")):
        raise ValueError(f"{path} is a {meta.get('backbone')} {meta.get('dim')}-d network; the photo model is "
                         f"{like.get('backbone')} {like.get('dim')}-d")
    return net.to(device), meta


def _embed(net, images_uint8, device, amp, batch=256):
    out = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        for start in range(0, len(images_uint8), batch):
            chunk = torch.as_tensor(images_uint8[start : start + batch]).to(device)
            out.append(net(_normalise_uint8(chunk)).float())
    return F.normalize(torch.cat(out), dim=1)


def train(cfg: SketchTrainConfig, records=None, on_epoch=None) -> dict:
    """Train and write the encoder and its card; returns the card. ``records``: the labelled images
    (:class:`.datasets.Record`) to use instead of reading ``cfg.source`` (their test split is held out);
    ``on_epoch(epoch, epochs, entry)`` is called after every epoch."""
    started = time.time()
    device = setup(cfg)
    amp = device.type == "cuda"
    photo_net, meta = _load_net(cfg.photo_weights, device)
    photo_net.eval()
    photo_sha = weights.sha256(Path(cfg.photo_weights))
    backbone, dim, size = meta.get("backbone", "lite0"), int(meta.get("dim", 256)), int(meta.get("image_size", 160))
    net, _ = _load_net(cfg.init_weights or cfg.photo_weights, device, like=meta)

    given = records is not None
    if given:
        records = list(records)
    elif cfg.extra_sources:  # labels kept apart per set ("<set>:<label>"), as in train_robust
        records = []
        for src in (cfg.source, *cfg.extra_sources):
            name = Path(src).resolve().name
            records += [datasets.Record(r.source_id, f"{name}:{r.label}", r.path)
                        for r in datasets.labelled_records(Path(src))]
    records, labels, y_all, test_mask, val_mask = labelled_split(cfg.source, cfg.limit, cfg.seed, cfg.validation,
                                                                 records=records)
    photos, drawings, _, kept = pairs.load(records, size, cfg.variants, cfg.seed, cfg.workers, progress=cfg.progress,
                                           cache_dir=cfg.pairs_cache, rebuild=cfg.rebuild_pairs,
                                           styles=tuple(x.strip() for x in cfg.styles.split(",") if x.strip()))
    records = [records[i] for i in kept]
    y_all, test_mask, val_mask = y_all[torch.as_tensor(kept)].to(device), test_mask[kept], val_mask[kept]
    train_idx = np.flatnonzero(~test_mask & ~val_mask)
    _log(cfg, f"{len(records)} images, {len(labels)} labels, {len(train_idx)} train / {val_mask.sum()} validation / "
              f"{test_mask.sum()} test; device={device}; photo model {version_string(backbone, dim, size, photo_sha)}")

    # Frozen targets: every photo's vector; the instance gallery is the training photos, the category
    # prototypes are the normalised means of their vectors.
    photo_vecs = _embed(photo_net, photos, device, amp)
    del photo_net
    gallery = photo_vecs[torch.as_tensor(train_idx, device=device)]
    train_pos = torch.full((len(records),), -1, dtype=torch.long, device=device)
    train_pos[torch.as_tensor(train_idx, device=device)] = torch.arange(len(train_idx), device=device)
    train_labels = y_all[torch.as_tensor(train_idx, device=device)]
    prototypes = torch.zeros(len(labels), dim, device=device).index_add_(0, train_labels, gallery)
    prototypes = F.normalize(prototypes, dim=1)

    drawings_t = torch.from_numpy(drawings)
    if device.type == "cuda":
        drawings_t = drawings_t.to(device)
    cached = None
    if cfg.split_block:  # frozen prefix: its outputs once per drawing (ONNX Runtime on the CPU), only the rest trains
        net.trunk.freeze_until(cfg.split_block)
        for m in net.modules():  # BatchNorm statistics stay as they are (small batches of cached features)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
        cached = _prefix_features(net, drawings, cfg, device)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(train_idx) / cfg.batch_size))
    ckpt_dir = Path(cfg.checkpoint_dir or Path(cfg.out).parent / "checkpoints")
    ckpt_path = ckpt_dir / (Path(cfg.out).stem + ".ckpt.pt")
    start_epoch, history = 0, []
    if cfg.resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = int(state["epoch"]), json.loads(state["history"])
        _log(cfg, f"Resumed from {ckpt_path} at epoch {start_epoch}")
    scheduler = one_cycle(optimizer, cfg.lr, steps_per_epoch * cfg.epochs, start_epoch * steps_per_epoch)
    if device.type == "cuda" and cached is None:
        net = net.to(memory_format=torch.channels_last)

    from tqdm import tqdm

    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs):
        net.train()
        if cached is not None:
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
        rng = np.random.default_rng(cfg.seed * 7919 + epoch)
        order = rng.permutation(train_idx)
        sums = {"loss": 0.0, "instance": 0.0, "category": 0.0, "top1": 0.0}
        steps = 0
        bar = tqdm(range(steps_per_epoch), desc=f"Epoch {epoch + 1}/{cfg.epochs}", disable=not cfg.progress)
        for step in bar:
            idx = torch.from_numpy(order[step * cfg.batch_size : (step + 1) * cfg.batch_size])
            if len(idx) < 2:
                continue
            variant = torch.from_numpy(rng.integers(0, cfg.variants, len(idx)))
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5).to(device).view(-1, 1, 1, 1)
            idx_d = idx.to(device)
            if cached is not None:
                xf = torch.from_numpy(np.stack([np.asarray(cached[i, v], dtype=np.float32)
                                                for i, v in zip(idx.tolist(), variant.tolist())])).to(device)
                emb = net.embed_features(net.trunk.forward_from(xf, cfg.split_block))
            else:
                xd = _normalise_uint8(drawings_t[idx.to(drawings_t.device), variant.to(drawings_t.device)].to(device))
                xd = torch.where(flip, xd.flip(-1), xd).contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    emb = net(xd).float()
            instance = F.cross_entropy(emb @ gallery.T / cfg.temperature, train_pos[idx_d])
            category = F.cross_entropy(emb @ prototypes.T / cfg.temperature, y_all[idx_d])
            loss = instance + cfg.category_weight * category
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            steps += 1
            sums["loss"] += loss.item()
            sums["instance"] += instance.item()
            sums["category"] += category.item()
            sums["top1"] += float(((emb.detach() @ gallery.T).argmax(1) == train_pos[idx_d]).float().mean())
            bar.set_postfix(loss=f"{sums['loss'] / steps:.3f}", top1=f"{sums['top1'] / steps:.3f}")
        history.append({"epoch": epoch + 1, **{k: round(v / max(steps, 1), 5) for k, v in sums.items()}})
        if on_epoch is not None:
            on_epoch(epoch + 1, cfg.epochs, history[-1])
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"model": net.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "epoch": epoch + 1, "history": json.dumps(history)}, ckpt_path)
        if cfg.max_minutes and time.time() - started > cfg.max_minutes * 60 and epoch + 1 < cfg.epochs:
            stopped_early = True
            _log(cfg, f"Stopping after epoch {epoch + 1}: --max-minutes {cfg.max_minutes} reached")
            break

    net.eval()
    label_arr = np.array([r.label for r in records])
    gallery_all = photo_vecs.cpu().numpy()
    metrics_out = {}
    for name, mask in (("", test_mask), ("validation_", val_mask)):
        q = np.flatnonzero(mask)
        if not len(q) or (name == "" and val_mask.any()):
            continue  # with --validation the card holds validation figures only: the test split is reported once,
            #           after the choice (benchmarks/compare_models.py --split test)
        sketch_vecs = _embed(net, drawings[q, 0], device, amp).cpu().numpy()
        metrics_out[f"{name}sketch_to_image"] = sketch_retrieval(
            sketch_vecs, label_arr[q], gallery_all, label_arr, source_index=q) | SKETCH_QUERIES | {
            "gallery_is": "every image, embedded by the frozen photo model"}
        metrics_out[f"{name}photo_model_image_to_image"] = metrics.category_retrieval(
            gallery_all[q], label_arr[q], gallery_all, label_arr, query_gallery_index=q)
    history.append({"stopped_early": stopped_early})
    card = {
        "model": "Sketch encoder (drawings into the Image2Vec photo space)",
        "architecture": f"{backbone} + GeM pooling + linear {dim}-d, L2-normalised (same as the photo model); "
                        f"initialised from {Path(cfg.init_weights or cfg.photo_weights).name}; photo model frozen",
        "data": {"source": cfg.source if given else Path(cfg.source).name,
                 "extra_sources": [Path(x).name for x in cfg.extra_sources],
                 "images": len(records), "labels": labels,
                 "drawings": f"{cfg.variants} synthetic drawings per photo, styles {cfg.styles} (ml/sketches.py)"},
        "split": split_card(train_idx, (test_mask, val_mask)),
        "training": {k: v for k, v in asdict(cfg).items() if k not in {"source", "out", "progress"}},
        "history": history,
        "metrics": metrics_out,
        "command": cfg.command,
    }
    card = write_encoder(net, Path(cfg.out), Path(cfg.photo_weights), meta | {"labels": json.dumps(labels)}, cfg.half,
                         card, device, started)
    _log(cfg, f"{json.dumps(metrics_out)}  ({card['wall_time_s']:.0f} s) -> {cfg.out}")
    return card


def _prefix_features(net, drawings, cfg, device):
    """The frozen prefix (stem + blocks before ``cfg.split_block``) of every drawing variant: (N, V, C, h, w)
    float16."""
    from tqdm import tqdm

    n, v, size = drawings.shape[0], drawings.shape[1], drawings.shape[-1]
    run = _frozen_runner(net.trunk, cfg.split_block, device, size)  # ONNX Runtime on the CPU, as cached training
    flat = drawings.reshape(n * v, size, size)
    out = None
    with torch.inference_mode():
        for start in tqdm(range(0, len(flat), 64), desc="Frozen prefix of the drawings", disable=not cfg.progress):
            x = _normalise_uint8(torch.from_numpy(np.ascontiguousarray(flat[start : start + 64]))).to(device)
            y = run(x).half().cpu()
            if out is None:
                out = np.empty((len(flat), *y.shape[1:]), np.float16)
            out[start : start + len(y)] = y.numpy()
    return out.reshape(n, v, *out.shape[1:])


def write_encoder(net, out: Path, photo_weights: Path, meta: dict, half: bool, card: dict, device, started) -> dict:
    """Save a sketch encoder beside the photo model it belongs to, with its model card; returns the card."""
    backbone, dim, size = meta.get("backbone", "lite0"), int(meta.get("dim", 256)), int(meta.get("image_size", 160))
    photo_sha = weights.sha256(photo_weights)
    net = net.to(memory_format=torch.contiguous_format).cpu()
    digest = weights.save(net, out, {"backbone": backbone, "dim": dim, "image_size": size,
                                     "preprocessing": preprocessing.PREPROCESSING_VERSION,
                                     "labels": meta.get("labels", "[]"), "role": ROLE, "pairs_with": photo_sha}
                           | backbones.model_meta(net),
                          dtype=torch.float16 if half else None)
    card = {"model": card.pop("model"), "version": version_string(backbone, dim, size, digest),
            "weights_file": out.name, "weights_sha256": digest, "weights_bytes": out.stat().st_size,
            "weights_dtype": "float16" if half else "float32",
            "pairs_with": {"photo_weights": photo_weights.name, "sha256": photo_sha,
                           "version": version_string(backbone, dim, size, photo_sha)}} | card
    card["machine"] = machine_info(device)
    card["wall_time_s"] = round(time.time() - started, 1)
    out.with_suffix(".card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def add_arguments(parser):
    d = SketchTrainConfig(source="", out="", photo_weights="")
    parser.add_argument("--source", help="images.csv layout or <category>/<file> folders.")
    parser.add_argument("--out", help="Weights file to write (.safetensors); the model card goes beside it.")
    parser.add_argument("--photo-weights", help="The photo embedder (.safetensors) whose vector space to learn.")
    parser.add_argument("--init-weights", default=None, help="Start from these embedder weights (default: the photo "
                                                             "weights).")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--temperature", type=float, default=d.temperature)
    parser.add_argument("--category-weight", type=float, default=d.category_weight,
                        help="Weight of the category term beside the instance term.")
    parser.add_argument("--variants", type=int, default=d.variants, help="Synthetic drawings per photo.")
    parser.add_argument("--styles", default=d.styles, help="Drawing styles the variants cycle through.")
    parser.add_argument("--limit", type=int, default=None, help="Train on a random subset of N images.")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--threads", type=int, default=d.threads)
    parser.add_argument("--workers", type=int, default=d.workers, help="Processes that make drawings (0 = CPUs).")
    parser.add_argument("--device", default=None)
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--max-minutes", type=float, default=None, help="Stop after the epoch that passes this.")
    parser.add_argument("--pairs-cache", default=None, help="Reuse decoded photos and drawings from this folder.")
    parser.add_argument("--rebuild-pairs", action="store_true")
    parser.add_argument("--validation", action="store_true",
                        help="Hold out the validation split (sha1(id) %% 5 == 1) and report metrics on it.")
    parser.add_argument("--float32", dest="half", action="store_false", help="Store float32 weights (default fp16).")
    parser.add_argument("--extra-source", dest="extra_sources", action="append", default=[],
                        help="Another labelled set to train on (repeatable; labels kept apart per set).")
    parser.add_argument("--split-block", type=int, default=d.split_block,
                        help="Freeze the blocks before this one and compute their outputs once (0: train it all; "
                             "11 makes a CPU run practical).")


def config_from_args(args, **overrides) -> SketchTrainConfig:
    return dataclass_from_args(SketchTrainConfig, args, **overrides)


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
