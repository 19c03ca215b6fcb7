"""A model change rebuilds the index beside the one in use while a real (paused) Celery worker builds it: search keeps
answering until the switch."""

import threading
import time

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from oscar.core.loading import get_model

from oscar_fashion_ai import runtime
from oscar_fashion_ai.indexing import builds, embedding
from oscar_fashion_ai.models import IndexBuild, ProductEmbedding, ProductEmbeddingNext
from tests.factories import embedding_receivers_paused
from tests.helpers import make_catalog, photo_search, similar, wait_for

pytestmark = pytest.mark.usefixtures("fashion_models")

Category = get_model("catalogue", "Category")
ProductCategory = get_model("catalogue", "ProductCategory")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_search_keeps_answering_while_a_paused_worker_builds_the_new_model(
    settings, other_weights, restore_schema, django_user_model
):
    import celery.contrib.testing.tasks  # noqa: F401
    from celery.contrib.testing.worker import start_worker

    from shop.celery import app

    app.control.purge()
    with embedding_receivers_paused():
        products = make_catalog()
    call_command("fashion_reindex", "--sync", verbosity=0)
    old = runtime.get_embedder()
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
    assert runtime.get_embedder().version == old.version  # queries are still embedded by the model in use
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
    assert new.version == runtime.configured_embedder().version and new.dim == 128
    assert not answers or all(status == 200 and len(results) >= 5 for status, results, _ in answers), answers
    assert {version for _, _, version in answers} <= {old.version, new.version}
    # After the switch: the index holds the new model's 128-d vectors, with their HNSW index, and search uses them.
    assert embedding.stored_dimensions() == 128
    assert ProductEmbedding.objects.filter(status="indexed", model_version=new.version).count() == len(products)
    assert runtime.get_embedder().version == new.version
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [builds.MAIN_INDEX])
        assert "oscar_fashion_ai_productembedding " in cursor.fetchone()[0]
    status, results = similar(client, products[0])
    assert status == 200 and len(results) >= 5
    status, results = photo_search(client)
    assert status == 200 and results
    assert IndexBuild.objects.get(version=old.version).state == "retired"
    assert not ProductEmbeddingNext.objects.exists()  # the replaced vectors were dropped
