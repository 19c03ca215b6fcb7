"""ONNX Runtime sessions for the plugin's networks, with a cache of their ONNX exports that is trusted only after
checks (pure PyTorch / ONNX Runtime: no Django here).

Exporting a network to ONNX takes seconds, so each export is kept in a cache folder. A file found there is used
only when

* the folder and the file belong to this process's user and nobody else can write to them (a file planted in a
  shared folder such as ``/tmp`` is never loaded),
* a sidecar ``<file>.json`` records the fingerprint of the network it was exported from (the weights' sha256,
  the architecture, the torch version) and that fingerprint is this network's, and
* the file's sha256 matches the one recorded in the sidecar (a truncated or swapped file is refused).

The checked bytes themselves are handed to ONNX Runtime (no second read of the file between check and load).
Anything else is ignored with a warning and the network is exported again. When the cache cannot be written the
export is used from memory (still ONNX Runtime, never the much slower eager PyTorch) and a warning says where
and why.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import stat
import warnings
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

OPSET = 17


def default_cache_dir() -> Path:
    """Where a process without Django settings caches exports: ``FASHION_AI_CACHE_DIR``, else the user's own
    cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``) -- never a folder shared between users."""
    configured = os.environ.get("FASHION_AI_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "oscar-fashion-ai" / "onnx"


def fingerprint(model: torch.nn.Module, source_sha256: str, example: torch.Tensor) -> str:
    """What an export depends on: the weights, the architecture, the input layout and the exporter's version."""
    parts = [
        source_sha256,
        repr(model),
        str(tuple(example.shape[1:])),
        str(example.dtype),
        torch.__version__,
        str(OPSET),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def not_private(path: Path) -> str | None:
    """None when ``path`` belongs to this user and no one else can write to it; else why not."""
    try:
        info = path.lstat()
    except OSError as exc:
        return str(exc)
    if stat.S_ISLNK(info.st_mode):
        return "it is a symbolic link"
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        return f"it belongs to another user (uid {info.st_uid})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "other users can write to it"
    return None


def _export(model, example, input_names, output_names, dynamic_axes=None) -> bytes:
    buf = io.BytesIO()
    axes = dynamic_axes or {name: {0: "batch"} for name in [*input_names, *output_names]}
    # The TorchScript exporter warns about its own deprecation and about constant folding at every export; neither
    # concerns a shop (the exported graph is checked against PyTorch by the tests).
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buf,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return buf.getvalue()


def _cached(folder: Path, onnx_path: Path, meta_path: Path, key: str) -> bytes | None:
    """The cached export's bytes when every check passes; None (with a warning if something is wrong) otherwise."""
    if not onnx_path.exists() and not meta_path.exists():
        return None
    problem = None
    for path in (folder, onnx_path, meta_path):
        why = not_private(path)
        if why:
            problem = f"{path}: {why}"
            break
    if problem is None:
        try:
            meta = json.loads(meta_path.read_text())
            data = onnx_path.read_bytes()
        except (OSError, ValueError) as exc:
            problem = f"{onnx_path} cannot be read with its checksum file: {exc}"
        else:
            if not isinstance(meta, dict) or meta.get("fingerprint") != key:
                problem = f"{onnx_path} was exported from another network or another torch version"
            elif hashlib.sha256(data).hexdigest() != meta.get("onnx_sha256"):
                problem = f"{onnx_path} does not match the checksum recorded when it was exported"
            else:
                return data
    logger.warning("Fashion AI: ignoring the cached ONNX export (%s); exporting the network again", problem)
    return None


def _store(folder: Path, onnx_path: Path, meta_path: Path, data: bytes, key: str) -> None:
    """Write the export and its sidecar (atomically, private to this user). Raises OSError."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    problem = not_private(folder)
    if problem:
        raise PermissionError(f"the folder is not private to this user: {problem}")
    meta = {
        "fingerprint": key,
        "onnx_sha256": hashlib.sha256(data).hexdigest(),
        "torch": torch.__version__,
        "opset": OPSET,
    }
    for path, payload in ((onnx_path, data), (meta_path, json.dumps(meta, indent=1).encode())):
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        tmp.replace(path)


def cpu_session(make, device: torch.device, runtime: str, what: str):
    """The ONNX Runtime session ``make()`` returns for a network that runs on the CPU, or None (eager PyTorch): on
    another device, with ``runtime="torch"``, or with ``runtime="auto"`` when ONNX Runtime cannot run the network
    (with a warning: eager PyTorch still works, only slower). ``runtime="onnx"`` raises instead."""
    if device.type != "cpu" or runtime not in {"auto", "onnx"}:
        return None
    try:
        return make()
    except Exception as exc:  # fall back to PyTorch, loudly
        if runtime == "onnx":
            raise
        logger.warning("ONNX Runtime unavailable for %s (%s); using eager PyTorch (slower)", what, exc)
        return None


def session(
    model: torch.nn.Module,
    *,
    name: str,
    source_sha256: str,
    example: torch.Tensor,
    input_names,
    output_names,
    cache_dir: Path | str | None = None,
    threads: int = 0,
    dynamic_axes: dict | None = None,
):
    """An ONNX Runtime CPU session for ``model`` (exported on first use, then cached under ``cache_dir``)."""
    import onnxruntime as ort

    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    key = fingerprint(model, source_sha256, example)
    if dynamic_axes:
        key = hashlib.sha256((key + repr(sorted(dynamic_axes.items()))).encode()).hexdigest()
    onnx_path = folder / f"{name}-{key[:16]}.onnx"
    meta_path = onnx_path.with_name(onnx_path.name + ".json")
    data = _cached(folder, onnx_path, meta_path, key)
    if data is None:
        data = _export(model, example, input_names, output_names, dynamic_axes)
        try:
            _store(folder, onnx_path, meta_path, data, key)
        except OSError as exc:
            logger.warning(
                "Fashion AI: cannot write the ONNX cache in %s (%s): the network is exported again at "
                "every process start (slower start-up, same speed afterwards). Point "
                "FASHION_AI['CACHE_DIR'] at a folder this user can write to.",
                folder,
                exc,
            )
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads) if threads else 0
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
