"""Adapt the photo model to the shop's own catalog (``manage.py fashion_adapt`` and the dashboard's "Adapt to my
catalog" task).

1. The store's public products with an image are labelled with their first category. Products in the test split
   (``sha1(upc) % 5 == 0``, the rule ``fashion_evaluate`` uses) are never trained on; categories with too few
   training products are left out of training (and named).
2. A candidate is trained by the recipe in :mod:`oscar_fashion_ai.ml.adaptation` (within a time budget, resumable).
3. The candidate and the model in use are measured on the test-split products the same way (P@5 with the whole
   catalog as gallery, query excluded, relevant = same first category), side by side with standard errors.
4. Only a better candidate is installed into ``FASHION_AI["MODELS_DIR"]`` (every version kept, the pointer replaced
   in one rename), and the catalog is reindexed with no gap in search (:mod:`oscar_fashion_ai.indexing.builds`).
"""

from .catalog import AdaptError, Catalog, Item, Options, Reporter, check_catalog, collect
from .measuring import SKETCH_MEASURE_STYLES, compare, embed_catalog, measure, measure_sketch
from .photo import install, reindex, rollback, run
from .sketch import adapt_sketch, sketch_notice
from .task import busy_run, queue_run, run_queued

__all__ = [
    "SKETCH_MEASURE_STYLES",
    "AdaptError",
    "Catalog",
    "Item",
    "Options",
    "Reporter",
    "adapt_sketch",
    "busy_run",
    "check_catalog",
    "collect",
    "compare",
    "embed_catalog",
    "install",
    "measure",
    "measure_sketch",
    "queue_run",
    "reindex",
    "rollback",
    "run",
    "run_queued",
    "sketch_notice",
]
