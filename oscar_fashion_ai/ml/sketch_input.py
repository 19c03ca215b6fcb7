"""Normalising a shopper's drawing before search: ink on white, cropped to the strokes, centred, padded,
with a standard line width. Pure Pillow/NumPy."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

INK_LEVEL = 160  # grey values below this are ink


class BlankSketch(ValueError):
    """The canvas holds (almost) no strokes."""


def _flatten(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA", "PA", "P"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img


def stroke_box(img: Image.Image, min_ink_pixels: int = 30, margin: float = 0.08) -> tuple[int, int, int, int]:
    """The square box (left, top, right, bottom; may extend past the image) that normalisation crops to."""
    ink = np.asarray(_flatten(img).convert("L"), dtype=np.uint8) < INK_LEVEL
    if int(ink.sum()) < min_ink_pixels:
        raise BlankSketch("The canvas is empty: draw the garment you are looking for first.")
    ys, xs = np.nonzero(ink)
    top, bottom, left, right = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    side = int(max(bottom - top, right - left) * (1 + 2 * margin)) + 1
    cx, cy = (left + right) / 2, (top + bottom) / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    return x0, y0, x0 + side, y0 + side


def normalise_sketch(
    img: Image.Image, size: int = 256, min_ink_pixels: int = 30, margin: float = 0.08, line_width: int = 3
) -> Image.Image:
    """Return an RGB ``size`` x ``size`` drawing: black strokes of ~``line_width`` px on white."""
    img = _flatten(img)
    box = stroke_box(img, min_ink_pixels, margin)
    ink = np.asarray(img.convert("L"), dtype=np.uint8) < INK_LEVEL
    binary = Image.fromarray(np.where(ink, 0, 255).astype(np.uint8), "L")
    canvas = binary.crop(box)  # areas outside the image are filled with 0 (ink): repaint them white
    left, top, right, bottom = box
    mask = Image.new("L", canvas.size, 255)
    mask.paste(
        0,
        (max(0, -left), max(0, -top), min(canvas.size[0], img.size[0] - left), min(canvas.size[1], img.size[1] - top)),
    )
    canvas.paste(255, mask=mask)
    canvas = canvas.resize((size, size), Image.BILINEAR)
    ink = np.asarray(canvas) < 200  # thin, anti-aliased strokes -> binary, then thicken to the standard width
    strokes = Image.fromarray(np.where(ink, 0, 255).astype(np.uint8), "L")
    if line_width > 1:
        strokes = strokes.filter(ImageFilter.MinFilter(line_width if line_width % 2 else line_width + 1))
    return strokes.convert("RGB")
