"""Personalised homepage: server time (cached and uncached profile) and freshness after a view.

    python benchmarks/homepage.py [--requests 200] [--runs 3]

Runs against the demo database (full catalog imported and indexed). Server time is measured in-process
with Django's test client (the full middleware/view/template stack, no network). Freshness starts a real
Celery worker, views a product as a new shopper, and polls the homepage until it is personalised.
"""

import argparse
import os
import subprocess
import sys
import time
import uuid

from _common import ROOT, django_setup, percentile, spread, write


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    django_setup()
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.test import Client
    from django.test.utils import setup_test_environment
    from oscar.core.loading import get_model

    from oscar_fashion_ai import preferences
    from oscar_fashion_ai.models import CustomerPreference, ProductEmbedding

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

    # Freshness through a real worker.
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "shop", "worker", "--loglevel=WARNING",
                               "--concurrency=1", "-n", "bench-home@%h"], cwd=ROOT, env=dict(os.environ))
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
    write("homepage", {
        "command": f"python benchmarks/homepage.py --requests {args.requests} --runs {args.runs}",
        "server_time_p95_ms_cached_profile": spread(cached),
        "server_time_p95_ms_uncached": spread(uncached),
        "freshness_after_view_s": spread(fresh),
        "targets": {"server_time_p95_ms_cached_profile": 50, "freshness_after_view_s": 2.0},
        "note": "in-process Django test client; logged-in shopper with 20 viewed products",
    })


if __name__ == "__main__":
    main()
