"""Similar products: does re-ranking the nearest neighbours with their own neighbours help? (no labels used)

    python benchmarks/photo_rerank.py --split validation [--photo P.safetensors] [--cc0 PATH] [--studio PATH]
        [--expansion 0,1,2,3,5,8] [--alpha 1,3] [--dba 0,1,2,3] [--out NAME]

Methods, each over the photo model's own vectors of every image of a data set (the gallery, as the store indexes
them) with the query image left out of its results:

* ``plain``: cosine similarity, as "Similar products" ranks today;
* ``aqe n a`` (alpha query expansion, Radenovic et al. 2018): search again with the query's vector plus its ``n``
  nearest gallery vectors, each weighted by its similarity to the query to the power ``a``, normalised. At query
  time, costs one more nearest-neighbour query;
* ``dba n a`` (database-side augmentation, Arandjelovic & Zisserman 2012 / Radenovic et al. 2018): every gallery
  vector (the query's too) replaced by the same weighted sum over its own ``n`` nearest gallery vectors; an
  index-time cost, and a product's vector would change when its neighbours change.

Neither uses a label; both use only the catalog's own vectors, which a store has. The untrained ImageNet-features
baseline (EfficientNet-Lite0 global-average-pooled 224 px features, benchmarks/generalisation.py's
``imagenet-gap-224``) is measured the same way. Queries: the ``--split`` images of each set (sha1 % 5 == 1 for
validation, == 0 for test); relevant = same label; P@5 with the standard error over queries, and the paired
difference to ``plain``. Choose on validation; read the test split once, after the choice.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from _common import ROOT, repo_path, write

sys.path.insert(0, str(ROOT))

from oscar_fashion_ai.ml import datasets, evaluate, metrics
from oscar_fashion_ai.ml import generalisation as G
from oscar_fashion_ai.ml.embedder import Embedder
from oscar_fashion_ai.ml.query_expansion import expand_in_gallery

DATA = ROOT.parent / "shared" / "datasets"


def measure(vecs, labels, ids, split, method: str, n: int, alpha: float) -> np.ndarray:
    """Per-query P@5 (share of the 5 nearest with the query's label) for one method."""
    labels = np.asarray(labels)
    q = np.flatnonzero([G.split_of(i) == split for i in ids])
    gallery = vecs
    queries = vecs[q]
    if method == "aqe":
        queries = expand_in_gallery(queries, gallery, n, alpha=alpha, exclude=q)
    elif method == "dba":
        gallery = expand_in_gallery(vecs, vecs, n, alpha=alpha, exclude=np.arange(len(vecs)))
        queries = gallery[q]
    idx = metrics.neighbours(queries, gallery, 5, exclude=q)
    return (labels[idx] == labels[q][:, None]).mean(axis=1)


def grid(vecs, labels, ids, split, expansions, alphas, dbas) -> dict:
    plain = measure(vecs, labels, ids, split, "plain", 0, 0)
    out = {"plain": _row(plain, plain)}
    for a in alphas:
        for n in expansions:
            if n:
                out[f"aqe n={n} a={a:g}"] = _row(measure(vecs, labels, ids, split, "aqe", n, a), plain)
        for n in dbas:
            if n:
                out[f"dba n={n} a={a:g}"] = _row(measure(vecs, labels, ids, split, "dba", n, a), plain)
    return out


def _row(per_query, plain) -> dict:
    diff = per_query - plain
    return {
        "p_at_5": round(float(per_query.mean()), 4),
        "p_at_5_se": round(metrics.standard_error(per_query), 4),
        "vs_plain": round(float(diff.mean()), 4),
        "vs_plain_se": round(metrics.standard_error(diff), 4),
        "queries": int(len(per_query)),
    }


def _vectors(embedder, records, path: Path):
    """The model's vectors of every readable image, with labels and ids; kept in ``path`` (git-ignored ``var/``)."""
    if path.exists():
        data = np.load(path)
        return data["vecs"], list(data["labels"]), list(data["ids"])
    vecs, kept = evaluate.embed_records(embedder, records)
    labels, ids = [r.label for r in kept], [r.source_id for r in kept]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, vecs=vecs, labels=np.array(labels), ids=np.array(ids))
    return vecs, labels, ids


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=["validation", "test"], default="validation")
    parser.add_argument("--photo", action="append", default=[], help="photo model file(s); default: the shipped one")
    parser.add_argument(
        "--cc0", type=Path, default=Path(os.environ.get("FASHION_AI_DATASET") or DATA / "clothing-dataset")
    )
    parser.add_argument(
        "--studio", type=Path, default=Path(os.environ.get("FASHION_AI_STUDIO_DATASET") or DATA / "studio-catalog")
    )
    parser.add_argument("--expansion", default="0,1,2,3,5,8")
    parser.add_argument("--dba", default="0,1,2,3")
    parser.add_argument("--alpha", default="1,3")
    parser.add_argument("--no-imagenet", action="store_true", help="skip the untrained ImageNet-features baseline")
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "generalisation")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out", default=None, help="result name under benchmarks/results/ (default photo_rerank_<split>)"
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    started = time.time()
    photos = args.photo or [str(ROOT / "oscar_fashion_ai" / "weights" / "lite0-fashion.safetensors")]
    expansions = [int(x) for x in args.expansion.split(",") if x.strip()]
    dbas = [int(x) for x in args.dba.split(",") if x.strip()]
    alphas = [float(x) for x in args.alpha.split(",") if x.strip()]
    sources = {"cc0": args.cc0, "studio": args.studio}
    result = {
        "split": args.split,
        "data": {k: v.name for k, v in sources.items()},
        "models": {},
    }
    records = {k: datasets.labelled_records(v) for k, v in sources.items()}
    for photo in photos:
        embedder = Embedder(photo, threads=args.threads)
        entry = {"version": embedder.version}
        for name, recs in records.items():
            vecs, labels, ids = _vectors(embedder, recs, args.cache / f"rerank-{embedder.version}-{name}.npz")
            entry[name] = grid(vecs, labels, ids, args.split, expansions, alphas, dbas)
        result["models"][repo_path(photo)] = entry
    if not args.no_imagenet:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from generalisation import Sets

        sets = Sets(sources, args.cache, args.threads)
        entry = {"version": "imagenet-gap-224"}
        for name in sources:
            _, ids, labels = sets.images(name, 224)
            vecs = G.gap(np.asarray(sets.imagenet_maps(name, 224)))
            entry[name] = grid(vecs, labels, ids, args.split, expansions, alphas, dbas)
        result["models"]["imagenet-gap-224"] = entry
    result["wall_s"] = round(time.time() - started, 1)
    write(args.out or f"photo_rerank_{args.split}", result)
    for model, entry in result["models"].items():
        print(f"\n{model} ({entry['version']}), split {args.split}: P@5 (+-SE), paired difference to plain")
        for method in entry["cc0"]:
            cells = [
                f"{entry[n][method]['p_at_5']:.3f}+-{entry[n][method]['p_at_5_se']:.3f} "
                f"({entry[n][method]['vs_plain']:+.3f}+-{entry[n][method]['vs_plain_se']:.3f})"
                for n in sources
            ]
            print(f"  {method:16s} cc0 {cells[0]}   studio {cells[1]}")


if __name__ == "__main__":
    main()
