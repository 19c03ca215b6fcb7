"""Run the demo store: database, migrations, staff user, catalog, Celery worker, web server."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

DEMO_EMAIL = "admin@example.com"
DEMO_PASSWORD = "fashion-demo"


def broker_reachable(url: str, timeout: float = 2.0) -> bool:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return False


class Command(BaseCommand):
    help = "Start the demo store on 127.0.0.1:8000 with a Celery worker (Ctrl-C stops everything)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--limit", type=int, default=None, help="Import at most N products on first start.")
        parser.add_argument("--no-worker", action="store_true", help="Do not start a Celery worker.")
        parser.add_argument("--skip-index", action="store_true", help="Do not queue indexing of the catalog.")

    def say(self, msg):
        self.stdout.write(self.style.MIGRATE_HEADING("==> ") + msg)
        self.stdout.flush()

    def handle(self, *args, port=8000, limit=None, no_worker=False, skip_index=False, **options):
        # Ctrl-C must raise KeyboardInterrupt even when started from a shell that ignores SIGINT.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
        db = settings.DATABASES["default"]
        where = "DATABASE_URL" if os.environ.get("DATABASE_URL") else f"embedded PostgreSQL (socket in {db['HOST']})"
        self.say(f"Database: {where}")
        self.say("Applying migrations ...")
        call_command("migrate", interactive=False, verbosity=0)
        self._ensure_staff_user()
        from oscar.core.loading import get_model

        if not get_model("catalogue", "Product").objects.exists():
            from oscar_fashion_ai import conf

            source = conf.dataset_path()
            if source is None:
                self.say(
                    self.style.WARNING(
                        "The store is empty and no data set was found; set FASHION_AI_DATASET "
                        "and run `manage.py fashion_load_catalog`."
                    )
                )
            else:
                self.say(f"The store is empty: importing the catalog from {source} ...")
                call_command("fashion_load_catalog", source=source, limit=limit)
        env = dict(os.environ)
        broker = settings.CELERY_BROKER_URL
        if not broker_reachable(broker):
            var = Path(getattr(settings, "VAR_DIR", Path(settings.BASE_DIR) / "var"))
            results = var / "celery-results"
            results.mkdir(parents=True, exist_ok=True)
            env["CELERY_BROKER_URL"] = "filesystem://"
            env["CELERY_RESULT_BACKEND"] = f"file://{results}"
            self.say(
                self.style.WARNING(
                    f"No broker at {broker}: using the local filesystem broker under {var} "
                    "(single machine, polls once a second; start Redis for production)."
                )
            )
        else:
            self.say(f"Broker: {broker}")
        children = []
        manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
        try:
            if not no_worker:
                self.say("Starting the Celery worker ...")
                children.append(
                    (
                        "worker",
                        subprocess.Popen(
                            [
                                sys.executable,
                                "-m",
                                "celery",
                                "-A",
                                "shop",
                                "worker",
                                "--loglevel=INFO",
                                "--concurrency=1",
                            ],
                            cwd=settings.BASE_DIR,
                            env=env,
                            start_new_session=True,
                        ),
                    )
                )
                if not skip_index:
                    self.say("Queueing Image2Vec indexing of products that need it ...")
                    subprocess.run(manage + ["fashion_reindex", "--stale"], cwd=settings.BASE_DIR, env=env, check=False)
            self.say("Starting the web server ...")
            children.append(
                (
                    "web",
                    subprocess.Popen(
                        manage + ["runserver", f"127.0.0.1:{port}", "--noreload"],
                        cwd=settings.BASE_DIR,
                        env=env,
                        start_new_session=True,
                    ),
                )
            )
            self._wait_for_port(port, children)
            self.say(
                f"Serving the store on http://127.0.0.1:{port}/  (dashboard: /dashboard/, "
                f"staff login {DEMO_EMAIL} / {self._password()}). Ctrl-C stops everything."
            )
            while True:
                for name, proc in children:
                    if proc.poll() is not None:
                        self.stderr.write(f"The {name} process exited with code {proc.returncode}; stopping.")
                        raise SystemExit(1)
                time.sleep(0.5)
        except KeyboardInterrupt:
            self.say("Stopping ...")
        finally:
            self._stop(children)
        self.say("Stopped.")

    def _wait_for_port(self, port, children, timeout=120):
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in children:
                if proc.poll() is not None:
                    raise SystemExit(f"The {name} process exited with code {proc.returncode}.")
            with socket.socket() as sock:
                sock.settimeout(0.5)
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.3)
        raise SystemExit(f"The web server did not open port {port} within {timeout} s.")

    def _password(self):
        return os.environ.get("FASHION_DEMO_PASSWORD", DEMO_PASSWORD)

    def _ensure_staff_user(self):
        from django.contrib.auth import get_user_model

        User = get_user_model()
        if User.objects.filter(email__iexact=DEMO_EMAIL).exists():
            self.say(f"Staff user {DEMO_EMAIL} exists (password unchanged).")
            return
        User.objects.create_superuser(username="admin", email=DEMO_EMAIL, password=self._password())
        self.say(f"Created staff user {DEMO_EMAIL} with password {self._password()}")

    def _stop(self, children):
        # The children run in their own sessions, so a terminal's Ctrl-C reaches only this process, and each child
        # gets exactly one SIGINT from here: a second one could interrupt its exit while it unregisters from the
        # embedded database, leaving PostgreSQL running. SIGINT lets each child exit normally.
        for _, proc in children:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 15
        for name, proc in children:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"The {name} process did not stop in time; killing it.")
                proc.kill()
                proc.wait()
        from shop import embedded_db

        if embedded_db.current_pgdata() is not None:
            # this process is now the last user: make sure the wheel's list says so, so that it stops the server
            embedded_db.prune_dead_handles(embedded_db.current_pgdata(), include_self=True)
