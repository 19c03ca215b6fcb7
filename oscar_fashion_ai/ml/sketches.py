"""Line drawings made from product photos: the training pairs for sketch search.

* ``xdog`` (Winnemoeller et al. 2012): the difference of two Gaussian blurs, soft-thresholded; dark strokes on
  white, close to what a shopper draws. No weights needed.
* ``edges``: thresholded gradient magnitude (a Canny-like edge map without non-maximum suppression).
* ``hed``: HED edges, thresholded and thinned (:mod:`.hed`; optional, needs its weights).

People draw from memory, not by tracing the photo: outlines only, few interior lines, wrong proportions,
wobbly strokes, parts left out. Three styles imitate that (:data:`HUMAN_LIKE`), each from the garment's
silhouette (:func:`silhouette`: the photo's pixels that differ from its border colour, closed and hole-filled):

* ``outline``: the silhouette's contour only;
* ``abstract``: the contour plus a few of the photo's strongest interior lines (coarse XDoG, most strokes dropped);
* ``doodle``: a polygon of 12-28 points around the silhouette (its farthest point in each direction from the
  centre), drawn as wobbly pen lines of varying width, sometimes with an invented interior line: the quick
  drawing of someone who only remembers the shape.

With an ``rng`` every style also gets from-memory distortions (:func:`memory_distortions`): proportions changed
(width and height scaled apart), an elastic warp, and sometimes a part of the drawing left out.
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
DRAWINGS_VERSION = "d2"  # bump when the drawings change: cached training pairs are then rebuilt


def xdog(
    img: Image.Image, sigma: float = 1.0, k: float = 1.6, tau: float = 0.98, eps: float = -0.02, phi: float = 60.0
) -> Image.Image:
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
            for yy, xx in ((i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)):
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


EDGE_STYLES = ("xdog", "edges", "hed")
HUMAN_LIKE = ("outline", "abstract", "doodle")
STYLES = EDGE_STYLES + HUMAN_LIKE


def _dilate(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    """Binary dilation with a (2r+1)-square (separable: along rows, then along columns)."""
    out = mask
    for axis in (0, 1):
        grown = out.copy()
        for shift in range(1, radius + 1):
            ahead = [slice(None)] * 2
            behind = [slice(None)] * 2
            ahead[axis], behind[axis] = slice(shift, None), slice(None, -shift)
            grown[tuple(ahead)] |= out[tuple(behind)]
            grown[tuple(behind)] |= out[tuple(ahead)]
        out = grown
    return out


def _erode(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    return ~_dilate(~mask, radius)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` plus every background region that does not touch the image border."""
    background = ~mask
    outside = np.zeros_like(mask)
    outside[0], outside[-1], outside[:, 0], outside[:, -1] = (
        background[0],
        background[-1],
        background[:, 0],
        background[:, -1],
    )
    while True:  # grow the outside through the background until it stops changing
        grown = _dilate(outside, 1) & background
        if np.array_equal(grown, outside):
            return ~outside
        outside = grown


SILHOUETTE_RES = 128  # the mask is found at this side, then scaled up
RAGGEDNESS = 9.0  # contour length / sqrt(area) above which a mask is rejected (a disc: 3.5; a shirt: about 6)


def silhouette(img: Image.Image) -> np.ndarray | None:
    """Boolean mask of the garment in ``img`` (its size): pixels unlike the border's colour, opened, closed and
    hole-filled. None when no plausible garment is found (under 3 % or over 92 % of the image)."""
    scale = SILHOUETTE_RES / max(img.size)
    small = img.convert("RGB").resize(
        (max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale))), Image.BILINEAR, reducing_gap=2.0
    )
    rgb = np.asarray(small.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float32)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    background = np.median(border, axis=0)
    dist = np.linalg.norm(rgb - background, axis=2)
    border_dist = np.linalg.norm(border - background, axis=1)
    threshold = max(20.0, float(np.quantile(border_dist, 0.9)) + 10.0)
    mask = _dilate(_erode(dist > threshold, 1), 1)  # open: drop specks
    mask = _erode(_dilate(mask, 2), 2)  # close: join parts
    mask = _fill_holes(mask)
    share = float(mask.mean())
    if not 0.03 <= share <= 0.92:
        return None
    if _contour(mask).sum() / math.sqrt(mask.sum()) > RAGGEDNESS:  # a busy background, not a garment's shape
        return None
    big = Image.fromarray(mask.astype(np.uint8) * 255, "L").resize(img.size, Image.BILINEAR)
    return np.asarray(big) >= 128


def _contour(mask: np.ndarray, width: int = 1) -> np.ndarray:
    return mask & ~_erode(mask, width)


def _ink(lines: np.ndarray) -> Image.Image:
    return Image.fromarray(np.where(lines, 0, 255).astype(np.uint8), "L").convert("RGB")


def _radial_polygon(mask: np.ndarray, points: int, rng) -> list[tuple[float, float]]:
    """The farthest garment pixel from the mask's centre in each of ``points`` directions."""
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    angles = np.arctan2(ys - cy, xs - cx)
    radii = np.hypot(ys - cy, xs - cx)
    bins = ((angles + math.pi) / (2 * math.pi) * points).astype(int) % points
    far = np.zeros(points)
    np.maximum.at(far, bins, radii)
    out = []
    spread = 0.0 if rng is None else 0.06
    for b in range(points):
        if far[b] <= 0:
            continue
        a = (b + 0.5) / points * 2 * math.pi - math.pi
        r = far[b] * (1.0 + (rng.normal(0, spread) if rng is not None else 0.0))
        out.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return out


def _doodle(mask: np.ndarray, rng) -> Image.Image:
    from PIL import ImageDraw

    h, w = mask.shape
    canvas = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(canvas)
    points = 20 if rng is None else int(rng.integers(12, 29))
    poly = _radial_polygon(mask, points, rng)
    if len(poly) < 3:
        return canvas.convert("RGB")
    width = 2 if rng is None else int(rng.integers(1, 4))
    draw.line(poly + [poly[0]], fill=0, width=width, joint="curve")
    if rng is not None and rng.random() < 0.5:  # an interior line the drawer remembers (or invents)
        ys, xs = np.nonzero(mask)
        cy, cx = ys.mean(), xs.mean()
        if rng.random() < 0.5:  # a vertical placket / centre seam
            top, bottom = np.quantile(ys, 0.1), np.quantile(ys, 0.8)
            draw.line([(cx, top), (cx + rng.normal(0, 2), bottom)], fill=0, width=width)
        else:  # a waist or hem line across
            y = cy + rng.normal(0, 0.1) * (ys.max() - ys.min())
            row = xs[np.abs(ys - y) < 2]
            if len(row):
                draw.line([(row.min() + 3, y), (row.max() - 3, y + rng.normal(0, 2))], fill=0, width=width)
    return canvas.convert("RGB")


def human_like_drawing(fitted: Image.Image, style: str, rng=None) -> Image.Image | None:
    """The ``outline`` / ``abstract`` / ``doodle`` drawing of a photo (see the module docstring); None when no
    silhouette is found (the caller falls back to an edge style)."""
    mask = silhouette(fitted)
    if mask is None:
        return None
    if style == "doodle":
        return _doodle(mask, rng)
    lines = _contour(mask, width=1)
    if style == "abstract":
        sigma = 2.0 if rng is None else rng.uniform(1.6, 2.8)
        interior = np.asarray(xdog(fitted, sigma=sigma, tau=0.985).convert("L")) < 128
        inside = _erode(mask, 4)
        kept = _drop_strokes(
            _ink(interior & inside),
            rng or np.random.default_rng(0),
            share=0.6 if rng is None else rng.uniform(0.45, 0.85),
        )
        lines |= np.asarray(kept.convert("L")) < 128
    return _ink(lines)


def memory_distortions(drawing: Image.Image, rng) -> Image.Image:
    """What drawing from memory does to a shape: proportions changed, an elastic warp, sometimes a part left out."""
    w, h = drawing.size
    sx, sy = rng.uniform(0.8, 1.25), rng.uniform(0.8, 1.25)
    stretched = drawing.convert("L").resize((max(8, round(w * sx)), max(8, round(h * sy))), Image.BILINEAR)
    canvas = Image.new("L", (max(w, stretched.size[0]), max(h, stretched.size[1])), 255)
    canvas.paste(stretched, ((canvas.size[0] - stretched.size[0]) // 2, (canvas.size[1] - stretched.size[1]) // 2))
    out = _jitter(canvas.convert("RGB"), rng, amount=rng.uniform(3.0, 9.0))
    if rng.random() < 0.2:  # a part left out: erase a band on one side
        arr = np.asarray(out.convert("L")).copy()
        ink = np.nonzero(arr < 128)
        if len(ink[0]):
            axis = int(rng.integers(0, 2))
            lo, hi = ink[axis].min(), ink[axis].max()
            cut = int(lo + (hi - lo) * rng.uniform(0.15, 0.35))
            if rng.random() < 0.5:
                sl = (slice(None, cut), slice(None)) if axis == 0 else (slice(None), slice(None, cut))
            else:
                cut = hi - (cut - lo)
                sl = (slice(cut, None), slice(None)) if axis == 0 else (slice(None), slice(cut, None))
            arr[sl] = 255
            if (arr < 128).sum() > 60:
                out = Image.fromarray(arr, "L").convert("RGB")
    return out


def photo_drawing(
    photo: Image.Image, size: int, rng: np.random.Generator | None = None, style: str = "xdog", with_photo: bool = False
):
    """The drawing (RGB, ``size`` x ``size``, normalised like the widget's input) a shopper might make of ``photo``.

    ``rng`` None gives the deterministic evaluation drawing (XDoG, standard line width). With ``with_photo``
    returns ``(drawing, photo_crop)``: the photo under the same geometric changes and crop, for GAN pairs.
    """
    # Draw on the photo itself (no padding: the border between photo and padding would become a stroke),
    # then place the drawing on a white square.
    scale = DRAW_RES / max(photo.size)
    fitted = photo.resize(
        (max(1, round(photo.size[0] * scale)), max(1, round(photo.size[1] * scale))), Image.BILINEAR, reducing_gap=2.0
    )
    line_width = 3
    if style not in STYLES:
        raise ValueError(f"unknown drawing style {style!r}; use one of {', '.join(STYLES)}")
    if with_photo and rng is not None and style in HUMAN_LIKE:
        raise ValueError(
            "human-like drawings are distorted: they have no aligned photo crop (GAN pairs use "
            f"{', '.join(EDGE_STYLES)})"
        )
    drawing = human_like_drawing(fitted, style, rng) if style in HUMAN_LIKE else None
    human = drawing is not None
    if human:
        if rng is not None:
            drawing = memory_distortions(drawing, rng)
            line_width = int(rng.choice([2, 3, 3, 4, 5]))
    elif style == "hed":
        from . import hed

        drawing = hed.hed_drawing(hed.shared(), fitted, threshold=0.5 if rng is None else rng.uniform(0.4, 0.7))
    elif rng is None:
        drawing = edges(fitted) if style == "edges" else xdog(fitted)  # a human-like style without silhouette: XDoG
    else:
        if style == "edges":
            drawing = edges(fitted, keep=rng.uniform(0.05, 0.12))
        else:
            drawing = xdog(fitted, sigma=rng.uniform(0.8, 1.5), tau=rng.uniform(0.97, 0.99))
    if rng is not None and not human:
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
