"""Two-interest shoppers through the store's own API (issue 17's measurement).

    python benchmarks/two_interests.py [--pairs 20] [--seed 0]

Runs against the demo database (full CC0 catalog imported and indexed; FASHION_VAR_DIR picks it). For each of
``--pairs`` random pairs of categories (A, B): a new anonymous shopper (Django test client, the full middleware
stack) opens 3 product pages of category A, then 3 of B; the pending events are applied (as the worker would);
then ``GET /fashion-ai/api/recommendations/?k=12``. Reported: the share of trials in which both interests appear,
the mean share of slots of the first (A) and the second (B) interest, the mean share of unrelated products (in
neither category), and how many results carry an explanation. The same script runs on the previous release
(it only uses the API and ``preferences.apply_pending``), for a side-by-side comparison.
"""

import argparse
import random

from _common import django_setup, write


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=12)
    parser.add_argument("--label", default="", help="name of the code under test, stored in the result")
    parser.add_argument("--out", default="two_interests", help="result file name (benchmarks/results/NAME.json)")
    args = parser.parse_args()
    django_setup()
    from django.test import Client
    from django.test.utils import setup_test_environment
    from oscar.core.loading import get_model

    from oscar_fashion_ai.personalisation import preferences

    setup_test_environment()
    Product = get_model("catalogue", "Product")
    Category = get_model("catalogue", "Category")
    rng = random.Random(args.seed)
    by_category = {}
    for category in Category.objects.order_by("name"):
        ids = list(
            Product.objects.filter(categories=category, fashion_embedding__status="indexed", is_public=True)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if len(ids) >= 10:
            by_category[category.name] = ids
    names = sorted(by_category)
    if len(names) < 2:
        raise SystemExit("Import and index the catalog first (fashion_load_catalog, fashion_reindex --all --sync).")
    category_of = {}
    for name, ids in by_category.items():
        for pk in ids:
            category_of.setdefault(pk, set()).add(name)
    trials = []
    for _ in range(args.pairs):
        a, b = rng.sample(names, 2)
        viewed = rng.sample(by_category[a], 3) + rng.sample(by_category[b], 3)
        shopper = Client()
        for pk in viewed:
            response = shopper.get(Product.objects.get(pk=pk).get_absolute_url())
            assert response.status_code == 200, response.status_code
        preferences.apply_pending(preferences.Owner(shopper_key=shopper.session[preferences.SESSION_KEY]))
        data = shopper.get("/fashion-ai/api/recommendations/", {"k": args.k}).json()
        results = data["results"]
        cats = [category_of.get(r["product_id"], set()) for r in results]
        n = max(len(results), 1)
        share_a = sum(a in c for c in cats) / n
        share_b = sum(b in c for c in cats) / n
        unrelated = sum(not ({a, b} & c) for c in cats) / n
        trials.append(
            {
                "a": a,
                "b": b,
                "source": data.get("source"),
                "results": len(results),
                "share_a": share_a,
                "share_b": share_b,
                "unrelated": unrelated,
                "both": share_a > 0 and share_b > 0,
                "explained": sum(1 for r in results if r.get("reason")) / n,
            }
        )
    summary = {
        "both_interests_shown": sum(t["both"] for t in trials) / len(trials),
        "mean_share_first_interest": sum(t["share_a"] for t in trials) / len(trials),
        "mean_share_second_interest": sum(t["share_b"] for t in trials) / len(trials),
        "mean_share_unrelated": sum(t["unrelated"] for t in trials) / len(trials),
        "mean_share_explained": sum(t["explained"] for t in trials) / len(trials),
        "personal": sum(t["source"] == "personal" for t in trials) / len(trials),
    }
    write(
        args.out,
        {
            "command": f"python benchmarks/two_interests.py --pairs {args.pairs} --seed {args.seed} --k {args.k}"
            + (f" --label {args.label}" if args.label else ""),
            "label": args.label,
            "pairs": args.pairs,
            "k": args.k,
            **summary,
            "targets": {"both_interests_shown": ">= 0.95", "each_interest_share": ">= 0.25", "unrelated": "<= 0.10"},
            "trials": trials,
        },
    )


if __name__ == "__main__":
    main()
