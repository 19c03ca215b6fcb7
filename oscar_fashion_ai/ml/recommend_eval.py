"""Offline evaluation of recommenders on simulated shoppers (pure NumPy, no Django).

Every model ranks the whole catalog for each evaluated shopper from that shopper's history (products already
seen are removed from every ranking); the shopper's held-out next purchases are the relevant items.

Models (all see the same shoppers):

* ``multi_interest`` - the shop's model: :mod:`.interests` (several decayed interest vectors, proportional slots,
  MMR), candidates by exact cosine search, with the co-occurrence of :mod:`.cooccurrence` blended in
  (``blend_weight``; learnt from the population, ``neighbours`` per product).
* ``vectors_only`` - the same model without co-occurrence (the previous release's recommendations).
* ``mean_vector`` - the previous release: one time-decayed, kind-weighted mean vector (:mod:`.preference`),
  products ranked by cosine similarity to it.
* ``item_knn`` - item-to-item collaborative filtering on co-occurrence (Ludewig & Jannach 2018): cosine similarity of
  the products' shopper-incidence vectors, learnt from a separate *population* of simulated shoppers (their whole
  histories); a shopper's score for a product is the decay- and kind-weighted sum of its similarities to the
  products in the history (popularity breaks ties).
* ``last_viewed`` - products most similar (cosine) to the most recently viewed product.
* ``popularity`` - kind-weighted event counts in the population.
* ``random``.

Metrics at k: hit rate (share of shoppers with at least one held-out product in the top k), NDCG, catalog coverage
(share of the catalog in anyone's top k) and intra-list diversity (mean pairwise cosine distance of the top k in
the embedding space), each with its standard error (per-shopper spread / sqrt(n); coverage: bootstrap over
shoppers).
"""

from __future__ import annotations

import numpy as np

from . import cooccurrence
from . import interests as interest_model
from .preference import fold as fold_mean
from .simulation import ranking_metrics

MODELS = ("multi_interest", "vectors_only", "mean_vector", "item_knn", "last_viewed", "popularity", "random")
DAY = 86400.0


def popularity(population, n, weights) -> np.ndarray:
    counts = np.zeros(n)
    for person in population:
        for i, kind, _ in person.history:
            counts[i] += weights[kind]
        for i in person.held_out:
            counts[i] += weights["order"]
    return counts


def cooccurrence_similarity(population, n) -> np.ndarray:
    """Cosine similarity of products' incidence vectors over the population's shoppers (diagonal 0)."""
    c = np.zeros((n, n), dtype=np.float32)
    for person in population:
        items = np.array(sorted({i for i, _, _ in person.history} | set(person.held_out)))
        if len(items):
            c[np.ix_(items, items)] += 1.0
    diag = np.sqrt(np.diag(c).copy())
    diag[diag == 0] = 1.0
    c /= diag[:, None]
    c /= diag[None, :]
    np.fill_diagonal(c, 0.0)
    return c


def shopper_events(person, vecs, weights, keys=None):
    """(time_seconds, weight, vector, index, kind, key) in time order (oldest first); ``keys[i]`` is product i's
    category (None: no categories)."""
    events = [
        (-age * DAY, float(weights[kind]), vecs[i], int(i), kind, None if keys is None else keys[i])
        for i, kind, age in person.history
    ]
    return sorted(events, key=lambda e: e[0])


def _top(scores, k):
    k = min(k, int(np.isfinite(scores).sum()))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top], kind="stable")]


def exact_search(vecs, exclude):
    """A ``search`` callable for :func:`.interests.recommend`: exact cosine over ``vecs`` minus ``exclude``."""

    def search(interest, n):
        sims = vecs @ interest.unit().astype(vecs.dtype)
        sims[list(exclude)] = -np.inf
        top = _top(sims, n)
        return list(top), sims[top], vecs[top]

    return search


def blended_search(vecs, exclude, table, ref_time, half_life, weight):
    """The shop's search with co-occurrence blended in (:mod:`.cooccurrence`): the interest's ``n`` nearest
    products (exact cosine) and its ``n`` most co-occurring ones, scored by cosine similarity + ``weight`` x the
    co-occurrence with the interest's remembered products; with ``weight`` 0 or no co-occurrence, plain
    :func:`exact_search`."""
    plain = exact_search(vecs, exclude)

    def search(interest, n):
        ids, sims, found = plain(interest, n)
        scores = cooccurrence.interest_scores(interest.members, table, ref_time, half_life) if weight else {}
        if not scores:
            return ids, sims, found
        extra = cooccurrence.top_items(scores, n, skip=set(ids) | set(exclude))
        if extra:
            unit = interest.unit().astype(vecs.dtype)
            ids = list(ids) + extra
            sims = np.concatenate([sims, vecs[extra] @ unit])
            found = np.concatenate([found, vecs[extra]])
        return cooccurrence.blend(ids, sims, found, scores, weight, n)

    return search


def baskets(population):
    """Each population shopper's products (history and held-out purchases): what the shop's co-occurrence learns."""
    return [{i for i, _, _ in person.history} | set(person.held_out) for person in population]


def rankings(
    person, vecs, weights, half_life_days, params, k, pop, knn, rng, models=MODELS, keys=None, blend=(0.0, None)
):
    """Top-k catalog indices of each model for one shopper; ``blend`` is (weight, co-occurrence table) of the shop's
    model (weight 0: vectors only)."""
    half_life = half_life_days * DAY
    seen = {i for i, _, _ in person.history}
    seen_idx = np.array(sorted(seen))
    events = shopper_events(person, vecs, weights, keys)
    out = {}

    def ranked(scores):
        scores = np.asarray(scores, dtype=np.float64).copy()
        scores[seen_idx] = -np.inf
        return _top(scores, k)

    if {"multi_interest", "vectors_only"} & set(models):
        profile = interest_model.fold(None, events, half_life, params)
    if "multi_interest" in models:
        weight, table = blend
        search = blended_search(vecs, seen, table or {}, profile.ref_time, half_life, weight)
        picks = interest_model.recommend(profile, k, search, params)
        out["multi_interest"] = np.array([p.item for p in picks], dtype=np.int64)
    if "vectors_only" in models:
        picks = interest_model.recommend(profile, k, exact_search(vecs, seen), params)
        out["vectors_only"] = np.array([p.item for p in picks], dtype=np.int64)
    if "mean_vector" in models:
        mean, _, _ = fold_mean(None, 0.0, None, [e[:3] for e in events], half_life)
        out["mean_vector"] = ranked(vecs @ (mean / np.linalg.norm(mean)))
    if "item_knn" in models:
        now = events[-1][0]
        scores = np.zeros(len(vecs))
        for t, w, _, i, *_ in events:
            scores += w * 2.0 ** (-(now - t) / half_life) * knn[i]
        out["item_knn"] = ranked(scores + 1e-9 * pop / max(pop.max(), 1e-12))
    if "last_viewed" in models:
        last = max((e for e in events if e[4] == "view"), key=lambda e: e[0], default=events[-1])
        out["last_viewed"] = ranked(vecs @ vecs[last[3]])
    if "popularity" in models:
        out["popularity"] = ranked(pop + 1e-12 * np.arange(len(pop))[::-1])
    if "random" in models:
        out["random"] = ranked(rng.random(len(vecs)))
    if "oracle" in models and person.appeal is not None:
        out["oracle"] = ranked(person.appeal + 1e-9 * rng.random(len(vecs)))
    return out


def _se(values):
    values = np.asarray(values, dtype=np.float64)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def _ild(vecs, top):
    if len(top) < 2:
        return 0.0
    v = vecs[top]
    sims = v @ v.T
    n = len(top)
    return float((n * n - sims.sum()) / (n * (n - 1)))  # mean of 1 - cos over ordered pairs i != j (diag = 1)


def evaluate(
    vecs,
    shoppers,
    population,
    weights,
    half_life_days,
    params,
    k=10,
    seed=0,
    models=MODELS,
    bootstrap=200,
    keys=None,
    blend_weight=0.0,
    neighbours=50,
    min_shoppers=1,
) -> dict:
    """Metrics of every model on ``shoppers``; item-kNN, popularity and the shop's co-occurrence table (its
    ``neighbours`` per product among pairs shared by at least ``min_shoppers``, blended into ``multi_interest`` with
    ``blend_weight``) are learnt from ``population``."""
    vecs = np.asarray(vecs, dtype=np.float32)
    vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    n = len(vecs)
    pop = popularity(population, n, weights)
    knn = cooccurrence_similarity(population, n) if "item_knn" in models else None
    table = cooccurrence.neighbours(baskets(population), neighbours, min_shoppers) if blend_weight else None
    rng = np.random.default_rng(seed + 1)
    per = {m: {"hit": [], "ndcg": [], "ild": [], "tops": []} for m in models}
    for person in shoppers:
        for name, top in rankings(
            person, vecs, weights, half_life_days, params, k, pop, knn, rng, models, keys, (blend_weight, table)
        ).items():
            hit, ndcg = ranking_metrics(top, person.held_out, k)
            per[name]["hit"].append(hit)
            per[name]["ndcg"].append(ndcg)
            per[name]["ild"].append(_ild(vecs, top))
            per[name]["tops"].append(top)
    boot = np.random.default_rng(seed + 2)
    samples = [boot.integers(0, len(shoppers), len(shoppers)) for _ in range(bootstrap)]
    out = {}
    for name, r in per.items():
        covered = np.zeros(n, dtype=bool)
        for top in r["tops"]:
            covered[top] = True
        boots = []
        for idx in samples:
            c = np.zeros(n, dtype=bool)
            for i in idx:
                c[r["tops"][i]] = True
            boots.append(c.mean())
        out[name] = {
            f"hit_rate_at_{k}": float(np.mean(r["hit"])),
            f"hit_rate_at_{k}_se": _se(r["hit"]),
            f"ndcg_at_{k}": float(np.mean(r["ndcg"])),
            f"ndcg_at_{k}_se": _se(r["ndcg"]),
            "coverage": float(covered.mean()),
            "coverage_se": float(np.std(boots, ddof=1)) if len(boots) > 1 else 0.0,
            "intra_list_diversity": float(np.mean(r["ild"])),
            "intra_list_diversity_se": _se(r["ild"]),
        }
        out[name]["_hits"] = r["hit"]
    return out


def compare(results, model="multi_interest", k=10) -> dict:
    """The model's hit rate against the best other model and against ``mean_vector``: ratios, and the paired
    difference with its standard error."""
    key = f"hit_rate_at_{k}"
    others = {m: r for m, r in results.items() if m != model}
    best = max(others, key=lambda m: others[m][key])
    mine = np.asarray(results[model]["_hits"])

    def paired(other):
        diff = mine - np.asarray(results[other]["_hits"])
        return {
            "difference": float(diff.mean()),
            "difference_se": _se(diff),
            "ratio": float(results[model][key] / max(results[other][key], 1e-12)),
        }

    out = {"best_baseline": best, "vs_best_baseline": paired(best)}
    for other in ("mean_vector", "vectors_only"):
        if other in results and model != other:
            out[f"vs_{other}"] = paired(other)
    return out


def strip(results) -> dict:
    """Results without the per-shopper arrays (for JSON)."""
    return {m: {k: v for k, v in r.items() if not k.startswith("_")} for m, r in results.items()}


def tune(vecs, shoppers, population, weights, half_life_days, grid, k=10, seed=0, keys=None):
    """Hit rate of the multi-interest model for every ``Params`` in ``grid`` (on validation shoppers); returns
    [(params, metrics)], best first (ties: higher diversity, then fewer interests)."""
    rows = []
    for params in grid:
        r = evaluate(
            vecs,
            shoppers,
            population,
            weights,
            half_life_days,
            params,
            k=k,
            seed=seed,
            models=("multi_interest",),
            bootstrap=0,
            keys=keys,
        )["multi_interest"]
        rows.append((params, {key: v for key, v in r.items() if not key.startswith("_")}))
    key = f"hit_rate_at_{k}"
    rows.sort(key=lambda row: (-row[1][key], -row[0].diversity, row[0].max_interests))
    return rows
