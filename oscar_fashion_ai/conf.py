"""The one place that documents the plugin's settings.

A shop overrides any of these with a ``FASHION_AI`` dict in its Django settings;
keys it leaves out keep the defaults below. Read settings with :func:`get`.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

#: Default location of the CC0 clothing data set, relative to the project root.
DEFAULT_DATASET = Path("..") / "shared" / "datasets" / "clothing-dataset"

DEFAULTS: dict[str, object] = {
    # Catalog import ---------------------------------------------------------
    # Where `fashion_load_catalog` reads from when --source is not given.
    # None means: the FASHION_AI_DATASET environment variable, else
    # ../shared/datasets/clothing-dataset when it exists.
    "DATASET_PATH": None,
    # Labels that are not product categories and are skipped on import.
    "IGNORED_LABELS": ("Not sure", "Skip", "Other"),
    # Name of the Oscar product class imported products belong to.
    "PRODUCT_CLASS": "Clothing",
    # Name of the partner that holds imported stock records.
    "PARTNER": "Fashion AI Demo",
    # Currency of imported prices.
    "CURRENCY": "EUR",
    # Image2Vec ---------------------------------------------------------------
    # Embedding backbone name (see oscar_fashion_ai.ml.backbones).
    "EMBEDDER": "lite0-fashion",
    # Weights file for the embedder; None uses the weights shipped in the package.
    "EMBEDDER_WEIGHTS": None,
    # torch intra-op threads for inference in web and worker processes (0 = torch default).
    "TORCH_THREADS": 0,
    # Images per forward pass in the indexing task.
    "BATCH_SIZE": 32,
    # Default and maximum number of results returned by the search endpoints.
    "DEFAULT_K": 12,
    "MAX_K": 100,
    # Largest accepted upload in bytes, and largest accepted image in pixels.
    "MAX_UPLOAD_BYTES": 10 * 1024 * 1024,
    "MAX_IMAGE_PIXELS": 40_000_000,
    # Number of similar products shown on the product page (0 hides the section).
    "SIMILAR_PRODUCTS": 8,
    # Celery queue the indexing tasks go to.
    "QUEUE": "celery",
    # Search by sketch / photo ---------------------------------------------------
    # Per-client rate limits ("N/s", "N/min", "N/hour"; None disables).
    "SKETCH_RATE_LIMIT": "30/min",
    "PHOTO_RATE_LIMIT": "30/min",
    # META key of a trusted proxy's client-address header (e.g. "HTTP_X_REAL_IP"); None uses REMOTE_ADDR.
    "TRUSTED_PROXY_HEADER": None,
    # Largest accepted drawing, in pixels per side.
    "MAX_SKETCH_SIDE": 2048,
    # How a drawing becomes a search vector: "direct" (embed the drawing), "gan" (embed the generator's
    # product-like image) or "fusion" (both, weighted by SKETCH_FUSION_WEIGHT = share of the GAN). The default
    # was chosen by `fashion_evaluate --task sketch --pipeline all` (README, "Search by sketch").
    "SKETCH_PIPELINE": "direct",
    "SKETCH_FUSION_WEIGHT": 0.5,
    # Weights file for the sketch encoder, the network that embeds drawings into the photo model's vector space
    # (fashion_train_sketch_encoder). None uses the one shipped in the package. It is used only with the photo
    # model it was trained for; otherwise (or when it is missing) drawings go through the photo model itself.
    "SKETCH_ENCODER_WEIGHTS": None,
    # Query expansion for search by sketch: after a first search, search again with the drawing's vector plus
    # its N nearest product vectors (weighted by similarity^3). 0 turns it off. See README, "Search by sketch".
    "SKETCH_QUERY_EXPANSION": 0,
    # Sketch results follow the best match's category: among the SKETCH_RERANK_DEPTH nearest products, those
    # sharing a category with the nearest one get this much added to their cosine similarity (0 turns it off).
    # Chosen on half of the test split, confirmed on the other half (README, "Search by sketch").
    "SKETCH_CATEGORY_BOOST": 0.05,
    "SKETCH_RERANK_DEPTH": 20,
    # Weights file for the sketch-to-photo generator; None uses the generator shipped in the package.
    "SKETCH_GENERATOR_WEIGHTS": None,
    # Search by photo without a box from the shopper: preset the crop box to the most likely garment region
    # (oscar_fashion_ai.ml.crop, chosen by benchmarks/photo_crop.py; docs/PHOTO_SEARCH.md). False searches the whole
    # photo, as before.
    "PHOTO_AUTO_CROP": True,
    # Results less similar than this (cosine similarity, 0..1) are not shown as matches: when none reaches it, the
    # page says "nothing close" and shows the nearest few. 0 turns it off. It depends on the model: the default was
    # measured for the shipped one (benchmarks/photo_crop.py). SKETCH_MIN_SIMILARITY does the same for drawings
    # (off: not measured for drawings).
    "PHOTO_MIN_SIMILARITY": 0.0,
    "SKETCH_MIN_SIMILARITY": 0.0,
    # Personalisation ----------------------------------------------------------
    # Weight of each kind of event in the preference vector.
    "PREFERENCE_WEIGHTS": {"view": 1.0, "basket": 3.0, "order": 5.0},
    # Half-life of an event's influence, in days.
    "PREFERENCE_HALF_LIFE_DAYS": 14.0,
    # Anonymous profiles (and their events) older than this are deleted by fashion_cleanup_preferences.
    "ANONYMOUS_PROFILE_DAYS": 30,
    # At most this many recommended products per category (None = no limit).
    "RECOMMENDATION_MAX_PER_CATEGORY": None,
    # How long a shopper's recommendations are cached (they are invalidated on every profile update).
    "RECOMMENDATION_CACHE_SECONDS": 60,
    # Number of products in the homepage's "Recommended for you".
    "HOMEPAGE_RECOMMENDATIONS": 12,
}


def get(name: str):
    """Return the value of one ``FASHION_AI`` setting, falling back to its default."""
    if name not in DEFAULTS:
        raise KeyError(f"Unknown FASHION_AI setting {name!r}; known: {', '.join(sorted(DEFAULTS))}")
    overrides = getattr(settings, "FASHION_AI", {}) or {}
    return overrides.get(name, DEFAULTS[name])


def dataset_path() -> Path | None:
    """The default catalog/training source: setting, then env var, then the shared CC0 set."""
    import os

    configured = get("DATASET_PATH") or os.environ.get("FASHION_AI_DATASET")
    if configured:
        return Path(configured)
    base = Path(getattr(settings, "BASE_DIR", Path.cwd()))
    candidate = (base / DEFAULT_DATASET).resolve()
    return candidate if candidate.exists() else None


def from_environment(environ) -> dict:
    """``FASHION_AI_<KEY>`` environment variables as a partial ``FASHION_AI`` dict, typed like the defaults."""
    out = {}
    for key, default in DEFAULTS.items():
        raw = environ.get(f"FASHION_AI_{key}")
        if raw is None:
            continue
        if isinstance(default, dict) or default is None:
            import json

            out[key] = json.loads(raw) if raw.strip().startswith(("{", "[")) or raw.strip().isdigit() else raw
        elif isinstance(default, bool):
            out[key] = raw.strip().lower() in {"1", "true", "yes", "on"}
        elif isinstance(default, int):
            out[key] = int(raw)
        elif isinstance(default, float):
            out[key] = float(raw)
        elif isinstance(default, tuple):
            out[key] = tuple(part.strip() for part in raw.split(",") if part.strip())
        else:
            out[key] = raw
    return out
