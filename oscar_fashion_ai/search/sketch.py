"""Search by sketch: query expansion, and "Closer to this" (the drawing blended with a product's vector)."""

from __future__ import annotations

import numpy as np

from .. import routers
from .queries import ready_model, search_alias

#: "Closer to this product" on a sketch result: the query becomes this blend of the drawing and the product's vector.
LIKE_WEIGHT = 0.5


def like_product(value, info=None):
    """The product a sketch search should move towards (``like``: a product id) as (product id, its vector in the
    model in use); None when ``value`` is empty. Raises ValueError with a user-facing message."""
    from ..models import ProductEmbedding

    if value in (None, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        raise ValueError("like must be a product id.")
    product_id = int(value)
    info = info or ready_model()
    with routers.search_reads(search_alias()):
        row = (
            ProductEmbedding.objects.filter(
                product_id=product_id,
                product__is_public=True,
                status=ProductEmbedding.Status.INDEXED,
                model_version=info.version,
                vector__isnull=False,
            )
            .only("vector")
            .first()
        )
    if row is None:
        raise ValueError("like: no such product in the search index (it may not be indexed yet).")
    return product_id, np.asarray(row.vector, dtype=np.float32)


def blend(query, like_vector, weight: float = LIKE_WEIGHT):
    """``(1 - weight) * query + weight * like_vector``, L2-normalised (both are unit vectors)."""
    mixed = (1.0 - weight) * np.asarray(query, dtype=np.float32) + weight * np.asarray(like_vector, np.float32)
    norm = float(np.linalg.norm(mixed))
    return mixed / norm if norm > 0 else np.asarray(query, dtype=np.float32)
