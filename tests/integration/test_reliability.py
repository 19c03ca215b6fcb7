"""Issue #7 (reliability): faults injected into real processes.

(a) the broker is down: shopping and Oscar's checkout still work, events are kept and applied later;
(b) the model file is missing/corrupt or the index has another dimension: the storefront renders without the AI
    sections, the cause is logged once per page, the dashboard shows it;
(c) a real ``celery -A shop worker`` is SIGKILLed in the middle of an embedding batch (pool child, then the whole
    worker): a restarted worker finishes, every product ends indexed once with the right checksum;
(d) the worker's database connections are terminated: the next task succeeds without restarting the worker.
"""

import contextlib
import logging
import os

import numpy as np
import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from oscar.core.loading import get_model

from oscar_fashion_ai import runtime, tasks
from oscar_fashion_ai.indexing import embedding
from oscar_fashion_ai.models import CustomerPreference, PreferenceEvent, ProductEmbedding
from tests.factories import slow_decoding_photo
from tests.helpers import first_visit

pytestmark = pytest.mark.usefixtures("fashion_models")

Product = get_model("catalogue", "Product")
ProductImage = get_model("catalogue", "ProductImage")
DEAD_BROKER = "redis://127.0.0.1:1/0"


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
    r = client.post(
        reverse("checkout:shipping-address"),
        {
            "first_name": "Ada",
            "last_name": "Shopper",
            "line1": "1 Test Street",
            "line4": "London",
            "postcode": "N1 9GU",
            "phone_number": "",
            "country": "GB",
        },
        follow=True,
    )
    assert r.status_code == 200, r.content[:300]
    assert r.redirect_chain[-1][0].endswith(reverse("checkout:payment-details")), r.redirect_chain
    r = client.get(reverse("checkout:preview"))
    assert r.status_code == 200
    r = client.post(reverse("checkout:preview"), {"action": "place_order"})
    assert r.status_code == 302 and r["Location"].endswith(reverse("checkout:thank-you")), r.content[:500]
    return client.get(r["Location"])


@pytest.mark.django_db(transaction=True)
def test_broker_down_shopping_and_checkout_work_and_events_are_applied_later(
    indexed_catalog, django_user_model, caplog
):
    from oscar.apps.address.models import Country

    from shop.celery import app

    Country.objects.create(
        iso_3166_1_a2="GB",
        iso_3166_1_a3="GBR",
        iso_3166_1_numeric="826",
        printable_name="United Kingdom",
        name="United Kingdom",
        is_shipping_country=True,
    )
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
def test_broker_down_image_changes_stay_pending_and_the_sweep_queues_them(indexed_catalog, caplog):
    from shop.celery import app

    app.control.purge()
    product = indexed_catalog[0]
    with dead_broker(), caplog.at_level(logging.ERROR, logger="oscar_fashion_ai"):
        image = ProductImage(product=product, display_order=0)
        # receivers run, publish fails
        image.original.save("new.jpg", ContentFile(slow_decoding_photo(1, (80, 80))), save=True)
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
    version = runtime.model_info().version
    ids = list(ProductEmbedding.objects.values_list("product_id", flat=True))
    embedding.ensure_dimensions(128)
    rng = np.random.default_rng(0)
    for pk in ids:
        v = rng.normal(size=128).astype(np.float32)
        ProductEmbedding.objects.filter(product_id=pk).update(
            vector=v / np.linalg.norm(v), status="indexed", model_version=version
        )
    return "fashion_reindex --all"


def fashion_warnings(caplog):
    return [r for r in caplog.records if r.name.startswith("oscar_fashion_ai") and r.levelno >= logging.WARNING]


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["missing", "corrupt", "dimension"])
def test_broken_model_storefront_renders_without_ai_and_dashboard_says_why(
    indexed_catalog, how, tmp_path, settings, caplog, django_user_model
):
    shopper = Client()
    for product in indexed_catalog.filter(categories__name="Pants")[:2]:
        shopper.get(product.get_absolute_url())
    call_command("fashion_rebuild_preferences", verbosity=0)
    assert 'data-personal="true"' in shopper.get(reverse("fashion-ai:home")).content.decode()
    product = indexed_catalog[0]
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
    assert f'id="{alert}"' in text and cause in text, text[text.find("Fashion AI") :][:3000]


# --- real worker subprocesses -------------------------------------------------------------------------------
