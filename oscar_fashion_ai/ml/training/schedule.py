"""Learning-rate schedules."""

from __future__ import annotations

import warnings

import torch


def one_cycle(optimizer, lr: float, total_steps: int, done_steps: int = 0):
    """The one-cycle learning-rate schedule, fast-forwarded ``done_steps`` (on resume: a run resumed with more
    epochs gets the schedule of the longer run, instead of the saved one that ends too early)."""
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=max(total_steps, 1), pct_start=0.15
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
        for _ in range(min(done_steps, total_steps - 1)):
            scheduler.step()
    return scheduler


def linear_decay(optimizer, epochs: int):
    """pix2pix's schedule, stepped once per epoch: the full rate for the first half of ``epochs``, then linearly
    down to zero."""
    half = epochs // 2

    def factor(e):
        return 1.0 if e < half else max(0.0, (epochs - e) / (epochs - half))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
