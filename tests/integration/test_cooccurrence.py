"""Co-occurrence (item-kNN) blended into each interest: the pure functions, the evaluation's mirror of the shop's
search, and the shop's table (refresh command, task, settings, recommendations)."""

from datetime import timedelta

import numpy as np
import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st
from oscar.core.loading import get_model

from oscar_fashion_ai.ml import cooccurrence, recommend_eval, simulation
from oscar_fashion_ai.ml import interests as im
from oscar_fashion_ai.models import PreferenceEvent, ProductNeighbour
from oscar_fashion_ai.personalisation import cooccurrence as shop_table
from oscar_fashion_ai.personalisation import preferences
from tests.factories import category_products

pytestmark = pytest.mark.usefixtures("fashion_models")

Product = get_model("catalogue", "Product")
DAY = 86400.0


# --- the pure functions --------------------------------------------------------------------------


def test_neighbours_are_cosine_similarities_of_shopper_sets():
    table = cooccurrence.neighbours([{1, 2, 3}, {1, 2}, {2, 4}, [4, 4]], top_n=2)
    ids, sims = table[1]
    assert list(ids) == [2, 3]  # 1 and 2 share two shoppers of 2 and 3; 1 and 3 one of 2 and 1
    assert sims == pytest.approx([2 / np.sqrt(2 * 3), 1 / np.sqrt(2 * 1)])
    assert list(table[4][0]) == [2] and table[4][1][0] == pytest.approx(1 / np.sqrt(2 * 3))  # duplicates count once
    assert cooccurrence.neighbours([]) == {} and cooccurrence.neighbours([{7}]) == {}
    assert set(cooccurrence.neighbours([{1, 2, 3}, {1, 2}], min_count=2)) == {1, 2}


@given(st.lists(st.sets(st.integers(0, 30), max_size=8), max_size=25), st.integers(1, 6))
def test_neighbours_properties(baskets, top_n):
    table = cooccurrence.neighbours(baskets, top_n=top_n)
    for item, (ids, sims) in table.items():
        assert len(ids) <= top_n and item not in set(ids.tolist())
        assert np.all(sims > 0) and np.all(sims <= 1 + 1e-9) and np.all(np.diff(sims) <= 1e-12)
        for other, s in zip(ids.tolist(), sims.tolist()):
            both = sum(1 for b in baskets if item in b and other in b)
            assert both > 0
            a = sum(1 for b in baskets if item in b)
            c = sum(1 for b in baskets if other in b)
            assert s == pytest.approx(both / np.sqrt(a * c))


def test_interest_scores_decay_weight_and_scale_to_one():
    table = {1: (np.array([5, 6]), np.array([1.0, 0.5])), 2: (np.array([6]), np.array([1.0]))}
    h = 14 * DAY
    now = [(1, "view", 0.0, 1.0)]
    scores = cooccurrence.interest_scores(now + [(2, "view", -h, 1.0)], table, 0.0, h)
    assert scores == pytest.approx({5: 1.0, 6: 1.0})  # 6: 0.5 now + 1.0 a half-life ago = 1.0, as much as 5
    scores = cooccurrence.interest_scores(now + [(2, "order", 0.0, 5.0)], table, 0.0, h)
    assert max(scores, key=scores.get) == 6 and max(scores.values()) == pytest.approx(1.0)
    assert cooccurrence.interest_scores([(9, "view", 0.0, 1.0)], table, 0.0, h) == {}
    assert cooccurrence.top_items({3: 0.5, 4: 0.9, 5: 0.9}, 2, skip={4}) == [5, 3]


def test_blend_adds_the_weighted_scores_and_keeps_the_best():
    vecs = np.eye(3)
    ids, scores, out = cooccurrence.blend([10, 11, 12], [0.9, 0.4, 0.1], vecs, {12: 1.0}, 0.5, 2)
    assert ids == [10, 12] and scores == pytest.approx([0.9, 0.6]) and np.array_equal(out, vecs[[0, 2]])
    assert cooccurrence.blend([], [], np.zeros((0, 3)), {}, 0.5, 2)[0] == []


def test_the_evaluations_search_reaches_co_occurring_products_the_vectors_miss():
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(40, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    far = int(np.argsort(-(vecs @ vecs[0]))[10])  # the 10th most like product 0: beyond a search for 5
    population = [simulation.Shopper(history=[(0, "view", 1.0), (far, "view", 1.0)], held_out=set()) for _ in range(3)]
    table = cooccurrence.neighbours(recommend_eval.baskets(population))
    profile = im.fold(None, [(0.0, 1.0, vecs[0], 0, "view", None)], 14 * DAY)
    plain = recommend_eval.exact_search(vecs, {0})(profile.interests[0], 5)[0]
    blended = recommend_eval.blended_search(vecs, {0}, table, profile.ref_time, 14 * DAY, 0.5)
    assert far not in plain and far in blended(profile.interests[0], 5)[0]
    assert recommend_eval.blended_search(vecs, {0}, table, 0.0, 14 * DAY, 0.0)(profile.interests[0], 5)[0] == plain
    assert (
        far not in recommend_eval.blended_search(vecs, {0, far}, table, 0.0, 14 * DAY, 0.5)(profile.interests[0], 5)[0]
    )


def test_the_evaluation_reports_the_blended_shop_model():
    rng = np.random.default_rng(1)
    vecs = (1 + 0.05 * rng.normal(size=(60, 8))).astype(np.float32)  # all alike: the vectors cannot tell
    people = [
        simulation.Shopper(history=[(i, "view", 2.0), (i + 1, "view", 1.0)], held_out={i + 30}) for i in range(0, 20)
    ]
    population = [
        simulation.Shopper(history=[(i, "view", 2.0), (i + 30, "order", 1.0)], held_out=set()) for i in range(0, 20)
    ]
    weights = {"view": 1.0, "basket": 3.0, "order": 5.0}
    run = dict(models=("multi_interest",), bootstrap=0)
    plain = recommend_eval.evaluate(vecs, people, population, weights, 14.0, im.Params(), **run)
    blended = recommend_eval.evaluate(vecs, people, population, weights, 14.0, im.Params(), blend_weight=0.5, **run)
    assert blended["multi_interest"]["hit_rate_at_10"] == 1.0 > plain["multi_interest"]["hit_rate_at_10"]


# --- the shop ------------------------------------------------------------------------------------


def _events(owner, products, days_ago=1):
    when = timezone.now() - timedelta(days=days_ago)
    for i, product in enumerate(products):
        preferences.record_event(owner, product.pk, "view", when=when + timedelta(minutes=i))


def test_refresh_learns_from_recent_events_only_and_replaces_the_table(indexed_catalog, capsys):
    shirt, shoe, pants = category_products("Shirt")[0], category_products("Shoes")[0], category_products("Pants")[0]
    call_command("fashion_refresh_cooccurrence")
    assert "No two products share a shopper" in capsys.readouterr().out
    for n in range(3):
        _events(preferences.Owner(shopper_key=f"pair-{n}"), [shirt, shoe])
    _events(preferences.Owner(shopper_key="old"), [shirt, pants], days_ago=400)  # outside the window
    call_command("fashion_refresh_cooccurrence")
    assert "Co-occurrence from 3 shoppers" in capsys.readouterr().out
    rows = {(r.product_id, r.neighbour_id): r.score for r in ProductNeighbour.objects.all()}
    assert rows == pytest.approx({(shirt.pk, shoe.pk): 1.0, (shoe.pk, shirt.pk): 1.0})
    call_command("fashion_refresh_cooccurrence", "--days", "1000")  # one shopper's pair is not enough ...
    assert not ProductNeighbour.objects.filter(product=shirt, neighbour=pants).exists()
    call_command("fashion_refresh_cooccurrence", "--days", "1000", "--min-shoppers", "1")  # ... unless allowed
    assert ProductNeighbour.objects.filter(product=shirt, neighbour=pants).exists()
    PreferenceEvent.objects.all().delete()
    assert shop_table.refresh()["rows"] == 0 and not ProductNeighbour.objects.exists()
    with pytest.raises(Exception, match="--days"):
        call_command("fashion_refresh_cooccurrence", "--days", "0")


def _recommended(client, shirts, k=12):
    owner = preferences.Owner(shopper_key="newcomer")
    PreferenceEvent.objects.filter(shopper_key="newcomer").delete()
    _events(owner, shirts[:1], days_ago=0)
    preferences.apply_pending(owner)
    cache.clear()
    session = client.session
    session[preferences.SESSION_KEY] = owner.shopper_key
    session.save()
    data = client.get(reverse("fashion-ai:api-recommendations"), {"k": k}).json()
    assert data["source"] == "personal"
    return data["results"]


def test_recommendations_blend_in_what_other_shoppers_paired_with_it(client, indexed_catalog, settings):
    shirts, shoe = category_products("Shirt"), category_products("Shoes")[0]
    before = _recommended(client, shirts)  # the whole tiny catalog, nearest to the shirt first
    rank = [r["product_id"] for r in before].index(shoe.pk)
    assert rank >= 4  # a shirt's nearest products are shirts
    for n in range(3):
        _events(preferences.Owner(shopper_key=f"pair-{n}"), [shirts[0], shoe])
    call_command("fashion_refresh_cooccurrence")
    after = _recommended(client, shirts)
    # 3 of the 4 shoppers who viewed that shirt viewed this shoe: it moves up, explained by the interest it came from
    assert [r["product_id"] for r in after].index(shoe.pk) < rank
    assert next(r for r in after if r["product_id"] == shoe.pk)["reason"]["product_id"] == shirts[0].pk
    settings.FASHION_AI = {**settings.FASHION_AI, "RECOMMENDATION_COOCCURRENCE_WEIGHT": 0}
    assert [r["product_id"] for r in _recommended(client, shirts)] == [r["product_id"] for r in before]
    settings.FASHION_AI = {**settings.FASHION_AI, "RECOMMENDATION_COOCCURRENCE_WEIGHT": 0.5}
    Product.objects.filter(pk=shoe.pk).update(is_public=False)  # the same availability filters as the vectors
    assert shoe.pk not in [r["product_id"] for r in _recommended(client, shirts)]


def test_a_product_only_co_occurrence_found_says_so(client, indexed_catalog, settings):
    # The fewest candidates, so the vector search stops at the shirts, and co-occurrence weighed heavily, so the
    # shoe it brings in makes the two slots (the tiny test model finds shirts far more alike than real ones).
    settings.FASHION_AI = {
        **settings.FASHION_AI,
        "RECOMMENDATION_CANDIDATES_PER_SLOT": 1,
        "RECOMMENDATION_COOCCURRENCE_WEIGHT": 10,
    }
    shirts, shoe = category_products("Shirt"), category_products("Shoes")[0]
    for n in range(3):
        _events(preferences.Owner(shopper_key=f"pair-{n}"), [shirts[0], shoe])
    call_command("fashion_refresh_cooccurrence")
    results = _recommended(client, shirts, k=2)
    reasons = {r["product_id"]: r["reason"] for r in results}
    assert shoe.pk in reasons, results
    assert reasons[shoe.pk]["source"] == "cooccurrence" and reasons[shoe.pk]["product_id"] == shirts[0].pk
    assert reasons[shoe.pk]["text"] == f"Shoppers who looked at {shirts[0].get_title()} also looked at this"
    assert {r["source"] for pk, r in reasons.items() if pk != shoe.pk} <= {"interest"}


def test_strongest_member_names_the_member_that_counts_most():
    table = {1: (np.array([5]), np.array([0.2])), 2: (np.array([5, 6]), np.array([0.9, 0.1]))}
    members = [(1, "order", 0.0, 5.0), (2, "view", 0.0, 1.0), (3, "view", 0.0, 1.0)]
    assert cooccurrence.strongest_member(members, table, 5, 0.0, DAY)[0] == 1  # 5 x 0.2 > 1 x 0.9
    assert cooccurrence.strongest_member(members, table, 6, 0.0, DAY)[0] == 2
    assert cooccurrence.strongest_member(members, table, 7, 0.0, DAY) is None


def test_system_checks_name_bad_cooccurrence_settings(settings):
    from oscar_fashion_ai.checks import check_search_settings

    settings.FASHION_AI = {
        **settings.FASHION_AI,
        "RECOMMENDATION_COOCCURRENCE_WEIGHT": -1,
        "COOCCURRENCE_NEIGHBOURS": 0,
        "COOCCURRENCE_WINDOW_DAYS": "a year",
    }
    messages = " ".join(e.msg for e in check_search_settings())
    for name in ("RECOMMENDATION_COOCCURRENCE_WEIGHT", "COOCCURRENCE_NEIGHBOURS", "COOCCURRENCE_WINDOW_DAYS"):
        assert name in messages


def test_dashboard_shows_the_table_and_refresh_now_is_staff_only(indexed_catalog, settings, django_user_model):
    import redis
    from django.test import Client

    from oscar_fashion_ai import conf
    from shop.celery import app

    queue = conf.get("QUEUE")
    broker = redis.Redis.from_url(app.conf.broker_url)
    broker.delete(queue)
    index_url = reverse("fashion-ai-dashboard:fashion-ai-index")
    url = reverse("fashion-ai-dashboard:fashion-ai-cooccurrence")
    customer = django_user_model.objects.create_user("shopper", "shopper@example.com", "pw")
    shopper = Client(enforce_csrf_checks=True)
    shopper.force_login(customer)
    for client in (Client(enforce_csrf_checks=True), shopper):
        assert client.post(url).status_code in (302, 403)
    assert broker.llen(queue) == 0
    staff = django_user_model.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    admin = Client(enforce_csrf_checks=True)
    admin.force_login(staff)
    page = admin.get(index_url).content.decode()
    assert 'id="fashion-ai-cooccurrence"' in page and "none yet" in page
    token = admin.cookies["csrftoken"].value
    assert admin.post(url).status_code == 403  # no CSRF token
    page = admin.post(url, {"csrfmiddlewaretoken": token}, follow=True).content.decode()
    assert "Queued" in page and broker.llen(queue) == 1  # the task beat sends, for the worker
    broker.delete(queue)
    shirt, shoe = category_products("Shirt")[0], category_products("Shoes")[0]
    for n in range(2):
        _events(preferences.Owner(shopper_key=f"pair-{n}"), [shirt, shoe])
    call_command("fashion_refresh_cooccurrence")
    page = admin.get(index_url).content.decode()
    assert "none yet" not in page and "2 (2 pairs)" in page
