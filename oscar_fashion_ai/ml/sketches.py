"""Line drawings made from product photos (XDoG), used to make the embedder understand drawings.

XDoG (Winnemoeller et al. 2012): the difference of two Gaussian blurs, soft-thresholded; it gives dark
strokes on a white background, close to what a shopper draws. No weights needed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter


def xdog(img: Image.Image, sigma: float = 1.0, k: float = 1.6, tau: float = 0.98, eps: float = -0.02,
         phi: float = 60.0) -> Image.Image:
    """Return an RGB line drawing (black strokes on white) of ``img``."""
    gray = img.convert("L")
    side = max(gray.size)
    scale = side / 256.0  # blur radii relative to a 256 px image
    g1 = np.asarray(gray.filter(ImageFilter.GaussianBlur(sigma * scale)), dtype=np.float32) / 255.0
    g2 = np.asarray(gray.filter(ImageFilter.GaussianBlur(sigma * k * scale)), dtype=np.float32) / 255.0
    d = g1 - tau * g2
    out = np.where(d >= eps, 1.0, 1.0 + np.tanh(phi * (d - eps)))
    out = (out.clip(0, 1) * 255).astype(np.uint8)
    return Image.fromarray(out, "L").convert("RGB")
