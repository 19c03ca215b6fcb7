"""From a shopper's drawing to a search vector, three ways (measured against each other by
``fashion_evaluate --task sketch``):

* ``direct``: embed the normalised drawing itself (the embedder is trained on drawings and photos jointly);
* ``gan``: turn the drawing into a product-like photo with the pix2pix generator, embed that;
* ``fusion``: the normalised sum of the two unit vectors, weighted by ``fusion_weight`` (share of the GAN).
"""

from __future__ import annotations

import numpy as np

from .sketch_input import normalise_sketch

PIPELINES = ("direct", "gan", "fusion")


def _unit(v):
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def vectors(embedder, generator, direct_drawings, gan_drawings, pipeline: str, fusion_weight: float = 0.5):
    """Search vectors for drawings already normalised at each model's size. Returns (vectors, generated images).

    ``generator`` may be None for ``direct``; ``gan_drawings`` is then ignored."""
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown sketch pipeline {pipeline!r}; use one of {', '.join(PIPELINES)}")
    generated = generator.generate(gan_drawings) if (generator is not None and pipeline != "direct") else None
    if pipeline == "direct":
        return embedder.embed_images(direct_drawings), generated
    gan_vecs = embedder.embed_images(generated)
    if pipeline == "gan":
        return gan_vecs, generated
    direct = embedder.embed_images(direct_drawings)
    return _unit((1 - fusion_weight) * direct + fusion_weight * gan_vecs), generated


def prepare(drawing, embedder, generator):
    """A raw drawing (any size, ink on white or transparent) normalised for each model (raises BlankSketch)."""
    direct = normalise_sketch(drawing, size=embedder.info.image_size)
    for_gan = normalise_sketch(drawing, size=generator.image_size) if generator is not None else None
    return direct, for_gan
