"""No search gap while a new model's vectors are written: search keeps the model in use until the new index is
complete, then switches in one transaction (oscar_fashion_ai.indexing.builds). Real PostgreSQL and Redis; the real
Celery worker's part is in tests/system/test_index_builds_worker.py."""

import io

import pytest
from django.core.management import call_command
from oscar.core.loading import get_model

from oscar_fashion_ai import runtime
from oscar_fashion_ai.indexing import builds, embedding, index
from oscar_fashion_ai.models import ProductEmbedding, ProductEmbeddingNext
from tests.factories import embedding_receivers_paused
from tests.helpers import make_catalog

pytestmark = pytest.mark.usefixtures("fashion_models")

Category = get_model("catalogue", "Category")
ProductCategory = get_model("catalogue", "ProductCategory")


@pytest.mark.django_db
def test_sync_reindex_with_a_new_model_switches_only_when_complete(settings, other_weights, restore_schema):
    with embedding_receivers_paused():
        products = make_catalog(9)
    call_command("fashion_reindex", "--sync", verbosity=0)
    old = runtime.get_embedder().version
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
    assert builds.state().active.version == runtime.configured_embedder().version != old
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
