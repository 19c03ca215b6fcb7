"""Search by sketch: the JSON API, bad input, the rate limit, fuzzing, and the widget in real Chromium."""

import base64
import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from oscar_fashion_ai.ml.sketch_input import BlankSketch, normalise_sketch
from oscar_fashion_ai.models import ProductEmbedding
from tests.helpers import TEST_RATE_LIMIT

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fashion_models")]


def drawing_png(blank=False, size=(300, 300)):
    img = Image.new("RGBA", size, (0, 0, 0, 0))
    if not blank:
        d = ImageDraw.Draw(img)
        d.line([(80, 60), (220, 60), (200, 260), (100, 260), (80, 60)], fill=(0, 0, 0, 255), width=5)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_normalise_crops_centres_and_rejects_blank():
    out = normalise_sketch(Image.open(io.BytesIO(drawing_png())), size=128)
    assert out.size == (128, 128) and out.mode == "RGB"
    import numpy as np

    ink = np.asarray(out.convert("L")) < 128
    ys, xs = np.nonzero(ink)
    assert abs((ys.min() + ys.max()) / 2 - 64) < 4 and abs((xs.min() + xs.max()) / 2 - 64) < 4  # centred
    assert ys.min() < 20 and ys.max() > 108  # cropped to the strokes and scaled up
    with pytest.raises(BlankSketch):
        normalise_sketch(Image.open(io.BytesIO(drawing_png(blank=True))))


def test_sketch_api_multipart_and_json(client, indexed_catalog):
    url = reverse("fashion-ai:api-sketch")
    r = client.post(url, {"sketch": io.BytesIO(drawing_png()), "k": "4"})
    assert r.status_code == 200, r.content
    body = r.json()
    assert len(body["results"]) == 4 and body["generated_image"].startswith("data:image/png;base64,")
    assert set(body["results"][0]) == {"product_id", "title", "url", "image_url", "score"}
    data_url = "data:image/png;base64," + base64.b64encode(drawing_png()).decode()
    r = client.post(url, json.dumps({"sketch": data_url, "category": "shoes", "k": 3}), content_type="application/json")
    assert r.status_code == 200, r.content
    from oscar.core.loading import get_model

    Product = get_model("catalogue", "Product")
    ids = [x["product_id"] for x in r.json()["results"]]
    assert ids and all(Product.objects.get(pk=i).categories.get().slug == "shoes" for i in ids)


def test_sketch_closer_to_a_product_blends_its_vector(client, indexed_catalog):
    import numpy as np

    url = reverse("fashion-ai:api-sketch")
    data_url = "data:image/png;base64," + base64.b64encode(drawing_png()).decode()
    plain = client.post(url, json.dumps({"sketch": data_url, "k": 6}), content_type="application/json").json()
    target = (
        ProductEmbedding.objects.filter(status=ProductEmbedding.Status.INDEXED)
        .exclude(product_id__in=[r["product_id"] for r in plain["results"]])
        .first()
    )
    r = client.post(
        url, json.dumps({"sketch": data_url, "k": 6, "like": target.product_id}), content_type="application/json"
    )
    assert r.status_code == 200, r.content
    closer = r.json()["results"]
    assert target.product_id not in [x["product_id"] for x in closer]  # the product itself is not a new result
    assert [x["product_id"] for x in closer] != [x["product_id"] for x in plain["results"]]
    # the blended results lie nearer the liked product than the drawing's own results do
    vec = {e.product_id: np.asarray(e.vector) for e in ProductEmbedding.objects.exclude(vector=None)}
    t = vec[target.product_id]
    assert np.mean([vec[x["product_id"]] @ t for x in closer]) > np.mean(
        [vec[x["product_id"]] @ t for x in plain["results"]]
    )
    assert r.json()["generated_by"] in ("generator", "normalised drawing")
    for like, message in (
        (10**9, "no such product"),
        ("shoe", "product id"),
        (True, "product id"),
        ([1], "product id"),
    ):
        before = ProductEmbedding.objects.count()
        r = client.post(url, json.dumps({"sketch": data_url, "like": like}), content_type="application/json")
        assert r.status_code == 400 and message in r.json()["error"], (like, r.content)
        assert ProductEmbedding.objects.count() == before


@pytest.mark.parametrize(
    "payload,status,message",
    [
        ({"sketch": "blank"}, 400, "canvas is empty"),
        ({"sketch": "jpeg"}, 400, "must be a PNG"),
        ({"sketch": "huge"}, 400, "at most"),
        ({}, 400, "form field 'sketch'"),
    ],
)
def test_sketch_bad_input(client, indexed_catalog, payload, status, message):
    files = {}
    if payload.get("sketch") == "blank":
        files["sketch"] = io.BytesIO(drawing_png(blank=True))
    elif payload.get("sketch") == "jpeg":
        buf = io.BytesIO()
        Image.new("RGB", (50, 50), "white").save(buf, "JPEG")
        files["sketch"] = io.BytesIO(buf.getvalue())
    elif payload.get("sketch") == "huge":
        buf = io.BytesIO()
        Image.new("1", (5000, 100), 1).save(buf, "PNG")
        files["sketch"] = io.BytesIO(buf.getvalue())
    before = ProductEmbedding.objects.count()
    r = client.post(reverse("fashion-ai:api-sketch"), files)
    assert r.status_code == status and message in r.json()["error"]
    assert ProductEmbedding.objects.count() == before


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        json.dumps({"sketch": "data:image/png;base64,@@@@"}),
        json.dumps({"sketch": "data:image/gif;base64,AAAA"}),
        json.dumps([1, 2]),
        json.dumps({"sketch": "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nxx").decode()}),
    ],
)
def test_sketch_malformed_json(client, indexed_catalog, body):
    r = client.post(reverse("fashion-ai:api-sketch"), body, content_type="application/json")
    assert r.status_code == 400 and r.json()["error"]


def test_rate_limit_answers_429(client, indexed_catalog, settings):
    from django.core.cache import cache

    cache.clear()
    settings.FASHION_AI = {**settings.FASHION_AI, "SKETCH_RATE_LIMIT": TEST_RATE_LIMIT}
    url = reverse("fashion-ai:api-sketch")
    codes = [client.post(url, {"sketch": io.BytesIO(drawing_png())}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    r = client.post(url, {"sketch": io.BytesIO(drawing_png())})
    assert "Too many searches" in r.json()["error"] and int(r["Retry-After"]) > 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048), k=st.one_of(st.none(), st.text(max_size=6), st.integers(-(10**6), 10**6)))
def test_fuzz_upload_endpoints_never_500(client, data, k):
    for url, field in ((reverse("fashion-ai:api-sketch"), "sketch"), (reverse("fashion-ai:api-photo"), "image")):
        payload = {field: io.BytesIO(data)}
        if k is not None:
            payload["k"] = str(k)
        r = client.post(url, payload)
        assert 400 <= r.status_code < 500 or r.status_code in (200, 503), (url, r.status_code, r.content[:200])
        assert r.json().get("error") or r.status_code == 200


def test_sketch_evaluation_synthetic_and_human(indexed_catalog, tmp_path, capsys):
    from oscar.core.loading import get_model

    from oscar_fashion_ai.ml import datasets

    Product = get_model("catalogue", "Product")
    capsys.readouterr()
    call_command("fashion_evaluate", "--task", "sketch", "--json")
    result = json.loads(capsys.readouterr().out)
    assert result["queries"] == sum(datasets.is_test(p.upc) for p in Product.objects.all())
    assert {
        "task",
        "p_at_5",
        "queries",
        "model_version",
        "source_hit_at_1",
        "source_hit_at_5",
        "source_hit_at_10",
    } <= set(result)
    assert result["sketch_encoder_version"] and result["sketch_encoder_version"] != result["model_version"]
    assert result["query_expansion"] == 0 and result["category_boost"] == 0.05 and result["rerank_depth"] == 20
    assert result["plain_similarity"]["queries"] == result["queries"]
    call_command("fashion_evaluate", "--task", "sketch", "--category-boost", "0", "--json")
    plain = json.loads(capsys.readouterr().out)
    assert plain["category_boost"] == 0 and "plain_similarity" not in plain
    assert plain["p_at_5"] == result["plain_similarity"]["p_at_5"]
    call_command("fashion_evaluate", "--task", "sketch", "--category-boost", "0", "--expansion", "3", "--json")
    expanded = json.loads(capsys.readouterr().out)
    assert expanded["query_expansion"] == 3 and expanded["plain_similarity"]["p_at_5"] == plain["p_at_5"]
    with pytest.raises(CommandError, match="category-boost"):
        call_command("fashion_evaluate", "--task", "sketch", "--category-boost", "-1")
    human = tmp_path / "human"
    (human / "sneaker").mkdir(parents=True)
    (human / "sneaker" / "1.png").write_bytes(drawing_png())
    (human / "unknown").mkdir()
    (human / "unknown" / "1.png").write_bytes(drawing_png())
    call_command("fashion_evaluate", "--task", "sketch", "--sketches", str(human), "--map", "sneaker=Shoes", "--json")
    result = json.loads(capsys.readouterr().out)
    assert result["queries"] == 1 and "source_hit_at_1" not in result


def test_sketch_evaluation_with_other_drawing_styles(indexed_catalog, capsys, monkeypatch):
    from django.core.management.base import CommandError

    from oscar_fashion_ai.ml import hed

    capsys.readouterr()
    call_command("fashion_evaluate", "--task", "sketch", "--drawings", "edges", "--json")
    result = json.loads(capsys.readouterr().out)
    assert "edge-map" in result["source"] and result["queries"] > 0
    call_command("fashion_evaluate", "--task", "sketch", "--drawings", "doodle")
    text = capsys.readouterr().out
    assert "doodle drawings of the test split" in text and "acc@1" in text and "acc@10" in text
    call_command("fashion_evaluate", "--task", "sketch", "--drawings", "doodle", "--json")
    doodles = json.loads(capsys.readouterr().out)
    assert doodles["queries"] == result["queries"] and 0 <= doodles["p_at_5_source_excluded"] <= 1
    monkeypatch.delenv("FASHION_AI_HED_WEIGHTS", raising=False)
    monkeypatch.setattr(hed, "_shared", None)
    monkeypatch.setattr(hed, "bundled_weights", lambda: (_ for _ in ()).throw(hed.HEDUnavailable("no HED weights")))
    with pytest.raises(CommandError, match="HED"):
        call_command("fashion_evaluate", "--task", "sketch", "--drawings", "hed", "--json")


def test_write_card_records_the_ablation_in_the_generator_card(
    indexed_catalog, tiny_generator, settings, tmp_path, capsys
):
    import shutil

    from django.core.management.base import CommandError

    from oscar_fashion_ai.ml import weights

    gen = tmp_path / "gen.safetensors"
    shutil.copy(tiny_generator, gen)
    shutil.copy(tiny_generator.with_suffix(".card.json"), gen.with_suffix(".card.json"))
    settings.FASHION_AI = {**settings.FASHION_AI, "SKETCH_GENERATOR_WEIGHTS": str(gen)}
    with pytest.raises(CommandError, match="--pipeline all"):
        call_command("fashion_evaluate", "--task", "sketch", "--write-card", "--json")
    capsys.readouterr()
    call_command("fashion_evaluate", "--task", "sketch", "--pipeline", "all", "--write-card", "--json")
    result = json.loads(capsys.readouterr().out)
    card = json.loads(gen.with_suffix(".card.json").read_text())
    ablation = card["metrics"]["retrieval_ablation"]
    assert card["weights_sha256"] == weights.sha256(gen) and card["version"] == "tiny-gen"  # the rest is kept
    assert set(ablation["pipelines"]) == {"direct", "gan", "fusion"} and ablation["default"] == "direct"
    assert ablation["pipelines"]["direct"]["p_at_5"] == result["p_at_5"]
    assert ablation["sketch_encoder"] == result["sketch_encoder_version"] and ablation["query_expansion"] == 0
    assert ablation["category_boost"] == 0.05 and ablation["direct_plain_similarity"]["queries"] == result["queries"]


@pytest.mark.django_db
def test_sketch_page_renders_the_search_button_disabled_until_its_script_runs(client):
    """A tap before sketch.js has loaded (a slow phone) must not look like a search that silently did nothing."""
    html = client.get(reverse("fashion-ai:sketch-search")).content.decode()
    assert 'id="fashion-ai-sketch-submit" disabled' in html and "oscar_fashion_ai/sketch.js" in html
