"""Batched Image2Vec inference: images in, L2-normalised float32 vectors out.

On a GPU the PyTorch model runs directly; on the CPU the model is exported once to ONNX and run
with ONNX Runtime, which is an order of magnitude faster than eager PyTorch for this network
(see README, "Benchmarks"). Both paths give the same vectors up to float rounding.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import backbones, preprocessing, weights

logger = logging.getLogger(__name__)

PACKAGE_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "lite0-fashion.safetensors"
#: The sketch encoder trained with the package's photo weights (drawings -> the same vector space).
PACKAGE_SKETCH_WEIGHTS = PACKAGE_WEIGHTS.with_name("lite0-fashion-sketch.safetensors")


class ModelUnavailable(RuntimeError):
    """The configured model cannot be loaded (missing, corrupt, checksum mismatch)."""


@dataclass(frozen=True)
class ModelInfo:
    version: str
    dim: int
    image_size: int
    backbone: str


def version_string(backbone: str, dim: int, image_size: int, digest: str) -> str:
    return f"{backbone.replace(':', '-')}-{dim}d-{image_size}px-{preprocessing.PREPROCESSING_VERSION}-{digest[:12]}"


class Embedder:
    def __init__(self, weights_path: Path | str | None = None, threads: int = 0, device: str | None = None,
                 runtime: str = "auto", cache_dir: Path | None = None):
        path = Path(weights_path) if weights_path else PACKAGE_WEIGHTS
        try:
            card = weights.read_card(path)  # a broken card is a broken model, not a crash
            state, meta = weights.load(path, expected_sha256=(card or {}).get("weights_sha256"))
            backbone = meta.get("backbone", "lite0")
            dim = int(meta.get("dim", 256))
            image_size = int(meta.get("image_size", 160))
            model = backbones.build_from_meta(meta)
            model.load_state_dict(state, strict=True)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise ModelUnavailable(f"Cannot load the embedding model from {path}: {exc}") from exc
        model.eval()
        if threads:
            torch.set_num_threads(int(threads))
        self.path = path
        self.sha256 = weights.sha256(path)
        #: "photo" for an Image2Vec photo model, "sketch" for a sketch encoder (train_sketch_encoder)
        self.role = meta.get("role", "photo")
        #: a sketch encoder's photo model: the sha256 of the photo weights whose vector space it learned
        self.pairs_with = meta.get("pairs_with")
        self.info = ModelInfo(version_string(backbone, dim, image_size, self.sha256), dim, image_size, backbone)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device)
        self._session = None
        if self.device.type == "cpu" and runtime in {"auto", "onnx"}:
            try:
                self._session = self._onnx_session(cache_dir, threads)
            except Exception as exc:  # noqa: BLE001 - fall back to PyTorch, loudly
                if runtime == "onnx":
                    raise
                logger.warning("ONNX Runtime unavailable (%s); using eager PyTorch (slower)", exc)
        if self._session is None and self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def runtime(self) -> str:
        return "onnxruntime" if self._session is not None else f"torch-{self.device.type}"

    def _onnx_session(self, cache_dir, threads):
        import onnxruntime as ort

        cache = Path(cache_dir or os.environ.get("FASHION_AI_CACHE_DIR") or Path(tempfile.gettempdir()) / "oscar-fashion-ai")
        cache.mkdir(parents=True, exist_ok=True)
        onnx_path = cache / f"{self.info.version}.onnx"
        if not onnx_path.exists():
            tmp = onnx_path.with_suffix(f".{os.getpid()}.tmp")
            dummy = torch.zeros(2, 3, self.info.image_size, self.info.image_size)
            with torch.inference_mode():
                torch.onnx.export(
                    self.model, (dummy,), str(tmp), input_names=["images"], output_names=["vectors"],
                    dynamic_axes={"images": {0: "batch"}, "vectors": {0: "batch"}}, opset_version=17, dynamo=False,
                )
            tmp.replace(onnx_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads) if threads else 0
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def load_image(self, source, max_pixels: int = 40_000_000, max_bytes: int | None = None):
        """Decode an image exactly as this model's preprocessing expects (raises InvalidImage)."""
        return preprocessing.open_image(source, max_pixels=max_pixels, max_bytes=max_bytes,
                                        decode_size=self.info.image_size)

    def embed_tensor(self, batch: torch.Tensor) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        if self._session is not None:
            out = self._session.run(["vectors"], {"images": batch.numpy()})[0]
        else:
            with torch.inference_mode():
                x = batch.to(self.device)
                if self.device.type == "cpu":
                    x = x.contiguous(memory_format=torch.channels_last)
                out = self.model(x).float().cpu().numpy()
        out = out.astype(np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def embed_images(self, images, batch_size: int = 32) -> np.ndarray:
        """Embed RGB PIL images; returns an (N, dim) float32 array of unit vectors."""
        chunks = []
        for start in range(0, len(images), batch_size):
            chunks.append(self.embed_tensor(preprocessing.batch(images[start : start + batch_size], self.info.image_size)))
        return np.concatenate(chunks) if chunks else np.zeros((0, self.info.dim), dtype=np.float32)

