"""Reindex the whole catalog through a real Celery worker and time it.

    python benchmarks/reindex_worker.py [--concurrency 2] [--timeout 900] [--runs 1] [--limit N]

Needs the demo database with the catalog imported (`python manage.py fashion_load_catalog`) and Redis.
Starts its own worker process on a private queue, queues every product (or the first --limit products),
and waits until every queued product has a current vector (or a recorded failure). With --runs N the
same worker reindexes N times (the first run includes the children's model load, as in production).
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

from _common import ROOT, django_setup, spread, write


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch/ONNX threads per worker child")
    parser.add_argument("--timeout", type=int, default=900)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="reindex only the first N products (quick runs)")
    args = parser.parse_args()
    os.environ["FASHION_AI_QUEUE"] = "fashion-bench"
    django_setup()
    from django.conf import settings
    from oscar.core.loading import get_model

    from oscar_fashion_ai import runtime
    from oscar_fashion_ai.indexing import index
    from oscar_fashion_ai.models import ProductEmbedding

    settings.FASHION_AI = {**settings.FASHION_AI, "QUEUE": "fashion-bench"}
    Product = get_model("catalogue", "Product")
    total = Product.objects.count()
    if not total:
        raise SystemExit("The catalog is empty: run `python manage.py fashion_load_catalog` first.")
    version = runtime.model_info().version
    ids = index.products_needing_index("all")[: args.limit] if args.limit else None
    env = dict(os.environ, FASHION_AI_TORCH_THREADS=str(args.threads))
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "shop",
            "worker",
            "-Q",
            "fashion-bench",
            "--loglevel=WARNING",
            f"--concurrency={args.concurrency}",
            "-n",
            "bench@%h",
        ],
        cwd=ROOT,
        env=env,
    )
    runs = []
    try:
        time.sleep(8)  # let the worker children start
        for _ in range(args.runs):
            rows = ProductEmbedding.objects.all()
            if ids is not None:
                rows = rows.filter(product_id__in=ids)
            rows.update(status="pending", model_version="", vector=None)
            started = time.perf_counter()
            if ids is None:
                queued = index.request_reindex(scope="all", requested_by="benchmark")
            else:
                queued = index.request_reindex(product_ids=ids, requested_by="benchmark")
            done = 0
            while time.perf_counter() - started < args.timeout:
                done = rows.filter(status__in=["indexed", "failed"], model_version=version).count()
                if done >= queued:
                    break
                time.sleep(0.5)
            runs.append((time.perf_counter() - started, done, queued))
            if done < queued:
                break
    finally:
        worker.terminate()
        worker.wait(30)
    elapsed, done, queued = runs[-1]
    seconds = [r[0] for r in runs if r[1] >= r[2]] or [elapsed]
    indexed = ProductEmbedding.objects.filter(status="indexed", model_version=version).count()
    failed = ProductEmbedding.objects.filter(status="failed").count()
    write(
        "reindex_worker",
        {
            "command": f"python benchmarks/reindex_worker.py --concurrency {args.concurrency} --threads {args.threads}"
            f" --runs {args.runs}" + (f" --limit {args.limit}" if args.limit else ""),
            "products": total,
            "queued": queued,
            "indexed": indexed,
            "failed": failed,
            "completed": all(r[1] >= r[2] for r in runs) and len(runs) == args.runs,
            "seconds": round(statistics.median(seconds), 1),
            "seconds_spread": spread(seconds),
            "products_per_s": round(queued / statistics.median(seconds), 1),
            "model_version": version,
            "worker": f"celery prefork, concurrency {args.concurrency}, {args.threads} inference thread(s) per child",
            "target_seconds": 180,
        },
    )


if __name__ == "__main__":
    main()
