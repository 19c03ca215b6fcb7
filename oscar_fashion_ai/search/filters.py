"""Search filters (category, price range) from request parameters, and the minimum-similarity cut-off."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from oscar.core.loading import get_model


def category_by_slug(slug):
    if not slug:
        return None
    Category = get_model("catalogue", "Category")
    category = Category.objects.filter(slug=slug).first()
    if category is None:
        raise ValueError(f"Unknown category {slug!r}.")
    return category


# --- search by photo: the crop box, filters, the minimum similarity -------------------------------------------


#: How many products "nothing close, here are the nearest" shows when no result reaches the minimum similarity.
NEAREST_WHEN_NOTHING_CLOSE = 4


MAX_PRICE = Decimal("1000000000")


def parse_price(value, name: str):
    """A user-supplied price bound (``None`` when empty). Raises ValueError with a user-facing message."""
    if value in (None, ""):
        return None
    try:
        price = Decimal(str(value).strip().replace(",", "."))
    except (InvalidOperation, ValueError):
        raise ValueError(f"{name} must be a price such as 25 or 19.99.") from None
    if not price.is_finite() or price < 0 or price > MAX_PRICE:
        raise ValueError(f"{name} must be a price from 0 to {MAX_PRICE:,}.")
    return price


def filters_from(params) -> dict:
    """``category`` (slug), ``price_min`` and ``price_max`` from request parameters (a QueryDict or a dict) as
    keyword arguments of :func:`nearest`. Raises ValueError with a user-facing message."""
    get = params.get if hasattr(params, "get") else (lambda key: None)
    category = get("category")
    if category is not None and not isinstance(category, str):
        raise ValueError("category must be a category slug.")
    low, high = parse_price(get("price_min"), "price_min"), parse_price(get("price_max"), "price_max")
    if low is not None and high is not None and low > high:
        raise ValueError("price_min must not be larger than price_max.")
    return {
        "category": category_by_slug(category),
        "price_range": (low, high) if low is not None or high is not None else None,
    }


def apply_min_similarity(results, minimum: float):
    """(shown results, nothing_close): the results at or above ``minimum`` similarity; when none is, the few
    nearest, flagged, so that a weak match is never presented as a match."""
    if not minimum:
        return list(results), False
    close = [(product, score) for product, score in results if score >= minimum]
    if close or not results:
        return close, False
    return list(results)[:NEAREST_WHEN_NOTHING_CLOSE], True
