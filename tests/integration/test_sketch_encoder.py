"""The sketch encoder: a second network that embeds drawings into the photo model's vector space.

Its training command (CPU, tiny data), the pairing check (an encoder is only used with the photo model it
was trained for), the fallback to the photo model, the query expansion, and the API using both."""

import io
import json

import numpy as np
import pytest
from django.core.management import call_command
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageDraw

from oscar_fashion_ai.ml import query_expansion, sketch_pipeline, weights

pytestmark = pytest.mark.usefixtures("fashion_models")


def _drawing_png():
    img = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    ImageDraw.Draw(img).rectangle([60, 40, 240, 260], outline=(0, 0, 0, 255), width=6)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_float16_weights_give_the_float32_vectors(tiny_weights, tmp_path):
    """Storing weights in half precision (the shipped models) changes vectors by rounding only."""
    from oscar_fashion_ai.ml import backbones
    from oscar_fashion_ai.ml.embedder import Embedder

    state, meta = weights.load(tiny_weights)
    model = backbones.build("lite0", dim=256, image_size=64, pretrained=False)
    model.load_state_dict(state)
    half = tmp_path / "half.safetensors"
    weights.save(model, half, meta, dtype=__import__("torch").float16)
    assert half.stat().st_size < 0.6 * tiny_weights.stat().st_size
    img = Image.open(io.BytesIO(_drawing_png())).convert("RGB")
    a = Embedder(tiny_weights, runtime="torch").embed_images([img])
    b = Embedder(half, runtime="torch").embed_images([img])
    assert float(a[0] @ b[0]) > 0.99  # 0.99999 for the trained models (README, "Model files")


def test_sketch_encoder_is_used_only_with_its_photo_model(settings, tiny_sketch_encoder, tmp_path, caplog):
    from oscar_fashion_ai import runtime

    assert runtime.get_sketch_embedder().path == tiny_sketch_encoder
    # an encoder trained for another photo model: refused, logged, drawings go through the photo model
    state, meta = weights.load(tiny_sketch_encoder)
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file(state, str(other), metadata=meta | {"pairs_with": "0" * 64})
    settings.FASHION_AI = {**settings.FASHION_AI, "SKETCH_ENCODER_WEIGHTS": str(other)}
    with caplog.at_level("ERROR"):
        assert runtime.get_sketch_embedder() is runtime.get_embedder()
        runtime.get_sketch_embedder()
    assert sum("another photo model" in r.getMessage() for r in caplog.records) == 1  # once, not per request
    # a missing or broken file: the same fallback
    caplog.clear()
    (tmp_path / "broken.safetensors").write_bytes(b"not weights")
    for name in ("missing.safetensors", "broken.safetensors"):
        settings.FASHION_AI = {**settings.FASHION_AI, "SKETCH_ENCODER_WEIGHTS": str(tmp_path / name)}
        with caplog.at_level("ERROR"):
            assert runtime.get_sketch_embedder() is runtime.get_embedder()
    assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 2


unit_rows = (
    arrays(np.float32, (3, 8), elements=st.floats(-1, 1, width=32))
    .filter(lambda a: (np.linalg.norm(a, axis=1) > 1e-3).all())
    .map(lambda a: a / np.linalg.norm(a, axis=1, keepdims=True))
)


@hsettings(max_examples=60, deadline=None)
@given(q=unit_rows, g=arrays(np.float32, (3, 4, 8), elements=st.floats(-1, 1, width=32)))
def test_query_expansion_gives_unit_vectors_and_ignores_dissimilar_neighbours(q, g):
    g = g / np.maximum(np.linalg.norm(g, axis=2, keepdims=True), 1e-6)
    out = query_expansion.expand_query(q, g)
    assert out.shape == q.shape and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-4)
    opposite = query_expansion.expand_query(q, -q[:, None, :].repeat(2, axis=1))  # similarity < 0: weight 0
    assert np.allclose(opposite, q, atol=1e-5)
    assert np.allclose(query_expansion.expand_query(q, np.zeros((3, 0, 8), np.float32)), q)


def test_query_expansion_moves_the_query_towards_its_neighbours():
    q = np.array([[1.0, 0.0, 0.0]], np.float32)
    near = np.array([[[0.8, 0.6, 0.0]]], np.float32)
    out = query_expansion.expand_query(q, near)
    assert float(out[0] @ near[0, 0]) > float(q[0] @ near[0, 0])
    assert out[0, 2] == 0


@pytest.mark.django_db
def test_sketch_api_uses_the_encoder_and_query_expansion(client, csv_dataset, settings, tiny_weights, tmp_path):
    from django.urls import reverse

    from oscar_fashion_ai import runtime, search
    from oscar_fashion_ai.catalog_import import CatalogImporter
    from oscar_fashion_ai.ml import sketch_pipeline as sp

    CatalogImporter(stdout_progress=False).run(csv_dataset)
    call_command("fashion_reindex", "--all", "--sync", verbosity=0)
    url = reverse("fashion-ai:api-sketch")
    settings.FASHION_AI = {
        **settings.FASHION_AI,
        "SKETCH_QUERY_EXPANSION": 0,
        "SKETCH_PIPELINE": "direct",
        "SKETCH_CATEGORY_BOOST": 0,
    }
    plain = client.post(url, {"sketch": io.BytesIO(_drawing_png()), "k": "5"}).json()
    # the same search by hand: the encoder's vector of the normalised drawing, nearest products
    encoder = runtime.get_sketch_embedder()
    assert encoder is not runtime.get_embedder()
    direct, _ = sp.prepare(Image.open(io.BytesIO(_drawing_png())), runtime.get_embedder(), None, encoder)
    vec = encoder.embed_images([direct])[0]
    expected = [p.pk for p, _ in search.nearest(vec, 5)]
    assert [r["product_id"] for r in plain["results"]] == expected
    # query expansion, with an encoder whose vectors are close to the photos' (a copy of the photo model)
    from safetensors.torch import save_file

    state, meta = weights.load(tiny_weights)
    twin = tmp_path / "twin.safetensors"
    save_file(state, str(twin), metadata=meta | {"role": "sketch", "pairs_with": weights.sha256(tiny_weights)})
    settings.FASHION_AI = {**settings.FASHION_AI, "SKETCH_ENCODER_WEIGHTS": str(twin)}
    plain = client.post(url, {"sketch": io.BytesIO(_drawing_png()), "k": "5"}).json()
    settings.FASHION_AI = {**settings.FASHION_AI, "SKETCH_QUERY_EXPANSION": 2}
    expanded = client.post(url, {"sketch": io.BytesIO(_drawing_png()), "k": "5"}).json()
    vec = runtime.get_sketch_embedder().embed_images([direct])[0]
    query = search.expanded_query(vec, 2)
    assert float(query @ vec) < 0.9999  # it moved
    assert [r["product_id"] for r in expanded["results"]] == [p.pk for p, _ in search.nearest(query, 5)]
    assert [r["score"] for r in expanded["results"]] != [r["score"] for r in plain["results"]]
    # the category boost: the API orders results as search.nearest does with the configured boost and depth
    settings.FASHION_AI = {
        **settings.FASHION_AI,
        "SKETCH_QUERY_EXPANSION": 0,
        "SKETCH_CATEGORY_BOOST": 0.5,
        "SKETCH_RERANK_DEPTH": 8,
    }
    boosted = client.post(url, {"sketch": io.BytesIO(_drawing_png()), "k": "5"}).json()
    assert [r["product_id"] for r in boosted["results"]] == [
        p.pk for p, _ in search.nearest(vec, 5, category_boost=0.5, depth=8)
    ]


def _order_by_rule(scores, cats, boost):
    first = cats[0]
    return sorted(range(len(scores)), key=lambda i: (-(scores[i] + (boost if cats[i] & first else 0)), i))


@hsettings(max_examples=150, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.floats(-1, 1), st.frozensets(st.integers(0, 4), max_size=2)), min_size=0, max_size=12
    ).map(lambda rows: sorted(rows, key=lambda r: -r[0])),
    boost=st.floats(0, 1),
)
def test_best_match_order_is_a_permutation_that_follows_the_best_match(data, boost):
    scores, cats = [r[0] for r in data], [r[1] for r in data]
    order = sketch_pipeline.best_match_order(scores, cats, boost)
    assert sorted(order) == list(range(len(scores)))
    if scores:
        assert order[0] == 0  # the best match stays first
        assert order == _order_by_rule(scores, cats, boost)
    assert sketch_pipeline.best_match_order(scores, cats, 0) == list(range(len(scores)))


def test_best_match_order_examples_and_bad_input():
    # a shirt is the best match; a dress 0.02 closer than the next shirt moves below it at boost 0.05
    assert sketch_pipeline.best_match_order([0.9, 0.8, 0.78, 0.5], ["shirt", "dress", "shirt", None], 0.05) == [
        0,
        2,
        1,
        3,
    ]
    assert sketch_pipeline.best_match_order([0.9, 0.8, 0.7], [{1, 7}, {2}, {7}], 0.2) == [0, 2, 1]  # shared 7
    assert sketch_pipeline.best_match_order([0.9, 0.8, 0.7], [set(), {2}, {2}], 1.0) == [0, 1, 2]  # no category
    with pytest.raises(ValueError, match="0 or more"):
        sketch_pipeline.best_match_order([0.9, 0.8], ["a", "b"], -0.1)
    with pytest.raises(ValueError, match="2 scores but 1"):
        sketch_pipeline.best_match_order([0.9, 0.8], ["a"], 0.1)


def test_reranked_neighbours_matches_best_match_order_per_query():
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(30, 8)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    labels = np.array(list("abc") * 10)
    queries = gallery[:4] + 0.3 * rng.normal(size=(4, 8)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    plain = sketch_pipeline.reranked_neighbours(queries, gallery, labels, 5, 0.0, 12)
    boosted = sketch_pipeline.reranked_neighbours(queries, gallery, labels, 5, 0.3, 12)
    for q, row in zip(queries, boosted):
        cand = np.argsort(-(gallery @ q), kind="stable")[:12]
        expected = cand[sketch_pipeline.best_match_order(gallery[cand] @ q, list(labels[cand]), 0.3)][:5]
        assert list(row) == list(expected)
    assert (plain[:, 0] == boosted[:, 0]).all() and (plain != boosted).any()


@pytest.mark.django_db
def test_nearest_with_category_boost_puts_the_best_matchs_category_first(csv_dataset, tiny_weights):
    """In the store's index: the depth nearest products, those sharing the best match's category first."""
    from oscar.core.loading import get_model

    from oscar_fashion_ai import search
    from oscar_fashion_ai.catalog_import import CatalogImporter
    from oscar_fashion_ai.models import ProductEmbedding

    CatalogImporter(stdout_progress=False).run(csv_dataset)
    call_command("fashion_reindex", "--all", "--sync", verbosity=0)
    ProductCategory = get_model("catalogue", "ProductCategory")

    def check(vector):
        plain = search.nearest(vector, 8)
        cats = search.product_categories([p for p, _ in plain])
        assert all(cats)  # every imported product has its category
        expected = [p for (p, _), c in zip(plain, cats) if c & cats[0]] + [
            p for (p, _), c in zip(plain, cats) if not c & cats[0]
        ]
        boosted = search.nearest(vector, 5, category_boost=2.0, depth=8)
        assert [p.pk for p, _ in boosted] == [p.pk for p in expected[:5]]
        plain_scores = {p.pk: s for p, s in plain}
        assert all(plain_scores[p.pk] == s for p, s in boosted)  # scores stay cosine similarities
        return [p.pk for p, _ in plain[:5]], [p.pk for p, _ in boosted]

    rows = list(ProductEmbedding.objects.filter(status=ProductEmbedding.Status.INDEXED))
    assert len(rows) == 12
    for row in rows:
        check(row.vector)
    # move the second-nearest product of one query into the category of its eighth-nearest: it must move down
    plain = search.nearest(rows[0].vector, 8)
    second, eighth = plain[1][0], plain[7][0]
    assert search.product_categories([second]) != search.product_categories([eighth])
    ProductCategory.objects.filter(product=second).update(category=eighth.categories.first())
    before, after = check(rows[0].vector)
    assert second.pk in before and after.index(second.pk) > before.index(second.pk)


def test_compare_models_script_measures_each_candidate(csv_dataset, tiny_weights, tiny_sketch_encoder, capsys):
    """benchmarks/compare_models.py (how README's model candidates were measured) on a tiny data set."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import compare_models

    compare_models.main(
        [
            "--photo",
            str(tiny_weights),
            "--sketch",
            str(tiny_sketch_encoder),
            "--photo",
            str(tiny_weights),
            "--expansion",
            "0,2",
            "--source",
            str(csv_dataset),
        ]
    )
    out = json.loads(capsys.readouterr().out)
    first, second = out["photo_models"]
    assert first["image"]["queries"] == second["image"]["queries"] > 0 and first["image"] == second["image"]
    assert second["sketch_encoders"] == []
    (enc,) = first["sketch_encoders"]
    assert set(enc["by_query_expansion"]) == {"0", "2"}
    assert enc["by_query_expansion"]["0"]["queries"] == first["image"]["queries"]
    assert {"p_at_5", "source_hit_at_1", "source_hit_at_5"} <= set(enc["by_query_expansion"]["2"])
    assert set(enc["by_category_boost"]) == {"0.0", "0.05"}
    assert enc["by_category_boost"]["0.0"] == enc["by_query_expansion"]["0"]  # boost 0 = plain similarity
    assert not enc["sketch_encoder"].startswith("/")  # no machine paths in results
    compare_models.main(
        [
            "--photo",
            str(tiny_weights),
            "--sketch",
            str(tiny_sketch_encoder),
            "--split",
            "test-a",
            "--source",
            str(csv_dataset),
        ]
    )
    half = json.loads(capsys.readouterr().out)["photo_models"][0]
    assert 0 < half["image"]["queries"] < first["image"]["queries"]


def test_train_sketch_encoder_refuses_unusable_weights_with_a_clear_error(csv_dataset, tmp_path, tiny_weights):
    from django.core.management.base import CommandError

    from oscar_fashion_ai.ml import backbones

    base = [
        "--source",
        str(csv_dataset),
        "--out",
        str(tmp_path / "s.safetensors"),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--variants",
        "2",
        "--workers",
        "1",
        "--device",
        "cpu",
    ]
    with pytest.raises(CommandError, match="does not exist"):
        call_command(
            "fashion_train_sketch_encoder", *base, "--photo-weights", str(tmp_path / "none.safetensors"), verbosity=0
        )
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(CommandError, match="Cannot load"):
        call_command("fashion_train_sketch_encoder", *base, "--photo-weights", str(broken), verbosity=0)
    with pytest.raises(CommandError, match="Cannot load"):
        call_command(
            "fashion_train_sketch_encoder",
            *base,
            "--photo-weights",
            str(tiny_weights),
            "--init-weights",
            str(tmp_path / "missing.safetensors"),
            verbosity=0,
        )
    other = tmp_path / "128d.safetensors"
    weights.save(
        backbones.build("lite0", dim=128, image_size=64, pretrained=False),
        other,
        {"backbone": "lite0", "dim": 128, "image_size": 64},
    )
    with pytest.raises(CommandError, match="128-d"):
        call_command(
            "fashion_train_sketch_encoder",
            *base,
            "--photo-weights",
            str(tiny_weights),
            "--init-weights",
            str(other),
            verbosity=0,
        )
    assert not (tmp_path / "s.safetensors").exists()  # nothing written


def test_train_embedder_refuses_missing_or_mismatched_init_weights(csv_dataset, tmp_path, tiny_weights):
    from django.core.management.base import CommandError

    base = [
        "--source",
        str(csv_dataset),
        "--out",
        str(tmp_path / "e.safetensors"),
        "--mode",
        "full",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--variants",
        "2",
        "--workers",
        "1",
        "--device",
        "cpu",
        "--image-size",
        "64",
    ]
    with pytest.raises(CommandError, match="Cannot start from"):
        call_command(
            "fashion_train_embedder", *base, "--init-weights", str(tmp_path / "missing.safetensors"), verbosity=0
        )
    with pytest.raises(CommandError, match="Cannot start from"):
        call_command("fashion_train_embedder", *base, "--dim", "128", "--init-weights", str(tiny_weights), verbosity=0)
    assert not (tmp_path / "e.safetensors").exists()
