"""Weights files: safetensors with metadata, loaded without pickle, checksummed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch


def sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def save(model: torch.nn.Module, path: Path, metadata: dict, dtype: torch.dtype | None = None) -> str:
    """Write ``model``'s state dict; ``dtype`` (e.g. torch.float16) stores its floating-point tensors smaller
    (they are cast back to the model's dtype when loaded)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata={k: str(v) for k, v in metadata.items()})
    tmp.replace(path)
    return sha256(path)


def load(path: Path, expected_sha256: str | None = None) -> tuple[dict, dict]:
    """Return (state_dict, metadata). Raises ValueError on a checksum mismatch or a broken file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if expected_sha256 and sha256(path) != expected_sha256:
        raise ValueError(f"weights file {path} does not match the checksum in its model card")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
            state = {key: fh.get_tensor(key) for key in fh.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"weights file {path} is not a valid safetensors file: {exc}") from exc
    return state, metadata


def read_metadata(path: Path) -> dict:
    """A safetensors file's metadata without loading its tensors (ValueError when it is not one)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"weights file {path} is not a valid safetensors file: {exc}") from exc


def load_state_dict(path: Path) -> dict:
    """A plain state dict from .safetensors, or from a .pth/.pt file loaded with weights_only=True."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return load(path)[0]
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def read_card(weights_path: Path) -> dict | None:
    card = Path(weights_path).with_suffix(".card.json")
    if card.exists():
        return json.loads(card.read_text())
    return None


def command_line() -> str:
    """The command that is running, for model cards: ``python -m <module> ...`` or ``python manage.py ...``
    (the program's own path is not recorded, so cards carry no machine paths of their own)."""
    import os
    import sys

    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    prog = f"python -m {spec.name}" if spec is not None and spec.name else f"python {os.path.basename(sys.argv[0])}"
    return " ".join([prog, *sys.argv[1:]])


def management_command_line(
    name: str,
    options: dict,
    skip=("verbosity", "settings", "pythonpath", "traceback", "no_color", "force_color", "skip_checks"),
) -> str:
    """``command_line()`` for a management command, also when it was started with ``call_command``."""
    import sys

    if name in sys.argv[1:2]:
        return command_line()
    parts = [
        f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")
        for k, v in options.items()
        if k not in skip and v not in (None, False)
    ]
    return " ".join(["python manage.py", name, *parts])
