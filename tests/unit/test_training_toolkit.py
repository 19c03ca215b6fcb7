"""The training toolkit's shared parts (oscar_fashion_ai/ml/training/), without training: one float16 convention
and one default style list in every command, options -> config, checkpoints that keep the history, the deadline,
and the old entry points."""

import argparse
import time
from types import SimpleNamespace

import pytest
import torch

from oscar_fashion_ai.ml.training import checkpoint, config, embedder, gan, robust, sketch_encoder

TRAINERS = {  # module, required options, default precision (as each trainer stored it before the toolkit)
    "embedder": (embedder, ["--source", "s", "--out", "o"], False),
    "sketch_encoder": (sketch_encoder, ["--source", "s", "--out", "o", "--photo-weights", "p"], True),
    "gan": (gan, ["--source", "s", "--out", "o"], True),
}


def _config(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.config_from_args(parser.parse_args(argv))


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_every_trainer_takes_the_same_precision_flags_and_keeps_its_default(name):
    module, required, default = TRAINERS[name]
    assert _config(module, required).half is default
    for flag in ("--float16", "--half"):
        assert _config(module, [*required, flag]).half is True
    assert _config(module, [*required, "--float32"]).half is False


def test_the_robust_recipe_takes_the_same_precision_flags(monkeypatch):
    seen = []
    monkeypatch.setattr(robust, "train", seen.append)
    for flags, half in (([], True), (["--float32"], False), (["--half"], True), (["--float16"], True)):
        robust.main(["--source", "a", "--source", "b", "--out", "o", "--exclude-labels", "X,Y", *flags])
        assert seen[-1].half is half
    assert seen[-1].sources == ["a", "b"] and seen[-1].exclude_labels == ("X", "Y")


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_the_default_drawing_styles_are_one_constant(name):
    module, required, _ = TRAINERS[name]
    assert _config(module, required).styles == config.DEFAULT_STYLES == "xdog,xdog,edges"
    assert config.parse_styles(" xdog, ,edges ") == ("xdog", "edges")


def test_config_from_a_management_commands_options_dict():
    """Options that are not config fields, and options left unset, are ignored; overrides win."""
    options = {"source": "s", "out": "o", "epochs": 3, "dim": None, "verbosity": 1, "install": True}
    cfg = embedder.config_from_args(options, out="elsewhere", progress=False)
    assert (cfg.source, cfg.out, cfg.epochs, cfg.dim, cfg.progress) == ("s", "elsewhere", 3, 256, False)


def test_checkpoint_keeps_the_history_and_resumes_only_when_asked(tmp_path):
    net = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    ck = checkpoint.Checkpoint(tmp_path / "m.safetensors")
    assert ck.path == tmp_path / "checkpoints" / "m.ckpt.pt"
    assert checkpoint.Checkpoint(tmp_path / "m.safetensors", tmp_path / "ck").path == tmp_path / "ck" / "m.ckpt.pt"
    ck.save(2, [{"epoch": 1}, {"epoch": 2}], model=net, optimizer=optimizer)
    other = torch.nn.Linear(2, 2)
    cfg = SimpleNamespace(resume=False, progress=False)
    assert ck.resume(cfg, "cpu", model=other) == (0, [])  # resume not asked for
    cfg.resume = True
    assert ck.resume(cfg, "cpu", model=other) == (2, [{"epoch": 1}, {"epoch": 2}])
    assert torch.equal(other.weight, net.weight)
    # a checkpoint written before checkpoints kept the history (the old cached loop) still resumes
    torch.save({"model": net.state_dict(), "epoch": 1}, ck.path)
    assert ck.resume(cfg, "cpu", model=other) == (1, [])


def test_deadline_stops_after_the_epoch_that_passes_it_or_fits_the_epochs():
    cfg = config.BaseConfig(out="m", progress=False)
    assert not checkpoint.Deadline(None, 0.0).passed(cfg, 1, 5)
    spent = checkpoint.Deadline(1.0, time.time() - 120)
    assert spent.passed(cfg, 1, 5) and not spent.passed(cfg, 5, 5)  # nothing left to stop after the last epoch
    assert not checkpoint.Deadline(10.0, time.time()).passed(cfg, 1, 5)
    # 60 s per epoch so far, 2.5 minutes of 4.5 left: two more epochs fit after the first two
    fit, per_epoch = checkpoint.Deadline(4.5, time.time() - 120).fit(time.time() - 120, 2, 1, 10)
    assert fit == 4 and per_epoch == pytest.approx(60, abs=1)
    assert checkpoint.Deadline(None, 0.0).fit(time.time(), 1, 0, 10) is None
    assert checkpoint.Deadline(100.0, time.time()).fit(time.time() - 1, 1, 0, 10) is None  # everything fits


def test_the_old_entry_points_run_the_toolkit():
    from oscar_fashion_ai.ml import train_embedder, train_gan, train_robust, train_sketch_encoder

    assert train_embedder.main is embedder.main and train_embedder.train is embedder.train
    assert train_sketch_encoder.main is sketch_encoder.main and train_robust.main is robust.main
    assert train_gan.main is gan.main
