"""Batched Image2Vec inference: images in, L2-normalised float32 vectors out.

On a GPU the PyTorch model runs directly; on the CPU the model is exported once to ONNX and run
with ONNX Runtime, which is an order of magnitude faster than eager PyTorch for this network
(docs/BENCHMARKS.md). Both paths give the same vectors up to float rounding.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import backbones, onnx_cache, preprocessing, weights

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
    def __init__(
        self,
        weights_path: Path | str | None = None,
        threads: int = 0,
        device: str | None = None,
        runtime: str = "auto",
        cache_dir: Path | None = None,
    ):
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
        self._trunk_session = None  # exported on first use of feature_maps()
        self._onnx_args = (cache_dir, threads)
        self._session = onnx_cache.cpu_session(
            lambda: self._onnx_session(cache_dir, threads), self.device, runtime, "the embedder"
        )
        if self._session is None and self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def runtime(self) -> str:
        return "onnxruntime" if self._session is not None else f"torch-{self.device.type}"

    def _onnx_session(self, cache_dir, threads, part: str = ""):
        """An ONNX Runtime session for the whole model (``part=""``: images -> vectors) or for its trunk
        (``part="trunk"``: images of any size -> feature maps), exported once into the checked cache folder."""
        dummy = torch.zeros(2, 3, self.info.image_size, self.info.image_size)
        if part == "trunk":
            module, output = self.model.trunk, "features"
            axes = {"images": {0: "batch", 2: "height", 3: "width"}, output: {0: "batch", 2: "rows", 3: "cols"}}
        else:
            module, output, axes = self.model, "vectors", None
        return onnx_cache.session(
            module,
            name=self.info.version + (f".{part}" if part else ""),
            source_sha256=self.sha256,
            example=dummy,
            input_names=["images"],
            output_names=[output],
            cache_dir=cache_dir,
            threads=threads,
            dynamic_axes=axes,
        )

    def load_image(self, source, max_pixels: int = 40_000_000, max_bytes: int | None = None):
        """Decode an image exactly as this model's preprocessing expects (raises InvalidImage)."""
        return preprocessing.open_image(
            source, max_pixels=max_pixels, max_bytes=max_bytes, decode_size=self.info.image_size
        )

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

    def feature_maps(self, batch: torch.Tensor) -> np.ndarray:
        """The trunk's feature maps (B, C, rows, cols) for a batch of square images of any size (stride 32
        for Lite0): where in the picture the features the embedding pools come from (see :mod:`.crop`)."""
        if self._session is not None:
            with self._lock:
                if self._trunk_session is None:
                    self._trunk_session = self._onnx_session(*self._onnx_args, part="trunk")
            return self._trunk_session.run(["features"], {"images": batch.numpy()})[0].astype(np.float32)
        with torch.inference_mode():
            x = batch.to(self.device)
            if self.device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            return self.model.trunk(x).float().cpu().numpy()

    @property
    def gem_p(self) -> float:
        """The exponent of the model's GeM pooling."""
        return float(self.model.pool.p.detach())

    def pool_features(self, feats: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """The model's own pooling (GeM) and projection applied to feature maps (B, C, rows, cols), as unit
        vectors. ``weights`` (B, rows, cols), if given, pools a weighted region instead of the whole map
        (all ones gives the model's vectors up to float rounding)."""
        if getattr(self, "_head", None) is None:
            proj = self.model.proj
            self._head = (
                self.gem_p,
                proj.weight.detach().float().cpu().numpy().T.copy(),
                proj.bias.detach().float().cpu().numpy().copy(),
            )
        p, weight, bias = self._head
        powered = np.maximum(feats.astype(np.float32), 1e-6) ** p
        if weights is None:
            pooled = powered.mean(axis=(2, 3))
        else:
            w = np.asarray(weights, dtype=np.float32)[:, None]
            pooled = (powered * w).sum(axis=(2, 3)) / np.maximum(w.sum(axis=(2, 3)), 1e-12)
        out = (pooled ** (1.0 / p)) @ weight + bias
        return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def embed_images(self, images, batch_size: int = 32) -> np.ndarray:
        """Embed RGB PIL images; returns an (N, dim) float32 array of unit vectors."""
        chunks = []
        for start in range(0, len(images), batch_size):
            batch = preprocessing.batch(images[start : start + batch_size], self.info.image_size)
            chunks.append(self.embed_tensor(batch))
        return np.concatenate(chunks) if chunks else np.zeros((0, self.info.dim), dtype=np.float32)
