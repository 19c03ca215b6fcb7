"""Inference with the sketch-to-photo generator (see :mod:`.gan`): normalised drawings in, product-like photos out.

Like :class:`.embedder.Embedder`, on the CPU the network is exported once to ONNX and run with ONNX Runtime; the
session is thread-safe and holds no per-request state. Weights are half-precision safetensors, checksummed
against their model card.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import gan, onnx_cache, weights

PACKAGE_GENERATOR = Path(__file__).resolve().parent.parent / "weights" / "sketch-gan.safetensors"


class GeneratorUnavailable(RuntimeError):
    """The configured generator cannot be loaded."""


class SketchGenerator:
    def __init__(
        self,
        weights_path: Path | str | None = None,
        threads: int = 0,
        device: str | None = None,
        runtime: str = "auto",
        cache_dir: Path | None = None,
    ):
        path = Path(weights_path) if weights_path else PACKAGE_GENERATOR
        card = weights.read_card(path)
        try:
            state, meta = weights.load(path, expected_sha256=(card or {}).get("weights_sha256"))
            if meta.get("kind") != "pix2pix-generator":
                raise ValueError("not a sketch generator weights file")
            self.image_size = int(meta["image_size"])
            model = gan.UNetGenerator(
                int(meta.get("in_channels", 1)), 3, int(meta["ngf"]), int(meta["depth"]), int(meta["max_channels"])
            )
            model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise GeneratorUnavailable(f"Cannot load the sketch generator from {path}: {exc}") from exc
        model.eval()
        self.path = path
        self.version = (card or {}).get("version") or f"pix2pix-{weights.sha256(path)[:12]}"
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device)
        self._session = onnx_cache.cpu_session(
            lambda: self._onnx_session(cache_dir, threads), self.device, runtime, "the sketch generator"
        )

    def _onnx_session(self, cache_dir, threads):
        dummy = torch.zeros(1, 1, self.image_size, self.image_size)
        return onnx_cache.session(
            self.model,
            name=self.version,
            source_sha256=weights.sha256(self.path),
            example=dummy,
            input_names=["drawings"],
            output_names=["photos"],
            cache_dir=cache_dir,
            threads=threads,
        )

    @property
    def runtime(self) -> str:
        return "onnxruntime" if self._session is not None else f"torch-{self.device.type}"

    def generate(self, drawings, batch_size: int = 32) -> list[Image.Image]:
        """Normalised drawings (PIL, ``image_size`` square, ink on white) -> RGB product-like images."""
        out = []
        for start in range(0, len(drawings), batch_size):
            chunk = drawings[start : start + batch_size]
            grey = np.stack(
                [np.asarray(d.convert("L").resize((self.image_size, self.image_size)), np.uint8) for d in chunk]
            )
            x = gan.drawing_to_tensor(torch.from_numpy(grey))
            if self._session is not None:
                y = torch.from_numpy(self._session.run(["photos"], {"drawings": x.numpy()})[0])
            else:
                with torch.inference_mode():
                    y = self.model(x.to(self.device)).float().cpu()
            out += [Image.fromarray(a) for a in gan.tensor_to_uint8(y).numpy()]
        return out
