"""Check an installation of oscar-fashion-ai: broker, worker, database, files, models, index, templates."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

#: Oldest pgvector with iterative index scans (filtered searches return enough rows).
MIN_PGVECTOR = (0, 8, 0)


def parse_version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in str(text).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _safe_url(url: str) -> str:
    from kombu.utils.url import maybe_sanitize_url

    return maybe_sanitize_url(url)


class Command(BaseCommand):
    help = (
        "Check this installation of oscar-fashion-ai: broker and worker reachable, PostgreSQL and pgvector "
        "versions, the data and cache folders writable, the model files valid, index coverage, templates and "
        "periodic tasks. Exits with status 1 when something is broken."
    )

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=2.0, help="Seconds to wait for the broker and workers.")

    def report(self, level, what, message):
        style = {"ok": self.style.SUCCESS, "warn": self.style.WARNING, "fail": self.style.ERROR}[level]
        self.stdout.write(f"{style(f'[{level.upper():>4}]')} {what}: {message}")
        self.counts[level] += 1

    def handle(self, *args, timeout=2.0, **options):
        self.counts = {"ok": 0, "warn": 0, "fail": 0}
        for check in (
            self.check_broker,
            self.check_database,
            self.check_folders,
            self.check_models,
            self.check_index,
            self.check_templates,
            self.check_schedule,
        ):
            try:
                check(timeout)
            except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
                self.report("fail", check.__name__.removeprefix("check_"), f"the check itself failed: {exc!r}")
        summary = f"{self.counts['ok']} ok, {self.counts['warn']} warnings, {self.counts['fail']} problems"
        if self.counts["fail"]:
            raise CommandError(summary)
        self.stdout.write(summary)

    # --- checks ---------------------------------------------------------------------------------

    def check_broker(self, timeout):
        from oscar_fashion_ai import publishing, tasks

        app = tasks.embed_products.app
        url = app.conf.broker_url or "amqp://localhost"
        try:
            with app.connection_for_write(transport_options=publishing.PUBLISH_TIMEOUTS) as conn:
                conn.ensure_connection(max_retries=1, timeout=timeout)
        except Exception as exc:  # noqa: BLE001
            self.report(
                "fail",
                "broker",
                f"{_safe_url(url)} unreachable ({exc}). Product changes stay pending "
                "until it is back (then run `manage.py fashion_reindex --stale`).",
            )
            return
        self.report("ok", "broker", f"{_safe_url(url)} reachable")
        try:
            replies = app.control.ping(timeout=timeout) or []
        except Exception as exc:  # noqa: BLE001
            replies, error = [], exc
        else:
            error = None
        if replies:
            self.report(
                "ok",
                "worker",
                f"{len(replies)} Celery worker(s) answered: {', '.join(sorted(name for r in replies for name in r))}",
            )
        else:
            self.report(
                "warn",
                "worker",
                "no Celery worker answered within "
                f"{timeout:g} s{f' ({error})' if error else ''}: start one with "
                "`celery -A <your project> worker`, or images are never indexed",
            )

    def check_database(self, timeout):
        from django.db import connection

        if connection.vendor != "postgresql":
            self.report("fail", "database", f"{connection.vendor} is not supported: use PostgreSQL with pgvector")
            return
        with connection.cursor() as cursor:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = cursor.fetchone()
            server = connection.pg_version
            settings_rows = {}
            for name in ("hnsw.ef_search", "hnsw.iterative_scan"):
                try:
                    cursor.execute(f"SHOW {name}")
                    settings_rows[name] = cursor.fetchone()[0]
                except Exception:  # noqa: BLE001 - pgvector < 0.8 has no iterative_scan
                    settings_rows[name] = None
        pg = f"PostgreSQL {server // 10000}.{server % 10000}"
        if row is None:
            self.report(
                "fail",
                "pgvector",
                f"{pg} without the vector extension: run `manage.py migrate` (the "
                "database user needs the right to CREATE EXTENSION vector)",
            )
            return
        if parse_version(row[0]) < MIN_PGVECTOR:
            self.report(
                "fail",
                "pgvector",
                f"{pg}, pgvector {row[0]}: version 0.8.0 or newer is needed "
                "(iterative index scans for filtered searches)",
            )
            return
        self.report("ok", "pgvector", f"{pg}, pgvector {row[0]}")
        if settings_rows.get("hnsw.iterative_scan") in (None, "off"):
            self.report(
                "warn",
                "search settings",
                "hnsw.iterative_scan is off: filtered searches may return fewer results than asked. Set "
                'DATABASES["default"]["OPTIONS"] = {"options": "-c hnsw.ef_search=100 '
                '-c hnsw.iterative_scan=relaxed_order"}',
            )
        else:
            self.report(
                "ok",
                "search settings",
                f"hnsw.ef_search={settings_rows['hnsw.ef_search']}, "
                f"hnsw.iterative_scan={settings_rows['hnsw.iterative_scan']}",
            )

    def check_folders(self, timeout):
        import os
        import tempfile

        from oscar_fashion_ai import conf
        from oscar_fashion_ai.ml.onnx_cache import not_private

        folder = conf.cache_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
                pass
        except OSError as exc:
            self.report(
                "warn",
                "cache folder",
                f"{folder} is not writable ({exc}): every process exports the "
                "models again when it starts. Set FASHION_AI['CACHE_DIR'].",
            )
            return
        problem = not_private(folder)
        if problem:
            self.report(
                "warn",
                "cache folder",
                f"{folder}: {problem}; cached exports there are not used. Use a folder only this user can write to.",
            )
        else:
            user = os.geteuid() if hasattr(os, "geteuid") else "?"
            self.report("ok", "cache folder", f"{folder} writable (user {user})")

    def check_models(self, timeout):
        from oscar_fashion_ai import conf, runtime

        try:
            photo = runtime.get_embedder()
        except Exception as exc:  # noqa: BLE001
            self.report("fail", "photo model", f"cannot be loaded: {exc}")
            return
        self.report("ok", "photo model", f"{photo.version} ({photo.runtime}, weights checksum verified)")
        drawings = runtime.get_sketch_embedder()
        if drawings is photo:
            self.report(
                "warn",
                "sketch encoder",
                "none for this photo model: drawings are embedded by the photo "
                "model (train one with `manage.py fashion_train_sketch_encoder`)",
            )
        else:
            self.report("ok", "sketch encoder", f"{drawings.version} ({drawings.runtime})")
        from oscar_fashion_ai.ml.generator import PACKAGE_GENERATOR

        generator = runtime.get_generator()
        if generator is None and not conf.get("SKETCH_GENERATOR_WEIGHTS") and not PACKAGE_GENERATOR.exists():
            self.report("ok", "sketch generator", "none (the default: drawings are embedded directly)")
        elif generator is None:
            self.report(
                "warn",
                "sketch generator",
                "cannot be loaded (see the log): sketch search shows the drawing instead of a generated picture",
            )
        else:
            self.report("ok", "sketch generator", f"{generator.version} ({generator.runtime})")

    def check_index(self, timeout):
        from oscar_fashion_ai.indexing import index

        stats = index.index_stats()
        if stats["problem"]:
            self.report("fail", "index", stats["problem"])
            return
        total, indexed, failed = stats["total"], stats["indexed"], stats["failed"]
        if total == 0:
            self.report("ok", "index", "no products yet")
        elif indexed == total:
            self.report("ok", "index", f"{indexed} / {total} products indexed")
        else:
            self.report(
                "warn",
                "index",
                f"{indexed} / {total} products indexed ({stats['coverage']:.0%}), "
                f"{failed} failed, {stats['stale']} waiting: with a worker running, "
                "`manage.py fashion_reindex --stale` queues the missing ones (failures are "
                "listed on the dashboard's Fashion AI page)",
            )

    def check_templates(self, timeout):
        from django.template import TemplateDoesNotExist
        from django.template.loader import get_template

        wanted = {
            "oscar/catalogue/detail.html": ("fashion_similar_products", '"Similar products" on the product page'),
            "oscar/partials/search.html": ("fashion-ai:sketch-search", "the search by photo and sketch links"),
            "oscar/customer/profile/profile.html": ("fashion-ai:forget-profile", '"Forget my style profile"'),
        }
        for name, (marker, what) in wanted.items():
            try:
                template = get_template(name)
                source = open(template.origin.name, encoding="utf-8").read()  # noqa: SIM115
            except (TemplateDoesNotExist, OSError) as exc:
                self.report("warn", "templates", f"{name}: {exc}")
                continue
            if marker in source:
                self.report("ok", "templates", f"{name} has {what}")
            else:
                self.report(
                    "warn",
                    "templates",
                    f"{name} ({template.origin.name}) lacks {what}: add "
                    "oscar_fashion_ai.TEMPLATE_DIR to TEMPLATES[0]['DIRS'] (see README)",
                )

    def check_schedule(self, timeout):
        from oscar_fashion_ai import conf, tasks

        schedule = tasks.embed_products.app.conf.beat_schedule or {}
        names = {entry.get("task") for entry in schedule.values() if isinstance(entry, dict)}
        if not conf.get("PERSONALISATION"):
            self.report("ok", "periodic tasks", "personalisation is off (FASHION_AI['PERSONALISATION'] = False)")
        elif "oscar_fashion_ai.cleanup_anonymous_profiles" not in names:
            self.report(
                "warn",
                "periodic tasks",
                "no beat schedule for oscar_fashion_ai.cleanup_anonymous_profiles: "
                "anonymous style profiles never expire (add it to "
                "CELERY_BEAT_SCHEDULE and run `celery beat`, or run "
                "`manage.py fashion_cleanup_preferences` daily)",
            )
        else:
            self.report("ok", "periodic tasks", "anonymous profiles expire (cleanup_anonymous_profiles scheduled)")
        if (
            conf.get("PERSONALISATION")
            and conf.get("RECOMMENDATION_COOCCURRENCE_WEIGHT")
            and "oscar_fashion_ai.refresh_cooccurrence" not in names
        ):
            self.report(
                "warn",
                "periodic tasks",
                "no beat schedule for oscar_fashion_ai.refresh_cooccurrence: recommendations do not learn which "
                "products shoppers engage with together (add it to CELERY_BEAT_SCHEDULE, or run "
                "`manage.py fashion_refresh_cooccurrence` daily)",
            )
        if "oscar_fashion_ai.sweep" not in names:
            self.report(
                "warn",
                "periodic tasks",
                "no beat schedule for oscar_fashion_ai.sweep: work left pending "
                "by a broker outage waits for `manage.py fashion_reindex --stale`",
            )
