"""Line drawings made from product photos: the training pairs for sketch search.

* ``xdog`` (Winnemoeller et al. 2012): the difference of two Gaussian blurs, soft-thresholded; dark strokes on
  white, close to what a shopper draws. No weights needed.
* ``edges``: thresholded gradient magnitude (a Canny-like edge map without non-maximum suppression).
* ``hed``: HED edges, thresholded and thinned (:mod:`.hed`; optional, needs its weights).
* :func:`photo_drawing` turns a photo into the drawing a shopper would submit: one of the styles above, optionally
  with augmentations that imitate hand drawing (stroke width, jitter, dropped strokes, small affine
  changes), then the same normalisation as the storefront widget (:mod:`.sketch_input`). It can return the photo
  crop aligned with the drawing, which is what the GAN learns to produce.

Pure Pillow/NumPy; deterministic when ``rng`` is None.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

from .preprocessing import pad_to_square
from .sketch_input import BlankSketch, normalise_sketch, stroke_box

DRAW_RES = 256  # drawings are made from the photo resized to fit this side
DRAWINGS_VERSION = "d1"  # bump when the drawings change: cached training pairs are then rebuilt


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


def edges(img: Image.Image, keep: float = 0.09, blur: float = 1.0) -> Image.Image:
    """Canny-like edge map: the strongest ``keep`` share of gradient magnitudes, as black strokes on white."""
    gray = np.asarray(img.convert("L").filter(ImageFilter.GaussianBlur(blur)), dtype=np.float32)
    gy, gx = np.gradient(gray)
    mag = np.hypot(gx, gy)
    threshold = max(np.quantile(mag, 1.0 - keep), 1e-3)
    return Image.fromarray(np.where(mag >= threshold, 0, 255).astype(np.uint8), "L").convert("RGB")


def _affine(img: Image.Image, rng) -> tuple[Image.Image, tuple]:
    angle = math.radians(rng.uniform(-7, 7))
    scale = rng.uniform(0.9, 1.08)
    shear = rng.uniform(-0.08, 0.08)
    w, h = img.size
    cx, cy = w / 2, h / 2
    a, b = math.cos(angle) / scale, math.sin(angle) / scale + shear
    c, d = -math.sin(angle) / scale, math.cos(angle) / scale
    tx, ty = rng.uniform(-0.04, 0.04) * w, rng.uniform(-0.04, 0.04) * h
    coeffs = (a, b, cx - a * cx - b * cy + tx, c, d, cy - c * cx - d * cy + ty)
    return img.transform(img.size, Image.AFFINE, coeffs, Image.BILINEAR, fillcolor=(255, 255, 255)), coeffs


def _jitter(img: Image.Image, rng, amount: float = 3.0) -> Image.Image:
    """Wobbly strokes: a coarse mesh warp with random offsets of up to ``amount`` pixels."""
    w, h = img.size
    cells = 4
    mesh = []
    offsets = rng.uniform(-amount, amount, size=(cells + 1, cells + 1, 2))
    step_x, step_y = w / cells, h / cells
    for i in range(cells):
        for j in range(cells):
            box = (int(j * step_x), int(i * step_y), int((j + 1) * step_x), int((i + 1) * step_y))
            corners = []
            for (yy, xx) in ((i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)):
                ox, oy = offsets[yy, xx] if 0 < yy < cells and 0 < xx < cells else (0.0, 0.0)
                corners += [xx * step_x + ox, yy * step_y + oy]
            mesh.append((box, corners))
    return img.transform(img.size, Image.MESH, mesh, Image.BILINEAR, fillcolor=(255, 255, 255))


def _drop_strokes(drawing: Image.Image, rng, share: float) -> Image.Image:
    """Erase ink under random blobs covering about ``share`` of the image."""
    w, h = drawing.size
    noise = rng.random((8, 8)).astype(np.float32)
    blobs = np.asarray(Image.fromarray((noise * 255).astype(np.uint8), "L").resize((w, h), Image.BICUBIC)) / 255.0
    erase = blobs < np.quantile(blobs, share)
    arr = np.asarray(drawing.convert("L")).copy()
    arr[erase] = 255
    return Image.fromarray(arr, "L").convert("RGB")


def photo_drawing(photo: Image.Image, size: int, rng: np.random.Generator | None = None, style: str = "xdog",
                  with_photo: bool = False):
    """The drawing (RGB, ``size`` x ``size``, normalised like the widget's input) a shopper might make of ``photo``.

    ``rng`` None gives the deterministic evaluation drawing (XDoG, standard line width). With ``with_photo``
    returns ``(drawing, photo_crop)``: the photo under the same geometric changes and crop, for GAN pairs.
    """
    # Draw on the photo itself (no padding: the border between photo and padding would become a stroke),
    # then place the drawing on a white square.
    scale = DRAW_RES / max(photo.size)
    fitted = photo.resize((max(1, round(photo.size[0] * scale)), max(1, round(photo.size[1] * scale))),
                          Image.BILINEAR, reducing_gap=2.0)
    line_width = 3
    if style == "hed":
        from . import hed

        drawing = hed.hed_drawing(hed.shared(), fitted, threshold=0.5 if rng is None else rng.uniform(0.4, 0.7))
    elif rng is None:
        drawing = xdog(fitted) if style == "xdog" else edges(fitted)
    else:
        if style == "edges":
            drawing = edges(fitted, keep=rng.uniform(0.05, 0.12))
        else:
            drawing = xdog(fitted, sigma=rng.uniform(0.8, 1.5), tau=rng.uniform(0.97, 0.99))
    if rng is not None:
        if rng.random() < 0.35:
            drawing = _drop_strokes(drawing, rng, share=rng.uniform(0.08, 0.25))
        if rng.random() < 0.5:
            drawing = _jitter(drawing, rng)
        line_width = int(rng.choice([1, 2, 3, 3, 4, 5]))
    square, drawing = pad_to_square(fitted), pad_to_square(drawing)
    if rng is not None and rng.random() < 0.5:  # the same small affine change for the drawing and its photo
        drawing, coeffs = _affine(drawing, rng)
        square = square.transform(square.size, Image.AFFINE, coeffs, Image.BILINEAR, fillcolor=(255, 255, 255))
    try:
        box = stroke_box(drawing)
        out = normalise_sketch(drawing, size=size, line_width=line_width)
    except BlankSketch:
        box, out = None, Image.new("RGB", (size, size), (255, 255, 255))
    if not with_photo:
        return out
    crop = _crop_white(square, box) if box else square
    return out, crop.resize((size, size), Image.BILINEAR, reducing_gap=2.0)


def _crop_white(img: Image.Image, box) -> Image.Image:
    """``img.crop(box)`` where areas outside the image are white, not black."""
    left, top, right, bottom = box
    canvas = Image.new("RGB", (right - left, bottom - top), (255, 255, 255))
    canvas.paste(img, (-left, -top))
    return canvas
