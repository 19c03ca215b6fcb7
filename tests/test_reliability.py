"""Issue #7 (reliability): faults injected into real processes.

(a) the broker is down: shopping and Oscar's checkout still work, events are kept and applied later;
(b) the model file is missing/corrupt or the index has another dimension: the storefront renders without the AI
    sections, the cause is logged once per page, the dashboard shows it;
(c) a real ``celery -A shop worker`` is SIGKILLed in the middle of an embedding batch (pool child, then the whole
    worker): a restarted worker finishes, every product ends indexed once with the right checksum;
(d) the worker's database connections are terminated: the next task succeeds without restarting the worker.
"""

import contextlib
import hashlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from oscar.core.loading import get_model
from PIL import Image, ImageDraw

from oscar_fashion_ai import embedding, receivers, tasks
from oscar_fashion_ai.catalog_import import CatalogImporter
from oscar_fashion_ai.models import CustomerPreference, PreferenceEvent, ProductEmbedding
from tests.conftest import first_visit

Product = get_model("catalogue", "Product")
ProductImage = get_model("catalogue", "ProductImage")
ROOT = Path(__file__).resolve().parent.parent
DEAD_BROKER = "redis://127.0.0.1:1/0"
WORKER_APP_NAME = "fashion-test-worker"  # tells the worker subprocesses' database connections apart


def wait_for(predicate, timeout=60.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


@pytest.fixture
def catalog(csv_dataset):
    CatalogImporter(stdout_progress=False).run(csv_dataset)
    call_command("fashion_reindex", "--all", "--sync", verbosity=0)
    cache.clear()
    return Product.objects.order_by("pk")


def _reset_producers(app):
    app._pool = None
    app.amqp._producer_pool = None


@contextlib.contextmanager
def dead_broker():
    """Point the web process's Celery app at a port where nothing listens (as when Redis is down)."""
    from shop.celery import app

    good = app.conf.broker_url
    app.conf.broker_url = DEAD_BROKER
    _reset_producers(app)
    try:
        yield
    finally:
        app.conf.broker_url = good
        _reset_producers(app)


# --- (a) broker down ------------------------------------------------------------------------------------------

def place_order_through_checkout(client, product):
    """Oscar's real checkout: basket, shipping address, (free) shipping, payment, preview, place order."""
    r = client.post(reverse("basket:add", args=[product.pk]), {"quantity": 1})
    assert r.status_code == 302, r.content[:300]
    r = client.get(reverse("checkout:index"), follow=True)
    assert r.status_code == 200 and r.redirect_chain[-1][0].endswith(reverse("checkout:shipping-address"))
    r = client.post(reverse("checkout:shipping-address"), {
        "first_name": "Ada", "last_name": "Shopper", "line1": "1 Test Street", "line4": "London",
        "postcode": "N1 9GU", "phone_number": "", "country": "GB"}, follow=True)
    assert r.status_code == 200, r.content[:300]
    assert r.redirect_chain[-1][0].endswith(reverse("checkout:payment-details")), r.redirect_chain
    r = client.get(reverse("checkout:preview"))
    assert r.status_code == 200
    r = client.post(reverse("checkout:preview"), {"action": "place_order"})
    assert r.status_code == 302 and r["Location"].endswith(reverse("checkout:thank-you")), r.content[:500]
    return client.get(r["Location"])


@pytest.mark.django_db(transaction=True)
def test_broker_down_shopping_and_checkout_work_and_events_are_applied_later(catalog, django_user_model, caplog):
    from oscar.apps.address.models import Country

    from shop.celery import app

    Country.objects.create(iso_3166_1_a2="GB", iso_3166_1_a3="GBR", iso_3166_1_numeric="826",
                           printable_name="United Kingdom", name="United Kingdom", is_shipping_country=True)
    Order = get_model("order", "Order")
    user = django_user_model.objects.create_user("ada", "ada@example.com", "pw")
    shoes = list(Product.objects.filter(categories__name="Shoes").order_by("pk"))
    app.control.purge()
    client = Client()
    first_visit(client, shoes[1])
    with dead_broker(), caplog.at_level(logging.ERROR, logger="oscar_fashion_ai"):
        client.get(shoes[1].get_absolute_url())  # anonymous browsing first, merged into the account at login
        assert client.login(username="ada@example.com", password="pw")
        page = client.get(shoes[0].get_absolute_url())
        assert page.status_code == 200 and 'id="fashion-ai-similar"' in page.content.decode()
        thanks = place_order_through_checkout(client, shoes[0])
        assert thanks.status_code == 200
        home = client.get(reverse("fashion-ai:home"))
        assert home.status_code == 200
    order = Order.objects.get(user=user)
    assert [line.product_id for line in order.lines.all()] == [shoes[0].pk]
    kinds = sorted(PreferenceEvent.objects.filter(user=user).values_list("kind", flat=True))
    assert kinds == ["basket", "order", "view", "view"]
    # The anonymous view was folded in at login (no broker needed); the three events after it wait for a worker.
    pending = sorted(PreferenceEvent.objects.filter(user=user, applied=False).values_list("kind", flat=True))
    assert pending == ["basket", "order", "view"]
    # The publishes were really attempted against the dead broker, logged, and swallowed.
    broker_errors = [r for r in caplog.records if "broker unavailable" in r.getMessage()]
    assert broker_errors and all("preference update left pending" in r.getMessage() for r in broker_errors)
    # Nothing reached the real broker's queue either.
    import redis

    assert redis.Redis.from_url(app.conf.broker_url).llen("celery") == 0
    # Recovery: the rebuild command (what the periodic sweep runs) applies every pending event.
    call_command("fashion_rebuild_preferences", verbosity=0)
    assert not PreferenceEvent.objects.filter(applied=False).exists()
    pref = CustomerPreference.objects.get(user=user)
    assert pref.vector is not None and pref.event_count == 4
    shoe_vectors = np.asarray([ProductEmbedding.objects.get(product=p).vector for p in shoes[:2]])
    assert float(np.asarray(pref.vector) @ shoe_vectors.mean(axis=0)) > 0.9  # the profile follows what she did
    assert 'data-personal="true"' in client.get(reverse("fashion-ai:home")).content.decode()


@pytest.mark.django_db(transaction=True)
def test_broker_down_image_changes_stay_pending_and_the_sweep_queues_them(catalog, caplog):
    from shop.celery import app

    app.control.purge()
    product = catalog[0]
    with dead_broker(), caplog.at_level(logging.ERROR, logger="oscar_fashion_ai"):
        image = ProductImage(product=product, display_order=0)
        image.original.save("new.jpg", ContentFile(_photo(1, (80, 80))), save=True)  # receivers run, publish fails
        ProductImage.objects.filter(product=product).exclude(pk=image.pk).delete()
    assert ProductEmbedding.objects.get(product=product).status == "pending"
    assert any("left pending for the next sweep" in r.getMessage() for r in caplog.records)
    import redis

    queue = redis.Redis.from_url(app.conf.broker_url)
    assert queue.llen("celery") == 0
    tasks.sweep()  # the periodic task, run after the broker is back
    assert queue.llen("celery") == 1  # one batch holding the pending product
    app.control.purge()


# --- (b) model missing / corrupt / dimension mismatch ---------------------------------------------------------

def break_model(how, tmp_path, settings):
    if how == "missing":
        settings.FASHION_AI = {**settings.FASHION_AI, "EMBEDDER_WEIGHTS": str(tmp_path / "gone.safetensors")}
        return "gone.safetensors"
    if how == "corrupt":
        bad = tmp_path / "corrupt.safetensors"
        bad.write_bytes(os.urandom(4096))
        settings.FASHION_AI = {**settings.FASHION_AI, "EMBEDDER_WEIGHTS": str(bad)}
        return "not a valid safetensors file"
    # The index holds 128-d vectors (e.g. built by an older model) while the configured model makes 256-d ones.
    version = embedding.model_info().version
    ids = list(ProductEmbedding.objects.values_list("product_id", flat=True))
    embedding.ensure_dimensions(128)
    rng = np.random.default_rng(0)
    for pk in ids:
        v = rng.normal(size=128).astype(np.float32)
        ProductEmbedding.objects.filter(product_id=pk).update(vector=v / np.linalg.norm(v), status="indexed",
                                                              model_version=version)
    return "fashion_reindex --all"


def fashion_warnings(caplog):
    return [r for r in caplog.records if r.name.startswith("oscar_fashion_ai") and r.levelno >= logging.WARNING]


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["missing", "corrupt", "dimension"])
def test_broken_model_storefront_renders_without_ai_and_dashboard_says_why(catalog, how, tmp_path, settings, caplog,
                                                                           django_user_model):
    shopper = Client()
    for product in catalog.filter(categories__name="Pants")[:2]:
        shopper.get(product.get_absolute_url())
    call_command("fashion_rebuild_preferences", verbosity=0)
    assert 'data-personal="true"' in shopper.get(reverse("fashion-ai:home")).content.decode()
    product = catalog[0]
    assert 'id="fashion-ai-similar"' in shopper.get(product.get_absolute_url()).content.decode()
    cause = break_model(how, tmp_path, settings)
    cache.clear()

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        page = shopper.get(product.get_absolute_url())
    assert page.status_code == 200 and 'id="fashion-ai-similar"' not in page.content.decode()
    assert product.get_title() in page.content.decode()
    logged = fashion_warnings(caplog)
    assert len(logged) == 1 and cause in logged[0].getMessage(), [r.getMessage() for r in logged]

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        home = shopper.get(reverse("fashion-ai:home"))
    body = home.content.decode()
    assert home.status_code == 200 and 'data-personal="false"' in body and "Popular right now" in body
    assert 'id="fashion-ai-recommended"' in body  # the fallback grid (bestsellers/newest) still shows products
    logged = fashion_warnings(caplog)
    assert len(logged) == 1 and cause in logged[0].getMessage(), [r.getMessage() for r in logged]

    similar = shopper.get(reverse("fashion-ai:api-similar", args=[product.pk]))
    assert similar.status_code == 503 and cause in similar.json()["error"]

    staff = django_user_model.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    admin = Client()
    admin.force_login(staff)
    dashboard = admin.get(reverse("fashion-ai-dashboard:fashion-ai-index"))
    assert dashboard.status_code == 200
    text = dashboard.content.decode()
    alert = "fashion-ai-index-error" if how == "dimension" else "fashion-ai-model-error"
    assert f'id="{alert}"' in text and cause in text, text[text.find("Fashion AI"):][:3000]


# --- real worker subprocesses -------------------------------------------------------------------------------

class WorkerProcess:
    """``celery -A shop worker`` in its own process group, on the test database, logging to a file."""

    def __init__(self, log_path: Path, env: dict):
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "shop", "worker", "--pool", "prefork", "--concurrency", "1",
             "-O", "fair", "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-n", f"reliability-{os.getpid()}-{time.monotonic_ns()}@%h"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
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

    embedding.get_embedder()  # export the ONNX model once, into the cache folder the workers share
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


def _photo(seed, size):
    """A product photo that takes a while to decode (a large PNG), different for every product."""
    img = Image.new("RGB", size, (240, 240, 240))
    draw = ImageDraw.Draw(img)
    rng = np.random.default_rng(seed)
    colour = tuple(int(c) for c in rng.integers(0, 200, size=3))
    w, h = size
    draw.rectangle([w * 0.2, h * 0.1 + seed % 50, w * 0.8, h * 0.9], fill=colour)
    import io

    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def make_products(n, size):
    from oscar.test.factories import create_product

    products = []
    with receivers.paused():  # this test queues its own batches
        for i in range(n):
            product = create_product(title=f"Kill test {i}", num_in_stock=3)
            image = ProductImage(product=product, display_order=0)
            image.original.save(f"kill-{i}.png", ContentFile(_photo(i, size)), save=False)
            image.save()
            products.append(product)
    embedding.mark_pending([p.pk for p in products])
    return products


def assert_indexed_once_with_right_checksums(products):
    rows = list(ProductEmbedding.objects.filter(product__in=products))
    assert len(rows) == len(products) == len({r.product_id for r in rows})
    version = embedding.model_info().version
    for row in rows:
        image = ProductImage.objects.get(product_id=row.product_id)
        with image.original.open("rb") as fh:
            expected = hashlib.sha1(fh.read()).hexdigest()
        assert (row.status, row.image_checksum, row.model_version, row.error, row.attempts) == (
            "indexed", expected, version, "", 0), row
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
    assert wait_for(lambda: worker.count("succeeded") >= 1 and worker.count("received") >= 2, timeout=90,
                    interval=0.02), worker.text()
    time.sleep(0.15)  # a batch takes 0.5-1 s here: the child is now decoding and embedding
    child = worker.children()
    assert len(child) == 1
    os.kill(child[0], signal.SIGKILL)
    indexed_at_kill = ProductEmbedding.objects.filter(product_id__in=ids, status="indexed").count()
    assert indexed_at_kill == batch  # batch 1 written, batch 2 not: really in the middle of the work
    assert wait_for(lambda: "WorkerLostError" in worker.text(), timeout=20), worker.text()
    assert "signal 9" in worker.text()  # Celery reports the job that was running in the killed child

    # 2. The whole worker is SIGKILLed mid-batch (machine lost): its message stays unacknowledged in Redis.
    assert wait_for(lambda: worker.count("succeeded") >= 2 and worker.count("received") >= 4, timeout=90,
                    interval=0.02), worker.text()
    time.sleep(0.3)
    worker.kill_all()
    left = ProductEmbedding.objects.filter(product_id__in=ids).exclude(status="indexed").count()
    assert 0 < left, "the last batch finished before the kill; the test did not hit mid-batch"

    # 3. A restarted worker gets the message back (visibility timeout) and finishes the work.
    restarted = start_worker(FASHION_TEST_VISIBILITY_TIMEOUT="8")
    assert wait_for(lambda: ProductEmbedding.objects.filter(product_id__in=ids, status="indexed").count() == len(ids),
                    timeout=90), restarted.text()
    assert_indexed_once_with_right_checksums(products)
    assert restarted.count("succeeded") >= 1  # the redelivered batch was finished by the new worker


def worker_backends():
    """PostgreSQL backends of the worker subprocesses on the test database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
                       [WORKER_APP_NAME])
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
        cursor.execute("SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND application_name = %s", [WORKER_APP_NAME])
        terminated = cursor.fetchall()
    assert terminated and all(ok for _, ok in terminated)
    assert not ProductEmbedding.objects.filter(product__in=products, status="indexed").exists()  # mid-task
    # The interrupted batch fails on its next query, is retried (transient database error), and succeeds.
    assert wait_for(lambda: ProductEmbedding.objects.filter(product__in=products[:batch], status="indexed").count()
                    == batch, timeout=60), worker.text()
    retried = r"embed_products\[[0-9a-f-]+\] retry: Retry in .*(OperationalError|InterfaceError)"
    assert re.search(retried, worker.text()), worker.text()[-3000:]
    # The next task runs on a fresh connection in the same, never-restarted worker.
    tasks.enqueue_embedding([products[batch].pk])
    assert wait_for(lambda: ProductEmbedding.objects.filter(product=products[batch], status="indexed").exists(), 60), \
        worker.text()
    assert worker.proc.poll() is None and worker.children() == pool  # same worker, same pool process
    assert "WorkerLostError" not in worker.text()
    assert_indexed_once_with_right_checksums(products)
