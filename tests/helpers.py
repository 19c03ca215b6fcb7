"""Small helpers shared by test modules: waiting for a worker, a shopper's first visit, the search endpoints as a
client calls them, and the adaptation command as the adaptation tests run it."""

import io
import json
import os
import time
from pathlib import Path

from django.core.management import call_command
from django.urls import reverse

from tests.factories import categorised_products, embedding_receivers_paused, make_image

#: A rate small enough to hit in a test. The limiter counts in fixed windows, so an hour's window keeps a slow machine
#: from crossing into a fresh one between a test's requests (with "2/min" a loaded CI run did, and a third request
#: got through).
TEST_RATE_LIMIT = "2/hour"


def wait_for(predicate, timeout=60.0, interval=0.1):
    """Poll ``predicate`` until it is true (True) or ``timeout`` seconds have passed (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def first_visit(client, product):
    """A browser's first product view: it opens the shopper's session and records nothing (requests without a
    session, e.g. bots that keep no cookies, never record events). The views after it are recorded."""
    response = client.get(product.get_absolute_url())
    assert response.status_code == 200
    return response


def similar(client, product):
    """``GET /api/products/<pk>/similar/``: the status and the results (or the error body)."""
    r = client.get(reverse("fashion-ai:api-similar", args=[product.pk]))
    return r.status_code, (r.json().get("results") if r.status_code == 200 else r.json())


def photo_search(client):
    """``POST /api/search/photo/`` with a shirt photo: the status and the results (or the error body)."""
    r = client.post(reverse("fashion-ai:api-photo"), {"image": io.BytesIO(make_image("Shirt", 99))})
    return r.status_code, (r.json().get("results") if r.status_code == 200 else r.json())


# --- fashion_adapt -----------------------------------------------------------------------------------------------

#: fashion_adapt options for a tiny store: small minimums, three epochs at 64 px, reindexed in the process.
FAST_ADAPT = [
    "--locator-minutes",  # the garment locator step is tested on its own (test_adapt_training.py)
    "0",
    "--min-per-category",
    "3",
    "--min-products",
    "10",
    "--min-test",
    "3",
    "--epochs",
    "3",
    "--image-size",
    "64",
    "--workers",
    "1",
    "--reindex",
    "sync",
]


def use_model(path):
    """Install ``path`` into the models folder as the shop's model (what an earlier fashion_adapt would leave)."""
    from oscar_fashion_ai import model_store, runtime

    version = runtime.load_embedder(path).version
    model_store.add_version(path, version)
    model_store.activate_version(version, reason="test")
    return version


def make_store(per_kind=16, kinds=("Shirt", "Pants", "Shoes"), images=True):
    """A store of ``per_kind`` products per category, indexed (when it has images)."""
    with embedding_receivers_paused():
        products = categorised_products(per_kind * len(kinds), kinds, upc_prefix="adapt", images=images)
    if images:
        call_command("fashion_reindex", "--sync", verbosity=0)
    return products


def store_p_at_5():
    out = io.StringIO()
    call_command("fashion_evaluate", "--task", "image", "--json", stdout=out)
    return json.loads(out.getvalue())["p_at_5"]


def adapt(*extra):
    out = io.StringIO()
    call_command("fashion_adapt", *FAST_ADAPT, *extra, stdout=out)
    return out.getvalue()


def installed():
    from oscar_fashion_ai import model_store

    return sorted(p.stem for p in model_store.photo_dir().glob("*.safetensors"))


def make_catalog(n=12):
    """``n`` products over three categories, each with a photo (the indexing receivers see them)."""
    return categorised_products(n, upc_prefix="build")


def vector_of(product):
    """The stored vector of ``product`` (numpy)."""
    import numpy as np

    from oscar_fashion_ai.models import ProductEmbedding

    return np.asarray(ProductEmbedding.objects.get(product=product).vector)


def postgres_pids(pgdata: Path):
    """pids of postgres processes serving ``pgdata``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"postgres") and str(pgdata).encode() in cmd:
                found.append(int(entry))
    return found
