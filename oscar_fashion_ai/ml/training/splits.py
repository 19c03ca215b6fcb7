"""The project's split of a labelled image set, sources trained side by side, and the training pairs.

The split is fixed by the image id (:func:`..datasets.is_test`: sha1 % 5 == 0; :func:`..datasets.is_validation`:
== 1, held out only when a run asks for it), so every trainer and benchmark sees the same test images.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .. import datasets, pairs
from .config import parse_styles


def labelled_split(source, limit=None, seed=0, validation=False, records=None):
    """(records, labels, label index per record, test mask, validation mask) of a labelled image set (``records``,
    else the files of ``source``), in the project's split; the validation mask is all False unless ``validation``."""
    records = list(records) if records is not None else datasets.labelled_records(Path(source))
    if limit:
        rng = random.Random(seed)
        records = sorted(rng.sample(records, min(limit, len(records))), key=lambda r: r.source_id)
    labels = sorted({r.label for r in records})
    label_index = {label: i for i, label in enumerate(labels)}
    y_all = torch.tensor([label_index[r.label] for r in records])
    test_mask = np.array([datasets.is_test(r.source_id) for r in records], dtype=bool)
    val_mask = np.array([validation and datasets.is_validation(r.source_id) for r in records], dtype=bool)
    return records, labels, y_all, test_mask, val_mask


@dataclass
class LabelledData:
    """A labelled set in the project's split: the records, the sorted labels, each record's label index, and the
    test and validation masks."""

    records: list
    labels: list
    y: torch.Tensor
    test_mask: np.ndarray
    val_mask: np.ndarray

    @classmethod
    def split(cls, source, limit=None, seed=0, validation=False, records=None) -> LabelledData:
        """:func:`labelled_split` as a :class:`LabelledData`."""
        return cls(*labelled_split(source, limit, seed, validation, records=records))

    @property
    def train_idx(self) -> np.ndarray:
        return np.flatnonzero(~self.test_mask & ~self.val_mask)

    @property
    def masks(self) -> tuple[np.ndarray, np.ndarray]:
        return self.test_mask, self.val_mask

    def label_array(self) -> np.ndarray:
        return np.array([r.label for r in self.records])

    def keep(self, kept) -> LabelledData:
        """The records at the indices ``kept`` (the readable ones), labels unchanged."""
        return replace(
            self,
            records=[self.records[i] for i in kept],
            y=self.y[torch.as_tensor(kept)],
            test_mask=self.test_mask[kept],
            val_mask=self.val_mask[kept],
        )


def split_card(train_idx, masks) -> dict:
    """The ``split`` entry of a model card: the rule and the image counts."""
    test_mask, val_mask = masks
    return {
        "rule": "test when int(sha1(image_id).hexdigest(), 16) % 5 == 0"
        + ("; validation (held out, for choosing configurations) when it is 1" if val_mask.any() else ""),
        "train": int(len(train_idx)),
        "validation": int(val_mask.sum()),
        "test": int(test_mask.sum()),
    }


# --- several sources, labels kept apart -------------------------------------------------------------------------


def source_name(path) -> str:
    return Path(path).resolve().name


def source_records(path) -> tuple[list, list]:
    """(records, "<source>:<label>" labels) of one labelled set."""
    name = source_name(path)
    records = datasets.labelled_records(Path(path))
    return records, [f"{name}:{r.label}" for r in records]


def prefixed_records(paths) -> list:
    """The records of every labelled set in ``paths``, each label written "<source>:<label>"."""
    out = []
    for path in paths:
        records, labels = source_records(path)
        out += [datasets.Record(r.source_id, label, r.path) for r, label in zip(records, labels)]
    return out


def is_excluded(label: str, excluded) -> bool:
    """``label`` ("<source>:<label>") matches an excluded name given with or without its source."""
    return label in excluded or label.split(":", 1)[1] in excluded


# --- photos and their synthetic drawings ------------------------------------------------------------------------


def load_pairs(cfg, records, size: int, variants: int, aligned: bool = False):
    """:func:`..pairs.load` with a :class:`.config.PairsConfig`'s seed, workers, cache and drawing styles."""
    return pairs.load(
        records,
        size,
        variants,
        cfg.seed,
        cfg.workers,
        aligned=aligned,
        progress=cfg.progress,
        cache_dir=cfg.pairs_cache,
        rebuild=cfg.rebuild_pairs,
        styles=parse_styles(cfg.styles),
    )
