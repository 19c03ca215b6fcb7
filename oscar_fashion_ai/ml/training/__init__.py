"""The training toolkit: what every trainer of the project shares, and one module per trainer.

Shared parts:

* :mod:`.config`: the dataclass config base and the command-line options built from it (one float16 convention,
  the default drawing styles as one constant), and the options -> config conversion the management commands use;
* :mod:`.checkpoint`: saving and resuming a run (its ``history`` included) and the ``--max-minutes`` deadline;
* :mod:`.losses`: CosFace, the drawing<->photo InfoNCE term, relational distillation, the pix2pix losses;
* :mod:`.schedule`: the learning-rate schedules;
* :mod:`.splits`: the project's split of a labelled set, sources with their labels kept apart, training pairs;
* :mod:`.cards`: the model-card writer;
* :mod:`.augment`: input normalisation and augmentation;
* :mod:`.features`: frozen network prefixes computed once (ONNX Runtime on the CPU) and embedding of arrays.

Trainers: :mod:`.embedder` (the photo model; its end-to-end loop in :mod:`.embedder_full`), :mod:`.sketch_encoder`,
:mod:`.robust` (the shipped photo model's LP-FT + WiSE-FT recipe) and :mod:`.gan` (the sketch-to-photo generator).
Each runs as ``python -m oscar_fashion_ai.ml.training.<trainer>``; the older ``python -m
oscar_fashion_ai.ml.train_<trainer>`` entry points (recorded in model cards) run the same code.

Nothing here imports Django; this package's ``__init__`` imports nothing, so importing one part does not load the
others.
"""
