"""fashion_adapt trained for real on a tiny store (CPU): improves or refuses, never installs a worse model,
rollback, a crash leaves the model in use, and the dashboard's button on a real worker."""

import io

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from oscar.core.loading import get_model

from oscar_fashion_ai import adaptation, model_store, runtime
from oscar_fashion_ai.indexing import builds
from oscar_fashion_ai.ml import datasets
from oscar_fashion_ai.models import AdaptationRun
from tests.helpers import FAST_ADAPT, adapt, installed, make_store, store_p_at_5, use_model, wait_for

pytestmark = pytest.mark.usefixtures("fashion_models")

Category = get_model("catalogue", "Category")
ProductCategory = get_model("catalogue", "ProductCategory")
FAST = FAST_ADAPT


@pytest.mark.training
@pytest.mark.django_db
def test_adapt_installs_a_better_model_keeps_the_old_one_and_rolls_back(
    models_dir, blind_weights, restore_schema, monkeypatch
):
    old = use_model(blind_weights)
    products = make_store()
    assert runtime.get_embedder().version == old
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
    assert builds.state().active.version == new == runtime.get_embedder().version
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
    # Measured beside search by sketch as it was before (here the old photo model alone: it had no encoder).
    assert "before (pair in use)" in text and sketch["started_from"] == "photo"
    assert sketch["before"]["queries"] == sketch["candidate"]["queries"]
    assert sketch["difference_to_before"]["queries"] == sketch["candidate"]["queries"]
    new_sha = runtime.get_embedder().sha256
    if sketch["installed"]:
        assert sketch["difference"]["gain"] > 0 and model_store.sketch_encoder_for(new_sha) is not None
        assert runtime.get_sketch_embedder().version == sketch["version"]
    else:
        assert model_store.sketch_encoder_for(new_sha) is None and "Kept no sketch encoder" in text
    assert not (model_store.work_dir() / "sketch-pairs").exists()  # the drawings' cache is cleaned up

    # Rollback: the previous version is the shop's model again, and the index follows.
    out = io.StringIO()
    call_command("fashion_adapt", "--rollback", "--reindex", "sync", stdout=out)
    assert model_store.read_pointer()["version"] == old
    assert builds.state().active.version == old == runtime.get_embedder().version
    assert installed() == sorted([old, new])
    call_command("fashion_adapt", "--rollback", new, "--reindex", "none", stdout=io.StringIO())
    assert model_store.read_pointer()["version"] == new
    assert runtime.get_embedder().version == old  # not reindexed yet: search keeps the model in use
    with pytest.raises(CommandError, match="No installed photo model 'nope'"):
        call_command("fashion_adapt", "--rollback", "nope")
    call_command("fashion_adapt", "--rollback", "package", "--reindex", "none", stdout=io.StringIO())
    assert model_store.configured_weights() is None


@pytest.mark.training
@pytest.mark.django_db
def test_a_failed_sketch_encoder_leaves_the_new_photo_model_installed(
    models_dir, blind_weights, restore_schema, monkeypatch
):
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


def test_adapt_does_not_train_a_sketch_encoder_that_a_setting_would_override(
    models_dir, settings, tmp_path, monkeypatch
):
    from oscar_fashion_ai.ml import adaptation as recipe

    settings.FASHION_AI = {**settings.FASHION_AI, "SKETCH_ENCODER_WEIGHTS": str(tmp_path / "mine.safetensors")}
    monkeypatch.setattr(recipe, "train_sketch_candidate", lambda *a, **k: pytest.fail("trained anyway"))
    lines = []
    out = adaptation.adapt_sketch(
        tmp_path / "photo.safetensors",
        None,
        None,
        tmp_path,
        5,
        adaptation.Options(),
        adaptation.Reporter(write=lines.append),
    )
    assert out["installed"] is False and "SKETCH_ENCODER_WEIGHTS" in out["message"] and lines


@pytest.mark.training
@pytest.mark.django_db
def test_adapt_keeps_a_model_that_is_not_beaten(models_dir, tiny_weights, restore_schema):
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
def test_a_crash_mid_training_leaves_the_model_in_use_and_resume_finishes(
    models_dir, blind_weights, restore_schema, monkeypatch
):
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
    assert runtime.get_embedder().version == old and builds.state().building is None
    run = AdaptationRun.objects.get()
    assert run.state == "failed" and "unchanged" in run.message
    assert (model_store.work_dir() / "checkpoints").exists()
    # --resume continues from the first epoch's checkpoint.
    monkeypatch.setattr(recipe, "train_candidate", train)
    text = adapt("--resume")
    assert "Installed" in text and model_store.read_pointer()["version"] != old


@pytest.mark.training
@pytest.mark.django_db
def test_a_crash_while_installing_leaves_the_pointer(models_dir, blind_weights, restore_schema, monkeypatch):
    old = use_model(blind_weights)
    make_store()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(model_store, "activate_version", broken)
    with pytest.raises(OSError):
        adapt()
    assert model_store.read_pointer()["version"] == old
    assert runtime.configured_embedder().version == old == runtime.get_embedder().version


@pytest.mark.worker
@pytest.mark.training
@pytest.mark.django_db(transaction=True)
def test_dashboard_adaptation_runs_on_a_real_worker_and_shows_the_outcome(
    models_dir, blind_weights, monkeypatch, django_user_model, restore_schema
):
    import celery.contrib.testing.tasks  # noqa: F401
    from celery.contrib.testing.worker import start_worker

    from shop.celery import app

    use_model(blind_weights)
    make_store()
    # The task runs with the default options, except the thresholds that a store this small needs.
    monkeypatch.setattr(
        adaptation.task,
        "TASK_OPTIONS",
        {
            "min_per_category": 3,
            "min_products": 10,
            "min_test": 3,
            "workers": 1,
            "recipe": {"epochs": 3, "image_size": 64},
        },
    )
    app.control.purge()
    staff = django_user_model.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    admin = Client()
    admin.force_login(staff)
    assert admin.post(reverse("fashion-ai-dashboard:fashion-ai-adapt")).status_code == 302

    with start_worker(app, pool="solo", loglevel="WARNING", perform_ping_check=False, shutdown_timeout=60):
        assert wait_for(lambda: AdaptationRun.objects.get().done, timeout=900)
        run = AdaptationRun.objects.get()
        assert run.state == "installed", run.message
        # the reindex it queued is done by the same worker; search switches when it is complete
        assert wait_for(lambda: builds.state().active.version == run.installed_version, timeout=300)
    page = admin.get(reverse("fashion-ai-dashboard:fashion-ai-index")).content.decode()
    assert 'id="fashion-ai-adaptation-result"' in page and run.installed_version in page
    if run.result.get("sketch_encoder", {}).get("installed"):  # adapt trained one for the new photo model
        assert 'id="fashion-ai-sketch-encoder-notice"' not in page
    else:  # the package's sketch encoder belongs to another photo model: the page says so
        assert 'id="fashion-ai-sketch-encoder-notice"' in page
    assert "Installed" in page
    assert np.isfinite(run.result["candidate"]["p_at_5"])


@pytest.mark.parametrize("has_encoder", [True, False])
def test_the_sketch_step_starts_from_the_sketch_encoder_used_before(
    models_dir, blind_weights, tmp_path, monkeypatch, has_encoder
):
    """SKETCH_RECIPE["init"] = "in-use": the new sketch encoder starts from the one search by sketch used before (its
    drawing-adapted trunk), or from the new photo model when drawings were embedded by the photo model."""
    from oscar_fashion_ai.ml import adaptation as recipe
    from oscar_fashion_ai.ml.embedder import Embedder

    seen = {}

    def record(records, photo_weights, out, work, budget, given, **kwargs):
        seen.update(given)
        raise RuntimeError("stopped here")

    monkeypatch.setattr(recipe, "train_sketch_candidate", record)
    photo = runtime.load_embedder(blind_weights)
    sketch = Embedder(blind_weights) if has_encoder else photo  # another network, whatever its weights
    out = adaptation.adapt_sketch(
        tmp_path / "new-photo.safetensors",
        photo,
        adaptation.Catalog([], np.zeros(0, bool), {}, {}, 0, 0),
        tmp_path,
        5,
        adaptation.Options(),
        adaptation.Reporter(write=lambda line: None),
        previous=(photo, sketch, None),
    )
    assert out["installed"] is False and "stopped here" in out["message"]
    assert seen["init"] == (str(sketch.path) if has_encoder else "photo")
    assert recipe.SKETCH_RECIPE["init"] == "in-use"


@pytest.mark.training
@pytest.mark.django_db
def test_adapt_trains_a_garment_locator_and_installs_it_only_if_it_finds_more(
    models_dir, blind_weights, restore_schema
):
    use_model(blind_weights)
    make_store(per_kind=12)
    text = adapt("--epochs", "2", "--sketch-minutes", "0", "--locator-minutes", "2")
    run = AdaptationRun.objects.get()
    assert run.state == "installed"
    loc = run.result["locator"]
    assert loc["queries"] > 0 and loc["scenes"] >= 64 and loc["epochs"] >= 1
    assert {"activation_map", "trained", "gain", "gain_se"} <= set(loc)
    assert "Search by photo with another product beside the photo" in text
    new_sha = runtime.get_embedder().sha256
    installed_head = model_store.locator_for(new_sha)
    assert loc["installed"] is (loc["gain"] > 0)
    assert (installed_head is not None) is loc["installed"]
    if loc["installed"]:  # search by photo uses it for the new model
        assert runtime.get_locator().head is not None and "photo_crop" not in run.result
    else:
        assert runtime.get_locator().head is None and "Search by photo keeps its preset crop box" in text
    assert not (model_store.work_dir() / "locator-scenes").exists()  # the scenes' cache is cleaned up
    with pytest.raises(CommandError, match="locator-minutes"):
        call_command("fashion_adapt", "--locator-minutes", "-1")


def test_a_failed_locator_says_so_and_installs_nothing(models_dir, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from oscar_fashion_ai.adaptation.locator import adapt_locator
    from oscar_fashion_ai.ml.training import locator as training

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(training, "train", broken)
    lines = []
    photo = SimpleNamespace(sha256="f" * 64)
    out = adapt_locator(
        tmp_path / "photo.safetensors",
        photo,
        SimpleNamespace(training=[]),
        tmp_path,
        2,
        adaptation.Options(progress=False),
        adaptation.Reporter(write=lines.append),
        None,
    )
    assert out["installed"] is False and "out of memory" in out["message"] and lines
    assert model_store.locator_for(photo.sha256) is None
