"""The robust recipe's former home (LP-FT + relational distillation + WiSE-FT); it is :mod:`.training.robust` now.

``python -m oscar_fashion_ai.ml.train_robust ...`` is recorded in the shipped photo model's card and in the docs
and still runs the same recipe with the same options.
"""

from .training.robust import RobustConfig, main, train
from .training.robust_data import VIEWS
from .training.splits import is_excluded, source_name, source_records

__all__ = ["VIEWS", "RobustConfig", "is_excluded", "main", "source_name", "source_records", "train"]

if __name__ == "__main__":
    main()
