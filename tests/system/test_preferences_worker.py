"""Personalisation through a real Celery worker: a product view updates the shopper's vector."""

import time

import numpy as np
import pytest
from django.core.management import call_command
from oscar.core.loading import get_model

from oscar_fashion_ai.catalog_import import CatalogImporter
from oscar_fashion_ai.models import CustomerPreference
from oscar_fashion_ai.personalisation import preferences
from tests.factories import category_products
from tests.helpers import first_visit, vector_of

pytestmark = pytest.mark.usefixtures("fashion_models")

Product = get_model("catalogue", "Product")
DAY = 86400.0


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_view_updates_the_vector_through_a_real_worker(client, csv_dataset, celery_worker_thread):
    CatalogImporter(stdout_progress=False).run(csv_dataset)
    call_command("fashion_reindex", "--all", "--sync", verbosity=0)
    product = category_products("Pants")[0]
    first_visit(client, product)
    client.get(product.get_absolute_url())
    key = client.session[preferences.SESSION_KEY]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pref = CustomerPreference.objects.filter(shopper_key=key).first()
        if pref is not None and pref.vector is not None:
            break
        time.sleep(0.2)
    assert pref is not None and pref.vector is not None
    assert np.allclose(np.asarray(pref.vector), vector_of(product), atol=1e-4)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_periodic_cooccurrence_refresh_runs_on_a_real_worker(csv_dataset, celery_worker_thread):
    from oscar_fashion_ai import publishing
    from oscar_fashion_ai.models import ProductNeighbour

    CatalogImporter(stdout_progress=False).run(csv_dataset)
    shirt, shoe = category_products("Shirt")[0], category_products("Shoes")[0]
    for n in range(2):
        owner = preferences.Owner(shopper_key=f"pair-{n}")
        preferences.record_event(owner, shirt.pk, "view")
        preferences.record_event(owner, shoe.pk, "basket")
    publishing.enqueue_cooccurrence_refresh()  # the task celery beat sends
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not ProductNeighbour.objects.exists():
        time.sleep(0.2)
    assert set(ProductNeighbour.objects.values_list("product_id", "neighbour_id")) == {
        (shirt.pk, shoe.pk),
        (shoe.pk, shirt.pk),
    }
