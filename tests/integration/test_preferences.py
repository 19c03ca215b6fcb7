"""Personalisation: events from Oscar's signals, the preference vector, recommendations, privacy."""

import math
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from oscar.core.loading import get_model

from oscar_fashion_ai.catalog_import import CatalogImporter
from oscar_fashion_ai.ml.preference import fold
from oscar_fashion_ai.models import CustomerPreference, PreferenceEvent, ProductEmbedding
from oscar_fashion_ai.personalisation import preferences
from tests.factories import category_products
from tests.helpers import first_visit, vector_of

pytestmark = pytest.mark.usefixtures("fashion_models")

Product = get_model("catalogue", "Product")
DAY = 86400.0


def test_fold_matches_a_hand_computation():
    v1, v2, v3 = np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, 0, 1.0])
    h = 14 * DAY
    events = [(0.0, 1.0, v1), (7 * DAY, 3.0, v2), (14 * DAY, 5.0, v3)]
    mean, weight, ref = fold(None, 0.0, None, events, h)
    # decayed to t = 14 days: v1 weight 1 * 0.5, v2 weight 3 * 2^-0.5, v3 weight 5
    w = np.array([0.5, 3 * 2**-0.5, 5.0])
    assert ref == 14 * DAY and math.isclose(weight, w.sum(), rel_tol=1e-9)
    assert np.allclose(mean, w / w.sum(), atol=1e-6)
    # Incremental (one event at a time, in any order) equals all at once.
    state = (None, 0.0, None)
    for e in [events[1], events[0], events[2]]:
        state = fold(*state, [e], h)
    assert np.allclose(state[0], mean, atol=1e-6)


def test_views_record_events_and_the_vector_follows(client, indexed_catalog, django_capture_on_commit_callbacks):
    shirts = category_products("Shirt")[:2]
    first_visit(client, shirts[0])
    for product in shirts:
        assert client.get(product.get_absolute_url()).status_code == 200
    key = client.session[preferences.SESSION_KEY]
    events = PreferenceEvent.objects.filter(shopper_key=key)
    assert [e.kind for e in events] == ["view", "view"] and all(not e.applied for e in events)
    pref = preferences.apply_pending(preferences.Owner(shopper_key=key))
    expected = (vector_of(shirts[0]) + vector_of(shirts[1])) / 2  # same weight, seconds apart
    assert np.allclose(np.asarray(pref.vector), expected, atol=1e-3)
    assert pref.event_count == 2
    # Rebuild from the events gives the same vector.
    rebuilt = preferences.rebuild(preferences.Owner(shopper_key=key))
    assert np.allclose(np.asarray(rebuilt.vector), np.asarray(pref.vector), atol=1e-5)


def test_homepage_recommends_the_viewed_category_and_api_matches(client, indexed_catalog):
    home = client.get("/", follow=True)
    assert home.status_code == 200 and 'data-personal="false"' in home.content.decode()
    for product in category_products("Pants")[:3]:
        client.get(product.get_absolute_url())
    call_command("fashion_rebuild_preferences", verbosity=0)
    page = client.get(reverse("fashion-ai:home")).content.decode()
    assert 'data-personal="true"' in page and "Recommended for you" in page
    api = client.get(reverse("fashion-ai:api-recommendations"), {"k": 4}).json()
    assert api["source"] == "personal" and len(api["results"]) == 4
    top = Product.objects.get(pk=api["results"][0]["product_id"])
    assert top.categories.get().name == "Pants"
    # Another shopper sees none of it.
    from django.test import Client

    other = Client().get(reverse("fashion-ai:api-recommendations")).json()
    assert other["source"] == "fallback"


def test_login_merges_the_anonymous_profile(client, indexed_catalog, django_user_model):
    shoe = category_products("Shoes")[0]
    first_visit(client, shoe)
    client.get(shoe.get_absolute_url())
    key = client.session[preferences.SESSION_KEY]
    user = django_user_model.objects.create_user("s", "s@example.com", "pw")
    client.force_login(user)
    assert not PreferenceEvent.objects.filter(shopper_key=key).exists()
    assert PreferenceEvent.objects.filter(user=user).count() == 1
    pref = CustomerPreference.objects.get(user=user)
    assert np.allclose(np.asarray(pref.vector), vector_of(shoe), atol=1e-4)
    assert not CustomerPreference.objects.filter(shopper_key=key).exists()
    assert preferences.SESSION_KEY not in client.session


def test_ordered_products_are_excluded_and_orders_count(indexed_catalog, django_user_model):
    from oscar.test.factories import create_order

    user = django_user_model.objects.create_user("b", "b@example.com", "pw")
    shirt = category_products("Shirt")[0]
    from oscar.test.factories import create_basket

    basket = create_basket(empty=True)
    basket.add_product(shirt)
    create_order(user=user, basket=basket)  # fires order_placed
    assert PreferenceEvent.objects.filter(user=user, kind="order", product=shirt).exists()
    owner = preferences.Owner(user_id=user.pk)
    preferences.apply_pending(owner)
    results, source = preferences.recommend(owner, 5)
    assert source == "personal" and shirt.pk not in [p.pk for p, _ in results]
    top = results[0][0]
    assert top.categories.get().name == "Shirt"


def test_fallbacks_without_index_and_with_broker_down(client, indexed_catalog, settings):
    from shop.celery import app

    ProductEmbedding.objects.all().delete()
    results, source = preferences.recommend(None, 4)
    assert source == "fallback" and len(results) == 4
    assert client.get(reverse("fashion-ai:home")).status_code == 200
    # Broker down: the request succeeds, the event is stored, a rebuild applies it later.
    call_command("fashion_reindex", "--all", "--sync", verbosity=0)
    good = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    app._pool = None
    try:
        product = category_products("Shoes")[1]
        from django.test import Client

        shopper = Client()
        first_visit(shopper, product)  # publishes nothing
        with pytest.MonkeyPatch.context():
            response = shopper.get(product.get_absolute_url())
        assert response.status_code == 200
    finally:
        app.conf.broker_url = good
        app._pool = None
    key = shopper.session[preferences.SESSION_KEY]
    assert PreferenceEvent.objects.filter(shopper_key=key, applied=False).count() == 1
    call_command("fashion_rebuild_preferences", verbosity=0)
    assert CustomerPreference.objects.get(shopper_key=key).vector is not None


def test_deleting_a_user_and_forgetting(client, indexed_catalog, django_user_model):
    user = django_user_model.objects.create_user("d", "d@example.com", "pw")
    client.force_login(user)
    client.get(category_products("Shirt")[0].get_absolute_url())
    preferences.apply_pending(preferences.Owner(user_id=user.pk))
    assert CustomerPreference.objects.filter(user=user).exists()
    response = client.post(reverse("fashion-ai:forget-profile"))
    assert response.status_code == 302
    assert not CustomerPreference.objects.filter(user=user).exists()
    assert not PreferenceEvent.objects.filter(user=user).exists()
    client.get(category_products("Shirt")[1].get_absolute_url())
    user.delete()
    assert not PreferenceEvent.objects.exists()


def test_anonymous_profiles_expire(indexed_catalog):
    owner = preferences.Owner(shopper_key="old-shopper")
    product = Product.objects.first()
    preferences.record_event(owner, product.pk, "view", when=timezone.now() - timedelta(days=40))
    preferences.apply_pending(owner)
    fresh = preferences.Owner(shopper_key="new-shopper")
    preferences.record_event(fresh, product.pk, "view")
    call_command("fashion_cleanup_preferences", verbosity=0)
    assert not PreferenceEvent.objects.filter(shopper_key="old-shopper").exists()
    assert not CustomerPreference.objects.filter(shopper_key="old-shopper").exists()
    assert PreferenceEvent.objects.filter(shopper_key="new-shopper").exists()


def test_recommend_evaluation_runs_on_a_small_catalog(tmp_path, capsys, db):
    import json

    from tests.factories import COLOURS, make_image

    root = tmp_path / "folders"
    for label in COLOURS:
        (root / label).mkdir(parents=True)
        for i in range(20):
            (root / label / f"{i}.jpg").write_bytes(make_image(label, i))
    CatalogImporter(stdout_progress=False).run(root)
    call_command("fashion_reindex", "--all", "--sync", verbosity=0)
    # A tiny studio-like catalog for the second simulation (attributes in images.csv).
    studio = tmp_path / "studio"
    (studio / "images").mkdir(parents=True)
    rows = ["image,label,colour,usage,sub_category,master_category,title"]
    for n, label in enumerate(sorted(COLOURS) * 20):
        (studio / "images" / f"{n}.jpg").write_bytes(make_image(label, 100 + n))
        rows.append(f"{n},{label},{['Black', 'Blue'][n % 2]},{['Casual', 'Formal'][n % 3 % 2]},{label}s,Apparel,t{n}")
    (studio / "images.csv").write_text("\n".join(rows) + "\n")
    capsys.readouterr()
    call_command(
        "fashion_evaluate",
        "--task",
        "recommend",
        "--shoppers",
        "30",
        "--population",
        "30",
        "--studio",
        str(studio),
        "--json",
    )
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"task", "hit_rate_at_10", "ndcg_at_10", "baselines", "simulations", "settings"}
    assert set(result["baselines"]) == {
        "vectors_only",
        "mean_vector",
        "item_knn",
        "last_viewed",
        "popularity",
        "random",
    }
    assert result["settings"]["RECOMMENDATION_COOCCURRENCE_WEIGHT"] == 0.5
    assert result["settings"]["COOCCURRENCE_MIN_SHOPPERS"] == 2
    assert set(result["simulations"]) == {"cc0", "studio"}
    for sim in result["simulations"].values():
        assert 0 < sim["shoppers"] <= 30 and set(sim["models"]) == {"multi_interest", *result["baselines"]}
        for r in sim["models"].values():
            assert 0 <= r["hit_rate_at_10"] <= 1 and {
                "hit_rate_at_10_se",
                "ndcg_at_10_se",
                "coverage",
                "intra_list_diversity",
            } <= set(r)
        assert sim["oracle"]["hit_rate_at_10"] >= 0 and "vs_best_baseline" in sim["comparison"]
    call_command(
        "fashion_evaluate",
        "--task",
        "recommend",
        "--simulation",
        "cc0",
        "--split",
        "validation",
        "--tune",
        "--shoppers",
        "10",
        "--population",
        "10",
    )
    assert "best:" in capsys.readouterr().out
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="validation"):
        call_command("fashion_evaluate", "--task", "recommend", "--tune", "--simulation", "cc0")
    with pytest.raises(CommandError, match="images.csv"):
        call_command("fashion_evaluate", "--task", "recommend", "--simulation", "studio", "--studio", str(tmp_path))


def test_diversity_caps_products_per_category(indexed_catalog, settings):
    owner = preferences.Owner(shopper_key="diverse")
    for product in category_products("Shirt")[:2]:
        preferences.record_event(owner, product.pk, "view")
    preferences.apply_pending(owner)
    settings.FASHION_AI = {**settings.FASHION_AI, "RECOMMENDATION_MAX_PER_CATEGORY": 2}
    results, source = preferences.recommend(owner, 6)
    assert source == "personal" and len(results) == 6
    counts = {}
    for product, _ in results:
        name = product.categories.get().name
        counts[name] = counts.get(name, 0) + 1
    assert max(counts.values()) <= 2 and len(counts) == 3


def test_shared_anonymous_grid_carries_each_visitors_own_csrf_token(indexed_catalog, django_assert_max_num_queries):
    """The "Popular right now" grid is rendered once and shared, but every visitor's basket forms work."""
    import re

    from django.test import Client

    url = reverse("fashion-ai:home")
    pages = []
    for _ in range(2):
        visitor = Client(enforce_csrf_checks=True)
        html = visitor.get(url).content.decode()
        assert "placeholder-3f9c" not in html and 'id="fashion-ai-recommended"' in html
        pages.append((visitor, html))
    with django_assert_max_num_queries(12):  # served from the cache: no per-card queries (uncached: 79)
        Client().get(url)
    visitor, html = pages[1]
    form = re.search(r'<form[^>]*action="([^"]*basket/add/\d+/)"[^>]*>(.*?)</form>', html, re.S)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.group(2)).group(1)
    other = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', pages[0][1]).group(1)
    assert token != other
    r = visitor.post(form.group(1), {"csrfmiddlewaretoken": token, "quantity": 1})
    assert r.status_code == 302  # added to the basket, not a 403 for a stranger's token
