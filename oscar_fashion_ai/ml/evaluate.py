"""Offline evaluation of the embedder on a labelled image set (no database)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import datasets, metrics, preprocessing


def embed_records(embedder, records, batch_size=64, progress=False):
    from tqdm import tqdm

    """Embed the records' images; unreadable files are skipped. Returns (vectors, kept records)."""
    vecs, kept = [], []
    for start in tqdm(range(0, len(records), batch_size), desc="Embedding", disable=not progress):
        images = []
        for record in records[start : start + batch_size]:
            try:
                images.append(embedder.load_image(record.path))
            except preprocessing.InvalidImage:
                continue
            kept.append(record)
        if images:
            vecs.append(embedder.embed_images(images, batch_size=batch_size))
    return (np.concatenate(vecs) if vecs else np.zeros((0, embedder.info.dim), dtype=np.float32)), kept


def evaluate_image_retrieval(embedder, source: Path, progress=False) -> dict:
    """P@5 and mAP@10: test-split images query the whole set (query excluded); relevant = same label."""
    records = datasets.labelled_records(source)
    vecs, records = embed_records(embedder, records, progress=progress)
    labels = np.array([r.label for r in records])
    q = np.flatnonzero([datasets.is_test(r.source_id) for r in records])
    result = metrics.category_retrieval(vecs[q], labels[q], vecs, labels, query_gallery_index=q)
    return {"task": "image", **result, "model_version": embedder.version, "source": Path(source).name}


def synthetic_sketch(img, size, style: str = "xdog", seed: int = 0):
    """The synthetic drawing of a product photo at the drawing resolution, normalised like the widget's input at
    ``size``: the evaluation's stand-in for a shopper's drawing. Edge styles (xdog, edges, hed) are the photo's
    deterministic edge map; the human-like styles (outline, abstract, doodle) are drawn with their from-memory
    distortions from a generator seeded by ``seed`` (so a query's drawing is the same in every run)."""
    import numpy as np

    from .sketches import HUMAN_LIKE, photo_drawing

    rng = np.random.default_rng([seed, HUMAN_LIKE.index(style)]) if style in HUMAN_LIKE else None
    return photo_drawing(img, size, rng=rng, style=style)


def evaluate_sketch_files(
    embedder, generator, source: Path, pipelines=("direct", "gan", "fusion"), fusion_weight: float = 0.5, progress=False
) -> dict:
    """Synthetic drawings of the test split against all photos of ``source``, for each sketch pipeline."""
    from tqdm import tqdm

    from . import sketch_pipeline, sketches

    records = datasets.labelled_records(source)
    vecs, records = embed_records(embedder, records, progress=progress)
    labels = np.array([r.label for r in records])
    q = np.flatnonzero([datasets.is_test(r.source_id) for r in records])
    direct, for_gan = [], []
    for i in tqdm(q, desc="Drawings", disable=not progress):
        photo = preprocessing.open_image(records[i].path, decode_size=sketches.DRAW_RES)
        direct.append(synthetic_sketch(photo, embedder.info.image_size))
        if generator is not None:
            for_gan.append(synthetic_sketch(photo, generator.image_size))
    out = {}
    for name in pipelines:
        if name != "direct" and generator is None:
            continue
        qv, _ = sketch_pipeline.vectors(embedder, generator, direct, for_gan, name, fusion_weight)
        out[name] = sketch_retrieval(qv, labels[q], vecs, labels, source_index=q)
    return out


def sketch_retrieval(
    query_vecs,
    query_labels,
    gallery_vecs,
    gallery_labels,
    source_index=None,
    k=10,
    category_boost: float = 0.0,
    rerank_depth: int = 20,
):
    """Category P@5 of drawings against the photo gallery, and (when ``source_index`` is given) the share of
    queries whose source product is in the top 1/5/10. With ``category_boost`` the results are ordered as the
    store orders them (:func:`.sketch_pipeline.best_match_order` over the ``rerank_depth`` nearest)."""
    from .sketch_pipeline import reranked_neighbours

    idx = reranked_neighbours(query_vecs, gallery_vecs, gallery_labels, k + 1, category_boost, rerank_depth)
    idx, with_next = idx[:, :k], idx
    relevant = np.asarray(gallery_labels)[idx] == np.asarray(query_labels)[:, None]
    out = {
        "p_at_1": metrics.precision_at_k(relevant, 1),
        "p_at_5": metrics.precision_at_k(relevant, 5),
        "p_at_5_se": metrics.standard_error(relevant[:, :5].mean(axis=1)) if relevant.size else 0.0,
        "map_at_10": metrics.average_precision_at_k(relevant, 10),
        "queries": int(len(query_vecs)),
        "gallery": int(len(gallery_vecs)),
    }
    if source_index is not None:
        for n in (1, 5, 10):
            hits = [s in row[:n] for s, row in zip(source_index, idx)]
            out[f"source_hit_at_{n}"] = float(np.mean(hits))
        out["source_hit_at_5_se"] = metrics.standard_error([s in row[:5] for s, row in zip(source_index, idx)])
        # The drawing as a drawing of a photo that is not in the gallery: its source product left out.
        others = [row[row != s][:5] for s, row in zip(source_index, with_next)]
        others = np.stack([row[: min(map(len, others))] for row in others])
        rel = np.asarray(gallery_labels)[others] == np.asarray(query_labels)[:, None]
        out["p_at_5_source_excluded"] = metrics.precision_at_k(rel, 5)
        out["p_at_5_source_excluded_se"] = metrics.standard_error(rel.mean(axis=1))
    return out
