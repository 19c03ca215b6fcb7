"""Simulated shoppers for evaluating recommendations offline (pure NumPy).

Each shopper has a hidden taste: 1-3 favourite categories and a colour tone (one of the catalog's colour
clusters, from image statistics). A product's appeal is high when it is in a favourite category and its
colour is close to the tone. Shoppers view products drawn by appeal (with some noise), add some to the
basket and buy some; their next purchases (drawn the same way, never seen before) are held out.
Models are scored by HitRate@10 and NDCG@10 of the held-out purchases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Shopper:
    history: list  # (product index, kind, age_days)
    held_out: set
    appeal: np.ndarray | None = None  # the true chance of each product being a next purchase (for the oracle)


def colour_tones(colours: np.ndarray, k: int = 6, seed: int = 0, iters: int = 20) -> np.ndarray:
    """k-means on mean RGB colours; returns the cluster id of each product."""
    rng = np.random.default_rng(seed)
    centres = colours[rng.choice(len(colours), k, replace=False)]
    for _ in range(iters):
        assign = np.argmin(((colours[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        for c in range(k):
            if (assign == c).any():
                centres[c] = colours[assign == c].mean(0)
    return assign


def simulate(
    categories: np.ndarray,
    tones: np.ndarray,
    shoppers: int = 300,
    views: int = 12,
    baskets: int = 3,
    orders: int = 2,
    held_out: int = 3,
    seed: int = 0,
) -> list[Shopper]:
    rng = np.random.default_rng(seed)
    cats = np.unique(categories)
    out = []
    for _ in range(shoppers):
        favourite = rng.choice(cats, size=rng.integers(1, 4), replace=False)
        tone = rng.integers(0, tones.max() + 1)
        appeal = np.where(np.isin(categories, favourite), 1.0, 0.02) * np.where(tones == tone, 1.0, 0.25)
        p = appeal / appeal.sum()
        n = views + held_out
        picks = rng.choice(len(categories), size=min(n, int((p > 0).sum())), replace=False, p=p)
        seen, future = picks[:views], picks[views:]
        history = [(int(i), "view", float(rng.uniform(0, 30))) for i in seen]
        history += [(int(i), "basket", float(rng.uniform(0, 20))) for i in seen[:baskets]]
        history += [(int(i), "order", float(rng.uniform(0, 10))) for i in seen[:orders]]
        truth = np.where(np.isin(np.arange(len(p)), seen), 0.0, p).astype(np.float32)
        out.append(Shopper(history=history, held_out={int(i) for i in future}, appeal=truth))
    return out


def ranking_metrics(ranked: np.ndarray, held_out: set, k: int = 10) -> tuple[float, float]:
    top = list(ranked[:k])
    hits = [1.0 if i in held_out else 0.0 for i in top]
    hit = 1.0 if any(hits) else 0.0
    dcg = sum(h / np.log2(r + 2) for r, h in enumerate(hits))
    ideal = sum(1 / np.log2(r + 2) for r in range(min(k, len(held_out))))
    return hit, (dcg / ideal if ideal else 0.0)


# --- Second simulation: attribute-defined interests with drift and noise ----------------------------------
#
# A different catalog (studio-catalog) and different taste rules than :func:`simulate`, so that a model is not
# only tuned to the simulator it was designed with. Each shopper has 1-3 interests, each a conjunction of a
# product's attributes (e.g. colour=Black & usage=Casual & master_category=Footwear: "black casual footwear";
# label=Jeans & colour=Blue: "blue jeans"); the interests' mixture drifts from a start mixture to an end mixture
# over the shopper's 30 days; browsing is in sessions (the current interest is kept with probability
# ``stickiness``); ``noise`` of the clicks are on uniformly random products. The next purchases (held out) come
# from the end mixture.

#: Attribute templates an interest is drawn from (each must name columns of the catalog's attributes).
INTEREST_TEMPLATES = (
    ("label", "colour"),
    ("sub_category", "colour"),
    ("master_category", "colour", "usage"),
    ("label", "usage"),
    ("label",),
)


def draw_interest(rng, attributes: dict, min_items: int = 6, templates=INTEREST_TEMPLATES):
    """(description, boolean mask) of one attribute-defined interest with at least ``min_items`` products."""
    n = len(next(iter(attributes.values())))
    for _ in range(1000):
        seed = int(rng.integers(n))
        template = templates[int(rng.integers(len(templates)))]
        mask = np.ones(n, dtype=bool)
        for column in template:
            mask &= attributes[column] == attributes[column][seed]
        if mask.sum() >= min_items:
            return " & ".join(f"{c}={attributes[c][seed]}" for c in template), mask
    raise ValueError("no attribute combination has enough products")


def simulate_attributes(
    attributes: dict,
    shoppers: int = 1000,
    events=(10, 20),
    noise: float = 0.15,
    stickiness: float = 0.7,
    baskets: float = 0.2,
    orders: float = 0.08,
    held_out: int = 3,
    days: float = 30.0,
    seed: int = 0,
) -> list[Shopper]:
    """Shoppers whose 1-3 interests are attribute conjunctions (see above). ``attributes`` maps column name ->
    array of one value per product (e.g. label, colour, usage, sub_category, master_category)."""
    rng = np.random.default_rng(seed)
    n = len(next(iter(attributes.values())))
    out = []
    for _ in range(shoppers):
        masks = []
        while len(masks) < int(rng.integers(1, 4)):
            _, mask = draw_interest(rng, attributes)
            if not any((mask == m).all() for m in masks):
                masks.append(mask)
        members = [np.flatnonzero(m) for m in masks]
        start, end = rng.dirichlet(np.ones(len(masks))), rng.dirichlet(np.ones(len(masks)))
        count = int(rng.integers(events[0], events[1] + 1))
        ages = np.sort(rng.uniform(0, days, size=count))[::-1]  # oldest first
        history, seen, current = [], set(), None
        for e, age in enumerate(ages):
            progress = e / max(count - 1, 1)
            mixture = (1 - progress) * start + progress * end
            if current is None or rng.random() > stickiness:
                current = int(rng.choice(len(masks), p=mixture / mixture.sum()))
            if rng.random() < noise:
                item = int(rng.integers(n))
                history.append((item, "view", float(age)))
                seen.add(item)
                continue
            fresh = [i for i in members[current] if i not in seen]
            item = int(rng.choice(fresh if fresh else members[current]))
            seen.add(item)
            history.append((item, "view", float(age)))
            if rng.random() < baskets:
                history.append((item, "basket", float(age)))
            if rng.random() < orders:
                history.append((item, "order", float(age)))
        future = set()
        for _ in range(held_out * 20):
            if len(future) == held_out:
                break
            j = int(rng.choice(len(masks), p=end))
            fresh = [i for i in members[j] if i not in seen and i not in future]
            if fresh:
                future.add(int(rng.choice(fresh)))
        if future:
            truth = np.zeros(n, dtype=np.float32)
            for j, m in enumerate(members):
                fresh = [i for i in m if i not in seen]
                if fresh:
                    truth[fresh] += end[j] / len(fresh)
            out.append(Shopper(history=history, held_out=future, appeal=truth))
    return out
