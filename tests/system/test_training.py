"""The training commands on a tiny data set (CPU): weights, model card, samples, checkpoints and resume."""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from oscar_fashion_ai.ml import weights

pytestmark = pytest.mark.usefixtures("fashion_models")


@pytest.mark.training
def test_train_gan_command_writes_weights_card_samples_and_resumes(csv_dataset, tmp_path):
    out = tmp_path / "gen.safetensors"
    args = [
        "--source",
        str(csv_dataset),
        "--out",
        str(out),
        "--image-size",
        "32",
        "--ngf",
        "4",
        "--batch-size",
        "4",
        "--variants",
        "2",
        "--workers",
        "1",
        "--sample-every",
        "1",
        "--checkpoint-dir",
        str(tmp_path / "ck"),
    ]
    call_command("fashion_train_gan", *args, "--epochs", "1", verbosity=0)
    card = json.loads(out.with_suffix(".card.json").read_text())
    assert card["weights_sha256"] == weights.sha256(out)
    assert card["split"]["train"] + card["split"]["test"] == card["data"]["images"] == 12
    assert card["metrics"]["test_l1"] is not None and len(card["history"]) == 1
    assert card["command"].startswith("python ") and "fashion_train_gan" in card["command"]
    assert (tmp_path / "gen-samples" / "epoch_001.png").exists()
    call_command("fashion_train_gan", *args, "--epochs", "2", "--resume", verbosity=0)
    card = json.loads(out.with_suffix(".card.json").read_text())
    assert [h["epoch"] for h in card["history"]] == [1, 2]  # continued from the checkpoint, not restarted
    from oscar_fashion_ai.ml.generator import SketchGenerator

    assert SketchGenerator(out, runtime="torch").image_size == 32
    with pytest.raises(CommandError, match="power of two"):
        call_command("fashion_train_gan", *args, "--image-size", "48", verbosity=0)


@pytest.mark.training
def test_train_embedder_full_mode_on_photos_and_drawings(csv_dataset, tmp_path, tiny_weights):
    out = tmp_path / "emb.safetensors"
    call_command(
        "fashion_train_embedder",
        "--source",
        str(csv_dataset),
        "--out",
        str(out),
        "--mode",
        "full",
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
    card = json.loads(out.with_suffix(".card.json").read_text())
    assert card["training"]["mode"] == "full" and card["training"]["pair_weight"] == 1.0
    metrics = card["metrics"]
    assert {"p_at_5", "map_at_10"} <= set(metrics["image_to_image"])
    assert {"p_at_5", "source_hit_at_1", "source_hit_at_5", "source_hit_at_10"} <= set(metrics["sketch_to_image"])
    from oscar_fashion_ai.ml.embedder import Embedder

    emb = Embedder(out, runtime="torch")
    assert emb.info.dim == 256 and emb.info.image_size == 64


@pytest.mark.training
def test_train_embedder_cached_mode_skips_unreadable_images(csv_dataset, tmp_path):
    out = tmp_path / "cached.safetensors"
    call_command(
        "fashion_train_embedder",
        "--source",
        str(csv_dataset),
        "--out",
        str(out),
        "--mode",
        "cached",
        "--image-size",
        "64",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--workers",
        "1",
        "--device",
        "cpu",
        verbosity=0,
    )
    card = json.loads(out.with_suffix(".card.json").read_text())
    assert card["training"]["mode"] == "cached"
    assert card["split"]["train"] + card["split"]["test"] == 12  # the corrupt image was skipped, not fatal


@pytest.mark.training
@pytest.mark.parametrize("sketch_share", [0.0, 0.5])
def test_train_embedder_cached_mode_trains_on_jittered_views(csv_dataset, tmp_path, monkeypatch, sketch_share):
    from oscar_fashion_ai.ml.training import embedder as trainer

    seen, real = [], trainer.frozen_views

    def spy(*args, **kwargs):
        feats = real(*args, **kwargs)
        seen.append(feats)
        return feats

    monkeypatch.setattr(trainer, "frozen_views", spy)
    out = tmp_path / "jitter.safetensors"
    options = ["--source", str(csv_dataset), "--out", str(out), "--mode", "cached", "--image-size", "64"]
    options += ["--epochs", "2", "--batch-size", "4", "--workers", "1", "--device", "cpu"]
    options += ["--jitter-views", "2", "--sketch-share", str(sketch_share)]
    call_command("fashion_train_embedder", *options, verbosity=0)
    card = json.loads(out.with_suffix(".card.json").read_text())
    assert card["training"]["jitter_views"] == 2
    # original, mirrored, the drawing when drawings are shown, and the two jittered copies
    views = 2 + (1 if sketch_share else 0) + 2
    feats = seen[0]
    assert feats.shape[:2] == (views, card["split"]["train"] + card["split"]["test"])
    # the jittered copies are other pictures than the original and than each other
    assert (feats[-1] - feats[0]).abs().mean() > 1e-3 and (feats[-1] - feats[-2]).abs().mean() > 1e-3


@pytest.mark.training
def test_train_embedder_cached_mode_instance_term_is_trained_and_resumed(csv_dataset, tmp_path):
    import torch

    out = tmp_path / "instances.safetensors"
    options = ["--source", str(csv_dataset), "--out", str(out), "--mode", "cached", "--image-size", "64"]
    options += ["--batch-size", "4", "--workers", "1", "--device", "cpu", "--instance-weight", "1.0"]
    call_command("fashion_train_embedder", *options, "--epochs", "1", verbosity=0)
    checkpoint = tmp_path / "checkpoints" / "instances.ckpt.pt"
    first = torch.load(checkpoint, weights_only=True)["instances"]["weight"].clone()
    card = json.loads(out.with_suffix(".card.json").read_text())
    assert card["training"]["instance_weight"] == 1.0
    # one class per readable image, trained, and carried on by --resume
    assert first.shape == (card["split"]["train"] + card["split"]["test"], 256)
    call_command("fashion_train_embedder", *options, "--epochs", "2", "--resume", verbosity=0)
    second = torch.load(checkpoint, weights_only=True)["instances"]["weight"]
    assert torch.linalg.norm(second - first) > 0
    assert [h["epoch"] for h in json.loads(out.with_suffix(".card.json").read_text())["history"] if "epoch" in h] == [
        1,
        2,
    ]
