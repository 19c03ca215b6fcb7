"""Search by photo: the vector of an uploaded photo, of the shopper's box, the preset crop or the whole photo."""

from __future__ import annotations

from .. import runtime
from .queries import model_in_use


def photo_vector(photo, auto_crop: bool = True, embedder=None):
    """The search vector of an uploaded photo (:class:`oscar_fashion_ai.uploads.Photo`), the box it stands for
    (pixels of ``photo.size``) and where the box came from: ``"request"`` (the shopper's box, cropped and
    embedded), ``"preset"`` (:func:`oscar_fashion_ai.runtime.get_locator`) or ``"whole"``. ``embedder``: the
    model in use, as :func:`model_in_use` returned it (looked up when not given)."""
    from ..ml import crop

    if embedder is None:
        embedder, _ = model_in_use()
    width, height = photo.size
    if photo.box is not None and not photo.box.covers(width, height):
        vector = embedder.embed_images([crop.crop_image(photo.image, photo.box, photo.size)])[0]
        return vector, photo.box, "request"
    if photo.box is None and auto_crop:
        located = runtime.get_locator(embedder).locate(photo.image)
        sx, sy = width / photo.image.width, height / photo.image.height
        x, y, w, h = located.box.scaled(sx, sy)
        left, top = max(0, int(round(x))), max(0, int(round(y)))
        box = crop.Box(
            left, top, max(1, min(width, int(round(x + w))) - left), max(1, min(height, int(round(y + h))) - top)
        )
        return located.vector, box, "preset"
    return embedder.embed_images([photo.image])[0], crop.Box(0, 0, width, height), "whole"
