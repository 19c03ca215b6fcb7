"""Reindex the whole catalog through a real Celery worker and time it.

    python benchmarks/reindex_worker.py [--concurrency 2] [--timeout 900]

Needs the demo database with the catalog imported (`python manage.py fashion_load_catalog`) and Redis.
Starts its own worker process on a private queue, queues every product, and waits until every product
has a current vector (or a recorded failure).
"""

import argparse
import os
import subprocess
import sys
import time

from _common import ROOT, django_setup, write


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch/ONNX threads per worker child")
    parser.add_argument("--timeout", type=int, default=900)
    args = parser.parse_args()
    os.environ["FASHION_AI_QUEUE"] = "fashion-bench"
    django_setup()
    from django.conf import settings
    from oscar.core.loading import get_model

    from oscar_fashion_ai import embedding, index
    from oscar_fashion_ai.models import ProductEmbedding

    settings.FASHION_AI = {**settings.FASHION_AI, "QUEUE": "fashion-bench"}
    Product = get_model("catalogue", "Product")
    total = Product.objects.count()
    if not total:
        raise SystemExit("The catalog is empty: run `python manage.py fashion_load_catalog` first.")
    version = embedding.model_info().version
    env = dict(os.environ, FASHION_AI_TORCH_THREADS=str(args.threads))
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "shop", "worker", "-Q", "fashion-bench", "--loglevel=WARNING",
         f"--concurrency={args.concurrency}", "-n", "bench@%h"], cwd=ROOT, env=env)
    try:
        time.sleep(8)  # let the worker children start
        ProductEmbedding.objects.all().update(status="pending", model_version="", vector=None)
        started = time.perf_counter()
        queued = index.request_reindex(scope="all", requested_by="benchmark")
        done = 0
        while time.perf_counter() - started < args.timeout:
            done = ProductEmbedding.objects.filter(status__in=["indexed", "failed"], model_version=version).count()
            if done >= queued:
                break
            time.sleep(1)
        elapsed = time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait(30)
    indexed = ProductEmbedding.objects.filter(status="indexed", model_version=version).count()
    failed = ProductEmbedding.objects.filter(status="failed").count()
    write("reindex_worker", {
        "command": f"python benchmarks/reindex_worker.py --concurrency {args.concurrency} --threads {args.threads}",
        "products": total, "queued": queued, "indexed": indexed, "failed": failed, "completed": done >= queued,
        "seconds": round(elapsed, 1), "products_per_s": round(done / elapsed, 1), "model_version": version,
        "worker": f"celery prefork, concurrency {args.concurrency}, {args.threads} inference thread(s) per child",
        "target_seconds": 180,
    })


if __name__ == "__main__":
    main()
