"""The training losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CosFace(nn.Module):
    """A cosine-margin classifier (CosFace) over normalised embeddings; it shapes the embedding space for
    nearest-neighbour retrieval and is discarded after training."""

    def __init__(self, dim, classes, scale, margin):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, dim) * 0.01)
        self.scale, self.margin = scale, margin

    def forward(self, emb, labels=None):
        logits = emb @ F.normalize(self.weight, dim=1).T
        if labels is not None:
            logits = logits - self.margin * F.one_hot(labels, logits.shape[1])
        return logits * self.scale


def symmetric_info_nce(sim: torch.Tensor) -> torch.Tensor:
    """Row i of ``sim`` (drawings x photos, already divided by the temperature) belongs with column i: each drawing
    finds its photo among the batch's photos and each photo its drawing."""
    target = torch.arange(len(sim), device=sim.device)
    return 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target))


def relational_distillation(emb: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Keep the pairwise cosine similarities of ``teacher`` (normalised rows) in ``emb``."""
    return F.mse_loss(emb @ emb.T, teacher @ teacher.T)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """pix2pix's discriminator loss: real pairs towards 1, generated ones towards 0 (averaged)."""
    return 0.5 * (
        F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
        + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    )


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
