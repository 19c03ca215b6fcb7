"""The sketch-to-photo GAN and the drawings it learns from: shapes, a training step, training pairs, loading."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from oscar_fashion_ai.ml import gan, sketch_pipeline, sketches
from oscar_fashion_ai.ml.generator import GeneratorUnavailable, SketchGenerator
from oscar_fashion_ai.ml.sketch_input import BlankSketch, normalise_sketch, stroke_box

pytestmark = pytest.mark.usefixtures("fashion_models")


def test_generator_and_discriminator_shapes():
    g = gan.UNetGenerator(1, 3, ngf=8, depth=6, max_channels=32)
    d = gan.PatchDiscriminator(4, ndf=8)
    x = torch.rand(2, 1, 64, 64) * 2 - 1
    y = g(x)
    assert y.shape == (2, 3, 64, 64) and y.min() >= -1 and y.max() <= 1
    assert d(x, y).shape == (2, 1, 6, 6)  # a grid of patch verdicts, not one number
    big = gan.UNetGenerator()  # the shipped configuration: 128 px
    assert big(torch.zeros(1, 1, 128, 128)).shape == (1, 3, 128, 128)


def _photo():
    img = Image.new("RGB", (180, 240), (200, 190, 180))
    draw = ImageDraw.Draw(img)
    draw.rectangle([40, 50, 140, 200], fill=(30, 40, 120))
    draw.ellipse([70, 80, 110, 120], fill=(220, 40, 40))
    return img


def test_photo_drawing_is_deterministic_and_aligned_with_its_photo():
    photo = _photo()
    a, b = sketches.photo_drawing(photo, 96), sketches.photo_drawing(photo, 96)
    assert np.array_equal(np.asarray(a), np.asarray(b)) and a.size == (96, 96)
    ink = np.asarray(a.convert("L")) < 128
    assert 0.01 < ink.mean() < 0.5  # strokes, not a blank or black page
    rng = np.random.default_rng(1)
    drawing, crop = sketches.photo_drawing(photo, 96, rng=rng, with_photo=True)
    assert drawing.size == crop.size == (96, 96)
    # the crop shows the garment where the drawing has it: the dark-blue body sits inside the drawn box
    body = np.all(np.asarray(crop) < (90, 90, 200), axis=-1) & (np.asarray(crop)[..., 2] > 80)
    ys, xs = np.nonzero(np.asarray(drawing.convert("L")) < 128)
    by, bx = np.nonzero(body)
    assert ys.min() - 8 <= by.mean() <= ys.max() + 8 and xs.min() - 8 <= bx.mean() <= xs.max() + 8
    edges = sketches.photo_drawing(photo, 96, style="edges")
    assert not np.array_equal(np.asarray(edges), np.asarray(a))


def test_stroke_box_matches_normalisation_and_rejects_blank():
    img = Image.new("L", (200, 100), 255)
    ImageDraw.Draw(img).line([(20, 30), (60, 70)], fill=0, width=4)
    left, top, right, bottom = stroke_box(img)
    assert right - left == bottom - top  # square
    assert left < 20 and right > 60 and top < 30 and bottom > 70
    out = normalise_sketch(img, size=64, line_width=1)
    assert out.size == (64, 64)
    with pytest.raises(BlankSketch):
        stroke_box(Image.new("L", (50, 50), 255))


def test_generator_loads_checks_and_generates(tiny_generator, tmp_path):
    gen = SketchGenerator(tiny_generator, cache_dir=tmp_path)
    drawing = sketches.photo_drawing(_photo(), 64)
    out = gen.generate([drawing, drawing])
    assert len(out) == 2 and out[0].size == (64, 64) and out[0].mode == "RGB"
    assert np.array_equal(np.asarray(out[0]), np.asarray(out[1]))  # no state shared between items
    eager = SketchGenerator(tiny_generator, runtime="torch").generate([drawing])[0]
    assert np.abs(np.asarray(eager, np.int16) - np.asarray(out[0], np.int16)).max() <= 2  # ONNX == PyTorch
    tampered = tmp_path / "t.safetensors"
    tampered.write_bytes(tiny_generator.read_bytes()[:-8] + b"\0" * 8)
    tampered.with_suffix(".card.json").write_text(tiny_generator.with_suffix(".card.json").read_text())
    with pytest.raises(GeneratorUnavailable, match="checksum"):
        SketchGenerator(tampered)
    with pytest.raises(GeneratorUnavailable):
        SketchGenerator(tmp_path / "missing.safetensors")


def test_pipelines_give_unit_vectors(tiny_generator, tiny_weights, tmp_path):
    from oscar_fashion_ai.ml.embedder import Embedder

    emb = Embedder(tiny_weights, cache_dir=tmp_path)
    gen = SketchGenerator(tiny_generator, cache_dir=tmp_path)
    img = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    ImageDraw.Draw(img).rectangle([60, 40, 240, 260], outline=(0, 0, 0, 255), width=6)
    direct, for_gan = sketch_pipeline.prepare(img, emb, gen)
    assert direct.size == (64, 64) and for_gan.size == (64, 64)
    out = {}
    for name in sketch_pipeline.PIPELINES:
        vecs, generated = sketch_pipeline.vectors(emb, gen, [direct], [for_gan], name)
        assert vecs.shape == (1, 256) and abs(np.linalg.norm(vecs[0]) - 1) < 1e-4
        assert (generated is None) == (name == "direct")
        out[name] = vecs[0]
    assert not np.allclose(out["direct"], out["gan"])
    fused = out["direct"] + out["gan"]
    assert np.allclose(out["fusion"], fused / np.linalg.norm(fused), atol=1e-5)
    with pytest.raises(ValueError):
        sketch_pipeline.vectors(emb, gen, [direct], [for_gan], "magic")


@pytest.mark.django_db
def test_sketch_api_without_generator_falls_back_to_direct(client, csv_dataset, settings, tmp_path, caplog):
    import io

    from django.core.management import call_command
    from django.urls import reverse

    from oscar_fashion_ai.catalog_import import CatalogImporter

    CatalogImporter(stdout_progress=False).run(csv_dataset)
    call_command("fashion_reindex", "--all", "--sync", verbosity=0)
    img = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    ImageDraw.Draw(img).rectangle([60, 40, 240, 260], outline=(0, 0, 0, 255), width=6)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    url = reverse("fashion-ai:api-sketch")
    body = client.post(url, {"sketch": io.BytesIO(buf.getvalue()), "k": "3"}).json()
    assert body["pipeline"] == "direct" and len(body["results"]) == 3
    generated = Image.open(io.BytesIO(__import__("base64").b64decode(body["generated_image"].split(",", 1)[1])))
    assert generated.size == (64, 64)  # the tiny generator's picture
    settings.FASHION_AI = {
        **settings.FASHION_AI,
        "SKETCH_GENERATOR_WEIGHTS": str(tmp_path / "missing.safetensors"),
        "SKETCH_PIPELINE": "gan",
    }
    with caplog.at_level("ERROR"):
        r = client.post(url, {"sketch": io.BytesIO(buf.getvalue()), "k": "3"})
    assert r.status_code == 200 and r.json()["pipeline"] == "direct" and len(r.json()["results"]) == 3
    assert any("sketch generator" in rec.getMessage() for rec in caplog.records)


@pytest.mark.django_db
def test_the_default_install_has_no_generator_and_says_nothing(settings, caplog, monkeypatch, tmp_path):
    """The package ships no GAN (it lost to the direct pipeline): not configured and not installed is no generator,
    without an error in the log; `fashion_train_gan --install` would put one back."""
    from oscar_fashion_ai import runtime
    from oscar_fashion_ai.ml import generator

    assert not generator.PACKAGE_GENERATOR.exists()
    settings.FASHION_AI = {**settings.FASHION_AI, "SKETCH_GENERATOR_WEIGHTS": None}
    monkeypatch.setattr(runtime._generator, "key", object())
    with caplog.at_level("ERROR"):
        assert runtime.get_generator() is None
    assert not [r for r in caplog.records if "generator" in r.getMessage()]
