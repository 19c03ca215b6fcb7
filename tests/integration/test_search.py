"""Similar products, search by photo and the JSON API on a tiny catalog indexed with the tiny model."""

import io

import numpy as np
import pytest
from django.core.management import call_command
from django.urls import reverse
from oscar.core.loading import get_model
from PIL import Image

from oscar_fashion_ai import runtime
from oscar_fashion_ai.indexing import embedding
from oscar_fashion_ai.models import ProductEmbedding
from tests.factories import make_image

Product = get_model("catalogue", "Product")
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fashion_models")]


def test_sync_reindex_indexes_every_product(indexed_catalog):
    assert ProductEmbedding.objects.filter(status="indexed").count() == 12
    again = embedding.embed_products(list(indexed_catalog.values_list("pk", flat=True)))
    assert again == {"indexed": 0, "skipped": 12, "failed": 0}  # idempotent


@pytest.mark.parametrize("expansion", [0, 3, None])
def test_similar_products_are_ordered_by_cosine_similarity(client, indexed_catalog, settings, expansion):
    """Nearest to the product's vector (expansion 0) or to its vector expanded with its nearest products' vectors
    (the default, SIMILAR_QUERY_EXPANSION), in the order an exact computation over the stored vectors gives."""
    from oscar_fashion_ai import conf
    from oscar_fashion_ai.ml import query_expansion

    if expansion is not None:
        settings.FASHION_AI = {**settings.FASHION_AI, "SIMILAR_QUERY_EXPANSION": expansion}
    n = int(conf.get("SIMILAR_QUERY_EXPANSION"))
    assert n == (8 if expansion is None else expansion)
    product = indexed_catalog.first()
    response = client.get(reverse("fashion-ai:api-similar", args=[product.pk]), {"k": 5})
    assert response.status_code == 200
    body = response.json()
    ids = [r["product_id"] for r in body["results"]]
    assert product.pk not in ids and len(ids) == 5
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    rows = {r.product_id: np.asarray(r.vector, dtype=np.float32) for r in ProductEmbedding.objects.all()}
    others = [pk for pk in rows if pk != product.pk]
    gallery = np.stack([rows[pk] for pk in others])
    query = query_expansion.expand_in_gallery(rows[product.pk][None], gallery, n)[0]
    exact = sorted(others, key=lambda pk: -float(rows[pk] @ query))[:5]
    assert ids == exact
    assert scores == pytest.approx([float(rows[pk] @ query) for pk in exact], abs=1e-4)
    assert body["model_version"] == runtime.model_info().version
    assert set(body["results"][0]) == {"product_id", "title", "url", "image_url", "score"}


def test_product_page_shows_similar_products_and_hides_them_without_index(client, indexed_catalog):
    product = indexed_catalog.first()
    page = client.get(product.get_absolute_url()).content.decode()
    assert 'id="fashion-ai-similar"' in page
    ProductEmbedding.objects.all().delete()
    page = client.get(product.get_absolute_url())
    assert page.status_code == 200 and 'id="fashion-ai-similar"' not in page.content.decode()


def test_photo_search_api_and_page(client, indexed_catalog):
    photo = make_image("Pants", 4321)
    response = client.post(reverse("fashion-ai:api-photo"), {"image": io.BytesIO(photo), "k": "3"})
    assert response.status_code == 200, response.content
    assert len(response.json()["results"]) == 3
    page = client.post(reverse("fashion-ai:photo-search"), {"image": io.BytesIO(photo)})
    assert page.status_code == 200 and 'id="fashion-ai-results"' in page.content.decode()
    assert 'capture="environment"' in client.get(reverse("fashion-ai:photo-search")).content.decode()


def png_bytes(mode, size=(40, 40), **kw):
    img = Image.new(mode, size, **kw)
    buf = io.BytesIO()
    img.save(buf, "PNG" if mode != "CMYK" else "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["RGBA", "P", "LA", "I;16", "CMYK", "L"])
def test_unusual_image_modes_are_handled(client, indexed_catalog, mode):
    response = client.post(reverse("fashion-ai:api-photo"), {"image": io.BytesIO(png_bytes(mode))})
    assert response.status_code == 200, response.content


def test_exif_rotation_is_applied():
    from oscar_fashion_ai.ml.preprocessing import open_image

    img = Image.new("RGB", (60, 30), (255, 0, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    assert open_image(buf.getvalue()).size == (30, 60)


@pytest.mark.parametrize(
    "payload,message",
    [
        (b"this is not an image", "not an image"),
        (make_image("Shirt", 1)[:200], "could not be decoded"),
        (b"", "empty"),
    ],
)
def test_bad_uploads_get_a_clear_400_and_write_nothing(client, indexed_catalog, payload, message):
    before = ProductEmbedding.objects.count()
    response = client.post(reverse("fashion-ai:api-photo"), {"image": io.BytesIO(payload)})
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert ProductEmbedding.objects.count() == before


def test_oversized_decompression_bomb_and_bad_k(client, indexed_catalog, settings):
    settings.FASHION_AI = {**settings.FASHION_AI, "MAX_UPLOAD_BYTES": 1000}
    response = client.post(
        reverse("fashion-ai:api-photo"), {"image": io.BytesIO(make_image("Shirt", 1, size=(300, 300)))}
    )
    assert response.status_code == 400 and "larger than" in response.json()["error"]
    settings.FASHION_AI = {**settings.FASHION_AI, "MAX_UPLOAD_BYTES": 10 * 1024 * 1024, "MAX_IMAGE_PIXELS": 1_000_000}
    bomb = png_bytes("L", size=(4000, 4000))  # 16 MP of one colour compresses to a few KB
    response = client.post(reverse("fashion-ai:api-photo"), {"image": io.BytesIO(bomb)})
    assert response.status_code == 400 and "too large" in response.json()["error"]
    for bad in ("0", "-3", "abc", "100000", "1e3"):
        r = client.get(reverse("fashion-ai:api-similar", args=[indexed_catalog.first().pk]), {"k": bad})
        assert r.status_code == 400, bad
    assert client.post(reverse("fashion-ai:api-photo"), {}).status_code == 400
    assert client.get(reverse("fashion-ai:api-similar", args=[999999])).status_code == 404


def test_model_mismatch_is_reported_and_fixed_by_reindex(client, indexed_catalog):
    product = indexed_catalog.first()
    ProductEmbedding.objects.update(model_version="some-older-model")
    response = client.get(reverse("fashion-ai:api-similar", args=[product.pk]))
    assert response.status_code == 503 and "fashion_reindex --all" in response.json()["error"]
    call_command("fashion_reindex", "--stale", "--sync", verbosity=0)
    assert client.get(reverse("fashion-ai:api-similar", args=[product.pk])).status_code == 200


def test_dimension_change_resizes_the_column(indexed_catalog):
    assert embedding.stored_dimensions() == 256
    assert embedding.ensure_dimensions(128)
    assert embedding.stored_dimensions() == 128
    assert ProductEmbedding.objects.filter(status="indexed").count() == 0
    with pytest.raises(embedding.IndexMismatch, match="256-d vectors but the index stores 128-d"):
        embedding.check_index()
    call_command("fashion_reindex", "--sync", verbosity=0)
    assert embedding.stored_dimensions() == 256
    assert ProductEmbedding.objects.filter(status="indexed").count() == 12


def test_embedder_is_deterministic_and_normalised(tiny_weights):
    from oscar_fashion_ai.ml.embedder import Embedder
    from oscar_fashion_ai.ml.preprocessing import open_image

    images = [open_image(make_image(k, i)) for i, k in enumerate(["Shirt", "Pants", "Shoes"])]
    onnx = Embedder(tiny_weights, runtime="onnx")
    torch_eager = Embedder(tiny_weights, runtime="torch")
    a, b, c = onnx.embed_images(images), onnx.embed_images(images), torch_eager.embed_images(images)
    assert a.shape == (3, 256) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(a, b)
    assert np.allclose(a, c, atol=1e-4)
    from oscar_fashion_ai.ml import preprocessing
    from oscar_fashion_ai.ml.embedder import version_string

    assert onnx.version == torch_eager.version and f"-{preprocessing.PREPROCESSING_VERSION}-" in onnx.version
    # The version changes with the weights and with the preprocessing.
    info = onnx.info
    assert version_string("lite0", info.dim, info.image_size, "0" * 64) != onnx.version
    assert version_string("lite0", info.dim, info.image_size + 32, onnx.version.rsplit("-", 1)[1]) != onnx.version


def test_evaluate_command_on_index_and_files(indexed_catalog, csv_dataset, capsys):
    import json

    from oscar_fashion_ai.ml import datasets

    call_command("fashion_evaluate", "--task", "image", "--json")
    result = json.loads(capsys.readouterr().out)
    expected_queries = sum(datasets.is_test(p.upc) for p in indexed_catalog)
    assert result["task"] == "image" and result["gallery"] == 12 and result["queries"] == expected_queries
    assert 0.0 <= result["p_at_5"] <= 1.0 and 0.0 <= result["map_at_10"] <= 1.0
    call_command("fashion_evaluate", "--task", "image", "--source", str(csv_dataset), "--json")
    on_files = json.loads(capsys.readouterr().out)
    assert on_files["gallery"] == 12  # the corrupt and the missing file are left out
    assert set(on_files) >= {"task", "p_at_5", "map_at_10", "queries", "gallery", "model_version"}


def test_similar_query_plan_uses_the_hnsw_index(indexed_catalog):
    """With several thousand rows and fresh statistics, the real query walks the HNSW index (no sort of all rows).
    (With 3,000 rows the planner's two costs were close enough that it once chose a sequential scan and a sort.)"""
    from django.db import connection

    from oscar_fashion_ai import search

    info = runtime.model_info()
    rng = np.random.default_rng(0)
    extra = Product.objects.bulk_create(
        [
            Product(title=f"synthetic {i}", slug=f"synthetic-{i}", structure="standalone", is_public=True)
            for i in range(6000)
        ]
    )
    partner = get_model("partner", "Partner").objects.get()
    get_model("partner", "StockRecord").objects.bulk_create(
        [
            get_model("partner", "StockRecord")(
                product=p, partner=partner, partner_sku=f"syn-{p.pk}", price=10, num_in_stock=5
            )
            for p in extra
        ]
    )
    vecs = rng.normal(size=(6000, 256)).astype(np.float32)
    ProductEmbedding.objects.bulk_create(
        [
            ProductEmbedding(product=p, vector=v / np.linalg.norm(v), status="indexed", model_version=info.version)
            for p, v in zip(extra, vecs)
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    query = np.asarray(ProductEmbedding.objects.filter(product__in=indexed_catalog[:1]).get().vector, dtype=np.float32)
    # (A small category filter rightly makes PostgreSQL sort the few matching rows exactly instead.)
    for category in (None,):
        qs = search.nearest_queryset(query, info.version, exclude_ids=[indexed_catalog[0].pk], category=category)[:8]
        sql, params = qs.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "fashion_ai_embedding_hnsw" in plan, plan
