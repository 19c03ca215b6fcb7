"""A small fixed-window, per-client rate limit on the shared Django cache (Redis in production)."""

from __future__ import annotations

import time

from django.core.cache import cache


def client_id(request) -> str:
    """The client's address. Behind a proxy, set ``FASHION_AI["TRUSTED_PROXY_HEADER"]`` (e.g. HTTP_X_REAL_IP)."""
    from . import conf

    header = conf.get("TRUSTED_PROXY_HEADER")
    if header and request.META.get(header):
        return request.META[header].split(",")[0].strip()
    return request.META.get("REMOTE_ADDR", "unknown")


def parse_rate(rate: str) -> tuple[int, int]:
    """ "30/min" -> (30, 60)."""
    count, _, period = str(rate).partition("/")
    seconds = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}[period.strip()]
    return int(count), seconds


def hit(scope: str, request, rate: str | None) -> int | None:
    """Count one request; return seconds to wait if over the limit, else None. ``rate=None`` disables it."""
    if not rate:
        return None
    limit, period = parse_rate(rate)
    window = int(time.time() // period)
    key = f"fashion_ai:rl:{scope}:{client_id(request)}:{window}"
    cache.add(key, 0, period + 1)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, period + 1)
        count = 1
    if count > limit:
        return period - int(time.time()) % period
    return None
