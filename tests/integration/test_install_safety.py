"""Safe by default in any shop: admin registration, dead brokers and result stores, the personalisation switch,
cookie-less requests, redirects, the ONNX cache, demo code kept out of the package, and `fashion_doctor`."""

import io
import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from django.contrib import admin
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from oscar.core.loading import get_model

from oscar_fashion_ai import conf
from oscar_fashion_ai.catalog_import import CatalogImporter
from oscar_fashion_ai.models import CustomerPreference, PreferenceEvent, ProductEmbedding
from oscar_fashion_ai.personalisation import preferences
from tests.factories import make_image

pytestmark = pytest.mark.usefixtures("fashion_models")

ROOT = Path(__file__).resolve().parents[2]
Product = get_model("catalogue", "Product")
ProductImage = get_model("catalogue", "ProductImage")


@pytest.fixture
def indexed(indexed_catalog):
    from shop.celery import app

    yield indexed_catalog
    app.control.purge()  # drop the tasks these tests queued (no worker runs here)


# --- admin ----------------------------------------------------------------------------------------------------


def test_the_admin_action_is_added_to_oscars_product_admin_without_re_registering_it():
    from oscar.apps.catalogue.admin import ProductAdmin

    from oscar_fashion_ai.admin import add_reindex_action, reindex_selected

    registered = admin.site._registry[Product]
    assert type(registered) is ProductAdmin  # Oscar's (or a fork's) admin stays registered as it was
    assert reindex_selected in registered.actions
    assert add_reindex_action() is registered and registered.actions.count(reindex_selected) == 1
    assert add_reindex_action(admin.AdminSite()) is None  # no product admin there: nothing is registered
    # (tests/test_minimal_shop.py starts a shop with the plugin's apps listed before Oscar's)


# --- a dead broker or result store ----------------------------------------------------------------------------


@contextmanager
def celery_urls(broker=None, backend=None):
    from shop.celery import app

    saved = app.conf.broker_url, app.conf.result_backend

    def reset():
        app._pool = None
        app._local.__dict__.pop("backend", None)

    try:
        if broker:
            app.conf.broker_url = broker
        if backend:
            app.conf.result_backend = backend
        reset()
        yield
    finally:
        app.conf.broker_url, app.conf.result_backend = saved
        reset()


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers (a hung Redis, a black-holing firewall)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock.getsockname()[1]
    sock.close()


def _timed(fn):
    """Seconds ``fn`` took; a call still running after 60 s fails the test instead of hanging it."""
    box = {}

    def run():
        started = time.monotonic()
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc
        box["seconds"] = time.monotonic() - started
        from django.db import connection

        connection.close()  # this thread's own connection to the test database

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "blocked for more than 60 s"
    if "error" in box:
        raise box["error"]
    return box["seconds"], box.get("value")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("down", ["result store", "broker", "silent broker"])
def test_a_dead_broker_or_result_store_never_holds_up_a_save_or_a_request(
    down, csv_dataset, django_user_model, silent_port, caplog
):
    from shop.celery import app

    CatalogImporter(stdout_progress=False).run(csv_dataset)
    app.control.purge()
    product = Product.objects.order_by("pk").first()
    staff = django_user_model.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    client = Client()
    client.force_login(staff)
    dead = f"redis://127.0.0.1:{_free_port()}/0"
    urls = {
        "result store": {"backend": dead},
        "broker": {"broker": dead},
        "silent broker": {"broker": f"redis://127.0.0.1:{silent_port}/0"},
    }[down]
    with celery_urls(**urls):
        # a real image save, committed (the receiver publishes after the commit), as the dashboard does it
        saved, _ = _timed(
            lambda: ProductImage.objects.create(
                product=product, original=ContentFile(make_image("Shirt", 77), "new.jpg")
            )
        )
        asked, response = _timed(
            lambda: client.post(reverse("fashion-ai-dashboard:fashion-ai-reindex"), {"scope": "stale"})
        )
    app.control.purge()
    assert saved < 5, f"an image save took {saved:.1f} s with the {down} down"
    assert asked < 5 and response.status_code == 302, f"the reindex request took {asked:.1f} s"
    assert ProductEmbedding.objects.get(product=product).status == "pending"  # nothing lost: the sweep finds it
    if down != "result store":
        assert "broker unavailable" in caplog.text


def test_tasks_store_no_results():
    from oscar_fashion_ai import tasks

    for task in (tasks.embed_products, tasks.update_preference, tasks.sweep, tasks.cleanup_anonymous_profiles):
        assert task.ignore_result is True, task.name


# --- personalisation ------------------------------------------------------------------------------------------


def test_requests_without_a_session_record_nothing(indexed):
    shirt, other = list(Product.objects.filter(categories__name="Shirt").order_by("pk")[:2])
    for _ in range(3):
        assert Client().get(shirt.get_absolute_url()).status_code == 200  # a bot: no cookies kept
    assert not PreferenceEvent.objects.exists() and not CustomerPreference.objects.exists()
    browser = Client()
    browser.get(shirt.get_absolute_url())  # a first visit opens a session, records nothing
    assert not PreferenceEvent.objects.exists()
    browser.get(other.get_absolute_url())  # the session's next views count
    key = browser.session[preferences.SESSION_KEY]
    assert list(PreferenceEvent.objects.values_list("shopper_key", "product_id")) == [(key, other.pk)]


def test_personalisation_can_be_switched_off(indexed, settings, django_user_model):
    shirt = Product.objects.filter(categories__name="Shirt").first()
    user = django_user_model.objects.create_user("p", "p@example.com", "pw")
    client = Client()
    client.force_login(user)
    client.get(shirt.get_absolute_url())
    preferences.apply_pending(preferences.Owner(user_id=user.pk))
    assert client.get(reverse("fashion-ai:api-recommendations")).json()["source"] == "personal"
    settings.FASHION_AI = {**settings.FASHION_AI, "PERSONALISATION": False}
    PreferenceEvent.objects.all().delete()
    anonymous = Client()
    for product in Product.objects.order_by("pk")[:3]:
        client.get(product.get_absolute_url())
        anonymous.get(product.get_absolute_url())
        anonymous.post(reverse("basket:add", args=[product.pk]), {"quantity": 1})
    assert not PreferenceEvent.objects.exists()
    assert preferences.SESSION_KEY not in anonymous.session
    assert client.get(reverse("fashion-ai:api-recommendations")).json()["source"] == "fallback"
    home = client.get(reverse("fashion-ai:home")).content.decode()
    assert 'data-personal="false"' in home
    # what was recorded before can still be deleted
    assert client.post(reverse("fashion-ai:forget-profile")).status_code == 302
    assert not CustomerPreference.objects.filter(user=user).exists()


def test_search_without_tracking(indexed, settings, django_user_model):
    """``PERSONALISATION = False`` is search without tracking: no receiver (product view, basket addition, order,
    login) and no endpoint writes a PreferenceEvent or a profile, no shopper key is handed out, and the homepage
    and the recommendations API show the popular products. Search keeps working."""
    from oscar.test.factories import create_basket, create_order

    shirt, shoe = (
        Product.objects.filter(categories__name="Shirt").first(),
        Product.objects.filter(categories__name="Shoes").first(),
    )
    # A shopper who browsed while personalisation was on: a key in the session, one event, a profile.
    earlier = Client()
    earlier.get(shirt.get_absolute_url())
    earlier.get(shoe.get_absolute_url())
    key = earlier.session[preferences.SESSION_KEY]
    preferences.apply_pending(preferences.Owner(shopper_key=key))
    before = (
        sorted(PreferenceEvent.objects.values_list("pk", "user_id", "shopper_key", "product_id", "applied")),
        sorted(CustomerPreference.objects.values_list("pk", "user_id", "shopper_key", "event_count")),
    )
    assert before[0] and before[1]

    settings.FASHION_AI = {**settings.FASHION_AI, "PERSONALISATION": False}
    user = django_user_model.objects.create_user("t", "t@example.com", "pw")
    earlier.force_login(user)  # login: the anonymous events are not merged into the account
    anonymous = Client()
    for client in (earlier, anonymous):
        for product in (shirt, shoe, shirt):
            assert client.get(product.get_absolute_url()).status_code == 200
        client.post(reverse("basket:add", args=[shoe.pk]), {"quantity": 1})
        r = client.post(reverse("fashion-ai:api-events"), {"product_id": shirt.pk})
        assert r.status_code == 200 and r.json()["recorded"] is False
        r = client.get(reverse("fashion-ai:api-recommendations"))
        assert r.status_code == 200 and r.json()["source"] == "fallback"
        assert 'data-personal="false"' in client.get(reverse("fashion-ai:home")).content.decode()
        r = client.get(reverse("fashion-ai:api-similar", args=[shirt.pk]))
        assert r.status_code == 200 and r.json()["results"]
    basket = create_basket(empty=True)
    basket.add_product(shoe)
    create_order(user=user, basket=basket)  # fires order_placed
    assert preferences.SESSION_KEY not in anonymous.session
    assert (
        sorted(PreferenceEvent.objects.values_list("pk", "user_id", "shopper_key", "product_id", "applied")),
        sorted(CustomerPreference.objects.values_list("pk", "user_id", "shopper_key", "event_count")),
    ) == before
    assert not PreferenceEvent.objects.filter(user=user).exists()


@pytest.mark.parametrize("bad", ["PERSONALISATION"])
def test_the_switch_is_checked(settings, bad):
    from oscar_fashion_ai.checks import check_install_settings

    settings.FASHION_AI = {**settings.FASHION_AI, bad: "no"}
    errors = check_install_settings()
    assert errors and "must be True or False" in errors[0].msg


def test_the_data_folders_are_checked(settings, tmp_path):
    from oscar_fashion_ai.checks import check_install_settings

    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.FASHION_AI = {**settings.FASHION_AI, "CACHE_DIR": str(tmp_path / "media" / "onnx")}
    assert [e.id for e in check_install_settings()] == ["oscar_fashion_ai.E005"]
    settings.FASHION_AI = {**settings.FASHION_AI, "CACHE_DIR": 3}
    assert [e.id for e in check_install_settings()] == ["oscar_fashion_ai.E004"]


# --- redirects ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "https://evil.example/x",
        "/\\evil.example",
        "\\\\evil.example",
        "http:///evil.example",
        " //evil.example",
        "javascript:alert(1)",
    ],
)
def test_forget_never_redirects_off_site(client, target):
    response = client.post(reverse("fashion-ai:forget-profile"), {"next": target})
    assert response.status_code == 302 and response["Location"] == "/"


@pytest.mark.django_db
def test_forget_returns_to_a_page_of_the_shop(client):
    response = client.post(reverse("fashion-ai:forget-profile"), {"next": "/accounts/profile/?tab=1"})
    assert response["Location"] == "/accounts/profile/?tab=1"


# --- the ONNX cache -------------------------------------------------------------------------------------------


def _images():
    from PIL import Image

    return [
        Image.open(io.BytesIO(make_image(kind, seed))).convert("RGB")
        for seed, kind in enumerate(["Shirt", "Pants", "Shoes"])
    ]


def test_a_planted_or_corrupt_onnx_file_is_never_loaded(tmp_path, tiny_weights, tiny_sketch_encoder, caplog):
    from oscar_fashion_ai.ml.embedder import Embedder

    cache = tmp_path / "cache"
    first = Embedder(tiny_weights, runtime="onnx", cache_dir=cache)
    (exported,) = cache.glob("*.onnx")
    # someone swaps in another network's export under the same name (here: the sketch encoder's)
    Embedder(tiny_sketch_encoder, runtime="onnx", cache_dir=tmp_path / "other")
    (planted,) = (tmp_path / "other").glob("*.onnx")
    exported.write_bytes(planted.read_bytes())
    eager = Embedder(tiny_weights, runtime="torch").embed_images(_images())
    with caplog.at_level(logging.WARNING):
        again = Embedder(tiny_weights, runtime="onnx", cache_dir=cache)
    assert "does not match the checksum" in caplog.text
    assert np.allclose(again.embed_images(_images()), eager, atol=1e-4)
    assert np.allclose(first.embed_images(_images()), eager, atol=1e-4)
    # the cache was repaired: the next process uses it without a warning
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        Embedder(tiny_weights, runtime="onnx", cache_dir=cache)
    assert "ONNX" not in caplog.text
    # a truncated file is refused too
    exported.write_bytes(exported.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING):
        assert np.allclose(
            Embedder(tiny_weights, runtime="onnx", cache_dir=cache).embed_images(_images()), eager, atol=1e-4
        )
    assert "does not match the checksum" in caplog.text


def test_a_cache_folder_others_can_write_to_is_not_trusted(tmp_path, tiny_weights, caplog):
    from oscar_fashion_ai.ml.embedder import Embedder

    cache = tmp_path / "shared"
    Embedder(tiny_weights, runtime="onnx", cache_dir=cache)
    cache.chmod(0o777)  # like /tmp
    with caplog.at_level(logging.WARNING):
        embedder = Embedder(tiny_weights, runtime="onnx", cache_dir=cache)
    assert "other users can write to it" in caplog.text and embedder.runtime == "onnxruntime"
    cache.chmod(0o700)
    (exported,) = cache.glob("*.onnx")
    os.chown(exported, 54321, -1)  # a file another user left there (the tests run as root where this matters)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        Embedder(tiny_weights, runtime="onnx", cache_dir=cache)
    assert "belongs to another user" in caplog.text


def test_an_unwritable_cache_warns_and_still_runs_onnx(tmp_path, tiny_weights, caplog):
    from oscar_fashion_ai.ml.embedder import Embedder

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING):
        embedder = Embedder(tiny_weights, runtime="auto", cache_dir=blocker / "onnx")
    assert embedder.runtime == "onnxruntime"  # not the 8x slower eager PyTorch
    assert "cannot write the ONNX cache" in caplog.text and "FASHION_AI['CACHE_DIR']" in caplog.text


def test_the_cache_lives_under_the_projects_data_folder_by_default(settings, tmp_path):
    from oscar_fashion_ai import runtime

    settings.BASE_DIR = tmp_path
    settings.FASHION_AI = {k: v for k, v in settings.FASHION_AI.items() if k not in {"CACHE_DIR", "DATA_DIR"}}
    assert conf.data_dir() == tmp_path / "var" / "fashion-ai"
    assert conf.cache_dir() == tmp_path / "var" / "fashion-ai" / "onnx"
    assert runtime.get_embedder().runtime == "onnxruntime"
    assert list((tmp_path / "var" / "fashion-ai" / "onnx").glob("*.onnx"))
    settings.FASHION_AI = {**settings.FASHION_AI, "DATA_DIR": str(tmp_path / "elsewhere")}
    assert conf.cache_dir() == tmp_path / "elsewhere" / "onnx"


def test_exporting_prints_no_warnings(tmp_path, tiny_weights, recwarn):
    from oscar_fashion_ai.ml.embedder import Embedder

    Embedder(tiny_weights, runtime="onnx", cache_dir=tmp_path)
    assert not [w for w in recwarn if "onnx" in str(w.filename).lower() or "onnx" in str(w.message).lower()]


# --- demo code stays in the demo ------------------------------------------------------------------------------


def test_demo_only_code_is_not_in_the_package():
    package = ROOT / "oscar_fashion_ai"
    assert not (package / "management" / "commands" / "fashion_demo.py").exists()
    assert not (package / "embedded_db.py").exists()
    assert (ROOT / "shop" / "management" / "commands" / "fashion_demo.py").exists()
    code = "\n".join(p.read_text() for p in package.rglob("*.py"))
    for demo_only in ("admin@example.com", "fashion-demo", '"shared" / "datasets"', "-A shop"):
        assert demo_only not in code
    assert not hasattr(conf, "DEFAULT_DATASET")


# --- fashion_doctor -------------------------------------------------------------------------------------------


def test_doctor_reports_a_healthy_install(indexed):
    out = io.StringIO()
    call_command("fashion_doctor", stdout=out, no_color=True)
    text = out.getvalue()
    for line in (
        "[  OK] broker:",
        "[  OK] pgvector: PostgreSQL",
        "[  OK] cache folder:",
        "[  OK] photo model:",
        "[  OK] index: 12 / 12 products indexed",
        "[  OK] search settings:",
        "[  OK] templates: oscar/catalogue/detail.html",
    ):
        assert line in text, text
    assert "[FAIL]" not in text


def test_doctor_names_what_is_broken(indexed, settings, tmp_path):
    settings.FASHION_AI = {
        **settings.FASHION_AI,
        "EMBEDDER_WEIGHTS": str(tmp_path / "missing.safetensors"),
        "CACHE_DIR": str(tmp_path / "a-file" / "onnx"),
    }
    (tmp_path / "a-file").write_text("")
    out = io.StringIO()
    with celery_urls(broker=f"redis://127.0.0.1:{_free_port()}/0"):
        with pytest.raises(CommandError, match="problems"):
            call_command("fashion_doctor", stdout=out, no_color=True, timeout=1)
    text = out.getvalue()
    assert "[FAIL] broker:" in text and "unreachable" in text
    assert "[FAIL] photo model: cannot be loaded" in text
    assert "[WARN] cache folder:" in text and "not writable" in text


def test_doctor_knows_the_minimum_pgvector():
    from oscar_fashion_ai.management.commands.fashion_doctor import MIN_PGVECTOR, parse_version

    assert parse_version("0.7.4") < MIN_PGVECTOR <= parse_version("0.8.0") < parse_version("0.10.1")
