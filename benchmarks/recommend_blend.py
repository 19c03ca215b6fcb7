"""Item-kNN mixed into each interest of the multi-interest model, measured on simulated shoppers.

    python benchmarks/recommend_blend.py [--simulation studio|cc0] [--split validation|test]
        [--weights 0.25,0.5,1,2] [--neighbours 20,50,100] [--min-shoppers 1] [--shoppers 1000] [--population 1000]
        [--studio PATH]

The shop's model with co-occurrence blended in (``RECOMMENDATION_COOCCURRENCE_WEIGHT`` w,
``COOCCURRENCE_NEIGHBOURS`` N; ``oscar_fashion_ai/ml/cooccurrence.py``, ``recommend_eval.py: blended_search``):
each interest's candidates (its nearest products and its N most co-occurring ones) are scored by cosine similarity
to the interest plus w x the decayed, kind-weighted co-occurrence with the interest's remembered products, each
product keeping its N most co-occurring products (learnt from the population's histories). Printed beside the same
model without co-occurrence (w = 0), ``item_knn`` (untruncated) and ``mean_vector`` on the same shoppers (HR@10 with
standard errors, paired differences). Choose on ``--split validation``; report ``test`` once.
Needs Django settings (the configured photo model embeds the catalog; cc0 reads the store's index).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import django_setup, machine  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--simulation", choices=["studio", "cc0"], default="studio")
    parser.add_argument("--split", choices=["validation", "test"], default="validation")
    parser.add_argument("--weights", default="0.25,0.5,1,2")
    parser.add_argument("--neighbours", default="20,50,100")
    parser.add_argument("--min-shoppers", default="1", help="values of COOCCURRENCE_MIN_SHOPPERS to try")
    parser.add_argument("--shoppers", type=int, default=1000)
    parser.add_argument("--population", type=int, default=1000)
    parser.add_argument("--studio", type=Path, default=ROOT.parent / "shared" / "datasets" / "studio-catalog")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    django_setup()
    import numpy as np

    from oscar_fashion_ai import conf, runtime
    from oscar_fashion_ai.ml import recommend_eval
    from oscar_fashion_ai.personalisation import recommend_evaluation as R

    embedder = runtime.get_embedder()
    weights = conf.get("PREFERENCE_WEIGHTS")
    half_life = float(conf.get("PREFERENCE_HALF_LIFE_DAYS"))
    params = R.configured_params()
    vecs, keys, catalog = R.load(args.simulation, embedder, args.studio)
    people = R.shoppers_for(args.simulation, catalog, args.split, args.shoppers, 0)
    pop = R.shoppers_for(args.simulation, catalog, "population", args.population, 0)
    evaluate = functools.partial(
        recommend_eval.evaluate, vecs, people, pop, weights, half_life, params, keys=keys, bootstrap=0
    )
    base = evaluate(models=("multi_interest", "mean_vector", "item_knn"), blend_weight=0.0)
    out = {
        "benchmark": "co-occurrence blended into each interest",
        "machine": machine()["description"],
        "simulation": args.simulation,
        "split": args.split,
        "shoppers": len(people),
        "population": len(pop),
        "model_version": embedder.version,
        "baselines": {m: r["hit_rate_at_10"] for m, r in base.items()},
        "baselines_se": {m: r["hit_rate_at_10_se"] for m, r in base.items()},
        "blend": [],
    }
    print(json.dumps({k: out[k] for k in ("simulation", "split", "shoppers", "baselines")}))
    grid = [
        (float(w), int(n), int(m))
        for m in args.min_shoppers.split(",")
        for n in args.neighbours.split(",")
        for w in args.weights.split(",")
    ]
    for w, n, m in grid:
        r = evaluate(models=("multi_interest",), blend_weight=w, neighbours=n, min_shoppers=m)["multi_interest"]
        mine = np.asarray(r["_hits"])
        row = {"blend_weight": w, "neighbours": n, "min_shoppers": m}
        row.update({"hit_rate_at_10": r["hit_rate_at_10"], "se": r["hit_rate_at_10_se"]})
        row["ndcg_at_10"] = r["ndcg_at_10"]
        row["intra_list_diversity"] = r["intra_list_diversity"]
        for m in ("item_knn", "multi_interest"):
            diff = mine - np.asarray(base[m]["_hits"])
            row[f"vs_{m}"] = [float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff)))]
            row[f"ratio_{m}"] = r["hit_rate_at_10"] / max(base[m]["hit_rate_at_10"], 1e-12)
        out["blend"].append(row)
        print(json.dumps(row))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
