"""Pure PyTorch part of oscar-fashion-ai: data, preprocessing, models, training, evaluation.

Nothing in this package imports Django, so it can run in notebooks, training jobs and tests alone.
"""
