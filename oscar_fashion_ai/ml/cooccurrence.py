"""Item-to-item co-occurrence (item-kNN, Ludewig & Jannach 2018) blended into each interest's candidates.

Pure NumPy/SciPy, no Django: the shop (``personalisation/cooccurrence.py``) and the offline evaluation
(``recommend_eval.py``) use the same functions.

* :func:`neighbours` learns, from shoppers' histories ("baskets": the set of products each shopper touched), each
  product's ``top_n`` most co-occurring products: cosine similarity of the products' shopper-incidence vectors
  (``|A and B| / sqrt(|A| |B|)``, counted over shoppers).
* :func:`interest_scores` sums, for one interest, its remembered products' neighbours, each weighted by the member's
  kind weight and decay (the same decay as the interest's vector); scaled so that the best candidate has 1.
* :func:`blend` scores every candidate by ``cosine similarity to the interest + weight x co-occurrence`` and keeps
  the best ``n``. The candidates are the interest's nearest products (by vector) and its ``n`` most co-occurring
  products, so a product the vector search would not reach can still be recommended.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from .interests import _decay


def neighbours(baskets, top_n: int = 50, min_count: int = 1) -> dict:
    """{product: (neighbour ids, cosine similarities)} (best first, at most ``top_n``, the product itself left out)
    from an iterable of baskets (each an iterable of product ids; duplicates within a basket count once). Pairs
    that fewer than ``min_count`` shoppers share are dropped."""
    baskets = [set(b) for b in baskets]
    items = sorted({i for b in baskets for i in b})
    if not items:
        return {}
    index = {item: j for j, item in enumerate(items)}
    rows = np.repeat(np.arange(len(baskets)), [len(b) for b in baskets])
    cols = np.fromiter((index[i] for b in baskets for i in b), dtype=np.int64, count=len(rows))
    incidence = sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(baskets), len(items))
    )
    counts = (incidence.T @ incidence).tocsr()  # co-occurrence counts; the diagonal holds each product's count
    support = counts.diagonal().astype(np.float64)
    counts.setdiag(0)
    counts.eliminate_zeros()
    if min_count > 1:
        counts.data[counts.data < min_count] = 0
        counts.eliminate_zeros()
    ids = np.asarray(items)
    out = {}
    for j in range(len(items)):
        start, end = counts.indptr[j], counts.indptr[j + 1]
        if start == end:
            continue
        cols_j = counts.indices[start:end]
        sims = counts.data[start:end] / np.sqrt(support[j] * support[cols_j])
        keep = np.argsort(-sims, kind="stable")[:top_n]
        out[items[j]] = (ids[cols_j[keep]], sims[keep].astype(np.float64))
    return out


def interest_scores(members, table: dict, ref_time: float, half_life: float) -> dict:
    """{product: co-occurrence score in (0, 1]} for an interest's ``members`` [(product, kind, time, weight)] from
    a :func:`neighbours` table; empty when none of the members has neighbours."""
    scores: dict = {}
    for item, _kind, t, w in members:
        if item not in table:
            continue
        ids, sims = table[item]
        factor = w * _decay(ref_time - t, half_life)
        for other, s in zip(ids.tolist(), sims.tolist()):
            scores[other] = scores.get(other, 0.0) + factor * s
    best = max(scores.values(), default=0.0)
    return {item: s / best for item, s in scores.items()} if best > 0 else {}


def strongest_member(members, table: dict, item, ref_time: float, half_life: float):
    """The member (product, kind, time, weight) whose co-occurrence with ``item`` counts most now (None: none of
    them co-occurs with it): whom "Shoppers who looked at ... also looked at this" names."""
    best, best_value = None, 0.0
    for member in members:
        if member[0] not in table:
            continue
        ids, sims = table[member[0]]
        hits = np.flatnonzero(ids == item)
        if len(hits):
            value = member[3] * _decay(ref_time - member[2], half_life) * float(sims[hits[0]])
            if value > best_value:
                best, best_value = member, value
    return best


def top_items(scores: dict, n: int, skip=()) -> list:
    """The ``n`` products with the highest score, those in ``skip`` left out (ties: smaller id first)."""
    skip = set(skip)
    return sorted((i for i in scores if i not in skip), key=lambda i: (-scores[i], i))[:n]


def blend(ids, sims, vecs, scores: dict, weight: float, n: int):
    """(ids, blended scores, vectors) of the best ``n`` candidates by ``sims + weight x scores`` (best first)."""
    ids = list(ids)
    if not ids:
        return ids, np.zeros(0), vecs
    value = np.asarray(sims, dtype=np.float64) + weight * np.array([scores.get(i, 0.0) for i in ids])
    order = np.argsort(-value, kind="stable")[:n]
    return [ids[j] for j in order], value[order], np.asarray(vecs)[order]
