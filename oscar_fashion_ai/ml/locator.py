"""A trained garment locator: a small head on the photo model's own feature map that says where the garment is.

The activation-map preset of :mod:`.crop` asks the embedding where its evidence comes from; it finds the core of a
garment but not its outline (box IoU 0.6-0.7 with the pasted garment on validation composites), so its box cannot
be cropped and searched as a fresh photo. This head is trained for the box: on the same 224 px trunk pass (no extra
network), per cell of the 7 x 7 grid it predicts whether the cell lies on *the* garment (the larger, more central
one when there are several: shoppers frame what they want) and, FCOS-style, the distances from the cell's centre to
the garment's four edges. The box is the average of the confident cells' boxes, weighted by their confidence, so
it is not bound to the grid.

Input per cell: the trunk's C channels (standardised with the training set's statistics) and three position
channels (x and y of the cell's centre relative to the photo, -1..1, and whether the centre lies on the photo
rather than on the square padding). Head: 1x1 conv C -> ``hidden``, two 3x3 convs, 1x1 conv -> 5 (objectness logit,
log distances left, top, right, bottom in units of the padded square's side). About 160 k parameters.

A head is trained for one photo model (``pairs_with``: the sha256 of its weights); with any other photo model the
locator falls back to the activation map. Training: :mod:`.training.locator` (``manage.py fashion_train_locator``).
Pure PyTorch/numpy, no Django.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

PACKAGE_LOCATOR = Path(__file__).resolve().parent.parent / "weights" / "lite0-fashion-locator.safetensors"

#: Cells whose objectness is at least this share of the best cell's vote for the box.
KEEP_SHARE = 0.5
#: Below this best-cell objectness the head has found no garment: the whole photo is searched.
MIN_CONFIDENCE = 0.2


class BoxHead(nn.Module):
    def __init__(self, channels: int = 1280, hidden: int = 64):
        super().__init__()
        self.channels, self.hidden = int(channels), int(hidden)
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.body = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Dropout2d(0.1),
            nn.Conv2d(hidden + 3, hidden, 3, padding=1),  # the position channels join here
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 5, 1),
        )

    def forward(self, feats: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """(B, C, R, K) features and (B, 3, R, K) position channels -> (B, 5, R, K): objectness logit and the log
        distances to the four edges."""
        x = (feats - self.mean[None, :, None, None]) / self.std[None, :, None, None]
        x = self.body[:2](self.reduce(x))
        return self.body[2:](torch.cat([x, coords], dim=1))


def coord_channels(rows: int, cols: int, width: int, height: int) -> np.ndarray:
    """(3, rows, cols): x and y of each cell's centre relative to the ``width`` x ``height`` photo (-1 left/top,
    +1 right/bottom; beyond +-1 on the padding) and 1 where the centre lies on the photo."""
    side = max(width, height)
    ox, oy = (side - width) / 2.0, (side - height) / 2.0
    cx = (np.arange(cols) + 0.5) * side / cols - ox
    cy = (np.arange(rows) + 0.5) * side / rows - oy
    x = np.broadcast_to((cx / width * 2 - 1)[None], (rows, cols))
    y = np.broadcast_to((cy / height * 2 - 1)[:, None], (rows, cols))
    inside = ((np.abs(x) <= 1) & (np.abs(y) <= 1)).astype(np.float32)
    return np.stack([x, y, inside]).astype(np.float32)


def cell_centres(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the cells in units of the padded square's side (0..1): (cx (cols,), cy (rows,))."""
    return (np.arange(cols) + 0.5) / cols, (np.arange(rows) + 0.5) / rows


def to_square(box, width: int, height: int) -> np.ndarray:
    """A box (x, y, w, h) in pixels of the photo as (x0, y0, x1, y1) in units of its padded square's side."""
    side = float(max(width, height))
    ox, oy = (side - width) / 2.0, (side - height) / 2.0
    x, y, w, h = box
    return np.array([(x + ox) / side, (y + oy) / side, (x + w + ox) / side, (y + h + oy) / side], dtype=np.float32)


def from_square(xyxy, width: int, height: int) -> tuple[float, float, float, float]:
    """The inverse of :func:`to_square`, clipped to the photo: (x, y, w, h) in pixels, as floats."""
    side = float(max(width, height))
    ox, oy = (side - width) / 2.0, (side - height) / 2.0
    x0 = min(max(xyxy[0] * side - ox, 0.0), width - 1.0)
    y0 = min(max(xyxy[1] * side - oy, 0.0), height - 1.0)
    x1 = min(max(xyxy[2] * side - ox, x0 + 1.0), float(width))
    y1 = min(max(xyxy[3] * side - oy, y0 + 1.0), float(height))
    return x0, y0, x1 - x0, y1 - y0


def decode(output: np.ndarray, inside: np.ndarray, keep_share: float = KEEP_SHARE) -> tuple[np.ndarray, float]:
    """The head's (5, R, K) output for one photo -> (box as x0, y0, x1, y1 in units of the padded square, the best
    cell's objectness). Cells on the padding do not vote."""
    rows, cols = output.shape[1:]
    prob = 1.0 / (1.0 + np.exp(-output[0]))
    prob = np.where(inside > 0, prob, 0.0)
    best = float(prob.max())
    cx, cy = cell_centres(rows, cols)
    dist = np.exp(np.clip(output[1:], -8.0, 2.0))
    boxes = np.stack(
        [cx[None] - dist[0], cy[:, None] - dist[1], cx[None] + dist[2], cy[:, None] + dist[3]]
    )  # (4, R, K)
    keep = prob >= max(best * keep_share, 1e-6)
    weights = np.where(keep, prob, 0.0)
    box = (boxes * weights[None]).sum(axis=(1, 2)) / max(float(weights.sum()), 1e-12)
    return box.astype(np.float32), best


@dataclass
class LoadedHead:
    head: BoxHead
    pairs_with: str
    sha256: str
    path: Path

    def predict(self, feats: np.ndarray, width: int, height: int) -> np.ndarray:
        """(5, R, K) output for one photo's (C, R, K) feature map."""
        coords = coord_channels(feats.shape[1], feats.shape[2], width, height)
        with torch.inference_mode():
            out = self.head(
                torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))[None], torch.from_numpy(coords)[None]
            )
        return out[0].numpy()

    def box(
        self,
        feats: np.ndarray,
        width: int,
        height: int,
        margin: float = 0.0,
        keep_share: float = KEEP_SHARE,
        min_confidence: float = MIN_CONFIDENCE,
    ):
        """(x, y, w, h) floats in pixels of the photo, or None when the head finds no garment."""
        out = self.predict(feats, width, height)
        inside = coord_channels(feats.shape[1], feats.shape[2], width, height)[2]
        xyxy, best = decode(out, inside, keep_share)
        if best < min_confidence:
            return None
        if margin:
            mx, my = (xyxy[2] - xyxy[0]) * margin, (xyxy[3] - xyxy[1]) * margin
            xyxy = xyxy + np.array([-mx, -my, mx, my], dtype=np.float32)
        return from_square(xyxy, width, height)


def load(path: Path | str | None = None, photo_sha256: str | None = None) -> LoadedHead | None:
    """The locator head at ``path`` (default: the package's), or None when there is none, it is broken, or it was
    trained for another photo model than ``photo_sha256``."""
    from . import weights

    path = Path(path) if path else PACKAGE_LOCATOR
    if not path.exists():
        return None
    try:
        state, meta = weights.load(path)
        head = BoxHead(int(meta.get("channels", 1280)), int(meta.get("hidden", 64)))
        head.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except (OSError, ValueError, RuntimeError, KeyError):
        return None
    if meta.get("role") != "locator":
        return None
    if photo_sha256 is not None and meta.get("pairs_with") != photo_sha256:
        return None
    head.eval()
    return LoadedHead(head, meta.get("pairs_with", ""), weights.sha256(path), path)
