"""Settings of the demo Oscar store that hosts oscar_fashion_ai.

Everything a deployment changes comes from environment variables (documented in README).
"""

import os
from pathlib import Path

import oscar
from django.urls import reverse_lazy
from oscar.defaults import *  # noqa: F403  (Oscar's documented way to get its defaults)

import oscar_fashion_ai
from shop import embedded_db

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("FASHION_VAR_DIR", BASE_DIR / "var"))


def env_bool(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-demo-key-change-me-in-production")
DEBUG = env_bool("DJANGO_DEBUG", True)
ALLOWED_HOSTS = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

# --- Database: DATABASE_URL, else the embedded PostgreSQL + pgvector under var/ -------------
# HNSW search settings apply to every connection (see FIELD_NOTES / README).
_PG_OPTIONS = {"options": "-c hnsw.ef_search=100 -c hnsw.iterative_scan=relaxed_order"}
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": embedded_db.from_url(os.environ["DATABASE_URL"], _PG_OPTIONS)}
else:
    DATABASES = {"default": embedded_db.database_settings(VAR_DIR / "pgdata", _PG_OPTIONS)}
DATABASES["default"]["ATOMIC_REQUESTS"] = True
# Search traffic can go to a read replica: SEARCH_DATABASE_URL adds it as "search" (see README, "Scaling").
DATABASE_ROUTERS = ["oscar_fashion_ai.routers.SearchRouter"]
if os.environ.get("SEARCH_DATABASE_URL"):
    DATABASES["search"] = embedded_db.from_url(os.environ["SEARCH_DATABASE_URL"], _PG_OPTIONS)
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

INSTALLED_APPS = oscar.INSTALLED_APPS + [
    "django.contrib.postgres",
    "sorl.thumbnail",
    # The plugin: the storefront/API app and its Oscar dashboard app.
    "oscar_fashion_ai.apps.FashionAIConfig",
    "oscar_fashion_ai.dashboard.apps.FashionAIDashboardConfig",
    # The demo project itself (the fashion_demo command).
    "shop",
]

SITE_ID = 1

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "oscar.apps.basket.middleware.BasketMiddleware",
    "django.contrib.flatpages.middleware.FlatpageFallbackMiddleware",
]

ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates", oscar_fashion_ai.TEMPLATE_DIR],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.template.context_processors.i18n",
                "django.contrib.messages.context_processors.messages",
                "oscar.apps.search.context_processors.search_form",
                "oscar.apps.checkout.context_processors.checkout",
                "oscar.apps.communication.notifications.context_processors.notifications",
                "oscar.core.context_processors.metadata",
            ],
        },
    }
]

AUTHENTICATION_BACKENDS = (
    "oscar.apps.customer.auth_backends.EmailBackend",
    "django.contrib.auth.backends.ModelBackend",
)

# Oscar's catalogue and category pages are haystack faceted searches: they need a real backend (the simple
# backend lists no products). Whoosh is pure Python and keeps its index in var/; use Solr/Elasticsearch at scale.
HAYSTACK_CONNECTIONS = {
    "default": {
        "ENGINE": "haystack.backends.whoosh_backend.WhooshEngine",
        "PATH": os.environ.get("HAYSTACK_WHOOSH_PATH", str(VAR_DIR / "whoosh_index")),
        "INCLUDE_SPELLING": False,
    }
}

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("FASHION_MEDIA_ROOT", VAR_DIR / "media"))
SERVE_MEDIA = env_bool("DJANGO_SERVE_MEDIA", DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Oscar
OSCAR_SHOP_NAME = "Fashion AI demo store"
# The homepage with "Recommended for you" (category pages keep Oscar's own templates).
OSCAR_HOMEPAGE = reverse_lazy("fashion-ai:home")
OSCAR_DEFAULT_CURRENCY = os.environ.get("OSCAR_DEFAULT_CURRENCY", "EUR")
OSCAR_DASHBOARD_NAVIGATION = OSCAR_DASHBOARD_NAVIGATION + [  # noqa: F405
    {
        "label": "Fashion AI",
        "icon": "fas fa-tshirt",
        "url_name": "fashion-ai-dashboard:fashion-ai-index",
    },
]

# Cache: Redis when available (shared by web and workers), else local memory.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if os.environ.get("CACHE_URL"):
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": os.environ["CACHE_URL"]}
    }

# Celery (see shop/celery.py). fashion_demo switches to a filesystem broker when Redis is absent.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = VAR_DIR / "celery-broker"
    _queue_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_queue_dir / "processed"),
        "store_processed": False,
    }
# Periodic jobs (run `celery -A shop beat` next to the worker to enable them).
CELERY_BEAT_SCHEDULE = {
    "fashion-ai-sweep": {"task": "oscar_fashion_ai.sweep", "schedule": 300.0},
    "fashion-ai-cleanup": {"task": "oscar_fashion_ai.cleanup_anonymous_profiles", "schedule": 86400.0},
    "fashion-ai-cooccurrence": {"task": "oscar_fashion_ai.refresh_cooccurrence", "schedule": 86400.0},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Fail fast when publishing to a dead broker instead of hanging the request.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_MAX_RETRIES = 1

# The plugin's settings: every key and its default lives in oscar_fashion_ai/conf.py.
# Any key can also come from the environment as FASHION_AI_<KEY> (e.g. FASHION_AI_TORCH_THREADS=2).
# The demo's data: the CC0 clothing data set next to the repository (unless FASHION_AI_DATASET says otherwise), and
# the plugin's files (trained models, ONNX cache) under var/.
FASHION_AI = {"DATA_DIR": str(VAR_DIR / "fashion-ai")}
_DEMO_DATASET = (BASE_DIR / ".." / "shared" / "datasets" / "clothing-dataset").resolve()
if os.environ.get("FASHION_AI_DATASET"):
    FASHION_AI["DATASET_PATH"] = os.environ["FASHION_AI_DATASET"]
elif _DEMO_DATASET.exists():
    FASHION_AI["DATASET_PATH"] = str(_DEMO_DATASET)
from oscar_fashion_ai.conf import from_environment  # noqa: E402

FASHION_AI.update(from_environment(os.environ))
if "search" in DATABASES:
    FASHION_AI.setdefault("SEARCH_DATABASE", "search")

# One handler, on the root logger: the plugin's loggers only set a level and propagate. (A handler of their own
# printed every line twice in a Celery worker, which puts its own handler on the root logger.)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "oscar_fashion_ai": {"level": os.environ.get("FASHION_AI_LOG_LEVEL", "INFO")},
    },
}
