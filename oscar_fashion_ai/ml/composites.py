"""Composite shopper photos with a known garment box: a data-set photo pasted beside a photo of another category or
on a busy background (pure PIL/numpy, no Django).

``benchmarks/photo_crop.py`` measures search by photo on them (docs/PHOTO_SEARCH.md, "Measured"), and
``fashion_adapt`` measures a store's garment locator on the store's own test-split products with the same recipe.
Records are anything with ``source_id``, ``label`` and ``path``.

* ``beside``: the query photo in the middle of a wider frame, a photo of *another* category pasted right beside it
  (60-90 % of its height, partly cut off by the frame edge), the rest a busy background;
* ``background``: the query photo on a busy background, 55-75 % of the frame's width, anywhere in it;
* ``side-by-side`` (stress case): the query at one edge, the other garment (50-75 % of its height) at the other;
* ``alone``: the query photo itself, uploaded as it is.

The busy background is a 2 x 2 mosaic of corner patches (30 % x 30 %) of other photos. Each composite is
JPEG-encoded (quality 90).
"""

from __future__ import annotations

import hashlib
import io
import random
from dataclasses import dataclass
from pathlib import Path

HEIGHT = 400

# --- composites ------------------------------------------------------------------------------------------------


def _rgb(path):
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


def busy_background(width, height, records, rng):
    from PIL import Image

    canvas = Image.new("RGB", (width, height))
    used = []
    for qx in range(2):
        for qy in range(2):
            record = records[rng.randrange(len(records))]
            used.append(record.source_id)
            src = _rgb(record.path)
            cw, ch = max(1, int(src.width * 0.3)), max(1, int(src.height * 0.3))
            cx = 0 if rng.random() < 0.5 else src.width - cw
            cy = 0 if rng.random() < 0.5 else src.height - ch
            patch = src.crop((cx, cy, cx + cw, cy + ch)).resize((width // 2 + 1, height // 2 + 1))
            canvas.paste(patch, (qx * (width // 2), qy * (height // 2)))
    return canvas, used


@dataclass
class Composite:
    data: bytes  # JPEG
    truth: tuple  # the pasted query photo: x, y, w, h in composite pixels
    used: list  # source ids of every photo in it


def compose(query, kind, records, others, rng) -> Composite:
    """``others``: records of other categories than the query's (for the second garment)."""
    if kind == "alone":  # the photo itself, uploaded as it is
        data = Path(query.path).read_bytes()
        return Composite(data, (0, 0) + composite_size(Composite(data, None, [])), [query.source_id])
    a = _rgb(query.path)
    a = a.resize((max(1, round(a.width * HEIGHT / a.height)), HEIGHT))
    used = [query.source_id]
    if kind == "background":
        width = round(a.width / rng.uniform(0.55, 0.75))
        height = round(HEIGHT / rng.uniform(0.7, 0.85))
        canvas, bg = busy_background(width, height, records, rng)
        qx, qy = rng.randrange(0, width - a.width + 1), rng.randrange(0, height - HEIGHT + 1)
        canvas.paste(a, (qx, qy))
        truth = (qx, qy, a.width, HEIGHT)
    else:
        other = others[rng.randrange(len(others))]
        used.append(other.source_id)
        b = _rgb(other.path)
        if kind == "beside":
            bh = round(HEIGHT * rng.uniform(0.6, 0.9))
            b = b.resize((max(1, round(b.width * bh / b.height)), bh))
            width = round(a.width * rng.uniform(1.5, 1.8))
            canvas, bg = busy_background(width, HEIGHT, records, rng)
            qx = (width - a.width) // 2 + round(rng.uniform(-0.05, 0.05) * width)
            gap = round(rng.uniform(0.02, 0.06) * HEIGHT)
            by = rng.randrange(0, HEIGHT - bh + 1)
            bx = qx + a.width + gap if rng.random() < 0.5 else qx - gap - b.width
            canvas.paste(b, (bx, by))
            canvas.paste(a, (qx, 0))
        else:  # side-by-side
            bh = round(HEIGHT * rng.uniform(0.5, 0.75))
            b = b.resize((max(1, round(b.width * bh / b.height)), bh))
            gap = round(rng.uniform(0.03, 0.1) * HEIGHT)
            width = a.width + gap + b.width
            canvas, bg = busy_background(width, HEIGHT, records, rng)
            if rng.random() < 0.5:
                qx, bx = 0, a.width + gap
            else:
                bx, qx = 0, b.width + gap
            canvas.paste(a, (qx, 0))
            canvas.paste(b, (bx, rng.randrange(0, HEIGHT - bh + 1)))
        truth = (qx, 0, a.width, HEIGHT)
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=90)
    return Composite(buf.getvalue(), truth, used + bg)


def background_only(records, rng) -> Composite:
    """A busy background with no garment pasted on it (for the minimum-similarity cut-off)."""
    width, height = rng.randrange(400, 700), rng.randrange(400, 600)
    canvas, bg = busy_background(width, height, records, rng)
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=90)
    return Composite(buf.getvalue(), (0, 0, width, height), bg)


def seeded(source_id, kind):
    return random.Random(int(hashlib.sha1(f"{source_id}|{kind}".encode()).hexdigest(), 16))


def composite_size(composite):
    from PIL import Image

    with Image.open(io.BytesIO(composite.data)) as img:
        return img.size
