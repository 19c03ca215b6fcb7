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
