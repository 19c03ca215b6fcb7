"""Issue #7 (security): hostile input on every upload/JSON endpoint, weights without pickle, access control,
CSRF, shopper privacy and rate limits. Real PostgreSQL, real Redis; no mocks.

Fuzzing of random bytes on the two multipart APIs already lives in test_sketch.py; this file adds structured
hostile images (truncated, corrupted, lying headers, bombs), the JSON sketch body, the GET parameters, the HTML
form, and the "nothing was written" check over every table.
"""

import base64
import functools
import io
import json
import shutil

import pytest
import redis
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oscar.core.loading import get_model

from oscar_fashion_ai.models import IndexRun, PreferenceEvent, ProductEmbedding
from oscar_fashion_ai.personalisation import preferences
from tests.factories import make_image
from tests.helpers import TEST_RATE_LIMIT, first_visit
from tests.hostile import bomb_png, diff_counts, encode, png_claiming, row_counts, strip_png

Product = get_model("catalogue", "Product")
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fashion_models")]
FUZZ = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def drawing(size=(200, 200)):
    """A valid, non-blank sketch PNG."""
    return encode("PNG", size, "L")


# --- hostile input -------------------------------------------------------------------------------------------

FORMATS = ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"]
MODES = ["RGB", "L", "1", "P", "RGBA", "LA", "I;16"]
CONTENT_TYPES = [
    "image/png",
    "image/jpeg",
    "image/webp",
    "text/plain",
    "application/octet-stream",
    "application/x-msdownload",
    "text/html",
    "",
]
NAMES = ["photo.jpg", "sketch.png", "../../etc/passwd", "evil.exe", "a" * 300 + ".png", "\u00e9\u4e2d.png", "noext"]


@st.composite
def hostile_bytes(draw):
    """Real images in many formats/modes/sizes, then possibly truncated, corrupted, prefixed; lying PNG headers
    claiming giant dimensions; and plain random bytes."""
    kind = draw(st.sampled_from(["image", "truncated", "corrupted", "prefixed", "claimed", "random"]))
    if kind == "random":
        return draw(st.binary(max_size=4096))
    if kind == "claimed":
        return png_claiming(draw(st.integers(1, 2**31 - 1)), draw(st.integers(1, 2**31 - 1)))
    fmt, mode = draw(st.sampled_from(FORMATS)), draw(st.sampled_from(MODES))
    size = (draw(st.integers(1, 96)), draw(st.integers(1, 96)))
    try:
        data = encode(fmt, size, mode)
    except (OSError, ValueError, KeyError):  # a format that cannot store that mode
        data = encode(fmt, size, "RGB")
    if kind == "truncated":
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "corrupted":
        pos = draw(st.integers(0, len(data) - 1))
        return data[:pos] + bytes([draw(st.integers(0, 255))]) + data[pos + 1 :]
    if kind == "prefixed":
        return draw(st.binary(min_size=1, max_size=16)) + data
    return data


k_values = st.one_of(
    st.none(),
    st.text(max_size=8),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["1e3", "0x10", " 5 ", "5.0", "9" * 5000, "-0", "\x00", "NaN"]),
)


def assert_clean_answer(response, html=False):
    """200, or a 4xx (never 5xx) that says what went wrong."""
    status = response.status_code
    assert status == 200 or 400 <= status < 500, (status, response.content[:300])
    if status != 200:
        if html:
            assert 'id="fashion-ai-error"' in response.content.decode(), response.content[:300]
        else:
            assert isinstance(response.json().get("error"), str) and response.json()["error"]
    return status


def upload(field, data, draw_name, draw_type):
    return {field: SimpleUploadedFile(draw_name, data, content_type=draw_type)}


@FUZZ
@given(
    data=hostile_bytes(),
    k=k_values,
    name=st.sampled_from(NAMES),
    ctype=st.sampled_from(CONTENT_TYPES),
    category=st.one_of(st.none(), st.sampled_from(["shoes", "no-such", "' OR 1=1 --", "\u00e9"])),
)
def test_photo_api_and_form_survive_hostile_uploads(client, indexed_catalog, data, k, name, ctype, category):
    before = row_counts()
    payload = upload("image", data, name, ctype)
    if k is not None:
        payload["k"] = k
    if category is not None:
        payload["category"] = category
    response = client.post(reverse("fashion-ai:api-photo"), payload)
    if assert_clean_answer(response) == 200:
        assert isinstance(response.json()["results"], list)
    assert_clean_answer(client.post(reverse("fashion-ai:photo-search"), upload("image", data, name, ctype)), html=True)
    assert diff_counts(before, row_counts()) == {}


@FUZZ
@given(data=hostile_bytes(), k=k_values, name=st.sampled_from(NAMES), ctype=st.sampled_from(CONTENT_TYPES))
def test_sketch_multipart_survives_hostile_uploads(client, indexed_catalog, data, k, name, ctype):
    before = row_counts()
    payload = upload("sketch", data, name, ctype)
    if k is not None:
        payload["k"] = k
    assert_clean_answer(client.post(reverse("fashion-ai:api-sketch"), payload))
    assert diff_counts(before, row_counts()) == {}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


@st.composite
def sketch_bodies(draw):
    data = draw(hostile_bytes())
    prefix = draw(
        st.sampled_from(
            [
                "data:image/png;base64,",
                "data:image/png;base64",
                "data:image/jpeg;base64,",
                "",
                "data:,",
                "DATA:IMAGE/PNG;BASE64,",
                "data:image/png;base64,,",
            ]
        )
    )
    encoded = base64.b64encode(data).decode()
    mangle = draw(st.sampled_from(["none", "strip_padding", "junk", "urlsafe", "whitespace", "unicode"]))
    if mangle == "strip_padding":
        encoded = encoded.rstrip("=")
    elif mangle == "junk":
        pos = draw(st.integers(0, len(encoded)))
        encoded = encoded[:pos] + draw(st.sampled_from(["!", "@@", "%", "\n", "===", "-_"])) + encoded[pos:]
    elif mangle == "urlsafe":
        encoded = base64.urlsafe_b64encode(data).decode()
    elif mangle == "whitespace":
        encoded = " ".join(encoded[i : i + 8] for i in range(0, len(encoded), 8))
    elif mangle == "unicode":
        encoded = encoded + "\u00e9\u2603"
    payload = {"sketch": prefix + encoded}
    for key in ("k", "category"):
        if draw(st.booleans()):
            payload[key] = draw(json_values)
    shape = draw(st.sampled_from(["dict", "dict", "dict", "any_json", "raw_bytes"]))
    if shape == "any_json":
        return json.dumps(draw(json_values)).encode()
    if shape == "raw_bytes":
        return draw(st.binary(max_size=512))
    return json.dumps(payload).encode()


@FUZZ
@given(
    body=sketch_bodies(),
    ctype=st.sampled_from(
        ["application/json", "application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded"]
    ),
)
def test_sketch_json_survives_hostile_bodies(client, indexed_catalog, body, ctype):
    before = row_counts()
    assert_clean_answer(client.post(reverse("fashion-ai:api-sketch"), body, content_type=ctype))
    assert diff_counts(before, row_counts()) == {}


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,  # nesting deep enough to blow Python's recursion limit
        b'{"sketch": ' * 50_000 + b"1" + b"}" * 50_000,
        b'{"sketch": "data:image/png;base64,AAAA", "k": ' + b"9" * 5000 + b"}",  # int longer than Python parses
        b'{"sketch": "data:image/png;base64,AAAA", "k": NaN}',
        b"\xff\xfe\x00garbage",
    ],
)
def test_sketch_json_pathological_documents(client, indexed_catalog, body):
    before = row_counts()
    response = client.post(reverse("fashion-ai:api-sketch"), body, content_type="application/json")
    assert response.status_code == 400, response.content[:200]
    assert response.json()["error"]
    assert diff_counts(before, row_counts()) == {}


_BOMB = functools.lru_cache(maxsize=1)(bomb_png)
SIZE_MESSAGE = {"image": ("too large",), "sketch": ("at most",)}


@pytest.mark.parametrize(
    "endpoint,field",
    [("fashion-ai:api-photo", "image"), ("fashion-ai:api-sketch", "sketch"), ("fashion-ai:photo-search", "image")],
)
@pytest.mark.parametrize(
    "data,sized",
    [
        pytest.param(lambda: _BOMB(12000), True, id="bomb-144MP-real-pixels"),
        pytest.param(lambda: png_claiming(100_000, 100_000), True, id="header-claims-10G-pixels"),
        pytest.param(lambda: png_claiming(7000, 7000), True, id="header-claims-49MP"),
        pytest.param(lambda: png_claiming(0, 0), False, id="zero-size"),
    ],
)
def test_bombs_and_giant_dimensions_are_refused_before_decoding(client, indexed_catalog, endpoint, field, data, sized):
    before = row_counts()
    response = client.post(reverse(endpoint), {field: io.BytesIO(data())})
    assert response.status_code == 400, response.content[:300]
    text = response.content.decode()
    # The size check fires before the pixels are decoded: had the (tiny) pixel data of the lying headers been
    # decoded, the answer would be "could not be decoded"; had the bomb been decoded, 144 MB would be allocated.
    if sized:
        assert any(m in text for m in SIZE_MESSAGE[field]), text[:300]
    assert diff_counts(before, row_counts()) == {}


def test_long_thin_images_are_refused_before_padding(client, indexed_catalog, settings):
    """A 1 x 20,000,000 px PNG is 39 KB and within MAX_IMAGE_PIXELS, but padding it to a square for the model
    would need 4e14 pixels: it used to get the web process (or worker) OOM-killed."""
    from oscar_fashion_ai.ml import preprocessing

    strip = strip_png(1, 20_000_000)
    assert len(strip) < 100_000
    with pytest.raises(preprocessing.InvalidImage, match="too long and thin"):
        preprocessing.open_image(strip)  # refused from the header, before decoding
    # Through the endpoints, scaled down so that a regression costs ~0.4 GB instead of all the machine's memory.
    settings.FASHION_AI = {**settings.FASHION_AI, "MAX_IMAGE_PIXELS": 40_000}
    before = row_counts()
    for name in ("fashion-ai:api-photo", "fashion-ai:photo-search"):
        r = client.post(reverse(name), {"image": io.BytesIO(strip_png(1, 12_000))})
        assert r.status_code == 400 and "too long and thin" in r.content.decode(), r.content[:300]
    assert diff_counts(before, row_counts()) == {}
    ok = client.post(reverse("fashion-ai:api-photo"), {"image": io.BytesIO(strip_png(100, 390))})
    assert ok.status_code == 200  # an ordinary (if narrow) image is still fine
    # The indexing worker records such a product image as a permanent failure.
    from oscar_fashion_ai.indexing import embedding

    product = indexed_catalog[0]
    image = product.images.get()
    image.original.save("strip.png", io.BytesIO(strip_png(1, 12_000)), save=True)
    counts = embedding.embed_products([product.pk])
    row = ProductEmbedding.objects.get(product=product)
    assert counts["failed"] == 1 and row.status == "failed" and "too long and thin" in row.error


def test_sketch_side_limit_is_exact(client, indexed_catalog):
    url = reverse("fashion-ai:api-sketch")
    r = client.post(url, {"sketch": io.BytesIO(png_claiming(2049, 10))})
    assert r.status_code == 400 and "at most 2048x2048" in r.json()["error"]
    r = client.post(url, {"sketch": io.BytesIO(encode("PNG", (2048, 40), "L"))})
    assert r.status_code == 200, r.content[:300]


@FUZZ
@given(k=k_values, pk=st.integers(0, 10**30))
def test_get_endpoints_reject_bad_parameters_cleanly(client, indexed_catalog, k, pk):
    before = row_counts()
    params = {} if k is None else {"k": k}
    similar = client.get(f"/fashion-ai/api/products/{pk}/similar/", params)
    assert similar.status_code in (200, 400, 404), similar.content[:200]
    assert similar.status_code == 200 or similar.json()["error"]
    real = client.get(reverse("fashion-ai:api-similar", args=[indexed_catalog[0].pk]), params)
    recs = client.get(reverse("fashion-ai:api-recommendations"), params)
    limit = 12 if k in (None, "") else None
    for response in (real, recs):
        if assert_clean_answer(response) == 200 and limit is None:
            limit = int(k.strip())  # accepted: must be a whole number in [1, MAX_K]
            assert 1 <= limit <= 100, k
        if response.status_code == 200:
            assert 1 <= len(response.json()["results"]) <= limit
        else:
            assert response.status_code == 400
    assert real.status_code == recs.status_code, k  # one parser for k
    assert diff_counts(before, row_counts()) == {}


def test_html_pages_and_wrong_methods(client, indexed_catalog):
    assert client.get(reverse("fashion-ai:sketch-search"), {"k": "-1", "category": "<script>"}).status_code == 200
    assert client.put(reverse("fashion-ai:api-photo")).status_code == 405
    assert client.get(reverse("fashion-ai:api-sketch")).status_code == 405
    assert client.post(reverse("fashion-ai:api-similar", args=[indexed_catalog[0].pk])).status_code == 405
    # The JSON body sent to the photo endpoint is not an upload: a clear 400.
    r = client.post(
        reverse("fashion-ai:api-photo"),
        json.dumps({"image": "data:image/png;base64,AAAA"}),
        content_type="application/json",
    )
    assert r.status_code == 400 and "form field 'image'" in r.json()["error"]


# --- weights: no pickle, checksums ---------------------------------------------------------------------------


class Boom:
    """A pickle payload: unpickling it creates a file (stands in for arbitrary code execution)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_shipped_weights_match_their_card_and_load_without_pickle(monkeypatch, tiny_weights):
    import pickle

    import torch

    from oscar_fashion_ai.ml import embedder, weights

    card = weights.read_card(embedder.PACKAGE_WEIGHTS)
    assert card and weights.sha256(embedder.PACKAGE_WEIGHTS) == card["weights_sha256"]

    def forbidden(*args, **kwargs):
        raise AssertionError("weights must not be unpickled")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    model = embedder.Embedder(embedder.PACKAGE_WEIGHTS, runtime="torch")
    assert model.info.dim == 256 and model.version.endswith(card["weights_sha256"][:12])


def test_pickled_weights_are_refused_and_never_executed(tmp_path, settings):
    import pickle

    from oscar_fashion_ai.ml import embedder, weights

    marker = tmp_path / "pwned"
    for name in ("evil.safetensors", "evil.pth"):
        path = tmp_path / name
        path.write_bytes(pickle.dumps({"state_dict": Boom(str(marker))}))
        with pytest.raises((embedder.ModelUnavailable, pickle.UnpicklingError, ValueError, RuntimeError)):
            if name.endswith(".safetensors"):
                embedder.Embedder(path, runtime="torch")
            else:
                weights.load_state_dict(path)  # torch.load(weights_only=True) refuses arbitrary objects
        assert not marker.exists(), f"{name}: the pickle payload ran"


def test_checksum_mismatch_is_refused_with_a_clear_error(tmp_path, tiny_weights, settings, client, caplog):
    from oscar_fashion_ai import runtime
    from oscar_fashion_ai.ml import embedder

    tampered = tmp_path / "tampered.safetensors"
    shutil.copy(tiny_weights, tampered)
    card = json.loads(tiny_weights.with_suffix(".card.json").read_text())
    tampered.with_suffix(".card.json").write_text(json.dumps({**card, "weights_sha256": "0" * 64}))
    with pytest.raises(embedder.ModelUnavailable, match="does not match the checksum in its model card"):
        embedder.Embedder(tampered, runtime="torch")
    # One flipped byte in a file whose card is right is refused as well.
    flipped = tmp_path / "flipped.safetensors"
    data = bytearray(tiny_weights.read_bytes())
    data[-10] ^= 0xFF
    flipped.write_bytes(bytes(data))
    shutil.copy(tiny_weights.with_suffix(".card.json"), flipped.with_suffix(".card.json"))
    with pytest.raises(embedder.ModelUnavailable, match="checksum"):
        embedder.Embedder(flipped, runtime="torch")
    # Configured in the shop: searches answer 503 with the reason instead of a server error.
    settings.FASHION_AI = {**settings.FASHION_AI, "EMBEDDER_WEIGHTS": str(tampered)}
    r = client.post(reverse("fashion-ai:api-photo"), {"image": io.BytesIO(make_image("Shirt", 1))})
    assert r.status_code == 503 and "checksum" in r.json()["error"]
    r = client.post(reverse("fashion-ai:api-sketch"), {"sketch": io.BytesIO(drawing())})
    assert r.status_code == 503 and "checksum" in r.json()["error"]
    # A model card that is not JSON is a model problem too, not a crash.
    tampered.with_suffix(".card.json").write_text("{not json")
    with pytest.raises(embedder.ModelUnavailable):
        runtime.get_embedder()


# --- access control and CSRF ---------------------------------------------------------------------------------


def queued_messages() -> int:
    from shop.celery import app

    client = redis.Redis.from_url(app.conf.broker_url)
    return sum(client.llen(key) for key in client.keys("celery*") if client.type(key) == b"list")


@pytest.fixture
def people(django_user_model):
    from shop.celery import app

    app.control.purge()
    mk = django_user_model.objects.create_user
    yield {
        "staff": mk("staff", "staff@example.com", "pw", is_staff=True, is_superuser=True),
        "customer": mk("cust", "cust@example.com", "pw"),
        "plain_staff": mk("clerk", "clerk@example.com", "pw", is_staff=True),  # staff without admin permissions
    }
    app.control.purge()


def csrf_client(user=None, page="/fashion-ai/search/photo/"):
    c = Client(enforce_csrf_checks=True)
    if user is not None:
        c.force_login(user)
    c.get(page)
    return c, c.cookies["csrftoken"].value


def test_dashboard_page_and_reindex_refuse_customers_and_anonymous(indexed_catalog, people):
    index_url = reverse("fashion-ai-dashboard:fashion-ai-index")
    reindex_url = reverse("fashion-ai-dashboard:fashion-ai-reindex")
    visitors = [csrf_client(who) for who in (None, people["customer"])]
    before, runs = row_counts(), IndexRun.objects.count()
    for c, token in visitors:  # a valid CSRF token: the refusal comes from the permission check
        page = c.get(index_url)
        assert page.status_code in (302, 403) and "fashion-ai-stats" not in page.content.decode()
        if page.status_code == 302:
            assert "login" in page["Location"]
        for scope in ("all", "stale", "failed"):
            r = c.post(reindex_url, {"scope": scope, "csrfmiddlewaretoken": token})
            assert r.status_code in (302, 403) and (r.status_code == 403 or "login" in r["Location"])
    assert diff_counts(before, row_counts()) == {} and queued_messages() == 0
    assert set(ProductEmbedding.objects.values_list("status", flat=True)) == {"indexed"}
    # Staff: page, then the POST queues work and records the run.
    c, token = csrf_client(people["plain_staff"])
    assert c.get(index_url).status_code == 200
    assert c.post(reindex_url, {"scope": "all"}).status_code == 403  # CSRF
    assert IndexRun.objects.count() == runs and queued_messages() == 0
    assert c.post(reindex_url, {"scope": "all", "csrfmiddlewaretoken": token}).status_code == 302
    assert IndexRun.objects.count() == runs + 1 and IndexRun.objects.first().products == 12
    assert queued_messages() > 0


def test_admin_reindex_action_access_and_csrf(indexed_catalog, people):
    url = reverse("admin:catalogue_product_changelist")
    ids = [str(pk) for pk in indexed_catalog.values_list("pk", flat=True)[:3]]
    data = {"action": "reindex_selected", "_selected_action": ids}
    runs = IndexRun.objects.count()
    for who in (None, people["customer"], people["plain_staff"]):
        c, token = csrf_client(who)
        r = c.post(url, {**data, "csrfmiddlewaretoken": token})
        assert r.status_code in (302, 403), (who, r.status_code)
        assert r.status_code == 403 or "login" in r["Location"]
    assert IndexRun.objects.count() == runs and queued_messages() == 0
    assert set(ProductEmbedding.objects.values_list("status", flat=True)) == {"indexed"}
    c, token = csrf_client(people["staff"])
    assert c.post(url, data).status_code == 403  # CSRF enforced on the admin action too
    assert IndexRun.objects.count() == runs and queued_messages() == 0
    assert c.post(url, {**data, "csrfmiddlewaretoken": token}).status_code == 302
    assert IndexRun.objects.count() == runs + 1 and IndexRun.objects.first().products == 3
    assert queued_messages() == 1


@pytest.mark.parametrize(
    "name,kind",
    [
        ("fashion-ai:api-photo", "photo"),
        ("fashion-ai:photo-search", "photo"),
        ("fashion-ai:api-sketch", "sketch"),
        ("fashion-ai:api-sketch", "sketch-json"),
        ("fashion-ai:forget-profile", "forget"),
    ],
)
def test_csrf_is_enforced_on_every_plugin_post(indexed_catalog, name, kind):
    """The public searches are read-only but stay CSRF-protected (the widget and form send the token)."""

    def payload():
        if kind == "photo":
            return {"data": {"image": io.BytesIO(make_image("Shirt", 3))}}
        if kind == "sketch":
            return {"data": {"sketch": io.BytesIO(drawing())}}
        if kind == "sketch-json":
            return {
                "data": json.dumps({"sketch": "data:image/png;base64," + base64.b64encode(drawing()).decode()}),
                "content_type": "application/json",
            }
        return {"data": {}}

    c = Client(enforce_csrf_checks=True)
    first_visit(c, indexed_catalog[0])
    c.get(indexed_catalog[0].get_absolute_url())  # a shopper with a profile event, so "forget" has something to delete
    c.get(reverse("fashion-ai:photo-search"))
    token = c.cookies["csrftoken"].value
    events = PreferenceEvent.objects.count()
    before = row_counts()
    refused = c.post(reverse(name), **payload())
    assert refused.status_code == 403 and b"CSRF" in refused.content
    assert diff_counts(before, row_counts()) == {} and PreferenceEvent.objects.count() == events
    accepted = c.post(reverse(name), **payload(), HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code in (200, 302), accepted.content[:300]
    if kind == "forget":
        assert PreferenceEvent.objects.count() == events - 1


# --- one shopper never sees another's recommendations ---------------------------------------------------------


def category_ids(name):
    return list(Product.objects.filter(categories__name=name).order_by("pk").values_list("pk", flat=True))


def recs(c, k=4):
    body = c.get(reverse("fashion-ai:api-recommendations"), {"k": k}).json()
    return body["source"], [r["product_id"] for r in body["results"]]


def home_ids(c):
    import re

    page = c.get(reverse("fashion-ai:home")).content.decode()
    return 'data-personal="true"' in page, [int(x) for x in re.findall(r'data-product-id="(\d+)"', page)]


def view(c, pks):
    for pk in pks:
        assert c.get(Product.objects.get(pk=pk).get_absolute_url()).status_code == 200


def test_two_shoppers_never_share_recommendations(indexed_catalog, settings):
    settings.FASHION_AI = {**settings.FASHION_AI, "HOMEPAGE_RECOMMENDATIONS": 4}
    shirts, pants = category_ids("Shirt"), category_ids("Pants")
    a, b = Client(), Client()
    view(a, shirts[:2])
    view(b, pants[:2])
    call_command("fashion_rebuild_preferences", verbosity=0)
    for _ in range(2):  # the second round is served from the per-shopper caches
        (src_a, ids_a), (src_b, ids_b) = recs(a), recs(b)
        assert src_a == src_b == "personal"
        assert set(ids_a) <= set(shirts) and set(ids_b) <= set(pants)
        (pa, home_a), (pb, home_b) = home_ids(a), home_ids(b)
        assert pa and pb and set(home_a) <= set(shirts) and set(home_b) <= set(pants)
    assert Client().get(reverse("fashion-ai:api-recommendations")).json()["source"] == "fallback"


def test_login_logout_on_one_browser_keeps_profiles_apart(indexed_catalog, django_user_model, settings):
    settings.FASHION_AI = {**settings.FASHION_AI, "HOMEPAGE_RECOMMENDATIONS": 4}
    shirts, shoes = category_ids("Shirt"), category_ids("Shoes")
    alice = django_user_model.objects.create_user("alice", "alice@example.com", "pw")
    bob = django_user_model.objects.create_user("bob", "bob@example.com", "pw")
    c = Client()
    c.login(username="alice@example.com", password="pw")
    view(c, shirts[:2])
    preferences.apply_pending(preferences.Owner(user_id=alice.pk))
    assert recs(c)[0] == "personal" and set(recs(c)[1]) <= set(shirts)
    assert home_ids(c)[0]  # alice's grid is now in the fragment cache
    c.post(reverse("customer:logout"))
    assert recs(c)[0] == "fallback" and not home_ids(c)[0]
    assert preferences.SESSION_KEY not in c.session
    c.login(username="bob@example.com", password="pw")
    assert recs(c)[0] == "fallback" and not home_ids(c)[0]  # bob has no profile: not alice's
    view(c, shoes[:2])
    preferences.apply_pending(preferences.Owner(user_id=bob.pk))
    personal, ids = home_ids(c)
    assert personal and set(ids) <= set(shoes) and set(recs(c)[1]) <= set(shoes)
    assert PreferenceEvent.objects.filter(user=alice).count() == 2
    assert PreferenceEvent.objects.filter(user=bob).count() == 2
    c.post(reverse("customer:logout"))
    c.login(username="alice@example.com", password="pw")
    assert set(recs(c)[1]) <= set(shirts)


# --- rate limits ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,field,setting",
    [
        ("fashion-ai:api-photo", "image", "PHOTO_RATE_LIMIT"),
        ("fashion-ai:photo-search", "image", "PHOTO_RATE_LIMIT"),
        ("fashion-ai:api-sketch", "sketch", "SKETCH_RATE_LIMIT"),
    ],
)
def test_rate_limits_answer_429_per_client_and_ignore_spoofed_headers(
    client, indexed_catalog, settings, name, field, setting
):
    settings.FASHION_AI = {**settings.FASHION_AI, setting: TEST_RATE_LIMIT}
    data = make_image("Shoes", 5) if field == "image" else drawing()

    def post(**extra):
        return client.post(reverse(name), {field: io.BytesIO(data)}, **extra)

    assert [post().status_code for _ in range(2)] == [200, 200]
    # Without a configured trusted proxy, a forged client-address header does not buy a new budget.
    limited = post(HTTP_X_REAL_IP="10.9.8.7", HTTP_X_FORWARDED_FOR="10.9.8.7")
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0
    assert "Too many searches" in limited.content.decode()
    if name.startswith("fashion-ai:api"):
        assert "Too many searches" in limited.json()["error"]
    # Another client still gets through.
    assert post(REMOTE_ADDR="10.0.0.2").status_code == 200
    # Behind a trusted proxy, clients are told apart by the configured header.
    settings.FASHION_AI = {**settings.FASHION_AI, "TRUSTED_PROXY_HEADER": "HTTP_X_REAL_IP"}
    assert post(HTTP_X_REAL_IP="10.1.1.1").status_code == 200
    # Limits off: never 429.
    settings.FASHION_AI = {**settings.FASHION_AI, setting: None}
    assert post().status_code == 200
