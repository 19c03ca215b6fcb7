"""Personalisation views: the homepage with "Recommended for you", the recommendations and events APIs, and
"Forget my style profile". Loaded the Oscar way by the app config (``oscar_fashion_ai.loading``)."""

import json
import logging

from django.http import JsonResponse
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST
from oscar.core.loading import get_model

from .. import conf, search
from ..http import error, model_version, rate_limited
from . import preferences

logger = logging.getLogger(__name__)


def _recommendations(request, k):
    # With personalisation off everyone gets the popular products (existing profiles are not read).
    owner = preferences.owner_for_request(request) if conf.get("PERSONALISATION") else None
    return preferences.recommend(owner, k)


@require_GET
@ensure_csrf_cookie  # headless clients read the csrftoken cookie from here to POST /api/events/
def api_recommendations(request):
    try:
        k = search.clamp_k(request.GET.get("k"))
    except ValueError as exc:
        return error(str(exc))
    results, source = _recommendations(request, k)
    rows = search.result_dicts(results, request)
    for row, (product, _) in zip(rows, results):  # why each product is there ("because you looked at ...")
        row["reason"] = getattr(product, "fashion_reason", None)
    response = JsonResponse({"results": rows, "source": source, "model_version": model_version()})
    response["Cache-Control"] = "private, no-store"
    return response


#: Kinds a client may record itself. Basket additions and orders come from Oscar's own signals (which
#: django-oscar-api fires too); only product views have no signal in a headless shop.
CLIENT_EVENT_KINDS = ("view",)


@require_POST
def api_record_event(request):
    """Record that the current shopper (session or user) viewed a product: for headless shops whose storefront
    does not render Oscar's product page (django-oscar-api sends no ``product_viewed``).

    JSON ``{"product_id": 12}`` or form field ``product_id``; optional ``"kind": "view"`` (the only kind accepted).
    CSRF applies as to any Django POST: send the ``csrftoken`` cookie's value as ``X-CSRFToken`` (the cookie is
    set by ``GET /fashion-ai/api/recommendations/``). Returns 201 with ``{"recorded": true, ...}``; with
    ``PERSONALISATION`` off, 200 with ``{"recorded": false, ...}``. Unlike Oscar's product page, it records the
    first view of a new session too: a cross-site or cookie-less client cannot pass the CSRF check."""
    limited = rate_limited("events", request, "EVENT_RATE_LIMIT")
    if limited:
        return limited
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return error("The body is not valid JSON.")
        if not isinstance(data, dict):
            return error('Send a JSON object such as {"product_id": 12}.')
    else:
        data = request.POST
    kind = data.get("kind") or "view"
    if kind not in CLIENT_EVENT_KINDS:
        return error(
            f"kind must be one of {', '.join(CLIENT_EVENT_KINDS)}; basket additions and orders are "
            "recorded from Oscar's signals."
        )
    raw = data.get("product_id")
    if isinstance(raw, bool) or raw in (None, ""):
        return error("product_id is required.")
    try:
        product_id = int(str(raw).strip())
    except (TypeError, ValueError):
        return error("product_id must be a whole number.")
    Product = get_model("catalogue", "Product")
    if not Product.objects.filter(pk=product_id, is_public=True).exists():
        return error("No such product.", status=404)
    if not conf.get("PERSONALISATION"):
        return JsonResponse(
            {
                "recorded": False,
                "product_id": product_id,
                "kind": kind,
                "reason": "Personalisation is off (FASHION_AI['PERSONALISATION']).",
            }
        )
    owner = preferences.owner_for_request(request, create=True)
    if owner is None:
        return error("No session: enable Django's session middleware (or log in).")
    preferences.record_event(owner, product_id, kind)
    return JsonResponse({"recorded": True, "product_id": product_id, "kind": kind}, status=201)


@require_GET
def home(request):
    """The storefront homepage: "Recommended for you" for shoppers with a profile, bestsellers otherwise."""
    k = int(conf.get("HOMEPAGE_RECOMMENDATIONS"))
    try:
        results, source = _recommendations(request, k)
    except Exception:  # the homepage must render whatever happens
        logger.exception("Fashion AI: homepage recommendations failed; showing the fallback")
        try:
            results, source = preferences.fallback_products(k), "fallback"
        except Exception:  # noqa: BLE001
            results, source = [], "fallback"
    owner = preferences.owner_for_request(request)
    pref = preferences.get_preference(owner)
    fragment_key = None
    if source == "personal" and pref is not None:
        # The rendered grid is cached per shopper and profile version (it holds this shopper's CSRF token).
        fragment_key = f"{owner.cache_key}:{pref.event_count}:{pref.date_updated.timestamp()}"
    grid_html = None
    if source == "fallback" and not request.user.is_authenticated and results:
        grid_html = _shared_grid(request, [p for p, _ in results])
    response = render(
        request,
        "oscar_fashion_ai/home.html",
        {
            "recommended": [p for p, _ in results],
            "personal": source == "personal",
            "has_profile": pref is not None,
            "fragment_key": fragment_key,
            "grid_html": grid_html,
            "fragment_seconds": int(conf.get("RECOMMENDATION_CACHE_SECONDS")),
        },
    )
    response["Cache-Control"] = "private, no-store"
    return response


_CSRF_PLACEHOLDER = "fashion-ai-csrf-placeholder-3f9c"


def _shared_grid(request, products):
    """The anonymous "Popular right now" grid, rendered once per product list and language and shared by every
    anonymous visitor: Oscar's product cards hold an add-to-basket form, so the cached HTML carries a placeholder
    where each visitor's own CSRF token is put back in."""
    from django.core.cache import cache
    from django.middleware.csrf import get_token
    from django.template.loader import render_to_string
    from django.utils import translation
    from django.utils.safestring import mark_safe

    key = f"fashion_ai:home-grid:{translation.get_language()}:{','.join(str(p.pk) for p in products)}"
    html = cache.get(key)
    if html is None:
        html = render_to_string(
            "oscar_fashion_ai/partials/product_grid.html",
            {"recommended": products, "csrf_token": _CSRF_PLACEHOLDER},
            request=request,
        )
        cache.set(key, html, int(conf.get("RECOMMENDATION_CACHE_SECONDS")))
    return mark_safe(html.replace(_CSRF_PLACEHOLDER, get_token(request)))


@require_POST
def forget_profile(request):
    """ "Forget my style profile": deletes the shopper's events and preference vector."""
    from django.contrib import messages
    from django.shortcuts import redirect

    owner = preferences.owner_for_request(request)
    if owner is not None:
        preferences.forget(owner)
    messages.success(request, "Your style profile has been deleted.")
    target = request.POST.get("next", "").strip()
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = "/"
    return redirect(target)
