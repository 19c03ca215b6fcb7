"""Model inputs and their augmentation: uint8 arrays to normalised tensors, the batch augmentation of end-to-end
training (on the device), and the photo jitter of the robust recipe (PIL, computed once)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .. import preprocessing


def normalise_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (N, H, W, 3) or grey (N, H, W) on any device -> the model's normalised float input."""
    if x.dim() == 3:
        x = x.unsqueeze(-1).expand(-1, -1, -1, 3)
    mean = torch.as_tensor(preprocessing.MEAN, device=x.device)
    std = torch.as_tensor(preprocessing.STD, device=x.device)
    return ((x.float() - mean) / std).permute(0, 3, 1, 2).contiguous()


def augment_batch(x: torch.Tensor) -> torch.Tensor:
    """End-to-end training's augmentation: random resized crop (scale 0.7-1) and brightness/contrast jitter."""
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


def jitter_photos(images: np.ndarray, seed: int) -> np.ndarray:
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
