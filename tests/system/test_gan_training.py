"""The sketch-to-photo GAN: a few training steps on the CPU lower the generator's loss."""

import pytest
import torch

from oscar_fashion_ai.ml import gan

pytestmark = pytest.mark.usefixtures("fashion_models")


@pytest.mark.training
def test_training_steps_lower_the_generator_loss():
    torch.manual_seed(0)
    g = gan.UNetGenerator(1, 3, ngf=8, depth=5, max_channels=32)
    d = gan.PatchDiscriminator(4, ndf=8)
    opt_g = torch.optim.Adam(g.parameters(), 2e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 2e-3, betas=(0.5, 0.999))
    drawings = (torch.rand(4, 1, 32, 32) > 0.8).float() * -2 + 1
    photos = torch.tanh(torch.randn(4, 3, 32, 32))
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    losses = []
    for _ in range(25):
        fake = g(drawings)
        real_l, fake_l = d(drawings, photos), d(drawings, fake.detach())
        loss_d = bce(real_l, torch.ones_like(real_l)) + bce(fake_l, torch.zeros_like(fake_l))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        fake_l = d(drawings, fake)
        l1 = (fake - photos).abs().mean()
        loss_g = bce(fake_l, torch.ones_like(fake_l)) + 100 * l1
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        losses.append(l1.item())
    assert losses[-1] < 0.9 * losses[0] and losses[-1] < min(losses[:5]), losses
