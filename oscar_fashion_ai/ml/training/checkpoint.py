"""Checkpoints and the time budget, the same for every trainer.

A run's checkpoint is ``<checkpoint_dir or the weights' folder/checkpoints>/<weights stem>.ckpt.pt``: the state
dicts of its networks, optimisers and schedules, the epochs done and the ``history`` so far, so that ``--resume``
continues the run and its model card still lists every epoch.

``--max-minutes`` is a :class:`Deadline`, read one of two ways: stop after the epoch that passes it
(:meth:`Deadline.passed`), or fit the number of epochs to what is left at the measured pace
(:meth:`Deadline.fit`, for runs whose learning-rate schedule is re-planned so that it still ends annealed).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .config import log


class Checkpoint:
    def __init__(self, out, checkpoint_dir=None):
        out = Path(out)
        self.path = Path(checkpoint_dir or out.parent / "checkpoints") / (out.stem + ".ckpt.pt")

    def save(self, epoch: int, history: list, **objects) -> None:
        """Save the state dict of every object (a network, optimiser or schedule) under its keyword."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {key: obj.state_dict() for key, obj in objects.items()}
        torch.save(state | {"epoch": epoch, "history": json.dumps(history)}, self.path)

    def resume(self, cfg, device, **objects) -> tuple[int, list]:
        """With ``cfg.resume`` and a checkpoint: load it into ``objects`` (by keyword) and return (epochs done,
        history); else (0, [])."""
        if not (cfg.resume and self.path.exists()):
            return 0, []
        state = torch.load(self.path, map_location=device, weights_only=True)
        for key, obj in objects.items():
            obj.load_state_dict(state[key])
        epoch = int(state["epoch"])
        log(cfg, f"Resumed from {self.path} at epoch {epoch}")
        return epoch, json.loads(state.get("history", "[]"))  # checkpoints of older cached runs have no history


def epochs_within_budget(
    max_minutes: float, started: float, loop_started: float, epochs_run: int, epoch: int, epochs: int
) -> tuple[int, float]:
    """(epochs that fit in ``max_minutes`` from ``started`` at the pace of the ``epochs_run`` epochs since
    ``loop_started``, never fewer than ``epoch + 1`` nor more than ``epochs``; seconds per epoch)."""
    per_epoch = (time.time() - loop_started) / max(epochs_run, 1)
    left = max_minutes * 60 - (time.time() - started)
    return min(epochs, max(epoch + 1, epoch + 1 + int(left // per_epoch))), per_epoch


class Deadline:
    """``--max-minutes`` of a run that started at ``started`` (None: no limit)."""

    def __init__(self, max_minutes: float | None, started: float):
        self.max_minutes, self.started = max_minutes, started

    def passed(self, cfg, done: int, epochs: int) -> bool:
        """After epoch ``done`` of ``epochs``: is the budget spent with epochs still to go? (Says so in the log.)"""
        if self.max_minutes and time.time() - self.started > self.max_minutes * 60 and done < epochs:
            log(cfg, f"Stopping after epoch {done}: --max-minutes {self.max_minutes} reached")
            return True
        return False

    def fit(self, loop_started: float, epochs_run: int, epoch: int, epochs: int) -> tuple[int, float] | None:
        """After epoch ``epoch`` (0-based): (epochs that fit, seconds per epoch) when fewer than ``epochs`` fit,
        else None. ``epochs_run``: the epochs timed since ``loop_started``."""
        if not self.max_minutes or epoch + 1 >= epochs:
            return None
        fit, per_epoch = epochs_within_budget(self.max_minutes, self.started, loop_started, epochs_run, epoch, epochs)
        return (fit, per_epoch) if fit < epochs else None
