"""No search gap while a new model's vectors are written: search keeps the model in use until the new index is
complete, then switches in one transaction (oscar_fashion_ai.builds). Real PostgreSQL, Redis and Celery worker."""

import io
import json
import threading
import time

import pytest
import torch
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from oscar.core.loading import get_model
from oscar.test.factories import create_product

from oscar_fashion_ai import builds, embedding, index
from oscar_fashion_ai.models import IndexBuild, ProductEmbedding, ProductEmbeddingNext
from tests.conftest import make_image
from tests.test_indexing_worker import add_image, wait_for

Category = get_model("catalogue", "Category")
ProductCategory = get_model("catalogue", "ProductCategory")


@pytest.fixture(scope="session")
def other_weights(tmp_path_factory):
    """A second small model that makes 128-d vectors (another seed, another dimension): a new model to switch to."""
    from oscar_fashion_ai.ml import backbones, weights

    torch.manual_seed(7)
    model = backbones.build("lite0", dim=128, image_size=64, pretrained=True)
    path = tmp_path_factory.mktemp("other-weights") / "other.safetensors"
    digest = weights.save(model, path, {"backbone": "lite0", "dim": 128, "image_size": 64, "preprocessing": "p1"}
                          | backbones.model_meta(model))
    path.with_suffix(".card.json").write_text(json.dumps({"weights_sha256": digest}))
    return path


@pytest.fixture
def restore_schema():
    """The switch renames tables and may change the vector dimension (DDL survives the test): put both tables back
    to 256-d afterwards, so later tests start from the migrations' schema."""
    yield
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for model, name in ((ProductEmbedding, builds.MAIN_INDEX), (ProductEmbeddingNext, builds.NEXT_INDEX)):
            table = connection.ops.quote_name(model._meta.db_table)
            cursor.execute(f"TRUNCATE {table}")
            cursor.execute(f"DROP INDEX IF EXISTS {name}")
            cursor.execute(f"ALTER TABLE {table} ALTER COLUMN vector TYPE vector(256)")
            cursor.execute(f"CREATE INDEX {name} ON {table} USING hnsw (vector vector_cosine_ops) "
                           "WITH (m = 16, ef_construction = 64)")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    IndexBuild.objects.all().delete()


def make_catalog(n=12):
    kinds = ["Shirt", "Pants", "Shoes"]
    categories = {k: Category.add_root(name=k, slug=k.lower()) for k in kinds}
    products = []
    for i in range(n):
        kind = kinds[i % 3]
        product = create_product(title=f"{kind} {i}", upc=f"build-{i}", num_in_stock=5)
        ProductCategory.objects.create(product=product, category=categories[kind])
        add_image(product, kind, i)
        products.append(product)
    return products


def similar(client, product):
    r = client.get(reverse("fashion-ai:api-similar", args=[product.pk]))
    return r.status_code, (r.json().get("results") if r.status_code == 200 else r.json())


def photo_search(client):
    r = client.post(reverse("fashion-ai:api-photo"), {"image": io.BytesIO(make_image("Shirt", 99))})
    return r.status_code, (r.json().get("results") if r.status_code == 200 else r.json())


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_search_keeps_answering_while_a_paused_worker_builds_the_new_model(settings, other_weights, restore_schema,
                                                                             django_user_model):
    import celery.contrib.testing.tasks  # noqa: F401
    from celery.contrib.testing.worker import start_worker

    from shop.celery import app

    app.control.purge()
    with embedding_receivers_paused():
        products = make_catalog()
    call_command("fashion_reindex", "--sync", verbosity=0)
    old = embedding.get_embedder()
    assert builds.state().active.version == old.version  # recorded when the first vectors were written
    client = Client()
    status, results = similar(client, products[0])
    assert status == 200 and results

    # The shop configures another model (128-d) and presses "Reindex all" on the dashboard; no worker runs yet.
    settings.FASHION_AI = {**settings.FASHION_AI, "EMBEDDER_WEIGHTS": str(other_weights)}
    staff = django_user_model.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    admin = Client()
    admin.force_login(staff)
    assert admin.post(reverse("fashion-ai-dashboard:fashion-ai-reindex"), {"scope": "all"}).status_code == 302
    state = builds.state()
    assert state.building is not None and state.active.version == old.version
    assert embedding.get_embedder().version == old.version  # queries are still embedded by the model in use
    page = admin.get(reverse("fashion-ai-dashboard:fashion-ai-index")).content.decode()
    assert 'id="fashion-ai-build"' in page and state.building.version in page
    for _ in range(2):  # nothing is written yet: every search answers from the current vectors
        status, results = similar(client, products[0])
        assert status == 200 and len(results) >= 5
        status, results = photo_search(client)
        assert status == 200 and results
    assert embedding.stored_dimensions() == 256

    # Now the worker starts. Search is polled the whole time it works: never an error, never an empty answer.
    answers, stop = [], threading.Event()

    def poll():
        from django.db import connection as thread_connection

        poller = Client()
        try:
            while not stop.is_set():
                answers.append(similar(poller, products[1]) + (builds.state().active.version,))
                time.sleep(0.05)
        finally:
            thread_connection.close()

    thread = threading.Thread(target=poll)
    with start_worker(app, pool="solo", loglevel="WARNING", perform_ping_check=False, shutdown_timeout=30):
        thread.start()
        try:
            switched = wait_for(lambda: builds.state().active.version != old.version, timeout=180)
            time.sleep(0.3)
        finally:
            stop.set()
            thread.join()
    assert switched
    new = builds.state().active
    assert new.version == embedding.configured_embedder().version and new.dim == 128
    assert not answers or all(status == 200 and len(results) >= 5 for status, results, _ in answers), answers
    assert {version for _, _, version in answers} <= {old.version, new.version}
    # After the switch: the index holds the new model's 128-d vectors, with their HNSW index, and search uses them.
    assert embedding.stored_dimensions() == 128
    assert ProductEmbedding.objects.filter(status="indexed", model_version=new.version).count() == len(products)
    assert embedding.get_embedder().version == new.version
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [builds.MAIN_INDEX])
        assert "oscar_fashion_ai_productembedding " in cursor.fetchone()[0]
    status, results = similar(client, products[0])
    assert status == 200 and len(results) >= 5
    status, results = photo_search(client)
    assert status == 200 and results
    assert IndexBuild.objects.get(version=old.version).state == "retired"
    assert not ProductEmbeddingNext.objects.exists()  # the replaced vectors were dropped


class embedding_receivers_paused:
    def __enter__(self):
        from oscar_fashion_ai import receivers

        self._cm = receivers.paused()
        self._cm.__enter__()

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


@pytest.mark.django_db
def test_sync_reindex_with_a_new_model_switches_only_when_complete(settings, other_weights, restore_schema):
    with embedding_receivers_paused():
        products = make_catalog(9)
    call_command("fashion_reindex", "--sync", verbosity=0)
    old = embedding.get_embedder().version
    settings.FASHION_AI = {**settings.FASHION_AI, "EMBEDDER_WEIGHTS": str(other_weights)}
    ids, force, build = index.prepare_reindex("all", requested_by="test")
    assert build is not None and sorted(ids) == sorted(p.pk for p in products)
    # Half the catalog gets new vectors: search still uses the old model and all its vectors.
    embedding.embed_products(ids[:4], force=True)
    assert builds.state().active.version == old and builds.progress()["indexed"] == 4
    assert ProductEmbedding.objects.filter(status="indexed", model_version=old).count() == 9
    assert len(index_similar(products[0])) >= 5
    # A product changed during the build is marked in the build; its current vector keeps serving.
    embedding.mark_pending([products[0].pk])
    assert ProductEmbedding.objects.get(product=products[0]).status == "indexed"
    assert ProductEmbeddingNext.objects.get(product=products[0]).status == "pending"
    # The command finishes the build and switches.
    out = io.StringIO()
    call_command("fashion_reindex", "--sync", stdout=out)
    assert "Search now uses" in out.getvalue()
    assert builds.state().active.version == embedding.configured_embedder().version != old
    assert embedding.stored_dimensions() == 128 and len(index_similar(products[0])) >= 5


def index_similar(product):
    from oscar_fashion_ai import search

    return search.similar_products(product, 8)


@pytest.mark.django_db
def test_reindex_all_with_the_same_model_keeps_serving_every_product(restore_schema):
    with embedding_receivers_paused():
        make_catalog(6)
    call_command("fashion_reindex", "--sync", verbosity=0)
    ids, force, build = index.prepare_reindex("all")
    assert build is None and force and len(ids) == 6
    # In place: rows stay indexed (and searchable) until each one is overwritten.
    assert ProductEmbedding.objects.filter(status="indexed").count() == 6
    embedding.embed_products(ids, force=force)
    assert ProductEmbedding.objects.filter(status="indexed").count() == 6
