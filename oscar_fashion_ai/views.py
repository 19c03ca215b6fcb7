"""Storefront pages and the JSON API of oscar-fashion-ai."""

import logging

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from oscar.core.loading import get_model

from . import conf, runtime, search
from .http import error, model_version, rate_limit_wait, rate_limited, too_many_message
from .uploads import BadUpload

logger = logging.getLogger(__name__)


@require_GET
def health(request):
    """Liveness probe for load balancers: database reachable, pgvector installed."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    return JsonResponse({"database": "ok", "pgvector": row[0] if row else None}, status=200 if row else 503)


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
    return JsonResponse({"results": search.result_dicts(results, request), "model_version": model_version()})


# The public search endpoints only read, but they are deliberately *not* csrf_exempt: a cross-site page could
# otherwise spend a shopper's rate-limit budget and our CPU. The sketch widget and the photo form send the token;
# API clients read the csrftoken cookie and send it as X-CSRFToken (see README, "JSON API").
@require_POST
def api_photo(request):
    limited = rate_limited("photo", request, "PHOTO_RATE_LIMIT")
    if limited:
        return limited
    try:
        k = search.clamp_k(request.POST.get("k") or request.GET.get("k"))
        filters = search.filters_from(_merged(request))
        found = _photo_search(request, k, filters)
    except (ValueError, BadUpload) as exc:
        return error(str(exc))
    except search.SearchUnavailable as exc:
        return error(str(exc), status=503)
    body = {
        "results": search.result_dicts(found["results"], request),
        "model_version": found["model_version"],
        "box": found["box"].as_dict(),
        "box_source": found["box_source"],
        "image_size": {"width": found["size"][0], "height": found["size"][1]},
        "nothing_close": found["nothing_close"],
    }
    if found["nothing_close"]:
        body["message"] = NOTHING_CLOSE
    return JsonResponse(body)


NOTHING_CLOSE = "Nothing in the shop looks close to this; here are the nearest products."


def _merged(request):
    """POST parameters, falling back to the query string (the API has always read ``k`` from either)."""
    merged = request.GET.copy()
    merged.update(request.POST)
    return merged


def _photo_search(request, k, filters):
    """Search by photo for a POST with ``image`` and optional ``box``: the shown results, whether nothing was close,
    and the box searched. Raises BadUpload/ValueError (400) and SearchUnavailable (503)."""
    from .uploads import photo_from_request

    auto = bool(conf.get("PHOTO_AUTO_CROP"))
    try:  # once per request; a bad upload is still a 400 when search is unavailable
        embedder, info = search.model_in_use()
        unavailable = None
    except search.SearchUnavailable as exc:
        embedder = info = None
        unavailable = exc
    photo = photo_from_request(
        request,
        "image",
        box=request.POST.get("box") or request.GET.get("box"),
        preset_size=_preset_size(embedder) if auto else None,
        model_size=info.image_size if info else None,
    )
    if unavailable is not None:
        raise unavailable
    vector, box, source = search.photo_vector(photo, auto_crop=auto, embedder=embedder)
    results, nothing_close = search.apply_min_similarity(
        search.nearest(vector, k, info=info, **filters), float(conf.get("PHOTO_MIN_SIMILARITY"))
    )
    return {
        "results": results,
        "nothing_close": nothing_close,
        "box": box,
        "box_source": source,
        "size": photo.size,
        "model_version": info.version,
    }


def _preset_size(embedder):
    """The decode size of an upload searched with the preset (larger with the trained locator, whose box is cropped
    from the decoded photo)."""
    from .ml.crop import PRESET_SIZE

    return runtime.get_locator(embedder).decode_size if embedder is not None else PRESET_SIZE


def _search_page_context(request):
    Category = get_model("catalogue", "Category")
    params = request.POST if request.method == "POST" else request.GET
    return {
        "categories": Category.objects.filter(depth=1, is_public=True).order_by("name"),
        "filters": {key: params.get(key, "") for key in ("category", "price_min", "price_max")},
        "currency": getattr(settings, "OSCAR_DEFAULT_CURRENCY", ""),
    }


@require_http_methods(["GET", "POST"])
def photo_search(request):
    """The search-by-photo page. A plain form POST renders the page with the results; the page's script posts the
    same form (``fragment=1``) and swaps in the results block, which carries the searched box for the crop box."""
    ctx = {
        "max_mb": int(conf.get("MAX_UPLOAD_BYTES")) // (1024 * 1024),
        "max_bytes": int(conf.get("MAX_UPLOAD_BYTES")),
        "searched": False,
        "products": [],
        **_search_page_context(request),
    }
    fragment = request.method == "POST" and request.POST.get("fragment") == "1"
    template = "oscar_fashion_ai/partials/photo_results.html" if fragment else "oscar_fashion_ai/photo_search.html"
    status = 200
    if request.method == "POST":
        # The form runs the same model as the API, so it shares the API's per-client budget.
        wait = rate_limit_wait("photo", request, "PHOTO_RATE_LIMIT")
        if wait is not None:
            ctx["error"] = too_many_message(wait)
            response = render(request, template, ctx, status=429)
            response["Retry-After"] = str(wait)
            return response
        try:
            found = _photo_search(request, int(conf.get("DEFAULT_K")), search.filters_from(request.POST))
            ctx.update(
                products=[p for p, _ in found["results"]],
                searched=True,
                nothing_close=found["nothing_close"],
                box=found["box"],
                box_source=found["box_source"],
                image_size=found["size"],
            )
        except (BadUpload, ValueError) as exc:
            ctx["error"], status = str(exc), 400
        except search.SearchUnavailable as exc:
            logger.error("Fashion AI: photo search unavailable: %s", exc)
            ctx["error"], status = "Search by photo is temporarily unavailable.", 503
    ctx["nothing_close_message"] = NOTHING_CLOSE
    return render(request, template, ctx, status=status)


@require_GET
def more_like_this(request, pk):
    """ "More like this" from a product card: the products that look like it, with the search filters."""
    Product = get_model("catalogue", "Product")
    product = Product.objects.filter(pk=pk, is_public=True).first()
    ctx = {"product": product, "products": [], **_search_page_context(request)}
    status = 200
    if product is None:
        ctx["error"], status = "No such product.", 404
    else:
        try:
            filters = search.filters_from(request.GET)
            ctx["products"] = [p for p, _ in search.similar_products(product, int(conf.get("DEFAULT_K")), **filters)]
            ctx["indexed"] = search.has_vector(product)
        except ValueError as exc:
            ctx["error"], status = str(exc), 400
        except search.SearchUnavailable as exc:
            logger.error("Fashion AI: more like this unavailable: %s", exc)
            ctx["error"], status = "Similar products are temporarily unavailable.", 503
    return render(request, "oscar_fashion_ai/more_like_this.html", ctx, status=status)


# --- Search by sketch -------------------------------------------------------------------------


@require_POST
def api_sketch(request):
    """Drawing -> normalised line drawing -> (generator ->) Image2Vec -> nearest products.

    The pipeline is ``FASHION_AI["SKETCH_PIPELINE"]``; without a usable generator it falls back to ``direct``.
    ``generated_image`` is the generator's picture of the drawing ("what we understood"), or the normalised
    drawing when there is no generator (``generated_by`` says which). ``like`` (a product id, optional) moves the
    search towards that product: "closer to this" on a result blends its vector with the drawing's."""
    import base64
    import io

    from . import runtime
    from .ml import sketch_pipeline
    from .ml.sketch_input import BlankSketch
    from .uploads import sketch_from_request

    limited = rate_limited("sketch", request, "SKETCH_RATE_LIMIT")
    if limited:
        return limited
    try:
        img, extra = sketch_from_request(request)
        k = search.clamp_k(extra.get("k") if hasattr(extra, "get") else None)
        filters = search.filters_from(extra)
    except (BadUpload, ValueError) as exc:
        return error(str(exc))
    try:
        # once per request, before spending CPU: the model loads and the index was built by it
        embedder, info = search.model_in_use()
        like = search.like_product(extra.get("like") if hasattr(extra, "get") else None, info=info)
    except ValueError as exc:
        return error(str(exc))
    except search.SearchUnavailable as exc:
        return error(str(exc), status=503)
    sketch_embedder = runtime.get_sketch_embedder(embedder)
    generator = runtime.get_generator()
    pipeline = conf.get("SKETCH_PIPELINE") if generator is not None else "direct"
    try:
        direct, for_gan = sketch_pipeline.prepare(img, embedder, generator, sketch_embedder)
    except BlankSketch as exc:
        return JsonResponse(
            {"results": [], "error": str(exc), "blank": True, "generated_image": None, "model_version": info.version},
            status=400,
        )
    vecs, generated = sketch_pipeline.vectors(
        embedder, generator, [direct], [for_gan], pipeline, float(conf.get("SKETCH_FUSION_WEIGHT")), sketch_embedder
    )
    if generated is None and generator is not None:
        generated = generator.generate([for_gan])  # shown to the shopper even when the search embeds directly
    try:
        query = search.expanded_query(vecs[0], int(conf.get("SKETCH_QUERY_EXPANSION")), info=info, **filters)
        exclude = ()
        if like is not None:
            query, exclude = search.blend(query, like[1]), (like[0],)
        results = search.nearest(
            query,
            k,
            exclude_ids=exclude,
            category_boost=float(conf.get("SKETCH_CATEGORY_BOOST")),
            depth=int(conf.get("SKETCH_RERANK_DEPTH")),
            info=info,
            **filters,
        )
        results, nothing_close = search.apply_min_similarity(results, float(conf.get("SKETCH_MIN_SIMILARITY")))
    except search.SearchUnavailable as exc:
        return error(str(exc), status=503)
    buf = io.BytesIO()
    (generated[0] if generated else direct).save(buf, "PNG")
    body = {
        "results": search.result_dicts(results, request),
        "generated_image": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
        "generated_by": "generator" if generated else "normalised drawing",
        "pipeline": pipeline,
        "model_version": info.version,
        "nothing_close": nothing_close,
    }
    if nothing_close:
        body["message"] = NOTHING_CLOSE
    return JsonResponse(body)


@require_GET
def sketch_search(request):
    return render(request, "oscar_fashion_ai/sketch_search.html", _search_page_context(request))
