"""The demo store as a shop owner starts it: one command serves the store, Ctrl-C stops everything."""

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import postgres_pids

pytestmark = pytest.mark.usefixtures("fashion_models")

ROOT = Path(__file__).resolve().parents[2]


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    resp = conn.getresponse()
    return resp.status, resp.read().decode(errors="replace")


@pytest.fixture
def var():
    """A data folder outside pytest's temporary folder: a pytest session starting meanwhile makes that one private
    again, and the embedded PostgreSQL (its own OS user when the tests run as root) then loses its data."""
    import shutil
    import tempfile

    parent = Path(tempfile.mkdtemp(prefix="fashion-ai-test-var-"))
    yield parent / "var"
    shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.worker
@pytest.mark.slow
def test_demo_serves_the_catalog_and_ctrl_c_stops_everything(tmp_path, csv_dataset, var):
    port = _free_port()
    env = dict(
        os.environ,
        FASHION_VAR_DIR=str(var),
        FASHION_AI_DATASET=str(csv_dataset),
        CELERY_BROKER_URL=os.environ.get("TEST_DEMO_BROKER_URL", "redis://127.0.0.1:6379/14"),
        DJANGO_SETTINGS_MODULE="shop.settings",
        PYTHONUNBUFFERED="1",
    )
    env.pop("DATABASE_URL", None)
    log = open(tmp_path / "demo.log", "wb")  # noqa: SIM115 - held open for the subprocess
    # its own process group, like a terminal's foreground job: Ctrl-C reaches the whole group
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "fashion_demo", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
            try:
                if _get(port, "/fashion-ai/api/health/")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the demo did not serve within 300 s"
            time.sleep(1)
        status, html = _get(port, "/catalogue/")
        assert status == 200 and "<strong>12</strong>" in html  # the 12 readable products are listed
        assert postgres_pids(var / "pgdata")
        deadline = time.monotonic() + 240
        while "Fashion AI: embedded batch of" not in (tmp_path / "demo.log").read_text():
            assert time.monotonic() < deadline, "the demo's worker indexed nothing within 240 s"
            time.sleep(1)
        time.sleep(1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
            proc.wait(90)
    assert proc.returncode == 0, (tmp_path / "demo.log").read_text()[-3000:]
    deadline = time.monotonic() + 20
    while postgres_pids(var / "pgdata") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not postgres_pids(var / "pgdata"), "PostgreSQL was left running after Ctrl-C"
    # Quiet logs: one line per batch (no second handler printing it again), none of the ONNX exporter's warnings.
    text = (tmp_path / "demo.log").read_text()
    batches = len(re.findall(r"Task oscar_fashion_ai\.embed_products\[[^\]]+\] succeeded", text))
    assert batches >= 1 and text.count("Fashion AI: embedded batch of") == batches, text[-3000:]
    for exporter_noise in ("TorchScript", "torch.onnx", "Constant folding"):
        assert exporter_noise not in text, text[-3000:]


@pytest.mark.slow
def test_sigterm_stops_the_embedded_database(tmp_path, var):
    """`kill <pid>` of a process that started the embedded PostgreSQL (here `runserver` with its autoreloader, whose
    child is then killed without a chance to unregister) stops PostgreSQL too."""
    port = _free_port()
    env = dict(os.environ, FASHION_VAR_DIR=str(var), DJANGO_SETTINGS_MODULE="shop.settings", PYTHONUNBUFFERED="1")
    env.pop("DATABASE_URL", None)
    log = open(tmp_path / "runserver.log", "wb")  # noqa: SIM115 - held open for the subprocess
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "runserver.log").read_text()[-3000:]
            try:
                _get(port, "/fashion-ai/api/health/")  # any answer (unmigrated: 503) means it serves
                break
            except OSError:
                pass
            assert time.monotonic() < deadline, "runserver did not serve within 180 s"
            time.sleep(1)
        assert postgres_pids(var / "pgdata")
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 30
    while postgres_pids(var / "pgdata") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not postgres_pids(var / "pgdata"), "PostgreSQL was left running after SIGTERM"


def test_handle_list_is_pruned_and_repaired(tmp_path):
    """An interrupted write can leave the embedded server's list of users empty; the last user re-registers itself
    so that its exit still stops PostgreSQL. Dead pids are dropped."""
    import json

    from shop.embedded_db import prune_dead_handles

    handles = tmp_path / ".handle_pids.json"
    handles.write_text("")  # truncated by a process interrupted while writing it
    prune_dead_handles(tmp_path, include_self=True)
    assert json.loads(handles.read_text()) == [os.getpid()]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    handles.write_text(json.dumps([dead.pid, os.getpid()]))
    prune_dead_handles(tmp_path)
    assert json.loads(handles.read_text()) == [os.getpid()]
    handles.write_text(json.dumps([dead.pid]))
    prune_dead_handles(tmp_path)
    assert json.loads(handles.read_text()) == []
