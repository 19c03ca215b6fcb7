"""Fixed networks run over whole arrays: the frozen prefix of a trunk computed once (so that only the rest trains),
through an exported ONNX graph on the CPU, about 5x faster than eager PyTorch for this network (FIELD_NOTES; the
features agree to float rounding); arrays kept on disk between runs; the vectors of a network over uint8 images."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import backbones, weights
from .augment import normalise_uint8


class TrunkPart(nn.Module):
    """The trunk before block ``split`` (``until=True``) or from it on, as a module to export."""

    def __init__(self, trunk, split, until: bool):
        super().__init__()
        self.trunk, self.split, self.until = trunk, split, until

    def forward(self, x):
        return self.trunk.forward_until(x, self.split) if self.until else self.trunk.forward_from(x, self.split)


def load_network(path, device, like: dict | None = None):
    """An embedding network from a weights file (ValueError with the reason when it cannot be used; ``like``:
    the photo model's metadata, whose backbone and dimension it must share)."""
    try:
        state, meta = weights.load(Path(path))
        net = backbones.build_from_meta(meta)
        net.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise ValueError(f"Cannot load the embedding network {path}: {exc}") from exc
    if like is not None and (meta.get("backbone", "lite0"), meta.get("dim", "256")) != (
        like.get("backbone", "lite0"),
        like.get("dim", "256"),
    ):
        raise ValueError(
            f"{path} is a {meta.get('backbone')} {meta.get('dim')}-d network; the photo model is "
            f"{like.get('backbone')} {like.get('dim')}-d"
        )
    return net.to(device), meta


def frozen_runner(trunk, split, device, image_size):
    """The trunk before block ``split`` as a function of a batch: an ONNX Runtime session on the CPU (eager PyTorch
    when onnxruntime or the export fails), eager PyTorch elsewhere."""
    eager = lambda x: trunk.forward_until(x, split)  # noqa: E731
    if device.type != "cpu":
        return eager
    try:
        import os
        import tempfile

        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "frozen.onnx")
            dummy = torch.zeros(2, 3, image_size, image_size)
            torch.onnx.export(
                TrunkPart(trunk, split, until=True).eval(),
                (dummy,),
                path,
                input_names=["x"],
                output_names=["y"],
                dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(session.run(["y"], {"x": x.contiguous().numpy()})[0])
    except Exception as exc:  # noqa: BLE001 - no onnxruntime, or an export problem: eager PyTorch, slower
        print(f"Frozen features in eager PyTorch ({exc})", flush=True)
        return eager


@torch.inference_mode()
def frozen_views(trunk, split, images, drawings, device, image_size, progress=False, jittered=()):
    """The frozen prefix of every image in its views: original, mirrored, its drawing unless ``drawings`` is None
    (normalised float inputs), then one view per uint8 array of ``jittered`` copies: (V, N, C, h, w) float16 on
    the CPU."""
    from tqdm import tqdm

    trunk.eval()
    run = frozen_runner(trunk, split, device, image_size)
    out = None
    bs = 64
    for start in tqdm(range(0, len(images), bs), desc="Caching frozen features", disable=not progress):
        x = images[start : start + bs].to(device)
        views = [x, x.flip(-1)] + ([drawings[start : start + bs].to(device)] if drawings is not None else [])
        views += [normalise_uint8(torch.from_numpy(j[start : start + bs])).to(device) for j in jittered]
        stacked = torch.stack([run(v) for v in views])
        if out is None:
            out = torch.empty((len(views), len(images), *stacked.shape[2:]), dtype=torch.float16)
        out[:, start : start + bs] = stacked.half().cpu()
    return out


def frozen_drawings(trunk, split, drawings, device, progress=False):
    """The frozen prefix of every drawing variant, from uint8 drawings (N, V, S, S): (N, V, C, h, w) float16."""
    from tqdm import tqdm

    n, v, size = drawings.shape[0], drawings.shape[1], drawings.shape[-1]
    run = frozen_runner(trunk, split, device, size)
    flat = drawings.reshape(n * v, size, size)
    out = None
    with torch.inference_mode():
        for start in tqdm(range(0, len(flat), 64), desc="Frozen prefix of the drawings", disable=not progress):
            x = normalise_uint8(torch.from_numpy(np.ascontiguousarray(flat[start : start + 64]))).to(device)
            y = run(x).half().cpu()
            if out is None:
                out = np.empty((len(flat), *y.shape[1:]), np.float16)
            out[start : start + len(y)] = y.numpy()
    return out.reshape(n, v, *out.shape[1:])


def embed_uint8(net, images_uint8, device, amp, batch=256):
    """The normalised vectors of ``net`` for uint8 images (or drawings) on ``device`` (bfloat16 with ``amp``)."""
    out = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        for start in range(0, len(images_uint8), batch):
            chunk = torch.as_tensor(images_uint8[start : start + batch]).to(device)
            out.append(net(normalise_uint8(chunk)).float())
    return F.normalize(torch.cat(out), dim=1)


# --- through one ONNX session, kept on disk -----------------------------------------------------------------------


def cache_key(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()[:16]


class ArrayCache:
    """Arrays kept as ``<folder>/<key>.npy`` (read back memory-mapped) and made on first use; in memory without a
    folder."""

    def __init__(self, folder):
        self.folder = Path(folder) if folder else None

    def get(self, key: str, make):
        if self.folder is None:
            return make()
        path = self.folder / f"{key}.npy"
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            arr = make()
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, arr)
            tmp.replace(path)
        return np.load(path, mmap_mode="r")


class ArrayBatches:
    """Rows ``a:b`` of an array as model input (``prepare`` turns them into a float32 batch)."""

    def __init__(self, array, prepare):
        self.array, self.prepare, self.n = array, prepare, len(array)

    def __call__(self, a, b):
        return self.prepare(self.array[a:b])


def onnx_features(module, inputs: ArrayBatches, example, threads, batch=64, desc="", progress=False):
    """``module`` over every batch of ``inputs`` through one ONNX Runtime session, as float16."""
    import tempfile

    from tqdm import tqdm

    from .. import onnx_cache

    with tempfile.TemporaryDirectory(prefix="fashion-ai-robust-") as tmp:
        session = onnx_cache.session(
            module.eval(),
            name="part",
            source_sha256=cache_key(desc, tuple(example.shape)),
            example=example,
            input_names=["x"],
            output_names=["y"],
            cache_dir=tmp,
            threads=threads,
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        )
    n = inputs.n
    out = []
    for start in tqdm(range(0, n, batch), desc=desc, disable=not progress):
        out.append(session.run(["y"], {"x": inputs(start, min(n, start + batch))})[0].astype(np.float16))
    return np.concatenate(out)
