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


def simulate(categories: np.ndarray, tones: np.ndarray, shoppers: int = 300, views: int = 12, baskets: int = 3,
             orders: int = 2, held_out: int = 3, seed: int = 0) -> list[Shopper]:
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
        out.append(Shopper(history=history, held_out={int(i) for i in future}))
    return out


def ranking_metrics(ranked: np.ndarray, held_out: set, k: int = 10) -> tuple[float, float]:
    top = list(ranked[:k])
    hits = [1.0 if i in held_out else 0.0 for i in top]
    hit = 1.0 if any(hits) else 0.0
    dcg = sum(h / np.log2(r + 2) for r, h in enumerate(hits))
    ideal = sum(1 / np.log2(r + 2) for r in range(min(k, len(held_out))))
    return hit, (dcg / ideal if ideal else 0.0)
