"""Fixtures shared by every test.

The tests live in three folders: ``unit/`` (no database), ``integration/`` (the test database, Django's test client,
Redis without a worker) and ``system/`` (real Celery workers, headless Chromium, CPU training, subprocesses such as an
embedded PostgreSQL or pip). Every test under ``system/`` is marked ``system`` here, so ``pytest -m "not system"`` is
the fast loop; ``python -m pytest`` runs everything. Test data: tests/factories.py; helpers: tests/helpers.py.

The small networks (``tiny_weights`` and friends) are built once per session, and only for tests that ask for them:
``fashion_models`` points the plugin's settings at them, ``indexed_catalog`` is the imported and indexed CSV catalog.
"""

import json
import os
from pathlib import Path

import pytest
import torch

from tests.factories import COLOURS, make_image

SYSTEM = Path(__file__).resolve().parent / "system"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SYSTEM in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.system)


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
    digest = weights.save(
        g,
        path,
        {"kind": "pix2pix-generator", "image_size": 64, "ngf": 8, "max_channels": 32, "depth": 6, "in_channels": 1},
    )
    path.with_suffix(".card.json").write_text(json.dumps({"weights_sha256": digest, "version": "tiny-gen"}))
    return path


@pytest.fixture(scope="session")
def tiny_sketch_encoder(tmp_path_factory, tiny_weights):
    """A sketch encoder for ``tiny_weights`` (another seeded projection), saved like a trained one in float16."""
    from oscar_fashion_ai.ml import backbones, weights

    torch.manual_seed(1)
    model = backbones.build("lite0", dim=256, image_size=64, pretrained=True)
    path = tmp_path_factory.mktemp("sketch-encoder") / "tiny-sketch.safetensors"
    digest = weights.save(
        model,
        path,
        {
            "backbone": "lite0",
            "dim": 256,
            "image_size": 64,
            "preprocessing": "p1",
            "role": "sketch",
            "pairs_with": weights.sha256(tiny_weights),
        },
        dtype=torch.float16,
    )
    path.with_suffix(".card.json").write_text(json.dumps({"weights_sha256": digest}))
    return path


def _save_like_a_trained_model(model, path, meta):
    from oscar_fashion_ai.ml import backbones, weights

    digest = weights.save(model, path, meta | backbones.model_meta(model))
    path.with_suffix(".card.json").write_text(json.dumps({"weights_sha256": digest}))
    return path


@pytest.fixture(scope="session")
def other_weights(tmp_path_factory):
    """A second small model that makes 128-d vectors (another seed, another dimension): a new model to switch to."""
    from oscar_fashion_ai.ml import backbones

    torch.manual_seed(7)
    model = backbones.build("lite0", dim=128, image_size=64, pretrained=True)
    return _save_like_a_trained_model(
        model,
        tmp_path_factory.mktemp("other-weights") / "other.safetensors",
        {"backbone": "lite0", "dim": 128, "image_size": 64, "preprocessing": "p1"},
    )


@pytest.fixture(scope="session")
def blind_weights(tmp_path_factory):
    """A model in use that cannot tell products apart (its projection ignores the image): every vector is the same."""
    from oscar_fashion_ai.ml import backbones

    torch.manual_seed(3)
    model = backbones.build("lite0", dim=256, image_size=64, pretrained=True)
    with torch.no_grad():
        model.proj.weight.zero_()
    return _save_like_a_trained_model(
        model,
        tmp_path_factory.mktemp("blind") / "blind.safetensors",
        {"backbone": "lite0", "dim": 256, "image_size": 64, "preprocessing": "p1"},
    )


@pytest.fixture(scope="session", autouse=True)
def _onnx_cache_dir(tmp_path_factory):
    """One ONNX cache for the whole run (the subprocess workers get it through the environment)."""
    os.environ.setdefault("FASHION_AI_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "onnx-cache"))


@pytest.fixture
def fashion_models(settings, tiny_weights, tiny_generator, tiny_sketch_encoder):
    """The plugin's settings pointed at the small session-built networks: the photo model, the sketch generator and
    the sketch encoder (and the session's ONNX cache)."""
    settings.FASHION_AI = {
        **settings.FASHION_AI,
        "EMBEDDER_WEIGHTS": str(tiny_weights),
        "SKETCH_GENERATOR_WEIGHTS": str(tiny_generator),
        "SKETCH_ENCODER_WEIGHTS": str(tiny_sketch_encoder),
        "CACHE_DIR": os.environ["FASHION_AI_CACHE_DIR"],
    }


@pytest.fixture
def imported_catalog(db, csv_dataset, fashion_models):
    """The CSV data set imported as a catalog (3 categories x 4 products), not yet embedded."""
    from oscar.core.loading import get_model

    from oscar_fashion_ai.catalog_import import CatalogImporter

    CatalogImporter(stdout_progress=False).run(csv_dataset)
    return get_model("catalogue", "Product").objects.order_by("pk")


@pytest.fixture
def indexed_catalog(imported_catalog):
    """The CSV catalog imported and embedded (``fashion_reindex --all --sync``), with an empty cache."""
    from django.core.cache import cache
    from django.core.management import call_command

    call_command("fashion_reindex", "--all", "--sync", verbosity=0)
    cache.clear()
    return imported_catalog


@pytest.fixture
def models_dir(settings, fashion_models, tmp_path):
    """A fresh models folder for fashion_adapt, with no ``EMBEDDER_WEIGHTS`` or ``SKETCH_ENCODER_WEIGHTS`` set (the
    folder decides)."""
    settings.FASHION_AI = {
        **settings.FASHION_AI,
        "EMBEDDER_WEIGHTS": None,
        "SKETCH_ENCODER_WEIGHTS": None,
        "MODELS_DIR": str(tmp_path / "models"),
    }
    return tmp_path / "models"


@pytest.fixture
def restore_schema():
    """The switch renames tables and may change the vector dimension (DDL survives the test): put both tables back
    to 256-d afterwards, so later tests start from the migrations' schema."""
    yield
    from django.db import connection

    from oscar_fashion_ai.indexing import builds
    from oscar_fashion_ai.models import IndexBuild, ProductEmbedding, ProductEmbeddingNext

    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for model, name in ((ProductEmbedding, builds.MAIN_INDEX), (ProductEmbeddingNext, builds.NEXT_INDEX)):
            table = connection.ops.quote_name(model._meta.db_table)
            cursor.execute(f"TRUNCATE {table}")
            cursor.execute(f"DROP INDEX IF EXISTS {name}")
            cursor.execute(f"ALTER TABLE {table} ALTER COLUMN vector TYPE vector(256)")
            cursor.execute(
                f"CREATE INDEX {name} ON {table} USING hnsw (vector vector_cosine_ops) "
                "WITH (m = 16, ef_construction = 64)"
            )
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    IndexBuild.objects.all().delete()


@pytest.fixture
def celery_worker_thread(transactional_db):
    """A real Celery worker consuming from Redis (in a thread, solo pool) for the duration of a test."""
    import celery.contrib.testing.tasks  # noqa: F401  (registers the ping task the worker checks)
    from celery.contrib.testing.worker import start_worker

    from shop.celery import app

    app.control.purge()
    with start_worker(app, pool="solo", loglevel="WARNING", perform_ping_check=True, shutdown_timeout=30) as worker:
        yield worker


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
