"""What the plugin's views share: JSON error answers, the per-client rate limit and the model version that every
JSON answer carries."""

from __future__ import annotations

from django.http import JsonResponse

from . import conf


def error(message, status=400) -> JsonResponse:
    """A JSON error answer: ``{"error": message}``."""
    return JsonResponse({"error": message}, status=status)


def model_version() -> str | None:
    """The version of the model in use, or None when it cannot be loaded (the answer is sent all the same)."""
    from . import runtime

    try:
        return runtime.model_info().version
    except Exception:  # noqa: BLE001
        return None


def rate_limit_wait(scope: str, request, setting: str) -> int | None:
    """Count one request of ``scope`` against the client's budget (the rate ``conf.get(setting)``, e.g.
    ``PHOTO_RATE_LIMIT``): None while within it, else the seconds to wait."""
    from . import ratelimit

    return ratelimit.hit(scope, request, conf.get(setting))


def too_many_message(wait: int) -> str:
    return f"Too many searches: please wait {wait} seconds and try again."


def rate_limited(scope: str, request, setting: str) -> JsonResponse | None:
    """None while the client is within its budget (see :func:`rate_limit_wait`), else the 429 answer with
    ``Retry-After``."""
    wait = rate_limit_wait(scope, request, setting)
    if wait is None:
        return None
    response = error(too_many_message(wait), status=429)
    response["Retry-After"] = str(wait)
    return response
