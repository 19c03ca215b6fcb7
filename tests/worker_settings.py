"""Settings of a real ``celery -A shop worker`` subprocess started by tests/system/test_reliability_worker.py.

The test passes its own test database (DATABASE_URL), media folder and weights through the environment, so the
worker sees exactly what the test process sees.
"""

import os

from oscar_fashion_ai.conf import from_environment
from tests.settings import *  # noqa: F403

MEDIA_ROOT = os.environ["FASHION_TEST_MEDIA_ROOT"]
FASHION_AI = {**FASHION_AI, **from_environment(os.environ)}  # noqa: F405
# A short visibility timeout so that a message held by a SIGKILLed worker is redelivered within seconds
# (production keeps Redis' default of one hour, or a value above the longest task).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("FASHION_TEST_VISIBILITY_TIMEOUT", "3600")),
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"oscar_fashion_ai": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}
