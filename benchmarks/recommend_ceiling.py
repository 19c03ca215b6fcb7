"""How much headroom the studio simulation leaves above item-kNN: the measurement behind issue 17's 1.3x target.

    python benchmarks/recommend_ceiling.py [--split validation|test] [--shoppers 1000] [--population 1000]
        [--studio PATH] [--out results.json]

On the studio simulation (``ml/simulation.py: simulate_attributes``; the same shoppers and population as
``benchmarks/recommend_blend.py``), HR@10 with standard errors of:

* ``item_knn`` - the evaluation's baseline (``ml/recommend_eval.py``), and ``oracle``, which ranks by the simulator's
  true purchase probabilities (a ceiling no model reaches);
* ``item_knn + vectors w`` - item-kNN plus w x the decayed, kind-weighted cosine similarity of the product vectors
  to the history (a hybrid a shop could run);
* ``item_knn + hidden attributes w`` - item-kNN plus w x the decayed, kind-weighted count of the simulator's own
  attributes (article type, colour, usage, sub and master category) shared with the history. No shop model has
  these: it says how far even a model told the simulator's hidden variables gets with item-kNN.

Each family is printed for a small grid of w, and the best of each family is an optimistic figure (chosen on the
shoppers it is reported on). Needs Django settings (the configured photo model embeds the catalog).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import django_setup, machine  # noqa: E402

DAY = 86400.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=["validation", "test"], default="validation")
    parser.add_argument("--shoppers", type=int, default=1000)
    parser.add_argument("--population", type=int, default=1000)
    parser.add_argument("--studio", type=Path, default=ROOT.parent / "shared" / "datasets" / "studio-catalog")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    django_setup()
    import numpy as np

    from oscar_fashion_ai import conf, runtime
    from oscar_fashion_ai.ml import metrics, recommend_eval
    from oscar_fashion_ai.ml.simulation import ranking_metrics
    from oscar_fashion_ai.personalisation import recommend_evaluation as R

    embedder = runtime.get_embedder()
    kinds = conf.get("PREFERENCE_WEIGHTS")
    half_life = float(conf.get("PREFERENCE_HALF_LIFE_DAYS")) * DAY
    vecs, _, catalog = R.load("studio", embedder, args.studio)
    vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    attributes = catalog[1]
    people = R.shoppers_for("studio", catalog, args.split, args.shoppers, 0)
    pop = R.shoppers_for("studio", catalog, "population", args.population, 0)
    n = len(vecs)
    knn = recommend_eval.cooccurrence_similarity(pop, n)
    popularity = recommend_eval.popularity(pop, n, kinds)
    shared = np.zeros((n, n), dtype=np.float32)  # how many of the hidden attributes two products share
    for column in R.ATTRIBUTES:
        ids = np.unique(attributes[column], return_inverse=True)[1]
        shared += ids[:, None] == ids[None, :]
    similarity = np.maximum(vecs @ vecs.T, 0.0)

    def weights_of(person):
        events = sorted((-age * DAY, kinds[kind], i) for i, kind, age in person.history)
        now = events[-1][0]
        w = np.array([k * 2.0 ** (-(now - t) / half_life) for t, k, _ in events])
        return w, np.array([i for _, _, i in events])

    def hit_rate(score):
        hits = []
        for person in people:
            s = np.asarray(score(person), dtype=np.float64).copy()
            s[[i for i, _, _ in person.history]] = -np.inf
            top = np.argpartition(-s, 10)[:10]
            hits.append(ranking_metrics(top[np.argsort(-s[top])], person.held_out, 10)[0])
        return {"hit_rate_at_10": float(np.mean(hits)), "se": metrics.standard_error(hits)}

    def knn_plus(matrix, weight):
        def score(person):
            w, idx = weights_of(person)
            extra = weight * (w @ matrix[idx]) if weight else 0.0
            return w @ knn[idx] + extra + 1e-9 * popularity / max(popularity.max(), 1e-12)

        return score

    rng = np.random.default_rng(0)
    rows = {
        "item_knn": hit_rate(knn_plus(knn, 0.0)),
        "oracle": hit_rate(lambda p: p.appeal + 1e-9 * rng.random(n)),
    }
    for w in (0.1, 0.2, 0.5):
        rows[f"item_knn + vectors {w}"] = hit_rate(knn_plus(similarity, w))
    for w in (0.03, 0.1, 0.3):
        rows[f"item_knn + hidden attributes {w}"] = hit_rate(knn_plus(shared, w))
    base = rows["item_knn"]["hit_rate_at_10"]
    out = {
        "benchmark": "headroom of the studio simulation above item-kNN",
        "machine": machine()["description"],
        "split": args.split,
        "shoppers": len(people),
        "population": len(pop),
        "model_version": embedder.version,
        "target_1_3x_item_knn": 1.3 * base,
        "models": {name: r | {"ratio_to_item_knn": r["hit_rate_at_10"] / max(base, 1e-12)} for name, r in rows.items()},
    }
    text = json.dumps(out, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
