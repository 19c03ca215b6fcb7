"""The shop's own models folder (``FASHION_AI["MODELS_DIR"]``): models made for this shop by ``fashion_adapt``,
every version kept, and a pointer to the one the shop uses.

Layout::

    MODELS_DIR/photo/<version>.safetensors (+ .card.json)   photo models, one file per version
    MODELS_DIR/photo/ACTIVE.json                            {"version", "file", "installed", "history"}
    MODELS_DIR/sketch/<version>.safetensors (+ .card.json)  sketch encoders, each for one photo model (pairs_with)
    MODELS_DIR/snapshots/<sha256>.safetensors               copies of the package's weights while they serve an index
    MODELS_DIR, folder "work"                               training checkpoints and caches (resumable runs)

With ``FASHION_AI["EMBEDDER_WEIGHTS"] = None`` the photo model is the one ``ACTIVE.json`` names, else the package's
shipped weights. Files are written to a temporary name and renamed, so a crash never leaves a half-written model
or pointer: the model in use stays what it was.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from . import conf

logger = logging.getLogger(__name__)

POINTER = "ACTIVE.json"
HISTORY = 50
#: The name ``--rollback`` accepts for the package's shipped photo model.
PACKAGE = "package"


class StoreError(RuntimeError):
    """A models-folder operation that cannot be done (the message says why)."""


def models_dir() -> Path:
    configured = conf.get("MODELS_DIR")
    if configured:
        return Path(configured)
    return conf.data_dir() / "models"


def photo_dir() -> Path:
    return models_dir() / "photo"


def sketch_dir() -> Path:
    return models_dir() / "sketch"


def locator_dir() -> Path:
    return models_dir() / "locator"


def work_dir() -> Path:
    return models_dir() / "work"


def snapshot_path(sha256: str) -> Path:
    return models_dir() / "snapshots" / f"{sha256}.safetensors"


_pointer_cache: dict = {}


def read_pointer() -> dict | None:
    """The parsed ``ACTIVE.json`` (None when there is none); re-read only when the file changes."""
    path = photo_dir() / POINTER
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_ino, st.st_mtime_ns, st.st_size)
    if _pointer_cache.get("key") != key:
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            logger.error("Fashion AI: %s is unreadable (%s); using the package's photo model", path, exc)
            data = None
        _pointer_cache.update(key=key, data=data)
    return _pointer_cache["data"]


def installed_weights() -> Path | None:
    """The photo model ``ACTIVE.json`` names (None: the package's own, or no pointer)."""
    pointer = read_pointer()
    if not pointer or not pointer.get("file"):
        return None
    path = photo_dir() / Path(pointer["file"]).name
    if not path.exists():
        logger.error(
            "Fashion AI: %s names %s, which does not exist; using the package's photo model",
            photo_dir() / POINTER,
            path,
        )
        return None
    return path


def configured_weights() -> Path | None:
    """The photo model the shop is configured to use: ``EMBEDDER_WEIGHTS``, else the installed one, else None
    (the package's)."""
    explicit = conf.get("EMBEDDER_WEIGHTS")
    if explicit:
        return Path(explicit)
    return installed_weights()


def _atomic_copy(src: Path, dest: Path):
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    tmp.replace(dest)


def _write_json_atomically(path: Path, data: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        fh.write(json.dumps(data, indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def add_version(weights: Path, version: str, folder: Path | None = None) -> Path:
    """Copy a weights file (and its card) into the models folder as ``<version>.safetensors``; returns the copy."""
    folder = folder or photo_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{version}.safetensors"
    card = Path(weights).with_suffix(".card.json")
    if card.exists():
        _atomic_copy(card, dest.with_suffix(".card.json"))
    _atomic_copy(Path(weights), dest)
    return dest


def activate_version(version: str | None, reason: str) -> dict:
    """Point ``ACTIVE.json`` at ``version`` (a file in ``photo/``; None or ``PACKAGE``: the package's own model).
    The pointer is replaced in one rename; the previous version goes to the front of ``history``."""
    if version not in (None, PACKAGE) and not (photo_dir() / f"{version}.safetensors").exists():
        raise StoreError(
            f"No installed photo model {version!r} in {photo_dir()}; installed: "
            f"{', '.join(v['version'] for v in versions() if v['installed']) or 'none'}."
        )
    previous = read_pointer() or {}
    history = list(previous.get("history", []))
    history.insert(0, previous.get("version") or PACKAGE)  # no pointer yet: the package's model was in use
    data = {
        "version": version or PACKAGE,
        "file": f"{version}.safetensors" if version not in (None, PACKAGE) else None,
        "installed": datetime.now(UTC).isoformat(timespec="seconds"),
        "reason": reason,
        "history": history[:HISTORY],
    }
    _write_json_atomically(photo_dir() / POINTER, data)
    return data


def versions() -> list[dict]:
    """Every photo model in the folder (newest first), plus the package's, with their recorded metrics."""
    pointer = read_pointer() or {}
    active = pointer.get("version") or PACKAGE
    out = []
    folder = photo_dir()
    files = (
        sorted(folder.glob("*.safetensors"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.exists() else []
    )
    for path in files:
        card = {}
        try:
            card = json.loads(path.with_suffix(".card.json").read_text())
        except (OSError, ValueError):
            pass
        out.append(
            {
                "version": path.stem,
                "installed": True,
                "active": path.stem == active,
                "path": path,
                "created": datetime.fromtimestamp(path.stat().st_mtime, UTC),
                "adaptation": card.get("adaptation", {}),
            }
        )
    out.append(
        {
            "version": PACKAGE,
            "installed": False,
            "active": active == PACKAGE,
            "path": None,
            "created": None,
            "adaptation": {},
        }
    )
    return out


def previous_version() -> str:
    """The version ``--rollback`` without a name goes back to: the one in use before the current one."""
    pointer = read_pointer()
    if not pointer or not pointer.get("history"):
        raise StoreError(
            "Nothing to roll back to: no model was installed before the one in use "
            f"({(pointer or {}).get('version') or 'the package model'})."
        )
    return pointer["history"][0]


def sketch_encoder_for(photo_sha256: str) -> Path | None:
    """An installed sketch encoder trained for the photo model with this checksum (newest first), if any."""
    from .ml import weights

    folder = sketch_dir()
    try:
        stamp = folder.stat().st_mtime_ns
    except OSError:
        return None
    key = (str(folder), stamp, photo_sha256)
    if _sketch_cache.get("key") == key:
        return _sketch_cache["path"]
    _sketch_cache.update(key=key, path=None)
    for path in sorted(folder.glob("*.safetensors"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            if weights.read_metadata(path).get("pairs_with") == photo_sha256:
                _sketch_cache["path"] = path
                return path
        except ValueError:
            continue
    return None


_sketch_cache: dict = {}


def locator_for(photo_sha256: str) -> Path | None:
    """A garment locator head (``fashion_train_locator``) in the data directory trained for the photo model with this
    checksum (newest first), if any; the package's head serves the package's photo model."""
    from .ml import weights

    folder = locator_dir()
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.safetensors"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            if weights.read_metadata(path).get("pairs_with") == photo_sha256:
                return path
        except ValueError:
            continue
    return None
