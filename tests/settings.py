"""Test settings: the demo store's settings with an isolated broker database and media folder."""

import os
import tempfile

from shop.settings import *  # noqa: F403

# Redis database 15, so a demo worker on database 0 never takes test tasks.
CELERY_BROKER_URL = os.environ.get("TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
CELERY_RESULT_BACKEND = CELERY_BROKER_URL
MEDIA_ROOT = tempfile.mkdtemp(prefix="fashion-ai-test-media-")
HAYSTACK_CONNECTIONS["default"]["PATH"] = tempfile.mkdtemp(prefix="fashion-ai-test-whoosh-")  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
FASHION_AI = {
    "BATCH_SIZE": 8,
    "SKETCH_RATE_LIMIT": None,
    "PHOTO_RATE_LIMIT": None,
    "MODELS_DIR": tempfile.mkdtemp(prefix="fashion-ai-test-models-"),
}
LOGGING = {"version": 1, "disable_existing_loggers": False}

# django-oscar-api (requirements-dev.txt), for the headless-shop test (tests/integration/test_interests.py,
# tests/headless_urls.py).
try:
    import oscarapi  # noqa: F401
except ImportError:
    pass
else:
    INSTALLED_APPS = INSTALLED_APPS + ["rest_framework", "oscarapi"]  # noqa: F405
# A second database alias, as a read replica would be: a test mirror of "default" (the same test database through
# its own connection). Only tests that set FASHION_AI["SEARCH_DATABASE"] = "search" use it
# (tests/integration/test_scale.py).
DATABASES["search"] = {**DATABASES["default"], "ATOMIC_REQUESTS": False, "TEST": {"MIRROR": "default"}}  # noqa: F405
