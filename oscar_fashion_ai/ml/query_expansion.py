"""Alpha query expansion (Radenovic et al., 2018) over a gallery of unit vectors.

A query is searched once, then again with its vector plus its ``n`` nearest gallery vectors, each weighted by its
similarity to the query to the power ``alpha``. No label is used, only the catalog's own vectors. The store uses it
for "Similar products" (``FASHION_AI["SIMILAR_QUERY_EXPANSION"]``, chosen on the validation splits of both data
sets by ``benchmarks/photo_rerank.py``) and, off by default, for search by sketch.
"""

from __future__ import annotations

import numpy as np

from . import metrics

#: The weighting exponent for "Similar products", chosen with the number of neighbours (docs/PHOTO_SEARCH.md).
SIMILAR_ALPHA = 1.0


def _unit(v):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def expand_query(queries, neighbours, alpha: float = 3.0):
    """Each query plus its nearest gallery vectors, weighted by their similarity to the query to the power
    ``alpha`` (negative similarities count 0), normalised.

    ``queries`` (Q, D) unit vectors, ``neighbours`` (Q, n, D) the gallery vectors nearest to each query."""
    queries = np.asarray(queries, dtype=np.float32)
    neighbours = np.asarray(neighbours, dtype=np.float32)
    if neighbours.size == 0:
        return queries
    weights = np.clip(np.einsum("qd,qnd->qn", queries, neighbours), 0, None) ** alpha
    return _unit(queries + (weights[..., None] * neighbours).sum(axis=1)).astype(np.float32)


def expand_in_gallery(queries, gallery, n: int, alpha: float = SIMILAR_ALPHA, exclude=None):
    """:func:`expand_query` with each query's ``n`` nearest rows of ``gallery`` (exact search); ``exclude[i]`` is
    the gallery index of query i itself (left out of its neighbours), or -1. ``n`` 0 returns the queries."""
    queries = np.asarray(queries, dtype=np.float32)
    if n <= 0 or not len(gallery):
        return queries
    gallery = np.asarray(gallery, dtype=np.float32)
    idx = metrics.neighbours(queries, gallery, n, exclude=None if exclude is None else np.asarray(exclude))
    return expand_query(queries, gallery[idx], alpha=alpha)
