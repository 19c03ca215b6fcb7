"""Training data for sketch search, made from the catalog's own photos: decoded photos plus several synthetic
drawings of each (see :mod:`.sketches`), computed in parallel processes and held in memory as uint8."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from . import preprocessing, sketches

DEFAULT_STYLES = ("xdog", "xdog", "edges")  # randomised variants 1, 2, 3, ... cycle through these


def _one(args):
    path, size, variants, seed, aligned, styles = args
    rng = np.random.default_rng(seed)
    try:
        photo = preprocessing.open_image(path, decode_size=max(size, sketches.DRAW_RES))
    except preprocessing.InvalidImage:
        return None
    square = np.asarray(
        preprocessing.pad_to_square(photo).resize((size, size), preprocessing.Image.BILINEAR, reducing_gap=2.0),
        dtype=np.uint8,
    )
    drawings, crops = [], []
    for v in range(variants):
        # variant 0 is the deterministic evaluation drawing (XDoG); the others are randomised, cycling the styles
        style = styles[(v - 1) % len(styles)] if v else "xdog"
        out = sketches.photo_drawing(photo, size, rng=None if v == 0 else rng, style=style, with_photo=aligned)
        drawing, crop = out if aligned else (out, None)
        drawings.append(np.asarray(drawing.convert("L"), dtype=np.uint8))
        if aligned:
            crops.append(np.asarray(crop, dtype=np.uint8))
    return square, np.stack(drawings), (np.stack(crops) if aligned else None)


def cache_key(records, size, variants, seed, aligned, styles=DEFAULT_STYLES) -> str:
    """Changes when any input changes: the files (path, size, mtime), the settings or the drawing code."""
    import hashlib
    import json

    files = []
    for r in records:
        try:
            st = r.path.stat()
            files.append((r.source_id, str(r.path), st.st_size, st.st_mtime_ns))
        except OSError:
            files.append((r.source_id, str(r.path), None, None))
    blob = json.dumps(
        [
            files,
            size,
            variants,
            seed,
            aligned,
            list(styles),
            sketches.DRAWINGS_VERSION,
            preprocessing.PREPROCESSING_VERSION,
        ]
    )
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def load(
    records,
    size: int,
    variants: int = 4,
    seed: int = 0,
    workers: int = 0,
    aligned: bool = False,
    progress: bool = True,
    cache_dir=None,
    rebuild: bool = False,
    styles=DEFAULT_STYLES,
):
    """Returns (photos uint8 (N,S,S,3), drawings uint8 (N,V,S,S), aligned photo crops uint8 (N,V,S,S,3) or None,
    kept): ``kept`` lists the indices of ``records`` that could be read (unreadable images are skipped).

    ``aligned`` also returns each drawing's photo under the same crop and affine change (GAN pairs).
    With ``cache_dir`` the arrays are kept in ``cache_dir/pairs-<key>.npz`` and reused while the files, the
    settings and the drawing code are unchanged; ``rebuild`` regenerates them."""
    from pathlib import Path

    if cache_dir is not None:
        path = Path(cache_dir) / f"pairs-{cache_key(records, size, variants, seed, aligned, styles)}.npz"
        if path.exists() and not rebuild:
            with np.load(path) as data:
                crops = data["crops"] if aligned else None
                return data["photos"], data["drawings"], crops, [int(i) for i in data["kept"]]
        out = load(records, size, variants, seed, workers, aligned, progress, styles=styles)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            photos=out[0],
            drawings=out[1],
            crops=out[2] if aligned else np.zeros(0, np.uint8),
            kept=np.asarray(out[3], dtype=np.int64),
        )
        tmp.replace(path)
        return out
    from tqdm import tqdm

    workers = workers or min(16, os.cpu_count() or 1)
    unknown = set(styles) - set(sketches.STYLES)
    if unknown or not styles:
        raise ValueError(f"unknown drawing style(s) {sorted(unknown)}; use {', '.join(sketches.STYLES)}")
    if aligned and set(styles) & set(sketches.HUMAN_LIKE):
        raise ValueError(f"aligned pairs (GAN training) use {', '.join(sketches.EDGE_STYLES)} drawings only")
    jobs = [(str(r.path), size, variants, seed * 100_003 + i, aligned, tuple(styles)) for i, r in enumerate(records)]
    photos = np.empty((len(jobs), size, size, 3), np.uint8)
    drawings = np.empty((len(jobs), variants, size, size), np.uint8)
    crops = np.empty((len(jobs), variants, size, size, 3), np.uint8) if aligned else None
    bar = tqdm(total=len(jobs), desc="Photos and drawings", unit="img", disable=not progress)
    if workers == 1:
        results = map(_one, jobs)
    else:
        pool = ProcessPoolExecutor(workers)
        results = pool.map(_one, jobs, chunksize=16)
    kept = []
    for i, result in enumerate(results):
        bar.update()
        if result is None:
            continue
        square, d, c = result
        n = len(kept)
        photos[n], drawings[n] = square, d
        if aligned:
            crops[n] = c
        kept.append(i)
    bar.close()
    if workers != 1:
        pool.shutdown()
    n = len(kept)
    return photos[:n], drawings[:n], (crops[:n] if aligned else None), kept
