"""Multi-interest profiles: the pure model (split, merge, cap, decay, slots, MMR), the second simulation and the
baselines, and the shop's glue (rebuild equals incremental, explanations, cold start, privacy, headless views)."""

import json
import re
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from oscar.core.loading import get_model

from oscar_fashion_ai.ml import interests as im
from oscar_fashion_ai.ml import recommend_eval, simulation
from oscar_fashion_ai.models import CustomerPreference, PreferenceEvent
from oscar_fashion_ai.personalisation import preferences
from tests.factories import category_products
from tests.helpers import TEST_RATE_LIMIT, first_visit

pytestmark = pytest.mark.usefixtures("fashion_models")

Product = get_model("catalogue", "Product")
DAY = 86400.0
H = 14 * DAY


def unit(*xs):
    v = np.array(xs, dtype=np.float64)
    return v / np.linalg.norm(v)


def ev(t, v, pid, key=None, w=1.0, kind="view"):
    return (t, w, v, pid, kind, key)


# --- the pure model --------------------------------------------------------------------------------


def test_a_new_category_splits_the_profile_and_the_same_category_joins():
    p = im.fold(None, [ev(0, unit(1, 0, 0), 1, "shoes"), ev(1, unit(0.9, 0.1, 0), 2, "shoes")], H)
    assert len(p.interests) == 1 and p.interests[0].keys == {"shoes"}
    p = im.fold(p, [ev(2, unit(0, 1, 0), 3, "skirts")], H)
    assert len(p.interests) == 2 and [i.keys for i in p.interests] == [{"shoes"}, {"skirts"}]
    # A keyless product joins the most similar interest when it is alike enough, else it starts its own.
    p = im.fold(p, [ev(3, unit(0.1, 1, 0), 4)], H, im.Params(similarity=0.6))
    assert len(p.interests) == 2 and 4 in [m[0] for m in p.interests[1].members]
    p = im.fold(p, [ev(4, unit(0, 0, 1), 5)], H, im.Params(similarity=0.6))
    assert len(p.interests) == 3


def test_interests_that_become_alike_merge():
    params = im.Params(similarity=0.5)
    p = im.fold(None, [ev(0, unit(1, 0, 0), 1), ev(0, unit(0, 1, 0), 2)], H, params)
    assert len(p.interests) == 2
    counts = []
    for t in range(1, 6):  # products between the two pull the first interest towards the second
        p = im.fold(p, [ev(t, unit(1, 1, 0), 10 + t)], H, params)
        counts.append(len(p.interests))
    assert counts[0] == 2 and counts[-1] == 1
    assert {m[0] for m in p.interests[0].members} >= {1, 2}


def test_the_cap_merges_the_two_most_alike_interests():
    events = [
        ev(0, unit(1, 0, 0, 0), 1, "a"),
        ev(1, unit(0, 1, 0, 0), 2, "b"),
        ev(2, unit(0.9, 0.2, 0, 0), 3, "c"),
        ev(3, unit(0, 0, 0, 1), 4, "d"),
    ]
    p = im.fold(None, events, H, im.Params(max_interests=3))
    assert len(p.interests) == 3
    assert sorted(sorted(i.keys) for i in p.interests) == [["a", "c"], ["b"], ["d"]]
    merged = next(i for i in p.interests if i.keys == {"a", "c"})
    assert np.isclose(merged.weight, 2 ** (-3 / H) + 2 ** (-1 / H), rtol=1e-9)  # both decayed to t = 3
    assert all(len(im.fold(None, events, H, im.Params(max_interests=k)).interests) == k for k in (1, 2))


def test_decay_shrinks_an_old_interests_share():
    p = im.fold(None, [ev(0, unit(1, 0), 1, "old"), ev(H, unit(0, 1), 2, "new")], H)
    assert np.allclose(p.shares(), [1 / 3, 2 / 3])  # the old event is worth half after one half-life
    assert p.ref_time == H
    # A late event (older than the reference time) is decayed to it.
    p = im.fold(p, [ev(0, unit(1, 0), 3, "old")], H)
    assert np.allclose(p.shares(), [0.5, 0.5])


def test_kind_weights_and_the_explanations_anchor():
    p = im.fold(None, [ev(0, unit(1, 0), 1, "a", w=5.0, kind="order"), ev(DAY, unit(1, 0.1), 2, "a")], H)
    assert p.interests[0].anchor(p.ref_time, H)[:2] == (1, "order")  # the order outweighs a later view
    p = im.fold(p, [ev(60 * DAY, unit(1, 0.2), 3, "a")], H)
    assert p.interests[0].anchor(p.ref_time, H)[0] == 3  # ... until it has decayed


def test_incremental_equals_all_at_once_through_storage():
    rng = np.random.default_rng(0)
    events = [
        ev(float(t) * 3600, unit(*rng.normal(size=8)), t, int(rng.integers(0, 6)), w=float(rng.choice([1.0, 3.0, 5.0])))
        for t in range(40)
    ]
    params = im.Params(max_interests=3)
    whole = im.fold(None, events, H, params)
    step = None
    for e in events:
        step = im.Profile.from_json(json.loads(json.dumps(im.fold(step, [e], H, params).to_json())))
    assert len(step.interests) == len(whole.interests) == 3
    for a, b in zip(step.interests, whole.interests):
        assert a.keys == b.keys and [m[0] for m in a.members] == [m[0] for m in b.members]
        assert np.allclose(a.mean, b.mean, atol=1e-5) and np.isclose(a.weight, b.weight, rtol=1e-6)


def test_slots_are_proportional_with_one_for_every_interest_above_the_threshold():
    assert im.allocate([0.5, 0.5], 12, 0.1) == [6, 6]
    assert im.allocate([0.7, 0.2, 0.1], 10, 0.1) == [7, 2, 1]
    assert im.allocate([0.9, 0.05, 0.05], 12, 0.1) == [12, 0, 0] or sum(im.allocate([0.9, 0.05, 0.05], 12, 0.1)) == 12
    slots = im.allocate([0.93, 0.07], 12, 0.05)
    assert slots[1] >= 1 and sum(slots) == 12
    assert im.allocate([0.4, 0.3, 0.2, 0.1], 2, 0.1) == [1, 1, 0, 0]
    for shares in np.random.default_rng(1).dirichlet(np.ones(4), size=50):
        slots = im.allocate(shares, 12, 0.1)
        assert sum(slots) == 12 and all(s >= 1 for s, x in zip(slots, shares) if x >= 0.1)


def _catalog(seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 16))
    vecs = np.concatenate([c + 0.3 * rng.normal(size=(25, 16)) for c in centres])
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True), np.repeat(np.arange(4), 25)


def test_recommend_draws_from_every_interest_without_duplicates_and_mmr_diversifies():
    vecs, cats = _catalog()
    events = [ev(t, vecs[i], i, int(cats[i])) for t, i in enumerate([0, 1, 2, 30, 31, 32])]
    p = im.fold(None, events, H)
    seen = {0, 1, 2, 30, 31, 32}
    picks = im.recommend(p, 12, recommend_eval.exact_search(vecs.astype(np.float32), seen))
    items = [x.item for x in picks]
    assert len(items) == 12 and len(set(items)) == 12 and not seen & set(items)
    assert sorted(np.bincount(cats[items], minlength=4)[:2]) == [6, 6]
    assert [x.interest for x in picks[:4]] in ([0, 1, 0, 1], [1, 0, 1, 0])  # interleaved by quota

    def closest_other(ps):  # how near-copies the list holds: mean similarity of each item to its closest other
        v = vecs[[x.item for x in ps]]
        s = v @ v.T
        np.fill_diagonal(s, -1)
        return float(s.max(axis=1).mean())

    diverse = im.recommend(
        p, 12, recommend_eval.exact_search(vecs.astype(np.float32), seen), im.Params(diversity=0.5, depth=5)
    )
    assert closest_other(diverse) < closest_other(picks) - 0.01
    assert sorted(np.bincount(cats[[x.item for x in diverse]], minlength=4)[:2]) == [6, 6]


def test_second_simulation_has_attribute_interests_drift_and_noise():
    rng = np.random.default_rng(0)
    n = 300
    attrs = {
        "label": rng.choice(["Jeans", "Shoes", "Tops"], n),
        "colour": rng.choice(["Black", "Blue"], n),
        "usage": rng.choice(["Casual", "Formal"], n),
        "sub_category": rng.choice(["Bottom", "Top"], n),
        "master_category": rng.choice(["Apparel", "Footwear"], n),
    }
    people = simulation.simulate_attributes(attrs, shoppers=60, noise=0.0, seed=1)
    assert len(people) == 60
    for person in people:
        assert person.held_out and not person.held_out & {i for i, _, _ in person.history}
        assert np.isclose(person.appeal.sum(), 1.0, atol=1e-5) and (person.appeal[list(person.held_out)] > 0).all()
    noisy = simulation.simulate_attributes(attrs, shoppers=60, noise=1.0, seed=1)
    # Noise clicks spread a history over more attribute values than interests alone do.
    spread = [
        np.mean([len({attrs["colour"][i] + attrs["label"][i] for i, _, _ in p.history}) for p in group])
        for group in (people, noisy)
    ]
    assert spread[1] > spread[0]
    vecs = rng.normal(size=(n, 8)).astype(np.float32)
    r = recommend_eval.evaluate(
        vecs,
        people[:30],
        people[30:],
        {"view": 1.0, "basket": 3.0, "order": 5.0},
        14.0,
        im.Params(),
        models=recommend_eval.MODELS + ("oracle",),
        bootstrap=10,
        keys=attrs["label"],
    )
    assert set(r) == set(recommend_eval.MODELS) | {"oracle"}
    for m in r.values():
        assert 0 <= m["hit_rate_at_10"] <= 1 and m["hit_rate_at_10_se"] >= 0 and 0 < m["coverage"] <= 1
        assert "ndcg_at_10_se" in m and "intra_list_diversity_se" in m
    assert r["oracle"]["hit_rate_at_10"] >= max(m["hit_rate_at_10"] for m in r.values()) - 1e-9
    c = recommend_eval.compare(r)
    assert c["best_baseline"] != "multi_interest" and "vs_mean_vector" in c


def test_item_knn_learns_co_occurrence():
    pop = [
        simulation.Shopper(history=[(0, "view", 1.0), (1, "view", 1.0)], held_out={2}),
        simulation.Shopper(history=[(3, "view", 1.0)], held_out={4}),
    ]
    s = recommend_eval.cooccurrence_similarity(pop, 5)
    assert s[0, 1] > 0 and s[0, 2] > 0 and s[0, 3] == 0 and s[0, 0] == 0


# --- the shop ------------------------------------------------------------------------------------


def _view(client, products):
    first_visit(client, products[0])  # a new browser's first view opens its session and is not recorded
    for product in products:
        assert client.get(product.get_absolute_url()).status_code == 200
    return preferences.Owner(shopper_key=client.session[preferences.SESSION_KEY])


def test_two_interests_through_the_api_with_explanations(client, indexed_catalog):
    shirts, shoes = category_products("Shirt")[:2], category_products("Shoes")[:2]
    owner = _view(client, shirts + shoes)
    preferences.apply_pending(owner)
    pref = CustomerPreference.objects.get(shopper_key=owner.shopper_key)
    assert len(pref.interests["interests"]) == 2
    data = client.get(reverse("fashion-ai:api-recommendations"), {"k": 6}).json()
    assert data["source"] == "personal" and len(data["results"]) == 6
    cats = [Product.objects.get(pk=r["product_id"]).categories.get().name for r in data["results"]]
    assert cats.count("Shirt") == 3 and cats.count("Shoes") == 3
    titles = {p.pk: p.get_title() for p in shirts + shoes}
    for row, cat in zip(data["results"], cats):
        reason = row["reason"]
        assert reason["product_id"] in titles and reason["kind"] == "view"
        assert reason["text"] == f"Because you looked at {titles[reason['product_id']]}"
        assert Product.objects.get(pk=reason["product_id"]).categories.get().name == cat
    page = client.get(reverse("fashion-ai:home")).content.decode()
    # one reason per product of the grid (each card also carries a "More like this" link with the product id)
    assert page.count('class="fashion-ai-reason') == page.count('col-lg-3" data-product-id=') == 12
    assert "Because you looked at" in page
    # The cached answer keeps the explanations.
    again = client.get(reverse("fashion-ai:api-recommendations"), {"k": 6}).json()
    assert [r["reason"] for r in again["results"]] == [r["reason"] for r in data["results"]]


def test_one_event_is_enough_for_a_relevant_row(client, indexed_catalog):
    owner = _view(client, category_products("Pants")[:1])
    preferences.apply_pending(owner)
    data = client.get(reverse("fashion-ai:api-recommendations"), {"k": 3}).json()
    assert data["source"] == "personal"
    assert Product.objects.get(pk=data["results"][0]["product_id"]).categories.get().name == "Pants"
    assert data["results"][0]["reason"]["text"].startswith("Because you looked at ")


def test_rebuild_equals_incremental_and_the_command_recomputes(client, indexed_catalog, settings):
    settings.FASHION_AI = {**settings.FASHION_AI, "PREFERENCE_MAX_INTERESTS": 3}
    products = category_products("Shirt")[:2] + category_products("Shoes")[:2] + category_products("Pants")[:1]
    owner = preferences.Owner(shopper_key="incremental")
    start = timezone.now() - timedelta(days=3)
    for i, product in enumerate(products):
        preferences.record_event(owner, product.pk, "basket" if i == 2 else "view", when=start + timedelta(hours=i))
        preferences.apply_pending(owner)  # one event at a time, as the worker does
    step = CustomerPreference.objects.get(shopper_key="incremental").interests
    call_command("fashion_rebuild_preferences", "--all", verbosity=0)
    rebuilt = CustomerPreference.objects.get(shopper_key="incremental").interests
    a, b = im.Profile.from_json(step), im.Profile.from_json(rebuilt)
    assert len(a.interests) == len(b.interests) == 3
    for x, y in zip(a.interests, b.interests):
        assert x.keys == y.keys and x.members == y.members
        assert np.allclose(x.mean, y.mean, atol=1e-5) and np.isclose(x.weight, y.weight, rtol=1e-5)
    # A profile from before interests (vector only) gets them from all its events on its next update.
    CustomerPreference.objects.filter(shopper_key="incremental").update(interests={})
    preferences.record_event(owner, products[0].pk, "view")
    preferences.apply_pending(owner)
    assert len(CustomerPreference.objects.get(shopper_key="incremental").interests["interests"]) == 3


def _has_interests(**lookup):
    return CustomerPreference.objects.filter(**lookup).exclude(interests={}).exclude(interests=None).exists()


def test_privacy_paths_remove_every_interest(client, indexed_catalog, django_user_model):
    user = django_user_model.objects.create_user("p", "p@example.com", "pw")
    client.force_login(user)
    for product in category_products("Shirt")[:1] + category_products("Shoes")[:1]:
        client.get(product.get_absolute_url())
    preferences.apply_pending(preferences.Owner(user_id=user.pk))
    assert _has_interests(user=user)
    client.post(reverse("fashion-ai:forget-profile"))
    assert not _has_interests(user=user) and not PreferenceEvent.objects.filter(user=user).exists()
    client.get(category_products("Pants")[0].get_absolute_url())
    preferences.apply_pending(preferences.Owner(user_id=user.pk))
    assert _has_interests(user=user)
    user.delete()
    assert not CustomerPreference.objects.exists() and not PreferenceEvent.objects.exists()
    old = preferences.Owner(shopper_key="expired")
    preferences.record_event(old, category_products("Shirt")[0].pk, "view", when=timezone.now() - timedelta(days=40))
    preferences.apply_pending(old)
    assert _has_interests(shopper_key="expired")
    call_command("fashion_cleanup_preferences", verbosity=0)
    assert not CustomerPreference.objects.filter(shopper_key="expired").exists()


# --- headless shops: recording views -------------------------------------------------------------


def _csrf(client):
    client.get(reverse("fashion-ai:api-recommendations"))
    return client.cookies["csrftoken"].value


def test_view_events_endpoint_is_csrf_protected_and_validates(indexed_catalog):
    url = reverse("fashion-ai:api-events")
    product = category_products("Shoes")[0]
    shopper = Client(enforce_csrf_checks=True)
    assert shopper.post(url, json.dumps({"product_id": product.pk}), content_type="application/json").status_code == 403
    token = _csrf(shopper)
    post = lambda body, **kw: shopper.post(url, body, content_type="application/json", HTTP_X_CSRFTOKEN=token, **kw)  # noqa: E731
    for body, status, message in [
        ("{not json", 400, "not valid JSON"),
        ("[1]", 400, "JSON object"),
        ("{}", 400, "product_id is required"),
        (json.dumps({"product_id": "x"}), 400, "whole number"),
        (json.dumps({"product_id": 10**9}), 404, "No such"),
        (json.dumps({"product_id": product.pk, "kind": "order"}), 400, "kind must be one of view"),
    ]:
        r = post(body)
        assert r.status_code == status and message in r.json()["error"], (body, r.content)
    assert not PreferenceEvent.objects.exists()
    assert shopper.get(url).status_code == 405
    r = post(json.dumps({"product_id": product.pk}))
    assert r.status_code == 201 and r.json() == {"recorded": True, "product_id": product.pk, "kind": "view"}
    event = PreferenceEvent.objects.get()
    assert event.kind == "view" and event.shopper_key == shopper.session[preferences.SESSION_KEY]
    # A form post works too (same CSRF rules).
    r = shopper.post(url, {"product_id": product.pk, "csrfmiddlewaretoken": token})
    assert r.status_code == 201 and PreferenceEvent.objects.count() == 2


def test_personalisation_off_records_nothing_from_the_endpoint(indexed_catalog, settings):
    settings.FASHION_AI = {**settings.FASHION_AI, "PERSONALISATION": False}
    r = Client().post(reverse("fashion-ai:api-events"), {"product_id": category_products("Shoes")[0].pk})
    assert r.status_code == 200 and r.json()["recorded"] is False and not PreferenceEvent.objects.exists()


def test_event_rate_limit(indexed_catalog, settings):
    settings.FASHION_AI = {**settings.FASHION_AI, "EVENT_RATE_LIMIT": TEST_RATE_LIMIT}
    shopper = Client()
    product = category_products("Shoes")[0]
    codes = [shopper.post(reverse("fashion-ai:api-events"), {"product_id": product.pk}).status_code for _ in range(3)]
    assert codes == [201, 201, 429] and PreferenceEvent.objects.count() == 2


oscarapi = pytest.importorskip("oscarapi")


@pytest.mark.urls("tests.headless_urls")
def test_headless_shop_with_django_oscar_api(indexed_catalog):
    """A storefront served through django-oscar-api: its product endpoint records nothing, its basket endpoint fires
    basket_addition, the view endpoint fills the gap, and recommendations come back through the same session."""
    shopper = Client(enforce_csrf_checks=True)
    shirt, shoe = category_products("Shirt")[0], category_products("Shoes")[0]
    r = shopper.get(f"/api/products/{shirt.pk}/")
    assert r.status_code == 200 and r.json()["id"] == shirt.pk
    assert not PreferenceEvent.objects.exists()  # oscar-api sends no product_viewed
    token = _csrf(shopper)
    r = shopper.post(
        reverse("fashion-ai:api-events"),
        json.dumps({"product_id": shirt.pk}),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )
    assert r.status_code == 201
    r = shopper.post(
        "/api/basket/add-product/",
        json.dumps({"url": f"http://testserver/api/products/{shoe.pk}/", "quantity": 1}),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )
    assert r.status_code == 200, r.content
    key = shopper.session[preferences.SESSION_KEY]
    assert sorted(PreferenceEvent.objects.filter(shopper_key=key).values_list("kind", flat=True)) == ["basket", "view"]
    preferences.apply_pending(preferences.Owner(shopper_key=key))
    data = shopper.get(reverse("fashion-ai:api-recommendations"), {"k": 4}).json()
    assert data["source"] == "personal" and all(row["reason"] for row in data["results"])
    cats = {Product.objects.get(pk=row["product_id"]).categories.get().name for row in data["results"]}
    assert cats == {"Shirt", "Shoes"}
    assert any(re.match(r"Because you added .+ to your basket", row["reason"]["text"]) for row in data["results"])


def test_system_checks_name_bad_interest_settings(settings):
    from oscar_fashion_ai.checks import check_search_settings

    assert check_search_settings() == []
    settings.FASHION_AI = {
        **settings.FASHION_AI,
        "PREFERENCE_MAX_INTERESTS": 0,
        "RECOMMENDATION_DIVERSITY": 1.5,
        "EVENT_RATE_LIMIT": "many",
    }
    messages = " ".join(e.msg for e in check_search_settings())
    assert "PREFERENCE_MAX_INTERESTS" in messages and "RECOMMENDATION_DIVERSITY" in messages
    assert "EVENT_RATE_LIMIT" in messages and "120/min" in messages
