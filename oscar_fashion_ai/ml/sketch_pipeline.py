"""From a shopper's drawing to a search vector, three ways (measured against each other by
``fashion_evaluate --task sketch``):

* ``direct``: embed the normalised drawing itself (the embedder is trained on drawings and photos jointly);
* ``gan``: turn the drawing into a product-like photo with the pix2pix generator, embed that;
* ``fusion``: the normalised sum of the two unit vectors, weighted by ``fusion_weight`` (share of the GAN).

Drawings are embedded by the sketch encoder (a network trained to map drawings into the photo model's vector
space, :mod:`.train_sketch_encoder`) when there is one, else by the photo model. :func:`expand_query` is the
optional second step: search again with the drawing's vector plus its nearest product vectors.
"""

from __future__ import annotations

import numpy as np

from .sketch_input import normalise_sketch

PIPELINES = ("direct", "gan", "fusion")


def _unit(v):
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def vectors(embedder, generator, direct_drawings, gan_drawings, pipeline: str, fusion_weight: float = 0.5,
            sketch_embedder=None):
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


def expand_query(queries, neighbours, alpha: float = 3.0):
    """Alpha query expansion (Radenovic et al., 2018): each query plus its nearest gallery vectors, weighted
    by their similarity to the query to the power ``alpha``, normalised.

    ``queries`` (Q, D) unit vectors, ``neighbours`` (Q, n, D) the gallery vectors nearest to each query."""
    queries = np.asarray(queries, dtype=np.float32)
    neighbours = np.asarray(neighbours, dtype=np.float32)
    if neighbours.size == 0:
        return queries
    weights = np.clip(np.einsum("qd,qnd->qn", queries, neighbours), 0, None) ** alpha
    return _unit(queries + (weights[..., None] * neighbours).sum(axis=1))


def prepare(drawing, embedder, generator, sketch_embedder=None):
    """A raw drawing (any size, ink on white or transparent) normalised for each model (raises BlankSketch)."""
    direct = normalise_sketch(drawing, size=(sketch_embedder or embedder).info.image_size)
    for_gan = normalise_sketch(drawing, size=generator.image_size) if generator is not None else None
    return direct, for_gan
