"""The one place that documents the plugin's settings.

A shop overrides any of these with a ``FASHION_AI`` dict in its Django settings;
keys it leaves out keep the defaults below. Read settings with :func:`get`.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

DEFAULTS: dict[str, object] = {
    # Catalog import ---------------------------------------------------------
    # Where `fashion_load_catalog` and the training commands read from when --source is not given.
    # None means: the FASHION_AI_DATASET environment variable (else --source is required).
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
    # "Similar products" searches with the product's vector plus its N nearest product vectors (alpha query
    # expansion, weights = similarity): one more nearest-neighbour query per request. 8 was chosen on the validation
    # splits of both data sets (benchmarks/photo_rerank.py; docs/PHOTO_SEARCH.md); 0 uses the product's vector alone.
    "SIMILAR_QUERY_EXPANSION": 8,
    # Celery queue the indexing tasks go to.
    "QUEUE": "celery",
    # Folder of the shop's own models (fashion_adapt): photo models, every version kept, the ACTIVE.json pointer to
    # the one in use, sketch encoders, training checkpoints. None: <DATA_DIR>/models. With
    # EMBEDDER_WEIGHTS None the installed model is used before the package's. Web and workers must see the same folder.
    "MODELS_DIR": None,
    # Celery queue of the "Adapt to my catalog" training task (route it to a GPU worker with -Q <name>).
    "TRAINING_QUEUE": "celery",
    # fashion_adapt's default training budget in minutes (training stops after the epoch that passes it).
    "ADAPT_MAX_MINUTES": 15.0,
    # After a new photo model is installed, fashion_adapt trains a sketch encoder for it within this many minutes
    # (0: skip; search by sketch then embeds drawings with the photo model until one is trained).
    "ADAPT_SKETCH_MAX_MINUTES": 8.0,
    # Then it trains a garment locator (search by photo's preset crop box) for it within this many minutes, installed
    # only if it beats the activation-map box on the store's test split (0: skip; the activation map is used).
    "ADAPT_LOCATOR_MAX_MINUTES": 6.0,
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
    # was chosen by `fashion_evaluate --task sketch --pipeline all` (docs/SKETCH.md).
    "SKETCH_PIPELINE": "direct",
    "SKETCH_FUSION_WEIGHT": 0.5,
    # Weights file for the sketch encoder, the network that embeds drawings into the photo model's vector space
    # (fashion_train_sketch_encoder). None uses the one shipped in the package. It is used only with the photo
    # model it was trained for; otherwise (or when it is missing) drawings go through the photo model itself.
    "SKETCH_ENCODER_WEIGHTS": None,
    # Query expansion for search by sketch: after a first search, search again with the drawing's vector plus
    # its N nearest product vectors (weighted by similarity^3). 0 turns it off. See docs/SKETCH.md.
    "SKETCH_QUERY_EXPANSION": 0,
    # Sketch results follow the best match's category: among the SKETCH_RERANK_DEPTH nearest products, those
    # sharing a category with the nearest one get this much added to their cosine similarity (0 turns it off).
    # Chosen on half of the test split, confirmed on the other half (docs/SKETCH.md).
    "SKETCH_CATEGORY_BOOST": 0.05,
    "SKETCH_RERANK_DEPTH": 20,
    # Weights file for the sketch-to-photo generator (`fashion_train_gan`); None: the one `fashion_train_gan --install`
    # wrote into the package, if any. The package ships none: it lost to the direct pipeline (docs/SKETCH.md).
    "SKETCH_GENERATOR_WEIGHTS": None,
    # Search by photo without a box from the shopper: preset the crop box to the most likely garment region
    # (oscar_fashion_ai.ml.crop, chosen by benchmarks/photo_crop.py; docs/PHOTO_SEARCH.md). False searches the whole
    # photo, as before.
    "PHOTO_AUTO_CROP": True,
    # Results less similar than this (cosine similarity, 0..1) are not shown as matches: when none reaches it, the
    # page says "nothing close" and shows the nearest few. 0 turns it off. It depends on the model and the catalog:
    # off by default, because for the shipped model no threshold flags garment-free pictures without also flagging
    # real garments (benchmarks/photo_crop.py, docs/PHOTO_SEARCH.md). SKETCH_MIN_SIMILARITY does the same for
    # drawings (off: not measured for drawings).
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
    # Personalisation on or off. False: no shopper events are recorded (no profiles, no tasks) and everyone sees
    # the popular products. Either way a request without a session cookie (a first visit, a bot) records nothing.
    "PERSONALISATION": True,
    # Multi-interest profiles (docs/RECOMMENDATIONS.md). The defaults of these five
    # were chosen on the validation shoppers of the CC0 simulation (`fashion_evaluate --task recommend --simulation
    # cc0 --split validation --tune`; the best settings there are within one standard error of each other). A
    # shopper's events are grouped into at most PREFERENCE_MAX_INTERESTS interests (one per category engaged with;
    # the two most alike are merged beyond the cap). Products without a category join the most similar interest
    # when the cosine similarity is at least PREFERENCE_INTEREST_SIMILARITY (interests that become that alike
    # merge).
    "PREFERENCE_MAX_INTERESTS": 2,
    "PREFERENCE_INTEREST_SIMILARITY": 0.6,
    # Slots go to interests in proportion to their decayed weight; every interest with at least this share of the
    # profile's weight gets at least one.
    "RECOMMENDATION_MIN_INTEREST_SHARE": 0.1,
    # Maximal marginal relevance: 0 ranks each interest's candidates by similarity alone, higher values trade
    # similarity for products unlike those already chosen (0 to 1).
    "RECOMMENDATION_DIVERSITY": 0.0,
    # Nearest products fetched per slot of an interest (the pool MMR and de-duplication choose from).
    "RECOMMENDATION_CANDIDATES_PER_SLOT": 3,
    # Co-occurrence (item-kNN) blended into each interest (docs/RECOMMENDATIONS.md, "Co-occurrence"): a candidate's
    # score is its cosine similarity to the interest + RECOMMENDATION_COOCCURRENCE_WEIGHT x how often the shop's
    # other shoppers engaged with it together with the interest's products (0 to 10; 0 = vectors only). The table
    # keeps each product's COOCCURRENCE_NEIGHBOURS most co-occurring products, learnt from the events of the last
    # COOCCURRENCE_WINDOW_DAYS days by `fashion_refresh_cooccurrence` (or the periodic task
    # oscar_fashion_ai.refresh_cooccurrence). Until the first refresh, and for products nobody shares, the
    # vectors alone decide. Weight and neighbours chosen on the studio simulation's validation shoppers, the minimum
    # of shoppers per pair by a noise check (docs/RECOMMENDATIONS.md).
    "RECOMMENDATION_COOCCURRENCE_WEIGHT": 0.5,
    "COOCCURRENCE_NEIGHBOURS": 50,
    # A pair of products counts only once at least this many shoppers engaged with both (fewer is noise: one
    # shopper's stray click would otherwise steer everyone who views the same product).
    "COOCCURRENCE_MIN_SHOPPERS": 2,
    "COOCCURRENCE_WINDOW_DAYS": 180,
    # Per-client limit on POST /fashion-ai/api/events/ (headless shops recording product views; None disables).
    "EVENT_RATE_LIMIT": "120/min",
    # Files the plugin writes ------------------------------------------------------
    # Folder for trained models (the training commands' default --out) and the ONNX cache. None:
    # <BASE_DIR>/var/fashion-ai, or ~/.cache/oscar-fashion-ai when the settings define no BASE_DIR.
    # Keep it out of MEDIA_ROOT and STATIC_ROOT (nothing in it is meant to be served).
    "DATA_DIR": None,
    # ONNX exports of the models (made once, checked against the weights' checksum before each use). None:
    # <DATA_DIR>/onnx. Must be writable by the web and worker processes' user, and by no one else.
    "CACHE_DIR": None,
    # Scale (HNSW parameters and the search database; docs/SCALING.md) ------------------
    # Database alias the search reads go to (nearest-neighbour queries and what a search reads with them), e.g. a
    # read replica; None = "default". Add "oscar_fashion_ai.routers.SearchRouter" to DATABASE_ROUTERS.
    "SEARCH_DATABASE": None,
    # HNSW graph parameters used when the index is (re)built (`fashion_reindex --tune-index`, `--all --sync`,
    # a dimension change). None = chosen from the catalog size by the measured bands in oscar_fashion_ai.indexing.hnsw.
    "HNSW_M": None,
    "HNSW_EF_CONSTRUCTION": None,
    # hnsw.ef_search of a 10-result query without a category filter. None = chosen from the catalog size (the
    # bands of oscar_fashion_ai.indexing.hnsw); either way it is raised for more results and for filtered queries.
    "HNSW_EF_SEARCH": None,
    # hnsw.max_scan_tuples: how far an iterative scan may walk the graph to fill a filtered query. None = chosen
    # from the catalog size.
    "HNSW_MAX_SCAN_TUPLES": None,
    # Index builds: maintenance_work_mem (e.g. "2GB"; None = an estimate of the in-memory graph) and
    # max_parallel_maintenance_workers (None = the server's setting).
    "HNSW_BUILD_MEMORY": None,
    "HNSW_BUILD_WORKERS": None,
}


def get(name: str):
    """Return the value of one ``FASHION_AI`` setting, falling back to its default."""
    if name not in DEFAULTS:
        raise KeyError(f"Unknown FASHION_AI setting {name!r}; known: {', '.join(sorted(DEFAULTS))}")
    overrides = getattr(settings, "FASHION_AI", {}) or {}
    return overrides.get(name, DEFAULTS[name])


def dataset_path() -> Path | None:
    """The default catalog/training source: the setting, else the FASHION_AI_DATASET environment variable."""
    import os

    configured = get("DATASET_PATH") or os.environ.get("FASHION_AI_DATASET")
    return Path(configured) if configured else None


def data_dir() -> Path:
    """``FASHION_AI["DATA_DIR"]``, else ``<BASE_DIR>/var/fashion-ai``, else the user's cache folder."""
    import os

    configured = get("DATA_DIR")
    if configured:
        return Path(configured)
    base = getattr(settings, "BASE_DIR", None)
    if base:
        return Path(base) / "var" / "fashion-ai"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "oscar-fashion-ai"


def cache_dir() -> Path:
    """Where the ONNX exports of the models are cached: ``FASHION_AI["CACHE_DIR"]``, else ``<DATA_DIR>/onnx``."""
    configured = get("CACHE_DIR")
    return Path(configured) if configured else data_dir() / "onnx"


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
