"""Search over the pgvector index: queries and results (:mod:`.queries`), filters and the similarity cut-off
(:mod:`.filters`), search by photo (:mod:`.photo`) and by sketch (:mod:`.sketch`). Callers use ``search.<name>``."""

from .filters import (
    MAX_PRICE,
    NEAREST_WHEN_NOTHING_CLOSE,
    apply_min_similarity,
    category_by_slug,
    filters_from,
    parse_price,
)
from .photo import photo_vector
from .queries import (
    SearchUnavailable,
    clamp_k,
    expanded_query,
    has_vector,
    model_in_use,
    nearest,
    nearest_queryset,
    product_categories,
    ready_model,
    result_dicts,
    search_alias,
    search_by_image,
    search_session,
    similar_products,
)
from .sketch import LIKE_WEIGHT, blend, like_product

__all__ = [
    "LIKE_WEIGHT",
    "MAX_PRICE",
    "NEAREST_WHEN_NOTHING_CLOSE",
    "SearchUnavailable",
    "apply_min_similarity",
    "blend",
    "category_by_slug",
    "clamp_k",
    "expanded_query",
    "filters_from",
    "has_vector",
    "like_product",
    "model_in_use",
    "nearest",
    "nearest_queryset",
    "parse_price",
    "photo_vector",
    "product_categories",
    "ready_model",
    "result_dicts",
    "search_alias",
    "search_by_image",
    "search_session",
    "similar_products",
]
