"""The sketch-to-photo generator's trainer's former home; it is :mod:`.training.gan` now.

``python -m oscar_fashion_ai.ml.train_gan ...`` is recorded in model cards and docs and still runs the same trainer
with the same options.
"""

from .training.gan import GanConfig, add_arguments, config_from_args, main, sample_grid, train

__all__ = ["GanConfig", "add_arguments", "config_from_args", "main", "sample_grid", "train"]

if __name__ == "__main__":
    main()
