"""The sketch encoder's training commands on tiny data (CPU): the paired float16 encoder, resume, the held-out
validation split, the cached-prefix mode, the sketch tower of train_embedder."""

import json

import numpy as np
import pytest
import torch
from django.core.management import call_command
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from oscar_fashion_ai.ml import weights

pytestmark = pytest.mark.usefixtures("fashion_models")

unit_rows = (
    arrays(np.float32, (3, 8), elements=st.floats(-1, 1, width=32))
    .filter(lambda a: (np.linalg.norm(a, axis=1) > 1e-3).all())
    .map(lambda a: a / np.linalg.norm(a, axis=1, keepdims=True))
)


@pytest.mark.training
def test_train_sketch_encoder_command_writes_a_paired_fp16_encoder_and_resumes(csv_dataset, tmp_path, tiny_weights):
    from oscar_fashion_ai.ml.embedder import Embedder

    out = tmp_path / "sketch.safetensors"
    args = [
        "--source",
        str(csv_dataset),
        "--out",
        str(out),
        "--photo-weights",
        str(tiny_weights),
        "--batch-size",
        "4",
        "--variants",
        "2",
        "--workers",
        "1",
        "--device",
        "cpu",
        "--checkpoint-dir",
        str(tmp_path / "ck"),
    ]
    call_command("fashion_train_sketch_encoder", *args, "--epochs", "1", verbosity=0)
    card = json.loads(out.with_suffix(".card.json").read_text())
    assert card["weights_sha256"] == weights.sha256(out) and card["weights_dtype"] == "float16"
    assert card["pairs_with"]["sha256"] == weights.sha256(tiny_weights)
    assert card["split"]["train"] + card["split"]["test"] == card["data"]["images"] == 12
    m = card["metrics"]["sketch_to_image"]
    assert {"p_at_5", "source_hit_at_1", "source_hit_at_5", "source_hit_at_10"} <= set(m)
    assert "fashion_train_sketch_encoder" in card["command"]
    encoder = Embedder(out, runtime="torch")
    assert encoder.role == "sketch" and encoder.pairs_with == weights.sha256(tiny_weights)
    assert encoder.info.image_size == 64 and encoder.info.dim == 256
    call_command("fashion_train_sketch_encoder", *args, "--epochs", "2", "--resume", verbosity=0)
    card = json.loads(out.with_suffix(".card.json").read_text())
    assert [h["epoch"] for h in card["history"] if "epoch" in h] == [1, 2]  # continued, not restarted


@pytest.mark.training
def test_train_embedder_sketch_tower_writes_the_encoder_beside_the_photo_model(csv_dataset, tmp_path, tiny_weights):
    from oscar_fashion_ai.ml.embedder import Embedder

    out = tmp_path / "emb.safetensors"
    call_command(
        "fashion_train_embedder",
        "--source",
        str(csv_dataset),
        "--out",
        str(out),
        "--mode",
        "full",
        "--sketch-tower",
        "--half",
        "--image-size",
        "64",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--variants",
        "2",
        "--workers",
        "1",
        "--init-weights",
        str(tiny_weights),
        "--device",
        "cpu",
        verbosity=0,
    )
    sketch = out.with_name("emb-sketch.safetensors")
    card = json.loads(sketch.with_suffix(".card.json").read_text())
    assert card["pairs_with"]["sha256"] == weights.sha256(out)
    photo_card = json.loads(out.with_suffix(".card.json").read_text())
    assert photo_card["metrics"]["sketch_to_image"]["encoder"] == "sketch tower"
    assert Embedder(sketch, runtime="torch").pairs_with == weights.sha256(out)


@pytest.mark.training
def test_validation_split_is_held_out_and_measured(csv_dataset, tmp_path, tiny_weights):
    """--validation: the validation split (sha1 % 5 == 1) leaves training and gets its own metrics, so that
    configurations can be chosen without the test split."""
    from oscar_fashion_ai.ml import datasets

    ids = [r.source_id for r in datasets.labelled_records(csv_dataset) if r.path.stat().st_size > 1000]
    n_val, n_test = sum(map(datasets.is_validation, ids)), sum(map(datasets.is_test, ids))
    assert n_val and n_test and not any(datasets.is_validation(i) and datasets.is_test(i) for i in ids)
    photo = tmp_path / "emb.safetensors"
    call_command(
        "fashion_train_embedder",
        "--source",
        str(csv_dataset),
        "--out",
        str(photo),
        "--mode",
        "full",
        "--sketch-tower",
        "--validation",
        "--image-size",
        "64",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--variants",
        "2",
        "--workers",
        "1",
        "--init-weights",
        str(tiny_weights),
        "--device",
        "cpu",
        verbosity=0,
    )
    card = json.loads(photo.with_suffix(".card.json").read_text())
    assert card["split"] == {
        "rule": card["split"]["rule"],
        "train": 12 - n_val - n_test,
        "validation": n_val,
        "test": n_test,
    }
    assert card["metrics"]["validation_image_to_image"]["queries"] == n_val
    assert card["metrics"]["validation_sketch_to_image"]["queries"] == n_val
    assert card["metrics"]["image_to_image"]["queries"] == n_test
    out = tmp_path / "sketch.safetensors"
    call_command(
        "fashion_train_sketch_encoder",
        "--source",
        str(csv_dataset),
        "--out",
        str(out),
        "--photo-weights",
        str(photo),
        "--validation",
        "--batch-size",
        "4",
        "--variants",
        "2",
        "--workers",
        "1",
        "--device",
        "cpu",
        "--epochs",
        "1",
        verbosity=0,
    )
    card = json.loads(out.with_suffix(".card.json").read_text())
    assert card["split"]["validation"] == n_val and card["split"]["train"] == 12 - n_val - n_test
    assert card["metrics"]["validation_sketch_to_image"]["queries"] == n_val
    # without --validation nothing is held out
    call_command(
        "fashion_train_sketch_encoder",
        "--source",
        str(csv_dataset),
        "--out",
        str(out),
        "--photo-weights",
        str(photo),
        "--batch-size",
        "4",
        "--variants",
        "2",
        "--workers",
        "1",
        "--device",
        "cpu",
        "--epochs",
        "1",
        verbosity=0,
    )
    card = json.loads(out.with_suffix(".card.json").read_text())
    assert card["split"]["validation"] == 0 and "validation_sketch_to_image" not in card["metrics"]


@pytest.mark.training
def test_sketch_encoder_cached_prefix_mode_on_two_sources(csv_dataset, tmp_path, tiny_weights):
    """--split-block: the frozen prefix is computed once and only the rest trains (the CPU configuration);
    --extra-source: a second labelled set beside the first, labels kept apart per set."""
    import shutil

    second = tmp_path / "studio"
    shutil.copytree(csv_dataset, second)
    out = tmp_path / "sketch.safetensors"
    call_command(
        "fashion_train_sketch_encoder",
        "--source",
        str(csv_dataset),
        "--extra-source",
        str(second),
        "--out",
        str(out),
        "--photo-weights",
        str(tiny_weights),
        "--batch-size",
        "4",
        "--variants",
        "2",
        "--workers",
        "1",
        "--device",
        "cpu",
        "--split-block",
        "11",
        "--epochs",
        "1",
        "--checkpoint-dir",
        str(tmp_path / "ck"),
        verbosity=0,
    )
    card = json.loads(out.with_suffix(".card.json").read_text())
    assert card["data"]["images"] == 24 and card["data"]["extra_sources"] == ["studio"]
    assert {lab.split(":")[0] for lab in card["data"]["labels"]} == {"clothing", "studio"}
    assert card["training"]["split_block"] == 11
    trained, _ = weights.load(out)
    start, _ = weights.load(tiny_weights)
    frozen = [k for k in start if k.startswith("trunk.net._blocks.3.")]
    assert frozen and all(torch.equal(trained[k].float(), start[k].float().half().float()) for k in frozen)
    assert not torch.equal(trained["proj.weight"].float(), start["proj.weight"].float().half().float())
