"""Django system checks for the search settings of ``FASHION_AI`` (``manage.py check`` and every server start):
a bad value is reported with what is allowed, instead of failing a shopper's search later."""

from __future__ import annotations

from numbers import Real

from django.core import checks

from . import conf


def _number(name, low, high, integer=False):
    value = conf.get(name)
    kind = int if integer else Real
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        what = "a whole number" if integer else "a number"
        return [checks.Error(f"FASHION_AI[{name!r}] is {value!r}; it must be {what} from {low} to {high}.",
                             hint=f"Default: {conf.DEFAULTS[name]!r} (see oscar_fashion_ai/conf.py).",
                             id="oscar_fashion_ai.E001")]
    return []


@checks.register()
def check_search_settings(app_configs=None, **kwargs):
    from .ml.sketch_pipeline import PIPELINES

    errors = []
    errors += _number("DEFAULT_K", 1, 10_000, integer=True)
    errors += _number("MAX_K", 1, 10_000, integer=True)
    errors += _number("SKETCH_FUSION_WEIGHT", 0, 1)
    errors += _number("SKETCH_QUERY_EXPANSION", 0, 100, integer=True)
    errors += _number("SKETCH_CATEGORY_BOOST", 0, 1)
    errors += _number("SKETCH_RERANK_DEPTH", 1, 1000, integer=True)
    pipeline = conf.get("SKETCH_PIPELINE")
    if pipeline not in PIPELINES:
        errors.append(checks.Error(f"FASHION_AI['SKETCH_PIPELINE'] is {pipeline!r}; use one of {', '.join(PIPELINES)}.",
                                   id="oscar_fashion_ai.E002"))
    return errors


@checks.register()
def check_photo_search_settings(app_configs=None, **kwargs):
    errors = _number("PHOTO_MIN_SIMILARITY", 0, 1) + _number("SKETCH_MIN_SIMILARITY", 0, 1)
    if not isinstance(conf.get("PHOTO_AUTO_CROP"), bool):
        errors.append(checks.Error(f"FASHION_AI['PHOTO_AUTO_CROP'] is {conf.get('PHOTO_AUTO_CROP')!r}; use True or "
                                   "False.", id="oscar_fashion_ai.E019"))
    return errors
