"""fashion_adapt on a tiny store: improves or refuses, never installs a worse model, rollback, a crash leaves the model
in use, bad stores are refused, and the dashboard's "Adapt to my catalog" button is for staff only."""

import io
import json

import numpy as np
import pytest
import redis
import torch
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from oscar.core.loading import get_model
from oscar.test.factories import create_product

from oscar_fashion_ai import adaptation, builds, embedding, model_store
from oscar_fashion_ai.ml import datasets
from oscar_fashion_ai.models import AdaptationRun
from tests.test_index_builds import embedding_receivers_paused, restore_schema  # noqa: F401  (fixture)
from tests.test_indexing_worker import add_image

Category = get_model("catalogue", "Category")
ProductCategory = get_model("catalogue", "ProductCategory")

FAST = ["--min-per-category", "3", "--min-products", "10", "--min-test", "3", "--epochs", "3", "--image-size", "64",
        "--workers", "1", "--reindex", "sync"]


@pytest.fixture(scope="session")
def blind_weights(tmp_path_factory):
    """A model in use that cannot tell products apart (its projection ignores the image): every vector is the same."""
    from oscar_fashion_ai.ml import backbones, weights

    torch.manual_seed(3)
    model = backbones.build("lite0", dim=256, image_size=64, pretrained=True)
    with torch.no_grad():
        model.proj.weight.zero_()
    path = tmp_path_factory.mktemp("blind") / "blind.safetensors"
    digest = weights.save(model, path, {"backbone": "lite0", "dim": 256, "image_size": 64, "preprocessing": "p1"}
                          | backbones.model_meta(model))
    path.with_suffix(".card.json").write_text(json.dumps({"weights_sha256": digest}))
    return path


@pytest.fixture
def models_dir(settings, tmp_path):
    settings.FASHION_AI = {**settings.FASHION_AI, "EMBEDDER_WEIGHTS": None, "MODELS_DIR": str(tmp_path / "models")}
    return tmp_path / "models"


def use_model(path):
    """Install ``path`` into the models folder as the shop's model (what an earlier fashion_adapt would leave)."""
    version = embedding.load_embedder(path).version
    model_store.add_version(path, version)
    model_store.activate_version(version, reason="test")
    return version


def make_store(per_kind=16, kinds=("Shirt", "Pants", "Shoes"), images=True):
    categories = {k: Category.add_root(name=k, slug=k.lower()) for k in kinds}
    products = []
    with embedding_receivers_paused():
        for i in range(per_kind * len(kinds)):
            kind = kinds[i % len(kinds)]
            product = create_product(title=f"{kind} {i}", upc=f"adapt-{i}", num_in_stock=5)
            ProductCategory.objects.create(product=product, category=categories[kind])
            if images:
                add_image(product, kind, i)
            products.append(product)
    if images:
        call_command("fashion_reindex", "--sync", verbosity=0)
    return products


def store_p_at_5():
    out = io.StringIO()
    call_command("fashion_evaluate", "--task", "image", "--json", stdout=out)
    return json.loads(out.getvalue())["p_at_5"]


def adapt(*extra):
    out = io.StringIO()
    call_command("fashion_adapt", *FAST, *extra, stdout=out)
    return out.getvalue()


def installed():
    return sorted(p.stem for p in model_store.photo_dir().glob("*.safetensors"))


@pytest.mark.training
@pytest.mark.django_db
def test_adapt_installs_a_better_model_keeps_the_old_one_and_rolls_back(models_dir, blind_weights, restore_schema,  # noqa: F811  (fixture)
                                                                       monkeypatch):
    old = use_model(blind_weights)
    products = make_store()
    assert embedding.get_embedder().version == old
    before = store_p_at_5()
    seen = {}
    from oscar_fashion_ai.ml import adaptation as recipe

    train = recipe.train_candidate

    def spy(records, *args, **kwargs):  # the real training, recording what it was given
        seen["records"] = list(records)
        return train(records, *args, **kwargs)

    monkeypatch.setattr(recipe, "train_candidate", spy)
    text = adapt()
    # Never trained on the test split; every other product with an image was.
    test_upcs = {p.upc for p in products if datasets.is_test(p.upc)}
    assert test_upcs and not test_upcs & {r.source_id for r in seen["records"]}
    assert len(seen["records"]) == len(products) - len(test_upcs)
    assert "model in use" in text and "candidate" in text and "Installed" in text
    run = AdaptationRun.objects.get()
    assert run.state == "installed" and run.result["candidate"]["p_at_5"] > run.result["model_in_use"]["p_at_5"]
    assert run.result["model_in_use"]["p_at_5_se"] >= 0 and run.result["training"]["ms_per_image_epoch"] > 0
    new = run.installed_version
    assert installed() == sorted([old, new])  # the previous version is kept
    assert model_store.read_pointer()["version"] == new
    # Reindexed (sync) with no gap: the new model is in use, and the store's own P@5 went up.
    assert builds.state().active.version == new == embedding.get_embedder().version
    after = store_p_at_5()
    assert after > before and after == pytest.approx(run.result["candidate"]["p_at_5"], abs=1e-6)
    # The installed version lists its measurements.
    listing = io.StringIO()
    call_command("fashion_adapt", "--list", stdout=listing)
    assert f"* {new}" in listing.getvalue() and "store P@5" in listing.getvalue()
    # A sketch encoder was trained for the new photo model and measured on the store's drawings; installed only
    # when it beat the photo model alone, and then used by search by sketch.
    assert "Search by sketch on the store's test split" in text
    sketch = run.result["sketch_encoder"]
    assert sketch["candidate"]["queries"] == sketch["photo_model_alone"]["queries"] > 0
    assert set(sketch["candidate"]["styles"]) == {"xdog", "doodle"}
    new_sha = embedding.get_embedder().sha256
    if sketch["installed"]:
        assert sketch["difference"]["gain"] > 0 and model_store.sketch_encoder_for(new_sha) is not None
        assert embedding.get_sketch_embedder().version == sketch["version"]
    else:
        assert model_store.sketch_encoder_for(new_sha) is None and "Kept no sketch encoder" in text
    assert not (model_store.work_dir() / "sketch-pairs").exists()  # the drawings' cache is cleaned up

    # Rollback: the previous version is the shop's model again, and the index follows.
    out = io.StringIO()
    call_command("fashion_adapt", "--rollback", "--reindex", "sync", stdout=out)
    assert model_store.read_pointer()["version"] == old
    assert builds.state().active.version == old == embedding.get_embedder().version
    assert installed() == sorted([old, new])
    call_command("fashion_adapt", "--rollback", new, "--reindex", "none", stdout=io.StringIO())
    assert model_store.read_pointer()["version"] == new
    assert embedding.get_embedder().version == old  # not reindexed yet: search keeps the model in use
    with pytest.raises(CommandError, match="No installed photo model 'nope'"):
        call_command("fashion_adapt", "--rollback", "nope")
    call_command("fashion_adapt", "--rollback", "package", "--reindex", "none", stdout=io.StringIO())
    assert model_store.configured_weights() is None


@pytest.mark.training
@pytest.mark.django_db
def test_a_failed_sketch_encoder_leaves_the_new_photo_model_installed(models_dir, blind_weights, restore_schema,  # noqa: F811  (fixture)
                                                                      monkeypatch):
    use_model(blind_weights)
    make_store(per_kind=12)
    from oscar_fashion_ai.ml import adaptation as recipe

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(recipe, "train_sketch_candidate", broken)
    text = adapt("--epochs", "2")
    run = AdaptationRun.objects.get()
    assert run.state == "installed" and model_store.read_pointer()["version"] == run.installed_version
    assert "could not be trained (out of memory)" in text and "Search by sketch keeps working" in text
    assert run.result["sketch_encoder"]["installed"] is False
    with pytest.raises(CommandError, match="sketch-minutes"):
        call_command("fashion_adapt", "--sketch-minutes", "-1")


@pytest.mark.training
@pytest.mark.django_db
def test_adapt_keeps_a_model_that_is_not_beaten(models_dir, tiny_weights, restore_schema):  # noqa: F811  (fixture)
    old = use_model(tiny_weights)
    make_store()
    text = adapt()
    run = AdaptationRun.objects.get()
    in_use, candidate = run.result["model_in_use"]["p_at_5"], run.result["candidate"]["p_at_5"]
    assert candidate <= in_use  # these synthetic products are easy: the model in use already finds them all
    assert run.state == "kept" and "Kept the model in use" in text
    assert installed() == [old] and model_store.read_pointer()["version"] == old
    assert builds.state().active.version == old


@pytest.mark.training
@pytest.mark.django_db
def test_a_crash_mid_training_leaves_the_model_in_use_and_resume_finishes(models_dir, blind_weights, restore_schema,  # noqa: F811  (fixture)
                                                                         monkeypatch):
    from oscar_fashion_ai.ml import adaptation as recipe

    old = use_model(blind_weights)
    make_store()
    train = recipe.train_candidate

    class PowerCut(BaseException):
        pass

    def crash_after_first_epoch(records, out, work, budget, recipe_, on_epoch=None, **kwargs):
        def stop(epoch, epochs, entry):
            on_epoch(epoch, epochs, entry)
            raise PowerCut("power cut")

        return train(records, out, work, budget, recipe_, on_epoch=stop, **kwargs)

    monkeypatch.setattr(recipe, "train_candidate", crash_after_first_epoch)
    with pytest.raises(PowerCut):
        adapt()
    assert installed() == [old] and model_store.read_pointer()["version"] == old
    assert embedding.get_embedder().version == old and builds.state().building is None
    run = AdaptationRun.objects.get()
    assert run.state == "failed" and "unchanged" in run.message
    assert (model_store.work_dir() / "checkpoints").exists()
    # --resume continues from the first epoch's checkpoint.
    monkeypatch.setattr(recipe, "train_candidate", train)
    text = adapt("--resume")
    assert "Installed" in text and model_store.read_pointer()["version"] != old


@pytest.mark.training
@pytest.mark.django_db
def test_a_crash_while_installing_leaves_the_pointer(models_dir, blind_weights, restore_schema, monkeypatch):  # noqa: F811  (fixture)
    old = use_model(blind_weights)
    make_store()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(model_store, "activate_version", broken)
    with pytest.raises(OSError):
        adapt()
    assert model_store.read_pointer()["version"] == old
    assert embedding.configured_embedder().version == old == embedding.get_embedder().version


@pytest.mark.django_db
@pytest.mark.parametrize("store, message", [
    ("no images", "no public products with an image"),
    ("one category", "at least 2 categories"),
    ("too few", "Too few products to train on"),
])
def test_bad_stores_are_refused_and_nothing_is_installed(models_dir, tiny_weights, store, message):
    old = use_model(tiny_weights)
    if store == "no images":
        make_store(images=False)
    elif store == "one category":
        make_store(kinds=("Shirt",))
    else:
        make_store(per_kind=2)
    with pytest.raises(CommandError, match=message):
        call_command("fashion_adapt", "--workers", "1", "--min-per-category", "1", stdout=io.StringIO())
    assert installed() == [old] and model_store.read_pointer()["version"] == old
    assert AdaptationRun.objects.get().state == "failed"


@pytest.mark.django_db
def test_explicit_weights_setting_is_not_overridden(settings, tiny_weights):
    make_store(per_kind=2)
    with pytest.raises(CommandError, match="EMBEDDER_WEIGHTS'] is set"):
        call_command("fashion_adapt", stdout=io.StringIO())


def training_queue_length(name):
    from shop.celery import app

    return redis.Redis.from_url(app.conf.broker_url).llen(name)


@pytest.mark.django_db
def test_dashboard_adapt_button_is_staff_only(models_dir, tiny_weights, settings, django_user_model):
    from shop.celery import app

    settings.FASHION_AI = {**settings.FASHION_AI, "TRAINING_QUEUE": "fashion-training-test"}
    use_model(tiny_weights)
    app.control.purge()
    redis.Redis.from_url(app.conf.broker_url).delete("fashion-training-test")
    url = reverse("fashion-ai-dashboard:fashion-ai-adapt")
    customer = django_user_model.objects.create_user("shopper", "shopper@example.com", "pw")
    shopper = Client(enforce_csrf_checks=True)
    shopper.force_login(customer)
    for client in (Client(enforce_csrf_checks=True), shopper):
        assert client.post(url).status_code in (302, 403)
    assert not AdaptationRun.objects.exists() and training_queue_length("fashion-training-test") == 0
    staff = django_user_model.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    admin = Client(enforce_csrf_checks=True)
    admin.force_login(staff)
    assert admin.post(url).status_code == 403  # no CSRF token
    assert not AdaptationRun.objects.exists()
    token = admin.get(reverse("fashion-ai-dashboard:fashion-ai-index")).cookies["csrftoken"].value
    assert admin.get(url).status_code == 405
    assert admin.post(url, {"csrfmiddlewaretoken": token}).status_code == 302
    run = AdaptationRun.objects.get()
    assert run.state == "queued" and run.requested_by == "staff"
    assert training_queue_length("fashion-training-test") == 1
    page = admin.get(reverse("fashion-ai-dashboard:fashion-ai-index")).content.decode()
    assert 'id="fashion-ai-adaptation-state"' in page and "Queued" in page
    assert 'id="fashion-ai-adapt" disabled' in page
    # A second press while one is queued queues nothing.
    assert "already queued" in admin.post(url, {"csrfmiddlewaretoken": token}, follow=True).content.decode()
    assert AdaptationRun.objects.count() == 1 and training_queue_length("fashion-training-test") == 1
    redis.Redis.from_url(app.conf.broker_url).delete("fashion-training-test")


@pytest.mark.worker
@pytest.mark.training
@pytest.mark.django_db(transaction=True)
def test_dashboard_adaptation_runs_on_a_real_worker_and_shows_the_outcome(models_dir, blind_weights, monkeypatch,
                                                                          django_user_model, restore_schema):  # noqa: F811  (fixture)
    import celery.contrib.testing.tasks  # noqa: F401
    from celery.contrib.testing.worker import start_worker

    from shop.celery import app

    use_model(blind_weights)
    make_store()
    # The task runs with the default options, except the thresholds that a store this small needs.
    monkeypatch.setattr(adaptation, "TASK_OPTIONS", {"min_per_category": 3, "min_products": 10, "min_test": 3,
                                                     "workers": 1, "recipe": {"epochs": 3, "image_size": 64}})
    app.control.purge()
    staff = django_user_model.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    admin = Client()
    admin.force_login(staff)
    assert admin.post(reverse("fashion-ai-dashboard:fashion-ai-adapt")).status_code == 302
    from tests.test_indexing_worker import wait_for

    with start_worker(app, pool="solo", loglevel="WARNING", perform_ping_check=False, shutdown_timeout=60):
        assert wait_for(lambda: AdaptationRun.objects.get().done, timeout=900)
        run = AdaptationRun.objects.get()
        assert run.state == "installed", run.message
        # the reindex it queued is done by the same worker; search switches when it is complete
        assert wait_for(lambda: builds.state().active.version == run.installed_version, timeout=300)
    page = admin.get(reverse("fashion-ai-dashboard:fashion-ai-index")).content.decode()
    assert 'id="fashion-ai-adaptation-result"' in page and run.installed_version in page
    assert 'id="fashion-ai-sketch-encoder-notice"' in page  # the sketch encoder belongs to another photo model
    assert "Installed" in page
    assert np.isfinite(run.result["candidate"]["p_at_5"])


@pytest.mark.parametrize("name, bad", [("ADAPT_MAX_MINUTES", 0), ("ADAPT_MAX_MINUTES", "20"), ("TRAINING_QUEUE", ""),
                                       ("TRAINING_QUEUE", None), ("MODELS_DIR", 3)])
def test_adaptation_settings_are_checked(settings, name, bad):
    from django.core.management.base import SystemCheckError

    call_command("check")
    settings.FASHION_AI = {**settings.FASHION_AI, name: bad}
    with pytest.raises(SystemCheckError, match=rf"FASHION_AI\['{name}'\] is {bad!r}"):
        call_command("check")


def test_a_models_dir_that_is_a_file_is_refused(settings, tmp_path):
    from django.core.management.base import SystemCheckError

    (tmp_path / "models").write_text("not a folder")
    settings.FASHION_AI = {**settings.FASHION_AI, "MODELS_DIR": str(tmp_path / "models")}
    with pytest.raises(SystemCheckError, match="is a file, not a folder"):
        call_command("check")
