"""oscar-fashion-ai: deep-learning fashion search and recommendations for django-oscar."""

__version__ = "0.1.0"
