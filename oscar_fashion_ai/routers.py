"""Database routing for search traffic: the reads of a search go to ``FASHION_AI["SEARCH_DATABASE"]``.

Add the router to the shop's settings (the demo store does)::

    DATABASE_ROUTERS = ["oscar_fashion_ai.routers.SearchRouter"]
    DATABASES["replica"] = {...}          # e.g. a PostgreSQL streaming replica with pgvector
    FASHION_AI = {"SEARCH_DATABASE": "replica"}

Only reads made inside :func:`search_reads` (the nearest-neighbour query and what a search reads with it: the
query product's vector, categories for re-ranking, the result products' images) are routed; every other read
and every write keeps Django's default routing, so indexing never reads a lagging replica.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager

_search_alias: contextvars.ContextVar[str | None] = contextvars.ContextVar("fashion_ai_search_alias", default=None)


@contextmanager
def search_reads(alias: str):
    """Route the reads of the block to ``alias`` (nests; restores the previous alias on exit)."""
    token = _search_alias.set(alias)
    try:
        yield alias
    finally:
        _search_alias.reset(token)


def current_search_alias() -> str | None:
    return _search_alias.get()


class SearchRouter:
    """Sends reads inside :func:`search_reads` to the search database; no opinion about anything else."""

    def db_for_read(self, model, **hints):
        return _search_alias.get()

    def db_for_write(self, model, **hints):
        return None

    def allow_relation(self, obj1, obj2, **hints):
        # A replica holds the same rows as the primary: objects read from either may be related.
        from django.db import DEFAULT_DB_ALIAS

        from . import conf

        alias = conf.get("SEARCH_DATABASE")
        if alias and {obj1._state.db, obj2._state.db} <= {alias, DEFAULT_DB_ALIAS}:
            return True
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return None
