"""The photo model's ``full`` mode (:mod:`.embedder`, the GPU configuration): end-to-end fine-tuning on photos and
their synthetic drawings, CosFace on both plus a drawing<->photo InfoNCE term; with ``sketch_tower`` the drawings go
through a second network (a sketch encoder) trained jointly and written beside the photo model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics
from .augment import augment_batch, normalise_uint8
from .cards import RELEVANCE, SKETCH_QUERIES, save_photo_model, save_sketch_encoder
from .checkpoint import Checkpoint, Deadline
from .losses import symmetric_info_nce
from .schedule import one_cycle


def train_full(cfg, model, head, data, device, started, photos, drawings, on_epoch=None) -> dict:
    """Train ``model`` (and its CosFace ``head``) on ``data`` (:class:`.splits.LabelledData`) with the photos and
    drawings of :func:`.splits.load_pairs`; ``cfg`` is the :class:`.embedder.TrainConfig`. Returns the card."""
    photos_t, drawings_t = torch.from_numpy(photos), torch.from_numpy(drawings)
    if device.type == "cuda":
        photos_t, drawings_t = photos_t.to(device), drawings_t.to(device)
    sketch_net = None
    if cfg.sketch_tower:
        if cfg.photos_only:
            raise ValueError("--sketch-tower needs drawings; leave out --photos-only")
        sketch_net = copy.deepcopy(model)
    params = list(model.parameters()) + list(head.parameters()) + (list(sketch_net.parameters()) if sketch_net else [])
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(data.train_idx) // cfg.batch_size)
    tower = {"sketch": sketch_net} if sketch_net is not None else {}  # checkpointed beside the photo model
    checkpoint = Checkpoint(cfg.out, cfg.checkpoint_dir)
    start_epoch, history = checkpoint.resume(cfg, device, model=model, head=head, optimizer=optimizer, **tower)
    scheduler = one_cycle(optimizer, cfg.lr, steps_per_epoch * cfg.epochs, start_epoch * steps_per_epoch)
    amp = device.type == "cuda"
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        if sketch_net is not None:
            sketch_net = sketch_net.to(memory_format=torch.channels_last)
    deadline = Deadline(cfg.max_minutes, started)
    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs):
        for net in (model, head, sketch_net):
            if net is not None:
                net.train()
        sums = _epoch(
            cfg,
            model,
            sketch_net,
            head,
            optimizer,
            scheduler,
            photos_t,
            drawings_t,
            data,
            epoch,
            steps_per_epoch,
            device,
            amp,
        )
        history.append({"epoch": epoch + 1, **{k: round(v / steps_per_epoch, 5) for k, v in sums.items()}})
        checkpoint.save(epoch + 1, history, model=model, head=head, optimizer=optimizer, scheduler=scheduler, **tower)
        if on_epoch is not None:
            on_epoch(epoch + 1, cfg.epochs, history[-1])
        if deadline.passed(cfg, epoch + 1, cfg.epochs):
            stopped_early = True
            break

    model.eval()
    if sketch_net is not None:
        sketch_net.eval()
    metrics_out = _measure(model, sketch_net, photos_t, drawings_t, data, device, amp)
    history.append({"stopped_early": stopped_early})
    card = save_photo_model(
        cfg, model.to(memory_format=torch.contiguous_format), data, "full", device, history, started, metrics_out
    )
    if sketch_net is not None:
        _save_tower(cfg, sketch_net, data, card, history, metrics_out, device, started)
    return card


def _epoch(
    cfg, model, sketch_net, head, optimizer, scheduler, photos_t, drawings_t, data, epoch, steps, device, amp
) -> dict:
    """One epoch; returns the sums of the loss terms and of the drawing->photo accuracy over its steps."""
    from tqdm import tqdm

    rng = np.random.default_rng(cfg.seed * 7919 + epoch)
    order = rng.permutation(data.train_idx)
    sums = {"loss": 0.0, "cls": 0.0, "pair": 0.0, "pair_acc": 0.0}
    bar = tqdm(range(steps), desc=f"Epoch {epoch + 1}/{cfg.epochs}", disable=not cfg.progress)
    for step in bar:
        idx = torch.from_numpy(order[step * cfg.batch_size : (step + 1) * cfg.batch_size])
        variant = torch.from_numpy(rng.integers(0, cfg.variants, len(idx)))
        flip = torch.from_numpy(rng.random(len(idx)) < 0.5).to(device).view(-1, 1, 1, 1)
        xp = normalise_uint8(photos_t[idx.to(photos_t.device)].to(device))
        xp = augment_batch(torch.where(flip, xp.flip(-1), xp))
        target = data.y[idx].to(device)
        if cfg.photos_only:
            batch, both = xp, target
        else:
            xd = normalise_uint8(drawings_t[idx.to(drawings_t.device), variant.to(drawings_t.device)].to(device))
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
            sim = emb[len(idx) :] @ emb[: len(idx)].T / cfg.temperature  # drawings x photos
            pair = symmetric_info_nce(sim)
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
    return sums


def _measure(model, sketch_net, photos_t, drawings_t, data, device, amp) -> dict:
    """Image->image and sketch->image retrieval on the test (and validation) split; the gallery is every photo."""
    from ..evaluate import sketch_retrieval

    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):

        def embed(net, source, pick):
            out = []
            for start in range(0, len(pick), 256):
                sel = torch.from_numpy(pick[start : start + 256])
                out.append(net(normalise_uint8(source(sel).to(device))).float().cpu())
            return F.normalize(torch.cat(out), dim=1).numpy()

        vecs = embed(model, lambda sel: photos_t[sel.to(photos_t.device)], np.arange(len(data.records)))
        label_arr = data.label_array()
        encoder = {"encoder": "sketch tower" if sketch_net is not None else "shared"}
        metrics_out = {}
        for name, mask in (("", data.test_mask), ("validation_", data.val_mask)):
            q = np.flatnonzero(mask)
            if not len(q):
                continue
            sketch_vecs = embed(sketch_net or model, lambda sel: drawings_t[sel.to(drawings_t.device), 0], q)
            metrics_out[f"{name}image_to_image"] = (
                metrics.category_retrieval(vecs[q], label_arr[q], vecs, label_arr, query_gallery_index=q) | RELEVANCE
            )
            metrics_out[f"{name}sketch_to_image"] = (
                sketch_retrieval(sketch_vecs, label_arr[q], vecs, label_arr, source_index=q) | SKETCH_QUERIES | encoder
            )
    return metrics_out


def _save_tower(cfg, sketch_net, data, card, history, metrics_out, device, started) -> None:
    """Write the jointly trained sketch encoder beside the photo model, as <name>-sketch.safetensors."""
    out = Path(cfg.out)
    save_sketch_encoder(
        sketch_net,
        out.with_name(out.stem + "-sketch.safetensors"),
        out,
        {"backbone": cfg.backbone, "dim": cfg.dim, "image_size": cfg.image_size, "labels": json.dumps(data.labels)},
        True,
        {
            "model": "Sketch encoder (drawings into the Image2Vec photo space)",
            "architecture": f"a second {cfg.backbone} embedding network, trained jointly with the photo "
            f"model {out.name} (CosFace on both + drawing<->photo InfoNCE)",
            "data": card["data"],
            "split": card["split"],
            "training": card["training"],
            "history": history,
            "command": cfg.command,
            "metrics": {k: v for k, v in metrics_out.items() if "sketch" in k},
        },
        device,
        started,
    )
