"""Where is the garment in a shopper's photo? The crop box of search by photo (pure numpy/PyTorch, no Django).

A shopper's photo often shows more than the garment they want: a second garment beside it, a busy background. The
search page lets them move a box over the part to search; this module gives the box a preset and turns a box into a
search vector.

**Preset** (:class:`GarmentLocator`): one forward pass of the embedder's own trunk over the whole photo at
``size`` px (default 224) gives a grid of feature cells (7x7 for EfficientNet-Lite0). Each cell's *activation* is
what the model's GeM pooling averages, ``mean_c max(f_c, 1e-6)^p``: the embedding's own map of where its evidence
comes from. Normalised to 0..1 over the cells that lie on the photo and weighted by a Gaussian centre prior
(shoppers frame what they want; ``sigma`` in half-widths of the photo), the preset is the rectangle of cells with the
largest sum of ``activation - tau`` (maximum-sum subrectangle, exact, O(n^3) on an n x n grid), grown by
``margin`` of its width and height on each side: the hottest cells are the core of the garment, not its outline
(without it the box's IoU with the garment was 0.15 on validation composites, and a shopper who nudges the box
searches a sliver of the garment).

**Vector of the preset box**: the model's own pooling and projection over the box's cells of the same feature map
(cells weighted by how much of them the box covers, times their centre-weighted activation when ``soft`` is set),
so the preset costs one forward pass, like the whole-image
search it replaces, only at a larger input. A box the shopper drew is cropped from the pixels and embedded at the
model's input size (:func:`crop_image`): drawn boxes follow the garment's outline, where a fresh embedding of the
crop is best.

The method and its constants were chosen on the validation split of the CC0 photos with composite queries, and
measured once on the test split: ``benchmarks/photo_crop.py`` (docs/PHOTO_SEARCH.md has the figures).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Smallest box side the API accepts, in image pixels.
MIN_BOX_SIDE = 8
#: Input size of the preset's trunk pass, its centre prior, threshold and margin (chosen on the validation split).
PRESET_SIZE, PRESET_SIGMA, PRESET_TAU, PRESET_MARGIN = 224, 0.5, 0.2, 0.25
#: How much the preset's pooling weights the box's cells by their centre-weighted activation: 0 = every cell under
#: the box counts by how much of it the box covers; s in (0, 1] = that times ``(1 - s) + s * score``.
PRESET_SOFT = 0.0
#: ``decode_size`` of an upload searched with the preset: the box is cropped from this decoding.
PRESET_DECODE = 320
#: With a trained locator head (:mod:`.locator`): how its box is searched ("crop": cropped and embedded; "pool":
#: pooled from the preset's feature map), how much it is grown on each side, and the share of the photo's area
#: from which on the whole photo is searched instead (0 = never; chosen on the validation split).
HEAD_MODE, HEAD_MARGIN, HEAD_SNAP = "crop", 0.0, 0.0


class BadBox(ValueError):
    """The box is malformed or does not fit the image; the message says why, for the user."""


@dataclass(frozen=True)
class Box:
    """A rectangle in image pixels: left, top, width, height."""

    x: int
    y: int
    w: int
    h: int

    def as_dict(self) -> dict:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h}

    def as_string(self) -> str:
        return f"{self.x},{self.y},{self.w},{self.h}"

    def covers(self, width: int, height: int) -> bool:
        return self.x <= 0 and self.y <= 0 and self.x + self.w >= width and self.y + self.h >= height

    def scaled(self, sx: float, sy: float) -> tuple[float, float, float, float]:
        """The box in another pixel grid (e.g. a JPEG decoded at reduced scale), as floats."""
        return self.x * sx, self.y * sy, self.w * sx, self.h * sy


def parse_box(value, width: int, height: int) -> Box:
    """The shopper's box, ``"x,y,w,h"`` (a string, a sequence of four numbers or a dict with those keys) in pixels
    of the ``width`` x ``height`` image, as a :class:`Box`. Decimals are rounded; a box that overshoots the image by
    at most one pixel (rounding in a browser) is clipped. Raises :class:`BadBox` with a message for the user."""
    if isinstance(value, dict):
        try:
            parts = [value[key] for key in ("x", "y", "w", "h")]
        except KeyError:
            raise BadBox('Give the box as {"x": ..., "y": ..., "w": ..., "h": ...} in image pixels.') from None
    elif isinstance(value, str):
        parts = [part.strip() for part in value.replace(";", ",").split(",")]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        raise BadBox("Give the box as four numbers x,y,w,h in image pixels.")
    if len(parts) != 4:
        raise BadBox(f"The box needs four numbers x,y,w,h in image pixels; got {len(parts)}.")
    numbers = []
    for name, part in zip("xywh", parts):
        if isinstance(part, bool):
            raise BadBox(f"The box's {name} must be a number.")
        try:
            number = float(part)
        except (TypeError, ValueError):
            raise BadBox(f"The box's {name} must be a number, not {str(part)[:20]!r}.") from None
        if not math.isfinite(number):
            raise BadBox(f"The box's {name} must be a finite number.")
        numbers.append(number)
    x, y, w, h = numbers
    if x < 0 or y < 0:
        raise BadBox("The box must start inside the image (x and y at least 0).")
    if w < MIN_BOX_SIDE or h < MIN_BOX_SIDE:
        raise BadBox(f"The box must be at least {MIN_BOX_SIDE}x{MIN_BOX_SIDE} pixels.")
    if x + w > width + 1 or y + h > height + 1:
        raise BadBox(f"The box ({x:g},{y:g},{w:g},{h:g}) goes beyond the image, which is {width}x{height} pixels.")
    left, top = min(int(round(x)), width - 1), min(int(round(y)), height - 1)
    right, bottom = min(int(round(x + w)), width), min(int(round(y + h)), height)
    if right - left < 1 or bottom - top < 1:
        raise BadBox(f"The box must be at least {MIN_BOX_SIDE}x{MIN_BOX_SIDE} pixels.")
    return Box(left, top, right - left, bottom - top)


def decode_size_for(box: Box | None, width: int, height: int, model_size: int) -> int:
    """The ``decode_size`` to pass to :func:`.preprocessing.open_image` so that the box's longer side keeps at least
    ``model_size`` pixels after a JPEG's reduced-scale decoding (the crop is not upscaled from a thumbnail)."""
    if box is None:
        return model_size
    factor = model_size / max(box.w, box.h, 1)
    return max(model_size, int(math.ceil(min(width, height) * min(factor, 1.0))))


def crop_image(img, box: Box, original_size: tuple[int, int]):
    """Crop ``box`` (pixels of the original image, ``original_size``) from ``img`` (the same picture, maybe decoded
    at a reduced scale)."""
    sx, sy = img.width / original_size[0], img.height / original_size[1]
    x, y, w, h = box.scaled(sx, sy)
    left, top = int(math.floor(x)), int(math.floor(y))
    right, bottom = max(left + 1, int(math.ceil(x + w))), max(top + 1, int(math.ceil(y + h)))
    return img.crop((left, top, min(right, img.width), min(bottom, img.height)))


# --- the activation map and the preset ------------------------------------------------------------------------


def grid_geometry(cells: int, width: int, height: int):
    """An image padded to a square (centred, as :func:`.preprocessing.pad_to_square` does) and cut into
    ``cells`` x ``cells``: (cell side, x offset, y offset) in image pixels."""
    side = max(width, height)
    return side / cells, (side - width) / 2.0, (side - height) / 2.0


def activation_map(feats: np.ndarray, p: float) -> np.ndarray:
    """Per cell of a (C, rows, cols) feature map, the mean over channels of ``max(f, 1e-6)^p``: what GeM pooling
    with exponent ``p`` averages into the embedding."""
    return (np.maximum(feats.astype(np.float32), 1e-6) ** p).mean(axis=0)


def max_sum_rectangle(score: np.ndarray) -> tuple[int, int, int, int]:
    """The rectangle of cells with the largest sum of ``score``: (row0, row1, col0, col1), end-exclusive.
    Exact (Kadane over every pair of rows); at least one cell."""
    rows, cols = score.shape
    best, found = -np.inf, (0, 1, 0, 1)
    for r0 in range(rows):
        column = np.zeros(cols)
        for r1 in range(r0, rows):
            column += score[r1]
            current, start = 0.0, 0
            for c in range(cols):
                if current <= 0:
                    current, start = column[c], c
                else:
                    current += column[c]
                if current > best:
                    best, found = current, (r0, r1 + 1, start, c + 1)
    return found


def centre_weighted(heat: np.ndarray, width: int, height: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """(score, inside) for an activation map ``heat`` over the padded square of a ``width`` x ``height`` photo: the
    map normalised to 0..1 over the cells whose centre lies on the photo (``inside``), times the Gaussian centre
    prior (``sigma`` in half-widths; 0 = no prior)."""
    rows, cols = heat.shape
    cell, ox, oy = grid_geometry(cols, width, height)
    cy = (np.arange(rows) + 0.5) * cell - oy
    cx = (np.arange(cols) + 0.5) * cell - ox
    inside = (cy[:, None] >= 0) & (cy[:, None] < height) & (cx[None] >= 0) & (cx[None] < width)
    if not inside.any():
        return np.zeros_like(heat, dtype=np.float32), inside
    values = heat[inside]
    low, high = float(values.min()), float(values.max())
    norm = (heat - low) / max(high - low, 1e-12)
    if sigma:
        dx = (cx[None] - width / 2) / (width / 2)
        dy = (cy[:, None] - height / 2) / (height / 2)
        norm = norm * np.exp(-(dx**2 + dy**2) / (2 * sigma**2))
    return np.where(inside, norm, 0.0).astype(np.float32), inside


def preset_box(
    heat: np.ndarray, width: int, height: int, sigma: float = 0.35, tau: float = 0.2, margin: float = 0.0
) -> Box:
    """The preset crop box for a ``width`` x ``height`` photo from its activation map ``heat`` (rows x cols over
    the padded square). See the module docstring."""
    rows, cols = heat.shape
    cell, ox, oy = grid_geometry(cols, width, height)
    norm, inside = centre_weighted(heat, width, height, sigma)
    if not inside.any():
        return Box(0, 0, width, height)
    r0, r1, c0, c1 = max_sum_rectangle(np.where(inside, norm - tau, -1e6))
    x0, x1 = c0 * cell - ox, c1 * cell - ox
    y0, y1 = r0 * cell - oy, r1 * cell - oy
    if margin:
        mx, my = (x1 - x0) * margin, (y1 - y0) * margin
        x0, x1, y0, y1 = x0 - mx, x1 + mx, y0 - my, y1 + my
    left, top = max(0, int(round(x0))), max(0, int(round(y0)))
    right, bottom = min(width, int(round(x1))), min(height, int(round(y1)))
    return Box(left, top, max(1, right - left), max(1, bottom - top))


def cell_weights(rows: int, cols: int, width: int, height: int, box) -> np.ndarray:
    """(rows, cols) weights: the share of each cell (of the padded square) that ``box`` (x, y, w, h in image
    pixels, a :class:`Box` or a tuple) covers."""
    x, y, w, h = (box.x, box.y, box.w, box.h) if isinstance(box, Box) else box
    cell, ox, oy = grid_geometry(cols, width, height)
    edges_x = np.arange(cols + 1) * cell - ox
    edges_y = np.arange(rows + 1) * cell - oy
    wx = np.clip(np.minimum(edges_x[1:], x + w) - np.maximum(edges_x[:-1], x), 0, None) / cell
    wy = np.clip(np.minimum(edges_y[1:], y + h) - np.maximum(edges_y[:-1], y), 0, None) / cell
    weights = wy[:, None] * wx[None]
    if weights.sum() <= 0:  # a box smaller than rounding: fall back to the cell under its centre
        r = min(rows - 1, max(0, int((y + h / 2 + oy) // cell)))
        c = min(cols - 1, max(0, int((x + w / 2 + ox) // cell)))
        weights[r, c] = 1.0
    return weights


@dataclass(frozen=True)
class Located:
    """A preset: the box (pixels of the image passed in) and the search vector pooled over it."""

    box: Box
    vector: np.ndarray


class GarmentLocator:
    """The preset crop of an embedder (:class:`.embedder.Embedder`): one trunk pass at ``size`` px.

    With a trained locator head for this photo model (``head``: a :class:`.locator.LoadedHead`; by default the
    package's, when it pairs with the embedder), the box is the head's, grown by ``head_margin`` on each side, and
    with ``head_mode="crop"`` it is cropped from the photo and embedded as a fresh photo (a second, smaller pass);
    ``"pool"`` pools it from the same feature map. A box that covers at least ``head_snap`` of the photo's area
    searches the whole photo. Without a head (or ``head=False``), the activation-map preset
    (module docstring)."""

    def __init__(
        self,
        embedder,
        size: int = PRESET_SIZE,
        sigma: float = PRESET_SIGMA,
        tau: float = PRESET_TAU,
        margin: float = PRESET_MARGIN,
        soft: float = PRESET_SOFT,
        head=None,
        head_mode: str = HEAD_MODE,
        head_margin: float = HEAD_MARGIN,
        head_snap: float = HEAD_SNAP,
    ):
        self.embedder = embedder
        self.size, self.sigma, self.tau, self.margin = int(size), float(sigma), float(tau), float(margin)
        self.soft = float(soft)
        if head is None:
            from . import locator

            head = locator.load(photo_sha256=getattr(embedder, "sha256", None))
        self.head = head or None
        self.head_mode, self.head_margin, self.head_snap = head_mode, float(head_margin), float(head_snap)

    @property
    def decode_size(self) -> int:
        """The ``decode_size`` an upload searched with this preset is decoded at."""
        return max(self.size, PRESET_DECODE) if self.head is not None else self.size

    def feature_map(self, img) -> np.ndarray:
        from . import preprocessing

        return self.embedder.feature_maps(preprocessing.batch([img], self.size))[0]

    def locate(self, img, feats: np.ndarray | None = None) -> Located:
        """The preset box of ``img`` (an RGB PIL image) and its search vector."""
        feats = self.feature_map(img) if feats is None else feats
        if self.head is not None:
            return self._locate_with_head(img, feats)
        heat = activation_map(feats, self.embedder.gem_p)
        box = preset_box(heat, img.width, img.height, self.sigma, self.tau, self.margin)
        emphasis = None
        if self.soft:
            score, _ = centre_weighted(heat, img.width, img.height, self.sigma)
            emphasis = (1.0 - self.soft) + self.soft * score
        return Located(box, self.pooled(feats, img.width, img.height, box, emphasis))

    def _locate_with_head(self, img, feats) -> Located:
        found = self.head.box(feats, img.width, img.height, margin=self.head_margin)
        if found is not None and self.head_snap and found[2] * found[3] >= self.head_snap * img.width * img.height:
            found = None  # (nearly) the whole photo: searched as it is
        if found is None:  # no garment found: the whole photo
            box = Box(0, 0, img.width, img.height)
            return Located(
                box,
                self.embedder.pool_features(feats[None])[0]
                if self.head_mode == "pool"
                else self.embedder.embed_images([img])[0],
            )
        x, y, w, h = found
        left, top = max(0, int(round(x))), max(0, int(round(y)))
        right, bottom = min(img.width, int(round(x + w))), min(img.height, int(round(y + h)))
        box = Box(left, top, max(1, right - left), max(1, bottom - top))
        if self.head_mode == "pool":
            return Located(box, self.pooled(feats, img.width, img.height, (x, y, w, h)))
        if box.covers(img.width, img.height):
            return Located(box, self.embedder.embed_images([img])[0])
        return Located(box, self.embedder.embed_images([crop_image(img, box, img.size)])[0])

    def pooled(self, feats: np.ndarray, width: int, height: int, box, emphasis: np.ndarray | None = None) -> np.ndarray:
        """The embedding of ``box``'s cells of a feature map of a ``width`` x ``height`` image (each cell weighted
        by how much of it the box covers, times ``emphasis`` (rows, cols) if given)."""
        weights = cell_weights(feats.shape[1], feats.shape[2], width, height, box)
        if emphasis is not None:
            weights = weights * emphasis
            if weights.sum() <= 0:
                weights = cell_weights(feats.shape[1], feats.shape[2], width, height, box)
        return self.embedder.pool_features(feats[None], weights[None])[0]
