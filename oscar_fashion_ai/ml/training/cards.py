"""Model cards: the JSON file written beside every weights file (what was trained on what, how, and how it
measured), and the parts every card shares."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch

from .. import backbones, datasets, preprocessing, weights
from ..embedder import version_string
from .config import log
from .splits import split_card

#: The ``role`` recorded in a sketch encoder's weights (a photo model records none).
ROLE = "sketch"

#: What the retrieval figures of a card mean.
RELEVANCE = {"relevance": "same label; query excluded; gallery = all images"}
SKETCH_QUERIES = {
    "queries_are": "deterministic XDoG drawings of the split (variant 0), normalised like the widget input"
}


def machine_info(device) -> dict:
    """The machine a model was trained on."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "torch": torch.__version__,
    }


def weights_entry(out: Path, digest: str, half: bool) -> dict:
    """The card's description of the weights file ``out`` (checksum ``digest``)."""
    return {
        "weights_file": out.name,
        "weights_sha256": digest,
        "weights_bytes": out.stat().st_size,
        "weights_dtype": "float16" if half else "float32",
    }


def training_entry(cfg, leave_out=("source", "out", "progress")) -> dict:
    """The card's ``training`` entry: the config, less the paths and the progress switch."""
    return {k: v for k, v in asdict(cfg).items() if k not in set(leave_out)}


def card_path(out) -> Path:
    return Path(out).with_suffix(".card.json")


def write_card(out, card: dict) -> Path:
    """Write ``card`` beside the weights file ``out`` (``<stem>.card.json``); returns its path."""
    path = card_path(out)
    path.write_text(json.dumps(card, indent=2) + "\n")
    return path


def save_photo_model(cfg, model, data, mode: str, device, history: list, started: float, metrics_out: dict) -> dict:
    """Write an Image2Vec photo model trained by :mod:`.embedder` (``cfg``: its config; ``data``: the
    :class:`.splits.LabelledData` it was trained on) and its card; returns the card."""
    model.cpu()
    out = Path(cfg.out)
    meta = {
        "backbone": cfg.backbone,
        "dim": cfg.dim,
        "image_size": cfg.image_size,
        "preprocessing": preprocessing.PREPROCESSING_VERSION,
        "labels": json.dumps(data.labels),
    }
    digest = weights.save(model, out, meta | backbones.model_meta(model), dtype=torch.float16 if cfg.half else None)
    wall = time.time() - started
    init = f"init from {Path(cfg.init_weights).name}" if cfg.init_weights else "ImageNet init"
    card = {
        "model": "Image2Vec embedder",
        "version": version_string(cfg.backbone, cfg.dim, cfg.image_size, digest),
        **weights_entry(out, digest, cfg.half),
        "architecture": f"{cfg.backbone} ({init}) + GeM pooling + linear {cfg.dim}-d, L2-normalised",
        "data": {
            "source": Path(cfg.source).name,
            "images": len(data.records),
            "labels": data.labels,
            "ignored_labels": list(datasets.IGNORED_LABELS),
        },
        "split": split_card(data.train_idx, data.masks),
        "training": training_entry(cfg) | {"mode": mode},
        "history": history,
        "metrics": metrics_out,
        "machine": machine_info(device),
        "wall_time_s": round(wall, 1),
        "command": cfg.command,
    }
    write_card(out, card)
    log(cfg, f"{json.dumps(metrics_out)}  ({wall:.0f} s) -> {out}")
    return card


def save_sketch_encoder(
    net, out: Path, photo_weights: Path, meta: dict, half: bool, card: dict, device, started
) -> dict:
    """Save a sketch encoder beside the photo model it belongs to, with its model card; returns the card."""
    backbone, dim, size = meta.get("backbone", "lite0"), int(meta.get("dim", 256)), int(meta.get("image_size", 160))
    photo_sha = weights.sha256(photo_weights)
    net = net.to(memory_format=torch.contiguous_format).cpu()
    digest = weights.save(
        net,
        out,
        {
            "backbone": backbone,
            "dim": dim,
            "image_size": size,
            "preprocessing": preprocessing.PREPROCESSING_VERSION,
            "labels": meta.get("labels", "[]"),
            "role": ROLE,
            "pairs_with": photo_sha,
        }
        | backbones.model_meta(net),
        dtype=torch.float16 if half else None,
    )
    card = {
        "model": card.pop("model"),
        "version": version_string(backbone, dim, size, digest),
        **weights_entry(out, digest, half),
        "pairs_with": {
            "photo_weights": photo_weights.name,
            "sha256": photo_sha,
            "version": version_string(backbone, dim, size, photo_sha),
        },
    } | card
    card["machine"] = machine_info(device)
    card["wall_time_s"] = round(time.time() - started, 1)
    write_card(out, card)
    return card
