"""Personalised homepage: server time (cached and uncached profile) and freshness after a view.

    python benchmarks/homepage.py [--requests 200] [--runs 3]
    python benchmarks/homepage.py --compare PATH [--requests 100] [--runs 5]
    python benchmarks/homepage.py --population 1000    (then --compare ...; --population 0 removes them)

With ``--compare PATH`` (a checkout of the previous release, e.g. ``git worktree add ../release main``) it
measures only the server times, of both code bases side by side against the same database: each run measures
the previous release and then this one, in fresh processes, and the result holds both and their ratios.

Runs against the demo database (full catalog imported and indexed). Server time is measured in-process
with Django's test client (the full middleware/view/template stack, no network). Freshness starts a real
Celery worker, views a product as a new shopper, and polls the homepage until it is personalised.

``--population N`` gives the database N other (anonymous, synthetic) shoppers with 12 product views each, some of
them among the measured shopper's products, and refreshes the co-occurrence table, so that the measured
recommendations blend co-occurrence in as a shop with traffic does; ``--population 0`` deletes them again and empties
the table. The previous release does not read the table, so both sides of ``--compare`` see the same database.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from _common import ROOT, django_setup, percentile, spread, write


def side_by_side(args):
    """Previous release and this code base, alternating, each in a fresh process on the same database."""
    sides = {"previous_release": Path(args.compare).resolve(), "current": ROOT}
    found = {name: {"cached": [], "uncached": []} for name in sides}
    for _ in range(args.runs):
        for name, code in sides.items():
            out = subprocess.run(
                [sys.executable, __file__, "--code", str(code), "--requests", str(args.requests), "--runs", "1"],
                cwd=code,
                env=dict(os.environ),
                capture_output=True,
                text=True,
            )
            if out.returncode:
                raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            if not Path(result["code"]).resolve().is_relative_to(code):
                raise SystemExit(f"{name}: measured {result['code']}, not the code in {code}")
            found[name]["cached"] += result["cached"]
            found[name]["uncached"] += result["uncached"]
    summary = {
        name: {
            "server_time_p95_ms_cached_profile": spread(v["cached"]),
            "server_time_p95_ms_uncached": spread(v["uncached"]),
        }
        for name, v in found.items()
    }
    ratio = {
        key: summary["current"][key]["median"] / summary["previous_release"][key]["median"]
        for key in ("server_time_p95_ms_cached_profile", "server_time_p95_ms_uncached")
    }
    write(
        "homepage_side_by_side",
        {
            "command": f"python benchmarks/homepage.py --compare PREVIOUS_RELEASE --requests {args.requests} "
            f"--runs {args.runs}",
            **summary,
            "ratio_current_to_previous": ratio,
            "targets": {"server_time_p95_ms_cached_profile": "<= 1.2x", "server_time_p95_ms_uncached": "<= 1.5x"},
            "note": "in-process Django test client, each side in fresh processes, alternating; logged-in shopper with "
            "20 viewed products; p95 of each run's requests, median over runs",
        },
    )


POPULATION_KEY = "bench-population-"


def seed_population(n):
    """Replace the synthetic population by ``n`` shoppers (see the module docstring) and refresh co-occurrence."""
    import numpy as np
    from django.utils import timezone

    from oscar_fashion_ai.models import PreferenceEvent, ProductEmbedding
    from oscar_fashion_ai.personalisation import cooccurrence

    PreferenceEvent.objects.filter(shopper_key__startswith=POPULATION_KEY).delete()
    ids = list(
        ProductEmbedding.objects.filter(status="indexed").order_by("product_id").values_list("product_id", flat=True)
    )
    rng = np.random.default_rng(0)
    now = timezone.now()
    events = []
    for i in range(n):
        picks = list(rng.choice(ids, 10, replace=False)) + list(rng.choice(ids[:20], 2, replace=False))
        events += [
            PreferenceEvent(
                shopper_key=f"{POPULATION_KEY}{i}",
                product_id=int(pk),
                kind="view",
                weight=1.0,
                applied=True,
                date_created=now,
            )
            for pk in picks
        ]
    PreferenceEvent.objects.bulk_create(events, batch_size=5000)
    print(json.dumps({"population": n, "events": len(events), "cooccurrence": cooccurrence.refresh()}))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compare", default=None, help="a checkout of the previous release (side-by-side mode)")
    parser.add_argument("--code", default=None, help=argparse.SUPPRESS)  # internal: the code base to measure
    parser.add_argument("--population", type=int, default=None, help="seed N synthetic shoppers (0: remove them)")
    args = parser.parse_args()
    if args.population is not None:
        django_setup()
        return seed_population(args.population)
    if args.compare:
        return side_by_side(args)
    if args.code:
        sys.path.insert(0, str(Path(args.code).resolve()))
    django_setup()
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.test import Client
    from django.test.utils import setup_test_environment
    from oscar.core.loading import get_model

    from oscar_fashion_ai.models import CustomerPreference, ProductEmbedding
    from oscar_fashion_ai.personalisation import preferences

    setup_test_environment()
    Product = get_model("catalogue", "Product")
    if ProductEmbedding.objects.filter(status="indexed").count() < 100:
        raise SystemExit("Index the catalog first (python manage.py fashion_reindex --sync).")
    User = get_user_model()
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    user = User.objects.create_user(email.split("@")[0], email, "pw")
    products = list(Product.objects.filter(fashion_embedding__status="indexed").order_by("pk")[:20])
    owner = preferences.Owner(user_id=user.pk)
    for p in products:
        preferences.record_event(owner, p.pk, "view")
    preferences.apply_pending(owner)
    client = Client()
    client.force_login(user)

    def measure(clear_cache):
        times = []
        for _ in range(args.requests):
            if clear_cache:
                cache.clear()
            t = time.perf_counter()
            response = client.get("/fashion-ai/")
            times.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200 and b'data-personal="true"' in response.content
        return times

    measure(False)  # warm-up (model load, templates, connections)
    cached = [percentile(measure(False), 95) for _ in range(args.runs)]
    uncached = [percentile(measure(True), 95) for _ in range(args.runs)]
    if args.code:  # one side of the side-by-side comparison: print and go
        CustomerPreference.objects.filter(user=user).delete()
        user.delete()
        print(json.dumps({"cached": cached, "uncached": uncached, "code": preferences.__file__}))
        return

    # Freshness through a real worker.
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "shop",
            "worker",
            "--loglevel=WARNING",
            "--concurrency=1",
            "-n",
            "bench-home@%h",
        ],
        cwd=ROOT,
        env=dict(os.environ),
    )
    fresh = []
    try:
        time.sleep(10)
        for i in range(args.runs):
            shopper = Client()
            product = products[i]
            shopper.get(product.get_absolute_url())
            start = time.perf_counter()
            while time.perf_counter() - start < 30:
                if b'data-personal="true"' in shopper.get("/fashion-ai/").content:
                    break
                time.sleep(0.05)
            fresh.append(time.perf_counter() - start)
    finally:
        worker.terminate()
        worker.wait(30)
        CustomerPreference.objects.filter(user=user).delete()
        user.delete()
    write(
        "homepage",
        {
            "command": f"python benchmarks/homepage.py --requests {args.requests} --runs {args.runs}",
            "server_time_p95_ms_cached_profile": spread(cached),
            "server_time_p95_ms_uncached": spread(uncached),
            "freshness_after_view_s": spread(fresh),
            "targets": {"server_time_p95_ms_cached_profile": 50, "freshness_after_view_s": 2.0},
            "note": "in-process Django test client; logged-in shopper with 20 viewed products",
        },
    )


if __name__ == "__main__":
    main()
