"""Reindex from the dashboard button, the admin action and the command: staff only, CSRF enforced."""

import re

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from oscar.core.loading import get_model

from oscar_fashion_ai.models import IndexRun, ProductEmbedding

Product = get_model("catalogue", "Product")
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fashion_models")]


@pytest.fixture
def catalog(imported_catalog):
    from shop.celery import app

    yield imported_catalog
    app.control.purge()  # drop the tasks these tests queued (no worker runs here)


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("staff", "staff@example.com", "pw", is_staff=True, is_superuser=True)


@pytest.fixture
def customer(django_user_model):
    return django_user_model.objects.create_user("cust", "cust@example.com", "pw")


def test_dashboard_reindex_button_is_staff_only_and_csrf_protected(catalog, staff, customer):
    url = reverse("fashion-ai-dashboard:fashion-ai-reindex")
    anonymous = Client(enforce_csrf_checks=True)
    assert anonymous.post(url, {"scope": "all"}).status_code in (302, 403)
    shopper = Client(enforce_csrf_checks=True)
    shopper.force_login(customer)
    assert shopper.post(url, {"scope": "all"}).status_code in (302, 403)
    assert not IndexRun.objects.exists()
    admin = Client(enforce_csrf_checks=True)
    admin.force_login(staff)
    assert admin.post(url, {"scope": "all"}).status_code == 403  # no CSRF token
    assert not IndexRun.objects.exists()
    page = admin.get(reverse("fashion-ai-dashboard:fashion-ai-index"))
    token = page.cookies["csrftoken"].value
    response = admin.post(url, {"scope": "all", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    run = IndexRun.objects.get()
    assert run.scope == "all" and run.products == 12 and run.requested_by == "staff"
    assert ProductEmbedding.objects.filter(status="pending").count() == 12
    bad = admin.post(url, {"scope": "everything", "csrfmiddlewaretoken": token}, follow=True)
    assert "Unknown reindex scope" in bad.content.decode()
    assert IndexRun.objects.count() == 1


def test_admin_action_reindexes_selected_products(client, catalog, staff, customer):
    url = reverse("admin:catalogue_product_changelist")
    ids = [str(pk) for pk in catalog.values_list("pk", flat=True)[:3]]
    client.force_login(customer)
    refused = client.post(url, {"action": "reindex_selected", "_selected_action": ids})
    assert refused.status_code == 302 and "login" in refused["Location"]
    assert not IndexRun.objects.exists()
    client.force_login(staff)
    page = client.get(url)
    assert "Reindex selected products" in page.content.decode()
    response = client.post(url, {"action": "reindex_selected", "_selected_action": ids}, follow=True)
    assert response.status_code == 200
    assert IndexRun.objects.get().products == 3
    # Failed rows are visible in the admin.
    assert client.get(reverse("admin:oscar_fashion_ai_productembedding_changelist")).status_code == 200


def test_reindex_command_validates_and_reports(catalog, capsys):
    with pytest.raises(CommandError, match="No category"):
        call_command("fashion_reindex", "--category", "no-such-category")
    call_command("fashion_reindex", "--stale", "--category", "shirt", "--sync", verbosity=0)
    out = capsys.readouterr().out
    assert "4 products" in out and "indexed 4" in out
    call_command("fashion_reindex", "--stale", verbosity=0)
    assert "Queued 8 products" in capsys.readouterr().out


def test_dashboard_shows_the_sketch_pipeline_and_a_missing_generator(catalog, staff, settings, tmp_path):
    admin = Client()
    admin.force_login(staff)
    url = reverse("fashion-ai-dashboard:fashion-ai-index")
    html = admin.get(url).content.decode()
    assert "tiny-gen" in html and 'id="fashion-ai-sketch-problem"' not in html  # the test generator's version
    from oscar_fashion_ai import runtime

    assert runtime.get_sketch_embedder().version in html  # the encoder
    assert "+0.05 similarity among the 20 nearest" in html  # the default category re-ranking
    assert "its 8 nearest products" in html  # similar products' default query expansion
    settings.FASHION_AI = {
        **settings.FASHION_AI,
        "SKETCH_GENERATOR_WEIGHTS": str(tmp_path / "gone.safetensors"),
        "SKETCH_PIPELINE": "fusion",
        "SKETCH_QUERY_EXPANSION": 3,
        "SKETCH_CATEGORY_BOOST": 0,
        "SIMILAR_QUERY_EXPANSION": 0,
    }
    html = admin.get(url).content.decode()
    assert "3 neighbours" in html and "+0.05 similarity" not in html
    assert "off: the product&#x27;s vector alone" in html or "off: the product's vector alone" in html
    assert 'id="fashion-ai-sketch-problem"' in html and "could not be loaded" in html
    assert "direct (configured: fusion)" in html
    settings.FASHION_AI = {
        **settings.FASHION_AI,
        "SKETCH_ENCODER_WEIGHTS": str(tmp_path / "gone.safetensors"),
        "SKETCH_QUERY_EXPANSION": 0,
    }
    html = admin.get(url).content.decode()
    assert "none: drawings are embedded by the photo model" in html


@pytest.mark.parametrize(
    "name, bad",
    [
        ("SKETCH_CATEGORY_BOOST", -0.1),
        ("SKETCH_CATEGORY_BOOST", "0.05"),
        ("SKETCH_RERANK_DEPTH", 0),
        ("SKETCH_RERANK_DEPTH", 2.5),
        ("SKETCH_QUERY_EXPANSION", -1),
        ("SIMILAR_QUERY_EXPANSION", 2.5),
        ("SKETCH_FUSION_WEIGHT", 2),
        ("MAX_K", True),
        ("SKETCH_PIPELINE", "magic"),
    ],
)
def test_settings_checks_name_the_bad_value(settings, name, bad):
    """`manage.py check` reports a bad search setting with what is allowed (a search would fail later)."""
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    call_command("check")  # the test settings pass
    settings.FASHION_AI = {**settings.FASHION_AI, name: bad}
    with pytest.raises(SystemCheckError, match=rf"FASHION_AI\['{name}'\] is {re.escape(repr(bad))}"):
        call_command("check")
