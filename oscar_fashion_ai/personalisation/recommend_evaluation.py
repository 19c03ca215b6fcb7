"""``fashion_evaluate --task recommend``: the two simulations over real catalogs, every baseline, the settings grid.

* ``cc0`` - the store's own index (the CC0 catalog in the demo): :func:`oscar_fashion_ai.ml.simulation.simulate`
  (favourite categories x a colour tone from the images).
* ``studio`` - the studio catalog's files (``--studio PATH`` or the ``FASHION_AI_STUDIO_DATASET`` environment
  variable: a folder with ``images.csv`` and ``images/``), embedded by the configured model:
  :func:`oscar_fashion_ai.ml.simulation.simulate_attributes` (attribute-defined interests, drift, noise).

Shoppers of a run come in three disjoint, seeded groups: the *population* (whose histories teach item-kNN and
popularity), *validation* shoppers (the settings grid, ``--tune``) and *test* shoppers (reported once).
Interests are keyed by each product's category (the store's category; the studio catalog's article type).
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

from .. import conf
from ..ml import interests as interest_model
from ..ml import recommend_eval, simulation

STUDIO_ENV = "FASHION_AI_STUDIO_DATASET"
ATTRIBUTES = ("label", "colour", "usage", "sub_category", "master_category")
SPLIT_SEEDS = {"population": 3, "validation": 1, "test": 2}


class EvaluationError(Exception):
    pass


def cc0_catalog(embedder):
    """(vectors, categories, colour tones) of the store's indexed products (the CC0 catalog in the demo)."""
    from PIL import Image

    from ..models import ProductEmbedding

    rows = list(
        ProductEmbedding.objects.filter(status="indexed", model_version=embedder.version)
        .select_related("image")
        .prefetch_related("product__categories")
        .order_by("product_id")
    )
    rows = [r for r in rows if r.product.categories.all() and r.image is not None]
    if len(rows) < 50:
        raise EvaluationError("Index at least 50 products first (`fashion_reindex`).")
    vecs = np.asarray([r.vector for r in rows], dtype=np.float32)
    categories = np.array([r.product.categories.all()[0].name for r in rows])
    colours = []
    for r in rows:
        with r.image.original.open("rb") as fh, Image.open(fh) as img:
            img.draft("RGB", (32, 32))
            colours.append(np.asarray(img.convert("RGB").resize((16, 16))).reshape(-1, 3).mean(0))
    return vecs, categories, np.asarray(colours, dtype=np.float32)


def studio_catalog(embedder, source: Path):
    """(vectors, attributes) of the studio catalog's images, embedded by ``embedder`` (cached on disk per model
    and files, under ``FASHION_AI["DATA_DIR"]``/evaluation)."""
    source = Path(source)
    csv_path = source / "images.csv"
    if not csv_path.exists():
        raise EvaluationError(f"{csv_path} not found: pass --studio PATH (a folder with images.csv and images/).")
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    missing = [c for c in ATTRIBUTES if rows and c not in rows[0]]
    if not rows or missing:
        raise EvaluationError(f"{csv_path} needs the columns image, {', '.join(ATTRIBUTES)}.")
    rows = [r for r in rows if (source / "images" / f"{r['image']}.jpg").exists()]
    listing = []
    for r in rows:  # names, sizes and times: a changed file means a new cache entry
        st = (source / "images" / f"{r['image']}.jpg").stat()
        listing.append(f"{r['image']}:{st.st_size}:{st.st_mtime_ns}")
    digest = hashlib.sha1(("\n".join(listing) + embedder.version).encode()).hexdigest()[:16]
    cache = conf.data_dir() / "evaluation"
    cached = cache / f"studio-vectors-{digest}.npy"
    if cached.exists():
        vecs = np.load(cached)
    else:
        chunks = []
        for start in range(0, len(rows), 64):
            images = [embedder.load_image(source / "images" / f"{r['image']}.jpg") for r in rows[start : start + 64]]
            chunks.append(embedder.embed_images(images))
        vecs = np.concatenate(chunks).astype(np.float32)
        cache.mkdir(parents=True, exist_ok=True)
        np.save(cached, vecs)
    return vecs, {c: np.array([r[c] for r in rows]) for c in ATTRIBUTES}


def shoppers_for(name, catalog, split, count, seed):
    seed = seed * 1000 + SPLIT_SEEDS[split]
    if name == "cc0":
        _, categories, tones = catalog
        return simulation.simulate(categories, tones, shoppers=count, seed=seed)
    _, attributes = catalog
    return simulation.simulate_attributes(attributes, shoppers=count, seed=seed)


def default_studio() -> Path | None:
    """The studio catalog when --studio is not given: the FASHION_AI_STUDIO_DATASET environment variable."""
    import os

    configured = os.environ.get(STUDIO_ENV)
    return Path(configured) if configured else None


def load(name, embedder, studio=None, seed=0):
    """(vectors, keys, catalog) of simulation ``name``."""
    if name == "cc0":
        vecs, categories, colours = cc0_catalog(embedder)
        tones = simulation.colour_tones(colours, seed=seed)
        return vecs, categories, (vecs, categories, tones)
    source = studio or default_studio()
    if source is None:
        raise EvaluationError(f"No studio catalog: pass --studio PATH or set {STUDIO_ENV}.")
    vecs, attributes = studio_catalog(embedder, source)
    if len(vecs) < 50:
        raise EvaluationError("The studio catalog needs at least 50 readable images.")
    return vecs, attributes["label"], (vecs, attributes)


def configured_params() -> interest_model.Params:
    from .preferences import interest_params

    return interest_params()


def settings_grid():
    """The grid ``--tune`` searches (on validation shoppers)."""
    grid = [
        interest_model.Params(similarity=0.6, max_interests=m, min_share=0.1, diversity=d, depth=3)
        for m in (2, 3, 4, 6)
        for d in (0.0, 0.15, 0.3)
    ]
    grid += [
        interest_model.Params(similarity=0.6, max_interests=4, min_share=s, diversity=0.0, depth=3) for s in (0.0, 0.25)
    ]
    return grid


def params_dict(p: interest_model.Params) -> dict:
    return {
        "PREFERENCE_INTEREST_SIMILARITY": p.similarity,
        "PREFERENCE_MAX_INTERESTS": p.max_interests,
        "RECOMMENDATION_MIN_INTEREST_SHARE": p.min_share,
        "RECOMMENDATION_DIVERSITY": p.diversity,
        "RECOMMENDATION_CANDIDATES_PER_SLOT": p.depth,
    }


def run(
    embedder,
    simulations=("cc0", "studio"),
    split="test",
    shoppers=2000,
    population=1000,
    seed=0,
    studio=None,
    tune=False,
    progress=None,
) -> dict:
    weights = conf.get("PREFERENCE_WEIGHTS")
    half_life = float(conf.get("PREFERENCE_HALF_LIFE_DAYS"))
    params = configured_params()
    out = {
        "task": "recommend",
        "split": split,
        "seed": seed,
        "settings": {
            **params_dict(params),
            **{
                name: conf.get(name)
                for name in (
                    "RECOMMENDATION_COOCCURRENCE_WEIGHT",
                    "COOCCURRENCE_NEIGHBOURS",
                    "COOCCURRENCE_MIN_SHOPPERS",
                )
            },
        },
        "model_version": embedder.version,
        "simulations": {},
    }
    for name in simulations:
        if name == "studio" and studio is None and len(simulations) > 1 and default_studio() is None:
            out["simulations"][name] = {"skipped": f"no studio catalog (pass --studio PATH or set {STUDIO_ENV})"}
            continue
        vecs, keys, catalog = load(name, embedder, studio, seed)
        people = shoppers_for(name, catalog, split, shoppers, seed)
        pop = shoppers_for(name, catalog, "population", population, seed)
        entry = {"products": int(len(vecs)), "shoppers": len(people), "population": len(pop)}
        if tune:
            rows = recommend_eval.tune(vecs, people, pop, weights, half_life, settings_grid(), seed=seed, keys=keys)
            entry["grid"] = [{**params_dict(p), **m} for p, m in rows]
            entry["best"] = params_dict(rows[0][0])
        else:
            results = recommend_eval.evaluate(
                vecs,
                people,
                pop,
                weights,
                half_life,
                params,
                seed=seed,
                keys=keys,
                models=recommend_eval.MODELS + ("oracle",),
                blend_weight=float(conf.get("RECOMMENDATION_COOCCURRENCE_WEIGHT")),
                neighbours=int(conf.get("COOCCURRENCE_NEIGHBOURS")),
                min_shoppers=int(conf.get("COOCCURRENCE_MIN_SHOPPERS")),
            )
            oracle = results.pop("oracle")
            entry["models"] = recommend_eval.strip(results)
            entry["comparison"] = recommend_eval.compare(results)
            entry["oracle"] = {k: v for k, v in oracle.items() if not k.startswith("_")}
        out["simulations"][name] = entry
        if progress:
            progress(name)
    first = next(iter(out["simulations"].values()))
    if "models" in first:  # the previous output's top-level keys: the shop's model on the first simulation
        mine = first["models"]["multi_interest"]
        pop = first["models"]["popularity"]["hit_rate_at_10"]
        out.update(
            {
                "hit_rate_at_10": mine["hit_rate_at_10"],
                "ndcg_at_10": mine["ndcg_at_10"],
                "shoppers": first["shoppers"],
                "products": first["products"],
                "lift_over_popularity": mine["hit_rate_at_10"] / max(pop, 1e-9),
                "baselines": {
                    m: {"hit_rate_at_10": r["hit_rate_at_10"], "ndcg_at_10": r["ndcg_at_10"]}
                    for m, r in first["models"].items()
                    if m != "multi_interest"
                },
            }
        )
    return out
