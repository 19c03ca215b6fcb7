"""The photo-model trainer's former home; it is :mod:`.training.embedder` now (on the toolkit :mod:`.training`).

``python -m oscar_fashion_ai.ml.train_embedder ...`` is recorded in model cards, docs and scripts and still runs the
same trainer with the same options; the names below are re-exported for code written against this module.
"""

from .training.cards import RELEVANCE, SKETCH_QUERIES, machine_info
from .training.checkpoint import epochs_within_budget
from .training.config import config_from as dataclass_from_args
from .training.config import setup
from .training.embedder import TrainConfig, add_arguments, config_from_args, main, train
from .training.losses import CosFace
from .training.schedule import one_cycle
from .training.splits import labelled_split, split_card

__all__ = [
    "RELEVANCE",
    "SKETCH_QUERIES",
    "CosFace",
    "TrainConfig",
    "add_arguments",
    "config_from_args",
    "dataclass_from_args",
    "epochs_within_budget",
    "labelled_split",
    "machine_info",
    "main",
    "one_cycle",
    "setup",
    "split_card",
    "train",
]

if __name__ == "__main__":
    main()
