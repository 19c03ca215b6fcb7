"""Measuring a photo model and a sketch encoder on the store's test split, side by side with standard errors."""

from __future__ import annotations

import logging

import numpy as np

from .catalog import Catalog

logger = logging.getLogger(__name__)


def measure(embedder, catalog: Catalog, progress: bool = False, k: int = 5, gallery=None) -> dict:
    """P@5 of ``embedder`` on the store's test split as "Similar products" ranks (each product's vector expanded
    with its ``SIMILAR_QUERY_EXPANSION`` nearest products): the whole measurable catalog as gallery, query
    excluded, relevant = same first category. Returns the mean, its standard error and the per-query precisions.
    ``gallery``: the catalog already embedded by ``embedder`` (:func:`embed_catalog`)."""
    from .. import conf
    from ..ml import metrics, query_expansion

    items = catalog.items
    vecs, ok = gallery if gallery is not None else embed_catalog(embedder, items, progress)
    labels = np.array([items[i].label for i in ok])
    q = np.flatnonzero(catalog.test[ok]) if len(ok) else np.zeros(0, np.int64)
    expansion = int(conf.get("SIMILAR_QUERY_EXPANSION"))
    queries = query_expansion.expand_in_gallery(vecs[q], vecs, expansion, exclude=q) if len(q) else vecs[q]
    idx = metrics.neighbours(queries, vecs, k, exclude=q)
    per_query = (labels[idx] == labels[q][:, None]).mean(axis=1) if len(q) else np.zeros(0)
    return {
        "p_at_5": float(per_query.mean()) if len(q) else 0.0,
        "p_at_5_se": metrics.standard_error(per_query),
        "queries": int(len(q)),
        "gallery": int(len(ok)),
        "model_version": embedder.version,
        "query_expansion": expansion,
        "per_query": dict(zip([items[i].product_id for i in ok[q]], per_query.tolist())),
    }


def embed_catalog(embedder, items, progress: bool = False):
    """The items' photo vectors and the indices of the items whose image could be read."""
    from tqdm import tqdm

    from ..ml import preprocessing

    vecs, ok = [], []
    batch = 64
    for start in tqdm(range(0, len(items), batch), desc=f"Measuring {embedder.version[:40]}", disable=not progress):
        images = []
        for i in range(start, min(start + batch, len(items))):
            try:
                images.append(embedder.load_image(items[i].path))
                ok.append(i)
            except preprocessing.InvalidImage:
                continue
        if images:
            vecs.append(embedder.embed_images(images, batch_size=batch))
    vecs = np.concatenate(vecs) if vecs else np.zeros((0, embedder.info.dim), np.float32)
    return vecs, np.asarray(ok, dtype=np.int64)


def compare(current: dict, candidate: dict) -> dict:
    """The candidate minus the model in use on the queries both measured, with the paired standard error."""
    from ..ml import metrics

    common = sorted(set(current["per_query"]) & set(candidate["per_query"]))
    diff = np.array([candidate["per_query"][pk] - current["per_query"][pk] for pk in common])
    return {
        "gain": float(diff.mean()) if len(diff) else 0.0,
        "gain_se": metrics.standard_error(diff),
        "queries": len(common),
    }


def public_result(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "per_query"}


#: The drawings a sketch encoder is measured with on the store's test split: an edge map of the product photo and
#: a from-memory doodle of its silhouette (:mod:`oscar_fashion_ai.ml.sketches`).
SKETCH_MEASURE_STYLES = ("xdog", "doodle")


def measure_sketch(
    photo, drawing_embedder, catalog: Catalog, gallery=None, styles=SKETCH_MEASURE_STYLES, drawings=None
) -> dict:
    """Search by sketch on the store's test split: synthetic drawings of each test-split product (``styles``)
    against the whole measurable catalog embedded by ``photo`` (``gallery``: already embedded). Category P@5 (the
    mean over the styles; per-query values for the paired comparison) and acc@1 / acc@10, the drawn product itself
    found. ``drawings``: a dict that keeps the drawings between calls on the same gallery items (each is drawn
    once)."""
    from ..ml import evaluate, metrics, preprocessing, sketches

    vecs, ok = gallery if gallery is not None else embed_catalog(photo, catalog.items)
    items = [catalog.items[i] for i in ok]
    labels = np.array([it.label for it in items])
    q = np.flatnonzero(catalog.test[ok]) if len(ok) else np.zeros(0, np.int64)
    size = drawing_embedder.info.image_size
    out = {"styles": {}, "model_version": drawing_embedder.version, "queries": int(len(q)), "gallery": len(vecs)}
    per_query = np.zeros(len(q))
    drawings = {} if drawings is None else drawings
    for style in styles:
        key = (style, size, tuple(ok[q].tolist()))
        if key not in drawings:
            drawings[key] = [
                evaluate.synthetic_sketch(
                    preprocessing.open_image(items[i].path, decode_size=sketches.DRAW_RES), size, style, seed=int(i)
                )
                for i in q
            ]
        dv = drawing_embedder.embed_images(drawings[key])
        result = evaluate.sketch_retrieval(dv, labels[q], vecs, labels, source_index=q)
        idx = metrics.neighbours(dv, vecs, 5)
        per_query += (labels[idx] == labels[q][:, None]).mean(axis=1) / len(styles)
        out["styles"][style] = {k: result[k] for k in ("p_at_5", "p_at_5_se", "source_hit_at_1", "source_hit_at_10")}
    out["p_at_5"] = float(per_query.mean()) if len(q) else 0.0
    out["p_at_5_se"] = metrics.standard_error(per_query)
    out["per_query"] = dict(zip([items[i].product_id for i in q], per_query.tolist()))
    return out
