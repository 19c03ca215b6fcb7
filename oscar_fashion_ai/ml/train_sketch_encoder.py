"""The sketch-encoder trainer's former home; it is :mod:`.training.sketch_encoder` now.

``python -m oscar_fashion_ai.ml.train_sketch_encoder ...`` is recorded in the shipped encoder's model card, docs and
scripts and still runs the same trainer with the same options (``--float32`` as before; ``--float16`` / ``--half``
too).
"""

from .training.cards import ROLE
from .training.cards import save_sketch_encoder as write_encoder
from .training.sketch_encoder import SketchTrainConfig, add_arguments, config_from_args, main, train

__all__ = ["ROLE", "SketchTrainConfig", "add_arguments", "config_from_args", "main", "train", "write_encoder"]

if __name__ == "__main__":
    main()
