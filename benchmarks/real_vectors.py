"""Representative vectors for the scale benchmark: real embeddings of both data sets, grown to any size.

    python benchmarks/real_vectors.py [--rows 1000000] [--cache var/bench]   # embed (cached) and describe

**Base set.** Every labelled image of `../shared/datasets/clothing-dataset` (CC0) and
`../shared/datasets/studio-catalog`, embedded by the shipped photo model (`oscar_fashion_ai/weights`), once as it
is and once mirrored left-right: about 16,600 real vectors. They are computed once and cached in
`var/bench/real_embeddings_<model sha256[:12]>.npz` (outside the repository; never committed).

**Growing to N vectors** (deterministic for a seed; generated in chunks):
each new vector is a random real vector ``a``, moved a random fraction ``t ~ U(0, 0.5)`` of the way towards one of
its 10 nearest real neighbours ``b`` (neighbour interpolation, as SMOTE does), plus isotropic Gaussian noise whose
expected length is ``--noise`` (default 0.5) times the median distance between an image's vector and its mirrored
image's vector (the model's own "same garment, other photo" scale), then re-normalised to unit length:

    v = normalise(a + t (b - a) + noise * median_mirror_distance * z / sqrt(dim)),   z ~ N(0, I)

So the grown set stays on the embedding manifold of real products (neighbours are real neighbours, the spread
is the model's own), instead of the isotropic clusters of the synthetic set. Queries are fresh draws of the same
process (another seed), not rows of the table, like a new product or a shopper's photo.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ("clothing-dataset", "studio-catalog")
NEIGHBOURS = 10


def default_cache() -> Path:
    return ROOT / "var" / "bench"


def dataset_root() -> Path:
    return ROOT / ".." / "shared" / "datasets"


def embed_base(cache: Path | None = None, weights=None, batch: int = 64, progress: bool = True) -> dict:
    """The base set (vectors, mirrored-view vectors, data set index, label) from the cache, embedding it if
    needed."""
    import sys

    sys.path.insert(0, str(ROOT))
    from oscar_fashion_ai.ml import datasets, preprocessing
    from oscar_fashion_ai.ml.embedder import Embedder

    embedder = Embedder(weights)
    cache = Path(cache or default_cache())
    path = cache / f"real_embeddings_{embedder.sha256[:12]}.npz"
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files} | {"path": str(path), "cached": True}
    records = []
    for index, name in enumerate(DATASETS):
        source = dataset_root() / name
        if not source.exists():
            raise SystemExit(f"data set not found at {source}")
        records += [(index, r) for r in datasets.labelled_records(source)]
    size = embedder.info.image_size
    plain, mirrored, kept = [], [], []
    started = time.perf_counter()
    from PIL import Image

    for start in range(0, len(records), batch):
        arrays, flips = [], []
        for index, record in records[start : start + batch]:
            try:
                img = embedder.load_image(record.path)
            except Exception:  # noqa: BLE001 - a broken file is skipped, as the catalog import does
                continue
            arrays.append(preprocessing.prepare(img, size))
            flips.append(preprocessing.prepare(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), size))
            kept.append((index, record.label, record.source_id))
        if not arrays:
            continue
        import torch

        plain.append(embedder.embed_tensor(torch.from_numpy(np.stack(arrays))))
        mirrored.append(embedder.embed_tensor(torch.from_numpy(np.stack(flips))))
        if progress and (start // batch) % 20 == 0:
            print(f"embedded {start + len(arrays)} of {len(records)} images", flush=True)
    out = {
        "vectors": np.concatenate(plain).astype(np.float32),
        "mirrored": np.concatenate(mirrored).astype(np.float32),
        "dataset": np.array([k[0] for k in kept], dtype=np.int8),
        "labels": np.array([k[1] for k in kept]),
        "ids": np.array([k[2] for k in kept]),
        "model_sha256": np.array(embedder.sha256),
        "embed_s": np.array(time.perf_counter() - started),
    }
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)
    return out | {"path": str(path), "cached": False}


class Grower:
    """Deterministic generator of vectors around the base set (see the module docstring)."""

    def __init__(self, base: dict, noise: float = 0.5, neighbours: int = NEIGHBOURS):
        self.points = np.concatenate([base["vectors"], base["mirrored"]]).astype(np.float32)
        self.points /= np.linalg.norm(self.points, axis=1, keepdims=True)
        self.dim = self.points.shape[1]
        self.mirror_distance = float(np.median(np.linalg.norm(base["vectors"] - base["mirrored"], axis=1)))
        self.noise = float(noise)
        self.neighbours = self._knn(neighbours)

    def _knn(self, k, chunk=2048):
        out = np.empty((len(self.points), k), dtype=np.int32)
        for start in range(0, len(self.points), chunk):
            scores = self.points[start : start + chunk] @ self.points.T
            rows = np.arange(scores.shape[0])
            scores[rows, rows + start] = -np.inf  # not itself
            part = np.argpartition(-scores, k, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1)
            out[start : start + chunk] = np.take_along_axis(part, order, 1)
        return out

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        a = rng.integers(0, len(self.points), n)
        b = self.neighbours[a, rng.integers(0, self.neighbours.shape[1], n)]
        t = rng.uniform(0.0, 0.5, size=(n, 1)).astype(np.float32)
        v = self.points[a] + t * (self.points[b] - self.points[a])
        scale = self.noise * self.mirror_distance / np.sqrt(self.dim)
        v += rng.normal(scale=scale, size=v.shape).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        return v.astype(np.float32)

    def describe(self) -> dict:
        return {
            "base_vectors": int(len(self.points)),
            "median_mirror_distance": round(self.mirror_distance, 4),
            "noise": self.noise,
            "neighbours": int(self.neighbours.shape[1]),
            "method": "random real vector moved U(0,0.5) of the way to one of its 10 nearest real neighbours, "
            "plus Gaussian noise of expected length noise x median mirror distance, re-normalised",
        }


def make_real(rows: int, categories: int, base: dict, noise: float = 0.5, seed: int = 0, chunk: int = 100_000):
    """``rows`` grown vectors, random categories (independent of the vectors), the grower and its rng."""
    grower = Grower(base, noise)
    rng = np.random.default_rng(seed)
    data = np.empty((rows, grower.dim), dtype=np.float32)
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        data[start : start + n] = grower.sample(n, rng)
    cats = rng.integers(0, categories, rows).astype(np.int16)
    return data, cats, grower, rng


def fingerprint(data: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(data[:1000]).tobytes()).hexdigest()[:12]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default=None, help="folder of the cached embeddings (default var/bench)")
    parser.add_argument("--rows", type=int, default=100_000, help="grow this many and describe them")
    parser.add_argument("--noise", type=float, default=0.5)
    args = parser.parse_args()
    t = time.perf_counter()
    base = embed_base(args.cache)
    print(
        f"base set: {len(base['vectors'])} images ({'cached' if base['cached'] else 'embedded'}) "
        f"in {time.perf_counter() - t:.1f} s, {base['path']}"
    )
    data, _, grower, rng = make_real(args.rows, 20, base, args.noise)
    # How far is a vector's nearest neighbour, in the base set and in the grown set (sample of 200)?
    probe = grower.sample(200, rng)
    nn_grown = 1 - np.sort(probe @ data.T, axis=1)[:, -10:]
    nn_base = 1 - np.sort(probe @ grower.points.T, axis=1)[:, -10:]
    print(grower.describe())
    print(
        f"cosine distance of a fresh query to its 1st / 10th nearest: grown set {np.median(nn_grown[:, -1]):.4f} / "
        f"{np.median(nn_grown[:, 0]):.4f}, base set {np.median(nn_base[:, -1]):.4f} / {np.median(nn_base[:, 0]):.4f}"
    )


if __name__ == "__main__":
    main()
