"""The networks a process loads lazily, in one place: the photo embedder (and any other weights file an index build
names), the sketch encoder, the sketch generator and the garment locator of search by photo.

Each is loaded on first use and kept for the life of the process (web worker or Celery worker), and loaded again
when its setting or its weights file changes. Code that needs a model asks here (``runtime.get_embedder()``, ...);
nothing else keeps a model of its own.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from . import conf
from .ml.embedder import Embedder, ModelUnavailable

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_embedders: dict = {}  # (weights path, file stamp, threads, cache dir) -> Embedder; a few models at most
_UNSET = object()


class _Slot:
    """One lazily loaded model and the settings it was loaded for."""

    def __init__(self):
        self.key = _UNSET
        self.value = None
        self.notice = None  # why the model is not the one configured (None: it is)


_generator = _Slot()
_sketch = _Slot()
_locator = _Slot()


def _stamp(path: Path):
    """Changes when the weights file or its card changes (a replaced file is loaded again)."""
    stamps = []
    for p in (path, path.with_suffix(".card.json")):
        try:
            st = p.stat()
            stamps.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            stamps.append(None)
    return tuple(stamps)


def load_embedder(path) -> Embedder:
    """The process-wide embedder for one weights file (None: the package's), loaded on first use."""
    from .ml.embedder import PACKAGE_WEIGHTS

    path = Path(path) if path else PACKAGE_WEIGHTS
    key = (str(path), _stamp(path), conf.get("TORCH_THREADS"), conf.cache_dir())
    embedder = _embedders.get(key)
    if embedder is None:
        with _lock:
            embedder = _embedders.get(key)
            if embedder is None:
                embedder = Embedder(path, threads=conf.get("TORCH_THREADS"), cache_dir=conf.cache_dir())
                for old in [k for k in _embedders if k[0] == key[0]]:
                    del _embedders[old]
                while len(_embedders) >= 4:
                    del _embedders[next(iter(_embedders))]
                _embedders[key] = embedder
                logger.info("Fashion AI: loaded embedder %s (%s)", embedder.version, embedder.runtime)
    return embedder


def configured_embedder() -> Embedder:
    """The photo model the shop is configured to use (``EMBEDDER_WEIGHTS``, else the one installed in
    ``MODELS_DIR`` by ``fashion_adapt``, else the package's): the model the next index build uses."""
    from . import model_store

    return load_embedder(model_store.configured_weights())


def embedder_for(record) -> Embedder:
    """The embedder of an :class:`~oscar_fashion_ai.models.IndexBuild` (its weights file, checked against the
    checksum recorded when its index was started)."""
    embedder = load_embedder(record.weights)
    if embedder.sha256 != record.weights_sha256:
        raise ModelUnavailable(
            f"The weights file {record.weights} of model {record.version} has changed since its index was built."
        )
    return embedder


def _index_state():
    from .indexing import builds

    try:
        return builds.state()
    except Exception as exc:  # noqa: BLE001 - no database (e.g. an offline evaluation): the configured model
        logger.debug("Fashion AI: no index state: %s", exc)
        return None


def get_embedder() -> Embedder:
    """The model in use: the one whose vectors search reads and that embeds search queries.

    That is the configured model, except while the index holds another model's vectors (a new model's vectors are
    being written, or have not been requested yet): then it is the model that made the index, so that search keeps
    answering until the switch (see ``oscar_fashion_ai.indexing.builds``). A configured model that cannot be
    loaded raises :class:`ModelUnavailable` (search is off with the reason)."""
    configured = configured_embedder()
    state = _index_state()
    active = state.active if state is not None else None
    if active is None or active.version == configured.version:
        return configured
    try:
        return embedder_for(active)
    except ModelUnavailable as exc:
        logger.error(
            "Fashion AI: the model in use cannot be loaded (%s); search uses the configured model %s",
            exc,
            configured.version,
        )
        return configured


def model_info():
    """The :class:`~oscar_fashion_ai.ml.embedder.ModelInfo` of the model in use (:func:`get_embedder`)."""
    return get_embedder().info


def get_generator():
    """The process-wide sketch generator, loaded on first use; None (with one logged error per process and
    weights file) when it cannot be loaded: sketch search then embeds the drawing directly."""
    from .ml.generator import PACKAGE_GENERATOR, GeneratorUnavailable, SketchGenerator

    key = (conf.get("SKETCH_GENERATOR_WEIGHTS"), conf.get("TORCH_THREADS"))
    if _generator.key != key:
        with _lock:
            if _generator.key != key:
                _generator.value = None
                # None configured and none installed into the package (`fashion_train_gan --install`) is the
                # default since the GAN lost to embedding the drawing directly (docs/SKETCH.md): not an error.
                if key[0] or PACKAGE_GENERATOR.exists():
                    try:
                        _generator.value = SketchGenerator(key[0], threads=key[1], cache_dir=conf.cache_dir())
                        logger.info(
                            "Fashion AI: loaded sketch generator %s (%s)",
                            _generator.value.version,
                            _generator.value.runtime,
                        )
                    except GeneratorUnavailable as exc:
                        logger.error("Fashion AI: %s; sketch search embeds drawings directly", exc)
                _generator.key = key
    return _generator.value


def _load_sketch_encoder(configured, photo: Embedder) -> tuple[Embedder, str | None]:
    """(the network that embeds drawings, why it is the photo model although an encoder exists, or None)."""
    from .ml import weights
    from .ml.embedder import PACKAGE_SKETCH_WEIGHTS

    path = Path(configured or PACKAGE_SKETCH_WEIGHTS)
    if not configured and not path.exists():
        return photo, None
    try:
        pairs_with = weights.read_metadata(path).get("pairs_with") if path.exists() else None
        if path.exists() and pairs_with != photo.sha256:
            notice = (
                f"The sketch encoder {path.name} was trained for another photo model than the one in use "
                f"({photo.version}): search by sketch works, with drawings embedded by the photo model, which "
                "finds fewer matches. Train a sketch encoder for it with `manage.py "
                "fashion_train_sketch_encoder` (or `fashion_adapt --sketch-minutes N`)."
            )
            logger.error("Fashion AI: %s", notice)
            return photo, notice
        candidate = Embedder(path, threads=conf.get("TORCH_THREADS"), cache_dir=conf.cache_dir())
        if candidate.info.dim != photo.info.dim:
            raise ModelUnavailable(f"{path} makes {candidate.info.dim}-d vectors, the photo model {photo.info.dim}-d")
    except (ModelUnavailable, ValueError) as exc:
        logger.error("Fashion AI: %s; drawings are embedded by the photo model", exc)
        return photo, None
    logger.info("Fashion AI: loaded sketch encoder %s (%s)", candidate.version, candidate.runtime)
    return candidate, None


def get_sketch_embedder(photo: Embedder | None = None) -> Embedder:
    """The network that embeds drawings: the sketch encoder made for the model in use (``photo``, looked up when not
    given), or (when there is none, it cannot be loaded, or it belongs to another photo model; logged once) the photo
    model."""
    from . import model_store

    photo = photo or get_embedder()
    configured = conf.get("SKETCH_ENCODER_WEIGHTS") or model_store.sketch_encoder_for(photo.sha256)
    key = (str(configured) if configured else None, photo.sha256, conf.get("TORCH_THREADS"))
    if _sketch.key != key:
        with _lock:
            if _sketch.key != key:
                _sketch.value, _sketch.notice = _load_sketch_encoder(configured, photo)
                _sketch.key = key
    return _sketch.value


def sketch_encoder_notice() -> str | None:
    """Why drawings are embedded by the photo model although a sketch encoder exists (None when they are not)."""
    get_sketch_embedder()
    return _sketch.notice


def get_locator(embedder: Embedder | None = None):
    """The garment locator of search by photo (:class:`oscar_fashion_ai.ml.crop.GarmentLocator`) for ``embedder``
    (default: the model in use): the preset crop box when the shopper drew none. It uses a trained locator head
    for this photo model when one exists (the data directory's ``models/locator/``, then the package's), else the
    activation-map preset."""
    from . import model_store
    from .ml import crop
    from .ml import locator as heads

    embedder = embedder or get_embedder()
    try:  # a head trained while this process runs (fashion_train_locator, fashion_adapt) is picked up
        stamp = model_store.locator_dir().stat().st_mtime_ns
    except OSError:
        stamp = None
    found, key = _locator.value, (id(embedder), stamp)
    if found is None or found.embedder is not embedder or _locator.key != key:
        installed = model_store.locator_for(embedder.sha256)
        head = heads.load(installed or heads.PACKAGE_LOCATOR, photo_sha256=embedder.sha256)
        found = _locator.value = crop.GarmentLocator(embedder, head=head or False)
        _locator.key = key
    return found


__all__ = [
    "ModelUnavailable",
    "configured_embedder",
    "embedder_for",
    "get_embedder",
    "get_generator",
    "get_locator",
    "get_sketch_embedder",
    "load_embedder",
    "model_info",
    "sketch_encoder_notice",
]
