"""fashion_train_locator on tiny data (CPU): it writes a head paired with the photo model into the data directory,
search by photo picks it up for that model only, a rerun reuses the cached scenes, and bad data is refused."""

import json

import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from oscar_fashion_ai import model_store, runtime
from oscar_fashion_ai.ml import weights
from oscar_fashion_ai.ml.embedder import Embedder


@pytest.mark.training
def test_train_locator_writes_a_paired_head_that_search_by_photo_uses(csv_dataset, models_dir, tiny_weights, tmp_path):
    args = ["--source", str(csv_dataset), "--photo-weights", str(tiny_weights), "--scenes", "24", "--threads", "1"]
    embedder = Embedder(tiny_weights, runtime="torch", cache_dir=tmp_path)
    assert runtime.get_locator(embedder).head is None  # no head for this model yet: the activation map
    call_command("fashion_train_locator", *args, "--epochs", "2", verbosity=0)
    digest = weights.sha256(tiny_weights)
    head_file = model_store.locator_for(digest)
    assert head_file is not None and head_file.parent == model_store.locator_dir()
    card = json.loads(head_file.with_suffix(".card.json").read_text())
    assert card["pairs_with"]["photo_weights_sha256"] == digest and card["weights_dtype"] == "float16"
    assert card["data"]["scenes"] == 24 and card["epochs_run"] == 2
    assert 0.0 <= card["metrics"]["held_out_scenes_box_iou"] <= 1.0
    assert "fashion_train_locator" in card["command"]
    assert model_store.locator_for("another photo model") is None

    loc = runtime.get_locator(embedder)  # the same process picks the new head up
    assert loc.head is not None and loc.head.sha256 == weights.sha256(head_file)
    img = Image.new("RGB", (300, 200), (200, 40, 40))
    located = loc.locate(img)
    assert 0 <= located.box.x and located.box.x + located.box.w <= 300 and located.vector.shape == (256,)

    # A rerun with more epochs finds the scenes' features cached and trains again.
    call_command("fashion_train_locator", *args, "--epochs", "3", verbosity=0)
    card = json.loads(model_store.locator_for(digest).with_suffix(".card.json").read_text())
    assert card["epochs_run"] == 3


@pytest.mark.training
def test_train_locator_refuses_a_set_with_one_category(tmp_path, models_dir, tiny_weights):
    root = tmp_path / "one"
    (root / "images").mkdir(parents=True)
    rows = ["image,sender_id,label,kids"]
    for i in range(12):
        Image.new("RGB", (40, 60), (i * 20, 0, 0)).save(root / "images" / f"img-{i}.jpg")
        rows.append(f"img-{i},1,Shirt,False")
    (root / "images.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(CommandError, match="too few labelled training photos"):
        call_command("fashion_train_locator", "--source", str(root), "--photo-weights", str(tiny_weights), verbosity=0)
    assert model_store.locator_for(weights.sha256(tiny_weights)) is None


@pytest.mark.training
def test_train_locator_from_the_stores_own_products(imported_catalog, models_dir, tiny_weights):
    call_command(
        "fashion_train_locator",
        "--from-store",
        "--photo-weights",
        str(tiny_weights),
        "--scenes",
        "16",
        "--epochs",
        "1",
        "--threads",
        "1",
        verbosity=0,
    )
    head_file = model_store.locator_for(weights.sha256(tiny_weights))
    card = json.loads(head_file.with_suffix(".card.json").read_text())
    assert card["data"]["source"] == "the store's products" and "test split left out" in card["data"]["photos"]
    assert card["data"]["scenes"] == 16
