"""Search by photo with a second garment or a busy background in the frame: whole image vs preset crop.

    python benchmarks/photo_crop.py --phase validation [--source PATH] [--threads 1] [--limit N]
    python benchmarks/photo_crop.py --phase test [--latency-images 200] [--cutoff-queries 300]

Queries are built in memory from the CC0 clothing photos (nothing is written but the result files):

* ``beside``: the query photo in the middle of a wider frame, a photo of *another* category pasted right beside it
  (60-90 % of its height, partly cut off by the frame edge), the rest a busy background;
* ``background``: the query photo on a busy background, 55-75 % of the frame's width, anywhere in it;
* ``side-by-side`` (stress case, not a target): the query at one edge, the other garment (50-75 % of its height) at
  the other edge, nothing centred: the preset's centre prior cannot help, the shopper moves the box.

The busy background is a 2 x 2 mosaic of corner patches (30 % x 30 %) of other photos of the data set. Each
composite is JPEG-encoded (quality 90) and decoded as the server decodes uploads. Gallery: every labelled CC0
photo, embedded by the shipped model as the store indexes them; every photo used in a composite is left out of
its results. P@5 = share of the 5 nearest with the query's category, with the standard error over queries.

Conditions: ``clean`` (the query photo alone), ``whole`` (the composite as the previous release searched it: whole
image at the model's 160 px), candidate crop methods, and ``oracle`` (the pasted query photo cut out exactly and
embedded: the best any crop can do).

``--phase validation`` (sha1 % 5 == 1) compares the candidates on ``beside`` and ``background`` and chooses one
(:func:`choose`), measures the crop a shopper's box search gives on the shown boxes, the untrained ImageNet-features
baseline with the chosen parameters, and suggests a minimum similarity; it writes
benchmarks/results/photo_crop_validation.json and says whether the defaults of
``oscar_fashion_ai.ml.crop.GarmentLocator`` are the choice. ``--phase test`` (sha1 % 5 == 0) refuses to run unless
they are, then measures the choice once (clean, whole, preset, the preset box searched as a shopper's box, oracle;
the same for the baseline), the minimum-similarity table, and the crop step's latency on this machine (one ONNX
Runtime thread, as a web worker runs it: the preset's trunk pass + box + pooling against the previous release's
whole-image embedding at 160 px, per image including preprocessing); it writes
benchmarks/results/photo_crop_test.json and will not overwrite it without ``--again``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _common import RESULTS, ROOT, dataset_path, write

sys.path.insert(0, str(ROOT))

from oscar_fashion_ai.ml import crop, datasets, metrics, preprocessing
from oscar_fashion_ai.ml.composites import Composite, background_only, compose, composite_size, seeded
from oscar_fashion_ai.ml.embedder import Embedder

KINDS = ("beside", "background", "side-by-side", "alone")
TARGET_KINDS = ("beside", "background")
#: The kinds whose mean P@5 chooses the preset: the two target kinds and the photo alone (most uploads are a clean
#: photo of the garment: a preset must not cost it much).
CHOICE_KINDS = ("beside", "background", "alone")
#: The trained locator head (oscar_fashion_ai.ml.locator), set by main() from --locator.
HEAD = None


# --- methods -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # whole | centre | cam-pool | cam-crop
    size: int = 160
    sigma: float = 0.0
    tau: float = 0.0
    margin: float = 0.0
    fraction: float = 1.0
    soft: float = 0.0
    snap: float = 0.0

    def describe(self):
        if self.kind.startswith("head-"):
            what = (
                f"cropped from the photo (decoded at {crop.PRESET_DECODE} px) and embedded at 160 px"
                if self.kind == "head-crop"
                else "pooled from the same pass"
            )
            grown = f", grown by {self.margin:.0%} on each side" if self.margin else ""
            snap = f" (the whole photo when the box covers {self.snap:.0%} of it or more)" if self.snap else ""
            return f"trained locator head on the {self.size} px feature map; its box{grown} {what}{snap}"
        if self.kind == "whole":
            return f"whole image at {self.size} px"
        if self.kind == "centre":
            return f"fixed centre crop ({self.fraction:.0%} of each side), embedded at 160 px"
        box = f"box grown by {self.margin:.0%} of its size on each side" if self.margin else "box"
        what = (
            "pooled from the same pass" if self.kind == "cam-pool" else "cropped from the photo and embedded at 160 px"
        )
        if self.soft:
            what += f", cells weighted by (1 - {self.soft}) + {self.soft} x their centre-weighted activation"
        return f"activation map at {self.size} px, centre prior sigma {self.sigma}, tau {self.tau}; {box} {what}"


def cam_name(kind, size, sigma, tau, margin=0.0, soft=0.0):
    return f"{kind}-{size}-s{sigma}-t{tau}" + (f"-m{margin}" if margin else "") + (f"-soft{soft}" if soft else "")


def cam(kind, size, sigma, tau, margin=0.0, soft=0.0):
    return Method(cam_name(kind, size, sigma, tau, margin, soft), kind, size, sigma, tau, margin, soft=soft)


def candidates():
    """The crop methods compared on the validation split (the first grid of the crop module, plus the larger
    trunk inputs and the margins tried after it: docs/PHOTO_SEARCH.md)."""
    out = [Method("whole-224", "whole", 224), Method("centre-0.75", "centre", fraction=0.75)]
    for size in (224, 256, 288):
        for sigma in (0.35, 0.5):
            for tau in (0.2, 0.35):
                for margin in (0.0, 0.25, 0.5):
                    out.append(cam("cam-pool", size, sigma, tau, margin))
    out.append(cam("cam-pool", 256, 0.0, 0.2))
    # Added in the third validation round: the box's cells weighted by their centre-weighted activation (soft).
    for size in (256, 288):
        for sigma in (0.35, 0.5):
            for tau in (0.2, 0.35):
                for margin in (0.25, 0.5):
                    for soft in (0.5, 1.0):
                        out.append(cam("cam-pool", size, sigma, tau, margin, soft))
    return out


def head(kind, margin, size=224, snap=0.0):
    name = f"{kind}-{size}" + (f"-m{margin}" if margin else "") + (f"-snap{snap}" if snap else "")
    return Method(name, kind, size, margin=margin, snap=snap)


def head_candidates():
    """The trained locator head (docs/PHOTO_SEARCH.md, "A trained locator"), when one pairs with the model."""
    if HEAD is None:
        return []
    crops = [head("head-crop", m, snap=s) for m in (0.0, 0.05, 0.1) for s in (0.0, 0.6, 0.7, 0.8)]
    return crops + [head("head-crop", 0.2), head("head-pool", 0.0), head("head-pool", 0.1)]


def short_candidates():
    """The candidates of validation rounds after the first with photo model 3607601ccde4: the 224 px activation-map
    grid (256 and 288 px lost to it in photo_crop_model3607_validation.json), the whole photo at 224 px, the fixed
    centre crop, and the trained locator head."""
    out = [Method("whole-224", "whole", 224), Method("centre-0.75", "centre", fraction=0.75)]
    for sigma in (0.35, 0.5):
        for tau in (0.2, 0.35):
            for margin in (0.0, 0.25, 0.5):
                out.append(cam("cam-pool", 224, sigma, tau, margin))
    return out + head_candidates()


def locator_for(embedder, m: Method):
    """The :class:`crop.GarmentLocator` a preset method stands for."""
    if m.kind.startswith("head-"):
        return crop.GarmentLocator(
            embedder, m.size, head=HEAD, head_mode=m.kind[5:], head_margin=m.margin, head_snap=m.snap
        )
    return crop.GarmentLocator(embedder, m.size, m.sigma, m.tau, m.margin, m.soft, head=False)


def crop_candidates():
    """What the shopper's box search (cropped, embedded) gives on the boxes shown: not a preset's vector, but the
    search the shopper gets after touching the box without moving it much."""
    return [cam("cam-crop", 256, 0.5, 0.2, m) for m in (0.0, 0.25, 0.5, 0.75)] + [cam("cam-crop", 224, 0.35, 0.2)]


RELEASE = Method("whole", "whole", 160)


def shipped_method(embedder) -> Method:
    loc = crop.GarmentLocator(embedder, head=HEAD if HEAD is not None else False)
    if loc.head is not None:
        return head("head-" + loc.head_mode, loc.head_margin, loc.size, loc.head_snap)
    return cam("cam-pool", loc.size, loc.sigma, loc.tau, loc.margin, loc.soft)


def vectors_for(composite: Composite, methods, embedder, feature_cache, boxes=None) -> dict:
    """Each method's search vector for the composite, decoding it as the server does for that method. ``boxes``
    (a dict), if given, receives the box each activation-map method shows the shopper (composite pixels)."""
    out = {}
    decoded = {}
    full = composite_size(composite)

    def image(decode_size):
        if decode_size not in decoded:
            decoded[decode_size] = preprocessing.open_image(composite.data, decode_size=decode_size)
        return decoded[decode_size]

    crops, crop_names = [], []
    for m in methods:
        if m.kind == "whole" and m.size == embedder.info.image_size:
            crops.append(image(m.size))
            crop_names.append(m.name)
        elif m.kind == "centre":
            img = image(2 * embedder.info.image_size)
            w, h = img.size
            f = m.fraction
            crops.append(
                img.crop(
                    (round(w * (1 - f) / 2), round(h * (1 - f) / 2), round(w * (1 + f) / 2), round(h * (1 + f) / 2))
                )
            )
            crop_names.append(m.name)
        elif m.kind == "oracle":
            img = image(2 * embedder.info.image_size)
            sx = img.width / full[0]
            x, y, w, h = composite.truth
            crops.append(img.crop((round(x * sx), round(y * sx), round((x + w) * sx), round((y + h) * sx))))
            crop_names.append(m.name)
        elif m.kind.startswith("head-"):
            img = image(max(m.size, crop.PRESET_DECODE))
            key = ("head", m.size)
            if key not in feature_cache:
                feature_cache[key] = embedder.feature_maps(preprocessing.batch([img], m.size))[0]
            loc = locator_for(embedder, m)
            found = HEAD.box(feature_cache[key], img.width, img.height, margin=m.margin)
            if found is not None and m.snap and found[2] * found[3] >= m.snap * img.width * img.height:
                found = None
            if found is None:
                located = loc.locate(img, feature_cache[key])  # the whole photo
                out[m.name] = located.vector
                shown = to_full(located.box, img.size, full)
            else:
                x, y, w, h = found
                left, top = max(0, int(round(x))), max(0, int(round(y)))
                box = crop.Box(
                    left,
                    top,
                    max(1, min(img.width, int(round(x + w))) - left),
                    max(1, min(img.height, int(round(y + h))) - top),
                )
                shown = to_full(box, img.size, full)
                if m.kind == "head-pool":
                    out[m.name] = loc.pooled(feature_cache[key], img.width, img.height, (x, y, w, h))
                elif box.covers(img.width, img.height):
                    crops.append(img)
                    crop_names.append(m.name)
                else:
                    crops.append(crop.crop_image(img, box, img.size))
                    crop_names.append(m.name)
            if boxes is not None:
                boxes[m.name] = shown
        else:
            img = image(m.size)
            key = m.size
            if key not in feature_cache:
                feature_cache[key] = embedder.feature_maps(preprocessing.batch([img], m.size))[0]
            feats = feature_cache[key]
            if m.kind == "whole":
                out[m.name] = embedder.pool_features(feats[None])[0]
                continue
            located = locator_for(embedder, m).locate(img, feats)
            shown = to_full(located.box, img.size, full)
            if boxes is not None:
                boxes[m.name] = shown
            if m.kind == "cam-pool":
                out[m.name] = located.vector
            else:  # cam-crop: the shown box as the server searches a shopper's box (cropped, embedded at 160 px)
                big = image(crop.decode_size_for(shown, full[0], full[1], embedder.info.image_size))
                crops.append(crop.crop_image(big, shown, full))
                crop_names.append(m.name)
    if crops:
        for name, vec in zip(crop_names, embedder.embed_images(crops, batch_size=64)):
            out[name] = vec
    return out


def to_full(box, size, full):
    """A box in pixels of an image decoded at ``size`` as a :class:`crop.Box` of the ``full``-size image."""
    sx, sy = full[0] / size[0], full[1] / size[1]
    x, y, w, h = box.scaled(sx, sy)
    left, top = max(0, int(round(x))), max(0, int(round(y)))
    return crop.Box(
        left, top, max(1, min(full[0], int(round(x + w))) - left), max(1, min(full[1], int(round(y + h))) - top)
    )


def iou(box, truth):
    x, y, w, h = truth
    ix = max(0, min(box.x + box.w, x + w) - max(box.x, x))
    iy = max(0, min(box.y + box.h, y + h) - max(box.y, y))
    inter = ix * iy
    return inter / float(box.w * box.h + w * h - inter)


# --- evaluation ----------------------------------------------------------------------------------------------------


class Gallery:
    def __init__(self, vectors, ids, labels):
        self.vectors, self.labels = vectors, np.asarray(labels)
        self.index = {source_id: i for i, source_id in enumerate(ids)}

    def precision(self, queries, query_labels, excluded, k=5):
        sims = np.asarray(queries, dtype=np.float32) @ self.vectors.T
        for row, ids in enumerate(excluded):
            sims[row, [self.index[i] for i in ids if i in self.index]] = -np.inf
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        return (self.labels[top] == np.asarray(query_labels)[:, None]).mean(axis=1)

    def top1(self, queries, excluded):
        sims = np.asarray(queries, dtype=np.float32) @ self.vectors.T
        for row, ids in enumerate(excluded):
            sims[row, [self.index[i] for i in ids if i in self.index]] = -np.inf
        return sims.max(axis=1)


def build_gallery(embedder, records, cache: Path | None):
    if cache is not None and cache.exists():
        data = np.load(cache)
        if str(data["version"]) == embedder.version and len(data["ids"]) == len(records):
            return Gallery(data["vectors"], list(data["ids"]), list(data["labels"]))
    from oscar_fashion_ai.ml import evaluate

    started = time.perf_counter()
    vectors, kept = evaluate.embed_records(embedder, records)
    print(f"gallery: {len(kept)} photos embedded in {time.perf_counter() - started:.0f} s", flush=True)
    ids, labels = [r.source_id for r in kept], [r.label for r in kept]
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, vectors=vectors, ids=np.array(ids), labels=np.array(labels), version=embedder.version)
    return Gallery(vectors, ids, labels)


def summarise(per_query: dict, clean_key="clean"):
    out = {}
    for name, values in per_query.items():
        values = np.asarray(values, dtype=np.float64)
        row = {
            "p_at_5": round(float(values.mean()), 4),
            "se": round(metrics.standard_error(values), 4),
            "queries": int(len(values)),
        }
        if name != clean_key and clean_key in per_query:
            diff = values - np.asarray(per_query[clean_key], dtype=np.float64)
            row["minus_clean"] = round(float(diff.mean()), 4)
            row["minus_clean_se"] = round(metrics.standard_error(diff), 4)
        out[name] = row
    return out


def run_split(
    split_name, queries, methods, embedder, gallery, records, by_label_others, kinds=KINDS, progress_every=200
):
    """P@5 per kind and method (plus clean and oracle) for the split's queries, and for the activation-map methods
    the mean IoU of the shown box with the pasted query photo."""
    per = {kind: {m: [] for m in ["clean", "oracle"] + [x.name for x in methods]} for kind in kinds}
    labels = [q.label for q in queries]
    oracle = Method("oracle", "oracle")
    started = time.perf_counter()
    clean_vecs = []
    for q in queries:
        clean_vecs.append(embedder.embed_images([embedder.load_image(q.path)])[0])
    clean_p = gallery.precision(np.array(clean_vecs), labels, [[q.source_id] for q in queries])
    out = {}
    for kind in kinds:
        rows, excluded, ious = {m: [] for m in per[kind] if m != "clean"}, [], {}
        for i, q in enumerate(queries):
            composite = compose(q, kind, records, by_label_others[q.label], seeded(q.source_id, kind))
            excluded.append(composite.used)
            boxes = {}
            vecs = vectors_for(composite, list(methods) + [oracle], embedder, {}, boxes)
            for name, vec in vecs.items():
                rows[name].append(vec)
            for name, box in boxes.items():
                ious.setdefault(name, []).append(iou(box, composite.truth))
            if progress_every and (i + 1) % progress_every == 0:
                print(
                    f"{split_name} {kind}: {i + 1}/{len(queries)} ({time.perf_counter() - started:.0f} s)", flush=True
                )
        per[kind]["clean"] = clean_p
        for name, vecs in rows.items():
            per[kind][name] = gallery.precision(np.array(vecs), labels, excluded)
        out[kind] = summarise(per[kind])
        for name, values in ious.items():
            out[kind][name]["box_iou"] = round(float(np.mean(values)), 4)
    return out


#: A larger trunk input (or a wider box) is taken only when it gains more than this much mean P@5.
TIE = 0.005


def choose(results, methods, kinds=TARGET_KINDS, others=()):
    """The validation choice: among the candidates whose mean P@5 over ``kinds`` is within ``TIE`` of the
    best, the one with the smallest trunk input, then without a second pass (the head's crop is embedded again),
    then the highest mean IoU of the shown box with the pasted photo (a box the shopper recognises), then the
    earlier one. ``others``: results of other data sets' validation runs (the same candidates); the score is then
    the mean of each data set's mean. Returns (method, its mean P@5)."""

    def score(m):
        return float(np.mean([np.mean([r[kind][m.name]["p_at_5"] for kind in kinds]) for r in (results, *others)]))

    def box_iou(m):
        return float(np.mean([results[kind][m.name].get("box_iou", 0.0) for kind in TARGET_KINDS]))

    best = max(score(m) for m in methods)
    close = [m for m in methods if score(m) >= best - TIE - 1e-9]
    chosen = min(
        close,
        key=lambda m: (
            m.size if m.kind != "centre" else 160,
            m.kind == "head-crop",
            -box_iou(m),
            methods.index(m),
        ),
    )
    return chosen, score(chosen)


def latency(embedder_threads1, queries, records, by_label_others, n, method: Method):
    """Per image, ms: today's whole-image embedding at 160 px vs the preset (both from the decoded upload)."""
    comps = [
        compose(q, "beside", records, by_label_others[q.label], seeded(q.source_id, "beside")) for q in queries[:n]
    ]
    e = embedder_threads1
    loc = locator_for(e, method)
    release_imgs = [preprocessing.open_image(c.data, decode_size=e.info.image_size) for c in comps]
    preset_imgs = [preprocessing.open_image(c.data, decode_size=loc.decode_size) for c in comps]
    for img in release_imgs[:3]:
        e.embed_images([img])
        loc.locate(img)
    release, preset, box_only = [], [], []
    for a, b in zip(release_imgs, preset_imgs):
        t = time.perf_counter()
        e.embed_images([a])
        release.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        feats = loc.feature_map(b)
        t_box = time.perf_counter()
        loc.locate(b, feats)
        done = time.perf_counter()
        preset.append((done - t) * 1000)
        box_only.append((done - t_box) * 1000)

    def stats(values):
        values = sorted(values)
        return {"median_ms": round(float(np.median(values)), 2), "p95_ms": round(float(np.percentile(values, 95)), 2)}

    extra = [p - r for p, r in zip(preset, release)]
    return {
        "images": len(comps),
        "threads": 1,
        "release_embed_160": stats(release),
        "preset": stats(preset),
        "box_and_pooling_only": stats(box_only),
        "preset_minus_release": stats(extra),
    }


def min_similarity(gallery, embedder, queries, records, by_label_others, method: Method, n):
    """Top-1 similarity of garment queries (preset crop of ``beside`` composites) vs of background-only mosaics."""
    loc = locator_for(embedder, method)
    garment, garment_excl, empty, empty_excl = [], [], [], []
    for q in queries[:n]:
        c = compose(q, "beside", records, by_label_others[q.label], seeded(q.source_id, "beside"))
        garment.append(loc.locate(preprocessing.open_image(c.data, decode_size=loc.decode_size)).vector)
        garment_excl.append(c.used)
        b = background_only(records, seeded(q.source_id, "empty"))
        empty.append(loc.locate(preprocessing.open_image(b.data, decode_size=loc.decode_size)).vector)
        empty_excl.append(b.used)
    g = gallery.top1(np.array(garment), garment_excl)
    b = gallery.top1(np.array(empty), empty_excl)
    return g, b


def cutoff_table(garment_top1, empty_top1, thresholds):
    return [
        {
            "min_similarity": t,
            "garment_queries_nothing_close": round(float((garment_top1 < t).mean()), 4),
            "empty_queries_nothing_close": round(float((empty_top1 < t).mean()), 4),
        }
        for t in thresholds
    ]


# --- the untrained ImageNet-features baseline -------------------------------------------------------------------


class ImageNetBaseline:
    """The untrained ImageNet EfficientNet-Lite0 trunk (ReLU6, as the weights were trained), global average pooling,
    L2-normalised, at 224 px (its better size on CC0 validation, benchmarks/generalisation.py): the baseline every
    retrieval figure of the project stands beside. It has the few methods of
    :class:`oscar_fashion_ai.ml.embedder.Embedder` the benchmark calls, so the same crop code runs on it: the
    activation map of average pooling is the mean activation per cell (``gem_p`` 1), the pooled box its weighted
    average."""

    gem_p = 1.0

    def __init__(self, threads=0, size=224):
        import tempfile

        import torch

        from oscar_fashion_ai.ml import backbones, onnx_cache
        from oscar_fashion_ai.ml.embedder import ModelInfo

        trunk = backbones.Lite0Trunk(image_size=size, pretrained=True).eval()
        with tempfile.TemporaryDirectory(prefix="fashion-ai-baseline-") as tmp:
            self._session = onnx_cache.session(
                trunk,
                name="imagenet-trunk",
                source_sha256=f"imagenet-lite0-{size}",
                example=torch.zeros(2, 3, size, size),
                input_names=["images"],
                output_names=["features"],
                cache_dir=tmp,
                threads=threads,
                dynamic_axes={
                    "images": {0: "batch", 2: "height", 3: "width"},
                    "features": {0: "batch", 2: "rows", 3: "cols"},
                },
            )
        self.info = ModelInfo(f"imagenet-lite0-gap-{size}px", 1280, size, "lite0")
        self.version, self.runtime = self.info.version, "onnxruntime"

    def load_image(self, source):
        return preprocessing.open_image(source, decode_size=self.info.image_size)

    def feature_maps(self, batch):
        return self._session.run(["features"], {"images": batch.numpy()})[0].astype(np.float32)

    def pool_features(self, feats, weights=None):
        feats = feats.astype(np.float32)
        if weights is None:
            v = feats.mean(axis=(2, 3))
        else:
            w = np.asarray(weights, dtype=np.float32)[:, None]
            v = (feats * w).sum(axis=(2, 3)) / np.maximum(w.sum(axis=(2, 3)), 1e-12)
        return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def embed_images(self, images, batch_size=32):
        out = [
            self.pool_features(self.feature_maps(preprocessing.batch(images[i : i + batch_size], self.info.image_size)))
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.info.dim), dtype=np.float32)


# --- the two phases -------------------------------------------------------------------------------------------------


def method_from(row: dict) -> Method:
    return Method(**row)


def method_row(m: Method) -> dict:
    return {
        "name": m.name,
        "kind": m.kind,
        "size": m.size,
        "sigma": m.sigma,
        "tau": m.tau,
        "margin": m.margin,
        "fraction": m.fraction,
        "soft": m.soft,
        "snap": m.snap,
    }


def same_preset(a: Method, b: Method) -> bool:
    def key(m):
        return (m.kind, m.size, m.sigma, m.tau, m.margin, m.soft, m.snap)

    return key(a) == key(b)


def baseline_split(split_name, queries, method, records, by_label_others, args, kinds):
    """The untrained ImageNet-features baseline on the same queries: clean, whole image, the preset with the chosen
    parameters on its own activation map, and the oracle cut-out."""
    base = ImageNetBaseline(threads=args.threads)
    gallery = build_gallery(base, records, args.gallery_cache.with_name(args.gallery_cache.stem + "_imagenet.npz"))
    whole = Method("whole", "whole", base.info.image_size)
    if method.kind.startswith("head-"):  # the head reads the fashion model's features: the baseline keeps its map
        method = BASELINE_PRESET
    preset = cam("cam-pool", method.size, method.sigma, method.tau, method.margin, method.soft)
    return run_split(
        f"{split_name} baseline", queries, [whole, preset], base, gallery, records, by_label_others, kinds
    ), {"whole": whole.describe(), preset.name: preset.describe(), "model": base.version}


#: The ImageNet baseline's preset when the choice is the trained head (which reads the fashion model's features):
#: the activation-map preset chosen with photo model 3607601ccde4.
BASELINE_PRESET = cam("cam-pool", 224, 0.5, 0.2, 0.25)


def validation_phase(args, embedder, records, gallery, by_label_others, source):
    validation = [r for r in records if datasets.is_validation(r.source_id)]
    if args.limit:
        validation = validation[: args.limit]
    started = time.perf_counter()
    if args.grid == "full":
        choice_kinds, pool = TARGET_KINDS, candidates() + head_candidates()
        methods = [RELEASE] + pool + crop_candidates()
    else:
        choice_kinds, pool = CHOICE_KINDS, short_candidates()
        methods = [RELEASE] + pool + [cam("cam-crop", 224, 0.5, 0.2, 0.25)]
    val = run_split("validation", validation, methods, embedder, gallery, records, by_label_others, choice_kinds)
    others = []
    for name in args.combine_with or []:
        other = json.loads((RESULTS / f"{name}_validation.json").read_text())
        if other["model_version"] != embedder.version:
            sys.exit(f"{name}_validation.json was measured with another photo model")
        others.append(other["results"])
    pool = [m for m in pool if all(m.name in o[k] for o in others for k in choice_kinds)]
    chosen, score = choose(val, pool, choice_kinds, others)
    stress = run_split(
        "validation", validation, [RELEASE, chosen], embedder, gallery, records, by_label_others, ("side-by-side",)
    )
    val.update(stress)
    shipped = shipped_method(embedder)
    print(
        f"validation: chosen {chosen.name} (mean P@5 over {', '.join(choice_kinds)} {score:.4f}); "
        f"shipped default {shipped.name}",
        flush=True,
    )
    if not same_preset(chosen, shipped):
        print(
            "WARNING: the shipped GarmentLocator defaults (oscar_fashion_ai/ml/crop.py) are not the validation "
            "choice: set them to it before the test phase",
            flush=True,
        )
    base, base_methods = baseline_split("validation", validation, chosen, records, by_label_others, args, KINDS)
    g_val, e_val = min_similarity(gallery, embedder, validation, records, by_label_others, chosen, args.cutoff_queries)
    suggested = round(float(np.floor(np.percentile(g_val, 1) * 100) / 100), 2)
    thresholds = sorted({0.3, 0.4, 0.5, 0.6, 0.7, suggested})
    write(
        args.out + "_validation",
        {
            "command": "python benchmarks/photo_crop.py --phase validation"
            + (f" --limit {args.limit}" if args.limit else "")
            + "".join(f" --combine-with {n}" for n in args.combine_with or []),
            "data": f"{source.name}, validation split (sha1(id) % 5 == 1): {len(validation)} query photos; "
            f"gallery: all {len(gallery.labels)} labelled photos; whether the photo model saw these photos is in its "
            "model card (the shipped one trains on the train split only)",
            "source": source.name,
            "model_version": embedder.version,
            "runtime": embedder.runtime,
            "threads": args.threads,
            "gallery": len(gallery.labels),
            "recipe": RECIPE,
            "methods": {m.name: m.describe() for m in methods},
            "grid": args.grid,
            "combined_with": args.combine_with or [],
            "choice_rule": f"highest mean P@5 over {', '.join(choice_kinds)}"
            + (f" (mean of this data set and {', '.join(args.combine_with)})" if args.combine_with else "")
            + " among the preset candidates "
            f"({', '.join(m.name for m in pool)}); within {TIE} of it the smallest trunk input, then without a "
            "second pass, then the highest box IoU",
            "results": val,
            "chosen": method_row(chosen),
            "chosen_mean_p_at_5": round(score, 4),
            "shipped_default": shipped.name,
            "shipped_is_choice": same_preset(chosen, shipped),
            "baseline": {"methods": base_methods, "results": base},
            "min_similarity": {
                "rule": "1st percentile (rounded down to 0.01) of the top-1 similarity of validation garment queries "
                "(preset crop of 'beside' composites)",
                "suggested": suggested,
                "queries": min(args.cutoff_queries, len(validation)),
                "table": cutoff_table(g_val, e_val, thresholds),
            },
            "wall_s": round(time.perf_counter() - started, 1),
        },
    )


def test_phase(args, embedder, records, gallery, by_label_others, source):
    chosen_file = RESULTS / f"{args.choice_from or args.out}_validation.json"
    if not chosen_file.exists():
        sys.exit(f"{chosen_file.name} is missing: run --phase validation first")
    previous = json.loads(chosen_file.read_text())
    chosen = method_from(previous["chosen"])
    shipped = shipped_method(embedder)
    if not same_preset(chosen, shipped):
        sys.exit(
            f"the shipped GarmentLocator defaults ({shipped.name}) are not the validation choice "
            f"({chosen.name}): set them in oscar_fashion_ai/ml/crop.py first"
        )
    if previous["model_version"] != embedder.version:
        sys.exit("the validation phase ran with another photo model: run it again")
    out_file = RESULTS / f"{args.out}_test.json"
    if out_file.exists() and not args.again:
        sys.exit(f"{out_file.name} exists: the test split is measured once (--again to overwrite it anyway)")
    test = [r for r in records if datasets.is_test(r.source_id)]
    if args.limit:
        test = test[: args.limit]
    started = time.perf_counter()
    lat = latency(Embedder(threads=1), test, records, by_label_others, args.latency_images, chosen)
    if chosen.kind.startswith("head-"):  # the head's box searched as a shopper's box is its crop
        as_crop = head("head-crop", chosen.margin, chosen.size, chosen.snap)
    else:
        as_crop = cam("cam-crop", chosen.size, chosen.sigma, chosen.tau, chosen.margin)
    test_methods = [RELEASE, chosen] + ([as_crop] if as_crop != chosen else [])
    tested = run_split("test", test, test_methods, embedder, gallery, records, by_label_others, KINDS)
    checkpoint = args.gallery_cache.with_name(
        f"{args.out}_test_partial.json"
    )  # nothing printed, kept if a later step fails
    checkpoint.write_text(json.dumps({"latency": lat, "results": tested}))
    base, base_methods = baseline_split("test", test, chosen, records, by_label_others, args, KINDS)
    suggested = previous["min_similarity"]["suggested"]
    g_test, e_test = min_similarity(gallery, embedder, test, records, by_label_others, chosen, args.cutoff_queries)
    thresholds = sorted({0.3, 0.4, 0.5, 0.6, 0.7, suggested})
    target = tested["beside"][chosen.name]
    write(
        args.out + "_test",
        {
            "command": "python benchmarks/photo_crop.py --phase test"
            + (f" --limit {args.limit}" if args.limit else ""),
            "data": f"{source.name}, test split (sha1(id) % 5 == 0): {len(test)} query photos, measured once after the "
            f"choice on validation; gallery: all {len(gallery.labels)} labelled photos (the test photos were "
            "never trained on)",
            "source": source.name,
            "model_version": embedder.version,
            "runtime": embedder.runtime,
            "threads": args.threads,
            "gallery": len(gallery.labels),
            "recipe": RECIPE,
            "method": method_row(chosen),
            "methods": {m.name: m.describe() for m in test_methods},
            "results": tested,
            "target": {
                "rule": "beside: preset-crop P@5 within 0.03 of clean-photo P@5",
                "preset_minus_clean": target["minus_clean"],
                "se": target["minus_clean_se"],
                "met": target["minus_clean"] >= -0.03,
            },
            "baseline": {"methods": base_methods, "results": base},
            "min_similarity": {
                "suggested_on_validation": suggested,
                "queries": min(args.cutoff_queries, len(test)),
                "table": cutoff_table(g_test, e_test, thresholds),
                "top1_garment_median": round(float(np.median(g_test)), 4),
                "top1_empty_median": round(float(np.median(e_test)), 4),
            },
            "latency": lat,
            "wall_s": round(time.perf_counter() - started, 1),
        },
    )


RECIPE = {
    "beside": "query centred in a frame 1.5-1.8x its width, a photo of another category 60-90 % of its height "
    "right beside it (cut off by the edge), busy background",
    "background": "query 55-75 % of the frame's width on a busy background, anywhere",
    "side-by-side": "stress: query at one edge, the other garment (50-75 % of its height) at the other, nothing "
    "centred",
    "busy background": "2x2 mosaic of 30 % corner patches of other data-set photos",
    "excluded from each query's results": "every photo used in its composite",
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", choices=("validation", "test"), required=True)
    parser.add_argument("--source", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=0, help="at most N queries (0 = all; for a smoke run)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--latency-images", type=int, default=200)
    parser.add_argument("--cutoff-queries", type=int, default=300)
    parser.add_argument("--again", action="store_true", help="measure the test split again (overwrites its result)")
    parser.add_argument(
        "--gallery-cache",
        type=Path,
        default=ROOT / "var" / "cache" / "photo_crop_gallery.npz",
        help="where the gallery vectors are kept between runs (derived vectors, outside git)",
    )
    parser.add_argument("--out", default="photo_crop")
    parser.add_argument(
        "--grid",
        choices=("short", "full"),
        default="short",
        help="validation candidates: 'short' (224 px activation maps, whole 224, centre, the trained head; chosen "
        "over beside, background and the photo alone) or 'full' (every round's grid; beside and background)",
    )
    parser.add_argument(
        "--combine-with",
        action="append",
        default=None,
        metavar="NAME",
        help="validation: choose on the mean of this run and NAME_validation.json (another data set's validation "
        "run of the same candidates; repeatable)",
    )
    parser.add_argument(
        "--choice-from",
        default=None,
        metavar="NAME",
        help="test: the choice recorded in NAME_validation.json (default: --out's)",
    )
    parser.add_argument(
        "--locator",
        type=Path,
        default=None,
        help="trained locator head (default: the package's, when it pairs with the photo model; 'none' for none)",
    )
    args = parser.parse_args(argv)
    source = dataset_path(args.source)
    embedder = Embedder(threads=args.threads)
    global HEAD
    if args.locator is None or str(args.locator).lower() != "none":
        from oscar_fashion_ai.ml import locator

        HEAD = locator.load(args.locator, photo_sha256=embedder.sha256)
        if args.locator and HEAD is None:
            sys.exit(f"{args.locator} is not a locator head for this photo model")
    print(f"locator head: {HEAD.path if HEAD else 'none'}", flush=True)
    records = datasets.labelled_records(source)
    gallery = build_gallery(embedder, records, args.gallery_cache)
    by_label_others = {label: [r for r in records if r.label != label] for label in {r.label for r in records}}
    (validation_phase if args.phase == "validation" else test_phase)(
        args, embedder, records, gallery, by_label_others, source
    )


if __name__ == "__main__":
    main()
