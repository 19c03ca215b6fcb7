"""Normalising a shopper's drawing before search: ink on white, cropped to the strokes, centred, padded,
with a standard line width. Pure Pillow/NumPy."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter


class BlankSketch(ValueError):
    """The canvas holds (almost) no strokes."""


def normalise_sketch(img: Image.Image, size: int = 256, min_ink_pixels: int = 30, margin: float = 0.08,
                     line_width: int = 3) -> Image.Image:
    """Return an RGB ``size`` x ``size`` drawing: black strokes of ~``line_width`` px on white."""
    if img.mode in ("RGBA", "LA", "PA", "P"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    gray = np.asarray(img.convert("L"), dtype=np.uint8)
    ink = gray < 160
    if int(ink.sum()) < min_ink_pixels:
        raise BlankSketch("The canvas is empty: draw the garment you are looking for first.")
    ys, xs = np.nonzero(ink)
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = Image.fromarray(np.where(ink[top:bottom, left:right], 0, 255).astype(np.uint8), "L")
    side = int(max(crop.size) * (1 + 2 * margin)) + 1
    canvas = Image.new("L", (side, side), 255)
    canvas.paste(crop, ((side - crop.size[0]) // 2, (side - crop.size[1]) // 2))
    canvas = canvas.resize((size, size), Image.BILINEAR)
    ink = np.asarray(canvas) < 200  # thin, anti-aliased strokes -> binary, then thicken to the standard width
    strokes = Image.fromarray(np.where(ink, 0, 255).astype(np.uint8), "L")
    if line_width > 1:
        strokes = strokes.filter(ImageFilter.MinFilter(line_width if line_width % 2 else line_width + 1))
    return strokes.convert("RGB")
