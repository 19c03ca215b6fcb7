"""fashion_adapt on a tiny store: improves or refuses, never installs a worse model, rollback, a crash leaves the model
in use, bad stores are refused, and the dashboard's "Adapt to my catalog" button is for staff only."""

import io

import pytest
import redis
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from oscar.core.loading import get_model

from oscar_fashion_ai import model_store
from oscar_fashion_ai.models import AdaptationRun
from tests.helpers import installed, make_store, use_model

pytestmark = pytest.mark.usefixtures("fashion_models")

Category = get_model("catalogue", "Category")
ProductCategory = get_model("catalogue", "ProductCategory")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "store, message",
    [
        ("no images", "no public products with an image"),
        ("one category", "at least 2 categories"),
        ("too few", "Too few products to train on"),
    ],
)
def test_bad_stores_are_refused_and_nothing_is_installed(models_dir, tiny_weights, store, message):
    old = use_model(tiny_weights)
    if store == "no images":
        make_store(images=False)
    elif store == "one category":
        make_store(kinds=("Shirt",))
    else:
        make_store(per_kind=2)
    with pytest.raises(CommandError, match=message):
        call_command("fashion_adapt", "--workers", "1", "--min-per-category", "1", stdout=io.StringIO())
    assert installed() == [old] and model_store.read_pointer()["version"] == old
    assert AdaptationRun.objects.get().state == "failed"


@pytest.mark.django_db
def test_explicit_weights_setting_is_not_overridden(settings, tiny_weights):
    make_store(per_kind=2)
    with pytest.raises(CommandError, match="EMBEDDER_WEIGHTS'] is set"):
        call_command("fashion_adapt", stdout=io.StringIO())


def training_queue_length(name):
    from shop.celery import app

    return redis.Redis.from_url(app.conf.broker_url).llen(name)


@pytest.mark.django_db
def test_dashboard_adapt_button_is_staff_only(models_dir, tiny_weights, settings, django_user_model):
    from shop.celery import app

    settings.FASHION_AI = {**settings.FASHION_AI, "TRAINING_QUEUE": "fashion-training-test"}
    use_model(tiny_weights)
    app.control.purge()
    redis.Redis.from_url(app.conf.broker_url).delete("fashion-training-test")
    url = reverse("fashion-ai-dashboard:fashion-ai-adapt")
    customer = django_user_model.objects.create_user("shopper", "shopper@example.com", "pw")
    shopper = Client(enforce_csrf_checks=True)
    shopper.force_login(customer)
    for client in (Client(enforce_csrf_checks=True), shopper):
        assert client.post(url).status_code in (302, 403)
    assert not AdaptationRun.objects.exists() and training_queue_length("fashion-training-test") == 0
    staff = django_user_model.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    admin = Client(enforce_csrf_checks=True)
    admin.force_login(staff)
    assert admin.post(url).status_code == 403  # no CSRF token
    assert not AdaptationRun.objects.exists()
    token = admin.get(reverse("fashion-ai-dashboard:fashion-ai-index")).cookies["csrftoken"].value
    assert admin.get(url).status_code == 405
    assert admin.post(url, {"csrfmiddlewaretoken": token}).status_code == 302
    run = AdaptationRun.objects.get()
    assert run.state == "queued" and run.requested_by == "staff"
    assert training_queue_length("fashion-training-test") == 1
    page = admin.get(reverse("fashion-ai-dashboard:fashion-ai-index")).content.decode()
    assert 'id="fashion-ai-adaptation-state"' in page and "Queued" in page
    assert 'id="fashion-ai-adapt" disabled' in page
    # A second press while one is queued queues nothing.
    assert "already queued" in admin.post(url, {"csrfmiddlewaretoken": token}, follow=True).content.decode()
    assert AdaptationRun.objects.count() == 1 and training_queue_length("fashion-training-test") == 1
    redis.Redis.from_url(app.conf.broker_url).delete("fashion-training-test")


@pytest.mark.parametrize(
    "name, bad",
    [
        ("ADAPT_MAX_MINUTES", 0),
        ("ADAPT_MAX_MINUTES", "20"),
        ("TRAINING_QUEUE", ""),
        ("TRAINING_QUEUE", None),
        ("MODELS_DIR", 3),
        ("ADAPT_SKETCH_MAX_MINUTES", -1),
        ("ADAPT_SKETCH_MAX_MINUTES", "8"),
        ("ADAPT_LOCATOR_MAX_MINUTES", -1),
        ("ADAPT_LOCATOR_MAX_MINUTES", "6"),
    ],
)
def test_adaptation_settings_are_checked(settings, name, bad):
    from django.core.management.base import SystemCheckError

    call_command("check")
    settings.FASHION_AI = {**settings.FASHION_AI, name: bad}
    with pytest.raises(SystemCheckError, match=rf"FASHION_AI\['{name}'\] is {bad!r}"):
        call_command("check")


def test_a_models_dir_that_is_a_file_is_refused(settings, tmp_path):
    from django.core.management.base import SystemCheckError

    (tmp_path / "models").write_text("not a folder")
    settings.FASHION_AI = {**settings.FASHION_AI, "MODELS_DIR": str(tmp_path / "models")}
    with pytest.raises(SystemCheckError, match="is a file, not a folder"):
        call_command("check")
