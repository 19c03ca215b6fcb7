"""Django system checks for the search settings of ``FASHION_AI`` (``manage.py check`` and every server start):
a bad value is reported with what is allowed, instead of failing a shopper's search later."""

from __future__ import annotations

from numbers import Real
from os import PathLike
from pathlib import Path

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


def _rate(name):
    from .ratelimit import parse_rate

    value = conf.get(name)
    if value is None:
        return []
    try:
        count, _ = parse_rate(value)
        if count < 1:
            raise ValueError
    except (KeyError, ValueError, TypeError):
        return [checks.Error(f"FASHION_AI[{name!r}] is {value!r}; use e.g. '120/min' ('N/s', 'N/min', 'N/hour') "
                             "or None to disable.", id="oscar_fashion_ai.E006")]
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
    errors += _number("ADAPT_MAX_MINUTES", 1, 10_000)
    for name in ("QUEUE", "TRAINING_QUEUE"):
        if not isinstance(conf.get(name), str) or not conf.get(name).strip():
            errors.append(checks.Error(f"FASHION_AI[{name!r}] is {conf.get(name)!r}; it must be a Celery queue name.",
                                       hint=f"Default: {conf.DEFAULTS[name]!r}.", id="oscar_fashion_ai.E006"))
    models_dir = conf.get("MODELS_DIR")
    if models_dir is not None and not isinstance(models_dir, (str, PathLike)):
        errors.append(checks.Error(f"FASHION_AI['MODELS_DIR'] is {models_dir!r}; it must be a folder path or None.",
                                   id="oscar_fashion_ai.E007"))
    elif models_dir is not None and Path(models_dir).exists() and not Path(models_dir).is_dir():
        errors.append(checks.Error(f"FASHION_AI['MODELS_DIR'] ({models_dir}) is a file, not a folder.",
                                   id="oscar_fashion_ai.E007"))
    errors += _number("PREFERENCE_MAX_INTERESTS", 1, 20, integer=True)
    errors += _number("PREFERENCE_INTEREST_SIMILARITY", -1, 1)
    errors += _number("RECOMMENDATION_MIN_INTEREST_SHARE", 0, 1)
    errors += _number("RECOMMENDATION_DIVERSITY", 0, 1)
    errors += _number("RECOMMENDATION_CANDIDATES_PER_SLOT", 1, 50, integer=True)
    errors += _rate("EVENT_RATE_LIMIT")
    pipeline = conf.get("SKETCH_PIPELINE")
    if pipeline not in PIPELINES:
        errors.append(checks.Error(f"FASHION_AI['SKETCH_PIPELINE'] is {pipeline!r}; use one of {', '.join(PIPELINES)}.",
                                   id="oscar_fashion_ai.E002"))
    return errors


@checks.register()
def check_install_settings(app_configs=None, **kwargs):
    """The switches and folders of ``FASHION_AI`` (see README, "Installing into your own Oscar shop")."""
    from pathlib import PurePath

    from django.conf import settings

    errors = []
    value = conf.get("PERSONALISATION")
    if not isinstance(value, bool):
        errors.append(checks.Error(f"FASHION_AI['PERSONALISATION'] is {value!r}; it must be True or False.",
                                   hint="Default: True (see oscar_fashion_ai/conf.py).", id="oscar_fashion_ai.E003"))
    for name in ("DATA_DIR", "CACHE_DIR"):
        value = conf.get(name)
        if value is not None and not isinstance(value, (str, PurePath)):
            errors.append(checks.Error(f"FASHION_AI[{name!r}] is {value!r}; it must be a folder path or None.",
                                       hint="Default: None (see oscar_fashion_ai/conf.py).",
                                       id="oscar_fashion_ai.E004"))
    if not errors:
        from pathlib import Path

        for name, folder in (("DATA_DIR", conf.data_dir()), ("CACHE_DIR", conf.cache_dir())):
            for served in ("MEDIA_ROOT", "STATIC_ROOT"):
                root = getattr(settings, served, None)
                if root and Path(folder).resolve().is_relative_to(Path(root).resolve()):
                    errors.append(checks.Error(
                        f"FASHION_AI[{name!r}] ({folder}) is inside {served} ({root}): its files would be served "
                        "to anyone.", hint="Use a folder outside MEDIA_ROOT and STATIC_ROOT.",
                        id="oscar_fashion_ai.E005"))
    return errors
