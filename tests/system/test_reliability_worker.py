"""Issue #7 (reliability), faults injected into real worker processes:

(c) a real ``celery -A shop worker`` is SIGKILLed in the middle of an embedding batch (pool child, then the whole
    worker): a restarted worker finishes, every product ends indexed once with the right checksum;
(d) the worker's database connections are terminated: the next task succeeds without restarting the worker.

(a) and (b) are in tests/integration/test_reliability.py.
"""

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.db import connection
from oscar.core.loading import get_model

from oscar_fashion_ai import runtime, tasks
from oscar_fashion_ai.indexing import embedding, receivers
from oscar_fashion_ai.models import ProductEmbedding
from tests.factories import slow_decoding_photo
from tests.helpers import wait_for

pytestmark = pytest.mark.usefixtures("fashion_models")

ProductImage = get_model("catalogue", "ProductImage")
ROOT = Path(__file__).resolve().parents[2]
WORKER_APP_NAME = "fashion-test-worker"  # tells the worker subprocesses' database connections apart


class WorkerProcess:
    """``celery -A shop worker`` in its own process group, on the test database, logging to a file."""

    def __init__(self, log_path: Path, env: dict):
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "shop",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                "1",
                "-O",
                "fair",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                f"reliability-{os.getpid()}-{time.monotonic_ns()}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert wait_for(lambda: " ready." in self.text() or self.proc.poll() is not None, timeout=90), self.text()
        assert self.proc.poll() is None, self.text()

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(x) for x in path.read_text().split()] if path.exists() else []

    def count(self, what: str) -> int:
        return len(re.findall(rf"oscar_fashion_ai\.embed_products\[[0-9a-f-]+\] {what}", self.text()))

    def kill_all(self):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.log.close()

    def stop(self):
        if self.proc.poll() is None:
            self.kill_all()


@pytest.fixture
def start_worker(transactional_db, tmp_path, tiny_weights):
    """Start real worker subprocesses that reach this test's database, media folder, broker and weights."""
    from shop.celery import app

    runtime.get_embedder()  # export the ONNX model once, into the cache folder the workers share
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.worker_settings",
        "DATABASE_URL": f"postgresql://{db['USER']}@{quote(db['HOST'], safe='')}/{db['NAME']}"
        f"?application_name={WORKER_APP_NAME}",
        "FASHION_TEST_MEDIA_ROOT": str(django_settings.MEDIA_ROOT),
        "TEST_CELERY_BROKER_URL": app.conf.broker_url,
        "FASHION_AI_EMBEDDER_WEIGHTS": str(tiny_weights),
        "FASHION_AI_TORCH_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }
    app.control.purge()
    workers = []

    def start(**extra):
        worker = WorkerProcess(tmp_path / f"worker-{len(workers)}.log", {**env, **extra})
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
    app.control.purge()


def make_products(n, size):
    from oscar.test.factories import create_product

    products = []
    with receivers.paused():  # this test queues its own batches
        for i in range(n):
            product = create_product(title=f"Kill test {i}", num_in_stock=3)
            image = ProductImage(product=product, display_order=0)
            image.original.save(f"kill-{i}.png", ContentFile(slow_decoding_photo(i, size)), save=False)
            image.save()
            products.append(product)
    embedding.mark_pending([p.pk for p in products])
    return products


def assert_indexed_once_with_right_checksums(products):
    rows = list(ProductEmbedding.objects.filter(product__in=products))
    assert len(rows) == len(products) == len({r.product_id for r in rows})
    version = runtime.model_info().version
    for row in rows:
        image = ProductImage.objects.get(product_id=row.product_id)
        with image.original.open("rb") as fh:
            expected = hashlib.sha1(fh.read()).hexdigest()
        assert (row.status, row.image_checksum, row.model_version, row.error, row.attempts) == (
            "indexed",
            expected,
            version,
            "",
            0,
        ), row
        assert row.image_id == image.pk and row.vector is not None and len(row.vector) == 256


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_sigkilled_mid_batch_is_redelivered_and_every_product_indexed_once(start_worker, settings):
    batch = 30
    settings.FASHION_AI = {**settings.FASHION_AI, "BATCH_SIZE": batch}
    products = make_products(3 * batch, (1400, 1400))
    ids = [p.pk for p in products]
    worker = start_worker(FASHION_TEST_VISIBILITY_TIMEOUT="8")
    tasks.enqueue_embedding(ids)

    # 1. The pool child dies mid-batch (as under the OOM killer): wait until the first batch is done and the
    #    second one has been handed to the child, then SIGKILL the child.
    assert wait_for(
        lambda: worker.count("succeeded") >= 1 and worker.count("received") >= 2, timeout=90, interval=0.02
    ), worker.text()
    time.sleep(0.15)  # a batch takes 0.5-1 s here: the child is now decoding and embedding
    child = worker.children()
    assert len(child) == 1
    os.kill(child[0], signal.SIGKILL)
    indexed_at_kill = ProductEmbedding.objects.filter(product_id__in=ids, status="indexed").count()
    assert indexed_at_kill == batch  # batch 1 written, batch 2 not: really in the middle of the work
    assert wait_for(lambda: "WorkerLostError" in worker.text(), timeout=20), worker.text()
    assert "signal 9" in worker.text()  # Celery reports the job that was running in the killed child

    # 2. The whole worker is SIGKILLed mid-batch (machine lost): its message stays unacknowledged in Redis.
    assert wait_for(
        lambda: worker.count("succeeded") >= 2 and worker.count("received") >= 4, timeout=90, interval=0.02
    ), worker.text()
    time.sleep(0.3)
    worker.kill_all()
    left = ProductEmbedding.objects.filter(product_id__in=ids).exclude(status="indexed").count()
    assert 0 < left, "the last batch finished before the kill; the test did not hit mid-batch"

    # 3. A restarted worker gets the message back (visibility timeout) and finishes the work.
    restarted = start_worker(FASHION_TEST_VISIBILITY_TIMEOUT="8")
    assert wait_for(
        lambda: ProductEmbedding.objects.filter(product_id__in=ids, status="indexed").count() == len(ids), timeout=90
    ), restarted.text()
    assert_indexed_once_with_right_checksums(products)
    assert restarted.count("succeeded") >= 1  # the redelivered batch was finished by the new worker


def worker_backends():
    """PostgreSQL backends of the worker subprocesses on the test database."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
            [WORKER_APP_NAME],
        )
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_survives_its_database_connection_being_terminated_mid_task(start_worker, settings):
    batch = 30
    settings.FASHION_AI = {**settings.FASHION_AI, "BATCH_SIZE": batch}
    products = make_products(batch + 1, (1400, 1400))
    worker = start_worker()
    pool = worker.children()
    assert not worker_backends()
    tasks.enqueue_embedding([p.pk for p in products[:batch]])
    # The task opens its connection, then spends about a second decoding images: terminate it then.
    assert wait_for(lambda: bool(worker_backends()), timeout=60, interval=0.02), worker.text()
    time.sleep(0.2)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            [WORKER_APP_NAME],
        )
        terminated = cursor.fetchall()
    assert terminated and all(ok for _, ok in terminated)
    assert not ProductEmbedding.objects.filter(product__in=products, status="indexed").exists()  # mid-task
    # The interrupted batch fails on its next query, is retried (transient database error), and succeeds.
    assert wait_for(
        lambda: ProductEmbedding.objects.filter(product__in=products[:batch], status="indexed").count() == batch,
        timeout=60,
    ), worker.text()
    retried = r"embed_products\[[0-9a-f-]+\] retry: Retry in .*(OperationalError|InterfaceError)"
    assert re.search(retried, worker.text()), worker.text()[-3000:]
    # The next task runs on a fresh connection in the same, never-restarted worker.
    tasks.enqueue_embedding([products[batch].pk])
    assert wait_for(lambda: ProductEmbedding.objects.filter(product=products[batch], status="indexed").exists(), 60), (
        worker.text()
    )
    assert worker.proc.poll() is None and worker.children() == pool  # same worker, same pool process
    assert "WorkerLostError" not in worker.text()
    assert_indexed_once_with_right_checksums(products)
