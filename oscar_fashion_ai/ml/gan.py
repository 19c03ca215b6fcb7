"""pix2pix-style conditional GAN (Isola et al. 2017): drawing -> product-like photo.

* :class:`UNetGenerator`: encoder-decoder with skip connections; 4x4 stride-2 convolutions, BatchNorm, LeakyReLU
  down / ReLU up, dropout in the innermost decoder blocks, tanh output in [-1, 1]. Input: one grey channel
  (ink on white, in [-1, 1]); output: RGB.
* :class:`PatchDiscriminator`: the 70x70 PatchGAN over (drawing, photo) pairs; it is used in training only.

Channel widths are capped (``max_channels``) so the generator ships small.
"""

from __future__ import annotations

import torch
from torch import nn


class _Down(nn.Module):
    def __init__(self, cin, cout, norm=True):
        super().__init__()
        layers = [nn.Conv2d(cin, cout, 4, 2, 1, bias=not norm)]
        if norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        return self.block(x)


class _Up(nn.Module):
    def __init__(self, cin, cout, dropout=False):
        super().__init__()
        layers = [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        return self.block(x)


class UNetGenerator(nn.Module):
    def __init__(
        self, in_channels: int = 1, out_channels: int = 3, ngf: int = 32, depth: int = 7, max_channels: int = 256
    ):
        super().__init__()
        widths = [min(ngf * 2**i, max_channels) for i in range(depth)]
        self.downs = nn.ModuleList()
        cin = in_channels
        for i, w in enumerate(widths):
            # no norm on the first layer, nor on the 1x1 bottleneck (BatchNorm of a single pixel is undefined)
            self.downs.append(_Down(cin, w, norm=0 < i < depth - 1))
            cin = w
        self.ups = nn.ModuleList()
        for i in reversed(range(depth - 1)):
            skip = widths[i]
            in_ch = widths[i + 1] if i == depth - 2 else widths[i + 1] * 2
            self.ups.append(_Up(in_ch, skip, dropout=i >= depth - 4))
        self.final = nn.Sequential(nn.ConvTranspose2d(widths[0] * 2, out_channels, 4, 2, 1), nn.Tanh())
        self.depth = depth

    @property
    def input_multiple(self) -> int:
        return 2**self.depth

    def forward(self, x):
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        x = skips.pop()
        for up in self.ups:
            x = torch.cat([up(x), skips.pop()], dim=1)
        return self.final(x)


class PatchDiscriminator(nn.Module):
    def __init__(self, in_channels: int = 4, ndf: int = 64, layers: int = 3):
        super().__init__()
        seq = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        mult = 1
        for n in range(1, layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < layers else 1
            seq += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        seq.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.net = nn.Sequential(*seq)

    def forward(self, drawing, photo):
        return self.net(torch.cat([drawing, photo], dim=1))


def drawing_to_tensor(drawings) -> torch.Tensor:
    """uint8 grey drawings (N, H, W) -> generator input (N, 1, H, W) in [-1, 1]."""
    return drawings.float().div(127.5).sub(1.0).unsqueeze(1)


def photo_to_tensor(photos) -> torch.Tensor:
    """uint8 RGB photos (N, H, W, 3) -> (N, 3, H, W) in [-1, 1]."""
    return photos.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def tensor_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Generator output (N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
