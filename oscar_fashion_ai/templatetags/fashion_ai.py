"""Template tags a shop drops into its own templates.

``{% load fashion_ai %}{% fashion_similar_products product %}`` renders the "Similar products" section;
it renders nothing (and logs once per cause) when there is no index or model, never an error page.
"""

import logging

from django import template

from .. import conf, search

register = template.Library()
logger = logging.getLogger(__name__)


@register.inclusion_tag("oscar_fashion_ai/partials/similar_products.html", takes_context=True)
def fashion_similar_products(context, product, k=None):
    k = int(k or conf.get("SIMILAR_PRODUCTS"))
    results = []
    if k > 0 and product is not None:
        try:
            results = search.similar_products(product, k)
        except search.SearchUnavailable as exc:
            logger.warning("Fashion AI: similar products hidden: %s", exc)
        except Exception:  # the product page must render regardless
            logger.exception("Fashion AI: similar products failed")
    return {"products": [p for p, _ in results], "request": context.get("request")}
