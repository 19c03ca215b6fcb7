"""Storefront pages and the JSON API of oscar-fashion-ai."""

import logging

from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from oscar.core.loading import get_model

from . import conf, search
from .uploads import BadUpload, image_from_request

logger = logging.getLogger(__name__)


def error(message, status=400):
    return JsonResponse({"error": message}, status=status)


@require_GET
def health(request):
    """Liveness probe for load balancers: database reachable, pgvector installed."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    return JsonResponse({"database": "ok", "pgvector": row[0] if row else None}, status=200 if row else 503)


def _model_version():
    from . import embedding

    try:
        return embedding.model_info().version
    except Exception:  # noqa: BLE001
        return None


@require_GET
def api_similar(request, pk):
    try:
        k = search.clamp_k(request.GET.get("k"))
    except ValueError as exc:
        return error(str(exc))
    Product = get_model("catalogue", "Product")
    product = Product.objects.filter(pk=pk, is_public=True).first()
    if product is None:
        return error("No such product.", status=404)
    try:
        results = search.similar_products(product, k)
    except search.SearchUnavailable as exc:
        return error(str(exc), status=503)
    return JsonResponse({"results": search.result_dicts(results, request), "model_version": _model_version()})


@require_POST
def api_photo(request):
    try:
        k = search.clamp_k(request.POST.get("k") or request.GET.get("k"))
        category = search.category_by_slug(request.POST.get("category") or request.GET.get("category"))
        image = image_from_request(request, "image")
    except (ValueError, BadUpload) as exc:
        return error(str(exc))
    try:
        results = search.search_by_image(image, k, category=category)
    except search.SearchUnavailable as exc:
        return error(str(exc), status=503)
    return JsonResponse({"results": search.result_dicts(results, request), "model_version": _model_version()})


@require_http_methods(["GET", "POST"])
def photo_search(request):
    ctx = {"max_mb": int(conf.get("MAX_UPLOAD_BYTES")) // (1024 * 1024), "searched": False, "products": []}
    status = 200
    if request.method == "POST":
        try:
            image = image_from_request(request, "image")
            ctx["products"] = [p for p, _ in search.search_by_image(image, int(conf.get("DEFAULT_K")))]
            ctx["searched"] = True
        except BadUpload as exc:
            ctx["error"], status = str(exc), 400
        except search.SearchUnavailable as exc:
            logger.error("Fashion AI: photo search unavailable: %s", exc)
            ctx["error"], status = "Search by photo is temporarily unavailable.", 503
    return render(request, "oscar_fashion_ai/photo_search.html", ctx, status=status)
