"""Retrieval metrics over L2-normalised vectors (cosine similarity)."""

from __future__ import annotations

import numpy as np


def neighbours(queries: np.ndarray, gallery: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` most similar gallery rows per query; ``exclude[i]`` is the gallery index
    of query i itself (left out), or -1. ``k`` is capped at the number of candidates."""
    k = max(0, min(k, len(gallery) - (1 if exclude is not None and (exclude >= 0).any() else 0)))
    out = np.empty((len(queries), k), dtype=np.int64)
    if k == 0:
        return out
    for start in range(0, len(queries), 256):
        sims = queries[start : start + 256] @ gallery.T
        if exclude is not None:
            rows = np.arange(sims.shape[0])
            own = exclude[start : start + 256]
            sims[rows[own >= 0], own[own >= 0]] = -np.inf
        top = np.argpartition(-sims, kth=k - 1, axis=1)[:, :k]
        order = np.take_along_axis(sims, top, axis=1).argsort(axis=1)[:, ::-1]
        out[start : start + 256] = np.take_along_axis(top, order, axis=1)
    return out


def precision_at_k(relevant: np.ndarray, k: int) -> float:
    """``relevant`` is a (Q, >=k) boolean matrix of ranked results."""
    return float(relevant[:, :k].mean()) if relevant[:, :k].size else 0.0


def standard_error(per_query) -> float:
    """Standard error of a mean over queries (sample standard deviation / sqrt(n)); 0 for fewer than 2."""
    values = np.asarray(per_query, dtype=np.float64)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def average_precision_at_k(relevant: np.ndarray, k: int) -> float:
    """mAP@k: per query, the mean of precision@i over the ranks i<=k that hold a relevant item,
    divided by min(k, number of relevant items found in the top k) (0 when none)."""
    rel = relevant[:, :k].astype(np.float64)
    if not rel.size:
        return 0.0
    cum = np.cumsum(rel, axis=1)
    ranks = np.arange(1, rel.shape[1] + 1)
    precision = cum / ranks
    hits = rel.sum(axis=1)
    ap = np.where(hits > 0, (precision * rel).sum(axis=1) / np.maximum(hits, 1), 0.0)
    return float(ap.mean())


def category_retrieval(query_vecs, query_labels, gallery_vecs, gallery_labels, query_gallery_index=None, k=10):
    """P@5 and mAP@10 with relevance = same label; the query itself is excluded from its results."""
    query_labels = np.asarray(query_labels)
    gallery_labels = np.asarray(gallery_labels)
    idx = neighbours(query_vecs, gallery_vecs, k, exclude=query_gallery_index)
    relevant = gallery_labels[idx] == query_labels[:, None]
    return {
        "p_at_5": precision_at_k(relevant, 5),
        "p_at_5_se": standard_error(relevant[:, :5].mean(axis=1)) if relevant.size else 0.0,
        "map_at_10": average_precision_at_k(relevant, 10),
        "queries": int(len(query_vecs)),
        "gallery": int(len(gallery_vecs)),
    }
