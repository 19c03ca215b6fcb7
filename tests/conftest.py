import io
import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

COLOURS = {"Shirt": (200, 30, 30), "Pants": (30, 30, 200), "Shoes": (30, 160, 30)}


def make_image(kind: str, seed: int, size=(96, 128), fmt="JPEG") -> bytes:
    """A small synthetic 'product photo': a coloured silhouette per category on a light background."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, (235 + rng.randint(0, 20), 235, 235))
    from PIL import ImageDraw

    draw = ImageDraw.Draw(img)
    colour = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in COLOURS.get(kind, (120, 120, 120)))
    w, h = size
    if kind == "Shirt":
        draw.rectangle([w * 0.25, h * 0.2, w * 0.75, h * 0.85], fill=colour)
        draw.rectangle([w * 0.05, h * 0.2, w * 0.95, h * 0.4], fill=colour)
    elif kind == "Pants":
        draw.rectangle([w * 0.3, h * 0.1, w * 0.48, h * 0.95], fill=colour)
        draw.rectangle([w * 0.52, h * 0.1, w * 0.7, h * 0.95], fill=colour)
        draw.rectangle([w * 0.3, h * 0.1, w * 0.7, h * 0.3], fill=colour)
    else:
        draw.ellipse([w * 0.1, h * 0.55, w * 0.9, h * 0.85], fill=colour)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
def csv_dataset(tmp_path):
    """A tiny data set in the CC0 layout: 3 categories x 4 images, an ignored label, a corrupt and a missing image."""
    root = tmp_path / "clothing"
    (root / "images").mkdir(parents=True)
    rows = ["image,sender_id,label,kids"]
    n = 0
    for label in COLOURS:
        for i in range(4):
            image_id = f"{label.lower()}-{i:04d}-0000-0000-000000000000"
            (root / "images" / f"{image_id}.jpg").write_bytes(make_image(label, n))
            rows.append(f"{image_id},1,{label},False")
            n += 1
    (root / "images" / "ignored-1.jpg").write_bytes(make_image("Shirt", 99))
    rows.append("ignored-1,1,Not sure,False")
    (root / "images" / "corrupt-1.jpg").write_bytes(make_image("Shirt", 98)[:300])
    rows.append("corrupt-1,1,Shirt,False")
    rows.append("missing-1,1,Pants,False")
    (root / "images.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A small embedder (ImageNet Lite0 trunk at 64 px, seeded projection) saved like a trained model."""
    from oscar_fashion_ai.ml import backbones, weights

    torch.manual_seed(0)
    model = backbones.build("lite0", dim=256, image_size=64, pretrained=True)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    digest = weights.save(model, path, {"backbone": "lite0", "dim": 256, "image_size": 64, "preprocessing": "p1"})
    path.with_suffix(".card.json").write_text(json.dumps({"weights_sha256": digest}))
    return path


@pytest.fixture(scope="session")
def tiny_generator(tmp_path_factory):
    """A small sketch generator (64 px, seeded, untrained) saved like a trained one, half precision."""
    from oscar_fashion_ai.ml import gan, weights

    torch.manual_seed(0)
    g = gan.UNetGenerator(1, 3, ngf=8, depth=6, max_channels=32).half()
    path = tmp_path_factory.mktemp("generator") / "tiny-gen.safetensors"
    digest = weights.save(g, path, {"kind": "pix2pix-generator", "image_size": 64, "ngf": 8, "max_channels": 32,
                                    "depth": 6, "in_channels": 1})
    path.with_suffix(".card.json").write_text(json.dumps({"weights_sha256": digest, "version": "tiny-gen"}))
    return path


@pytest.fixture(scope="session")
def tiny_sketch_encoder(tmp_path_factory, tiny_weights):
    """A sketch encoder for ``tiny_weights`` (another seeded projection), saved like a trained one in float16."""
    from oscar_fashion_ai.ml import backbones, weights

    torch.manual_seed(1)
    model = backbones.build("lite0", dim=256, image_size=64, pretrained=True)
    path = tmp_path_factory.mktemp("sketch-encoder") / "tiny-sketch.safetensors"
    digest = weights.save(model, path, {"backbone": "lite0", "dim": 256, "image_size": 64, "preprocessing": "p1",
                                        "role": "sketch", "pairs_with": weights.sha256(tiny_weights)},
                          dtype=torch.float16)
    path.with_suffix(".card.json").write_text(json.dumps({"weights_sha256": digest}))
    return path


@pytest.fixture(autouse=True)
def _fashion_settings(settings, tiny_weights, tiny_generator, tiny_sketch_encoder, tmp_path_factory):
    import os

    # One ONNX cache for the whole run (the subprocess workers get it through the environment).
    os.environ.setdefault("FASHION_AI_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "onnx-cache"))
    settings.FASHION_AI = {**settings.FASHION_AI, "EMBEDDER_WEIGHTS": str(tiny_weights),
                           "SKETCH_GENERATOR_WEIGHTS": str(tiny_generator),
                           "SKETCH_ENCODER_WEIGHTS": str(tiny_sketch_encoder),
                           "CACHE_DIR": os.environ["FASHION_AI_CACHE_DIR"]}


@pytest.fixture
def celery_worker_thread(transactional_db):
    """A real Celery worker consuming from Redis (in a thread, solo pool) for the duration of a test."""
    import celery.contrib.testing.tasks  # noqa: F401  (registers the ping task the worker checks)
    from celery.contrib.testing.worker import start_worker

    from shop.celery import app

    app.control.purge()
    with start_worker(app, pool="solo", loglevel="WARNING", perform_ping_check=True, shutdown_timeout=30) as worker:
        yield worker


def first_visit(client, product):
    """A browser's first product view: it opens the shopper's session and records nothing (requests without a
    session, e.g. bots that keep no cookies, never record events). The views after it are recorded."""
    response = client.get(product.get_absolute_url())
    assert response.status_code == 200
    return response


def rgb_close(a, b):
    return np.allclose(a, b, atol=1e-4)


@pytest.fixture(autouse=True)
def _empty_search_index():
    """The Whoosh index lives outside the database: start every test with an empty one."""
    from haystack import connections

    connections["default"].get_backend().clear(commit=True)
    yield


@pytest.fixture(autouse=True)
def _clear_cache():
    """Cached recommendations and bestseller lists must not leak from one test's database into the next."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()
