"""From a shopper's drawing to a search vector, three ways (measured against each other by
``fashion_evaluate --task sketch``):

* ``direct``: embed the normalised drawing itself (the embedder is trained on drawings and photos jointly);
* ``gan``: turn the drawing into a product-like photo with the pix2pix generator, embed that;
* ``fusion``: the normalised sum of the two unit vectors, weighted by ``fusion_weight`` (share of the GAN).

Drawings are embedded by the sketch encoder (a network trained to map drawings into the photo model's vector
space, :mod:`.train_sketch_encoder`) when there is one, else by the photo model. Query expansion
(:func:`.query_expansion.expand_query`) is the
optional second step: search again with the drawing's vector plus its nearest product vectors;
:func:`best_match_order` the optional last one: among the nearest products, those that share a category with the
best match move up by a small score bonus.
"""

from __future__ import annotations

import numpy as np

from .sketch_input import normalise_sketch

PIPELINES = ("direct", "gan", "fusion")


def _unit(v):
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def vectors(
    embedder, generator, direct_drawings, gan_drawings, pipeline: str, fusion_weight: float = 0.5, sketch_embedder=None
):
    """Search vectors for drawings already normalised at each model's size. Returns (vectors, generated images).

    ``generator`` may be None for ``direct``; ``gan_drawings`` is then ignored. ``sketch_embedder`` embeds the
    drawings themselves (default: ``embedder``, the photo model, which also embeds the generator's pictures)."""
    drawing_embedder = sketch_embedder or embedder
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown sketch pipeline {pipeline!r}; use one of {', '.join(PIPELINES)}")
    generated = generator.generate(gan_drawings) if (generator is not None and pipeline != "direct") else None
    if pipeline == "direct":
        return drawing_embedder.embed_images(direct_drawings), generated
    gan_vecs = embedder.embed_images(generated)
    if pipeline == "gan":
        return gan_vecs, generated
    direct = drawing_embedder.embed_images(direct_drawings)
    return _unit((1 - fusion_weight) * direct + fusion_weight * gan_vecs), generated


def best_match_order(scores, categories, boost: float) -> list[int]:
    """Re-order search candidates so that the results follow the best match's category.

    ``scores`` are the candidates' similarities, best first; ``categories[i]`` is candidate ``i``'s category, or
    a collection of categories (a product in several). Every candidate that shares a category with the first one
    (the best match) gets ``boost`` added to its score; the result is the candidates' indices by that sum, ties
    in the original order. The best match stays first, ``boost`` 0 keeps the order, and a candidate without a
    category is never boosted. Why: a drawing is ambiguous, its single nearest product is right about the kind of
    garment more often than the next four are (the boost is chosen on validation drawings: docs/SKETCH.md)."""
    scores = np.asarray(scores, dtype=np.float64)
    if boost < 0:
        raise ValueError("the category boost must be 0 or more")
    if len(scores) != len(categories):
        raise ValueError(f"{len(scores)} scores but {len(categories)} category entries")
    if boost == 0 or len(scores) < 2:
        return list(range(len(scores)))
    sets = [_category_set(c) for c in categories]
    bonus = np.array([boost if (s & sets[0]) else 0.0 for s in sets])
    return [int(i) for i in np.argsort(-(scores + bonus), kind="stable")]


def _category_set(value) -> frozenset:
    if value is None:
        return frozenset()
    if isinstance(value, (str, bytes, int, np.integer)):
        return frozenset([value])
    return frozenset(value)


def reranked_neighbours(queries, gallery, gallery_categories, k: int, boost: float, depth: int):
    """For evaluation without a database: the ``k`` gallery indices per query as the store's sketch search
    orders them (the ``depth`` nearest by cosine, then :func:`best_match_order`). Returns (Q, k) indices."""
    from .metrics import neighbours

    depth = max(int(depth), k)
    queries, gallery = np.asarray(queries, dtype=np.float32), np.asarray(gallery, dtype=np.float32)
    idx = neighbours(queries, gallery, min(depth, len(gallery)))
    if boost == 0:
        return idx[:, :k]
    cats = np.asarray(gallery_categories, dtype=object)
    out = np.empty((len(idx), min(k, idx.shape[1])), dtype=idx.dtype)
    for row, (query, cand) in enumerate(zip(queries, idx)):
        order = best_match_order(gallery[cand] @ query, list(cats[cand]), boost)
        out[row] = cand[order][: out.shape[1]]
    return out


def prepare(drawing, embedder, generator, sketch_embedder=None):
    """A raw drawing (any size, ink on white or transparent) normalised for each model (raises BlankSketch)."""
    direct = normalise_sketch(drawing, size=(sketch_embedder or embedder).info.image_size)
    for_gan = normalise_sketch(drawing, size=generator.image_size) if generator is not None else None
    return direct, for_gan
