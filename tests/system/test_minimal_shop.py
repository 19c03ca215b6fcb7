"""A second shop: a minimal Oscar project (tests/minimal_shop/, not the demo) with the plugin installed from a wheel
built from this checkout, run outside the repository with its own embedded PostgreSQL and a real Celery worker.

It follows README's "Installing into your own Oscar shop" (checked line by line below), and starts with the
plugin's apps listed after Oscar's apps and before them.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.helpers import postgres_pids

pytestmark = pytest.mark.usefixtures("fashion_models")

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "tests" / "minimal_shop"


def _run(args, cwd, env, timeout=600):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The plugin's wheel, built from the files a source distribution holds (not from the demo project)."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "oscar_fashion_ai", src / "oscar_fashion_ai", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            str(src),
            "-w",
            str(work / "dist"),
        ],
        cwd=work,
        env=dict(os.environ),
    )
    (built,) = (work / "dist").glob("oscar_fashion_ai-*.whl")
    return built


@pytest.fixture(scope="module")
def shop(wheel):
    """The minimal shop in a folder of its own, with the wheel installed next to it (pip --target).

    Not under pytest's temporary folder: a pytest session starting meanwhile makes that folder private again,
    and the embedded PostgreSQL (running as its own OS user when the tests run as root) then loses its data."""
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="fashion-ai-minimal-shop-"))
    yield from _shop(wheel, work)
    shutil.rmtree(work, ignore_errors=True)


def _shop(wheel, work):
    site = work / "site-packages"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(site),
            str(wheel),
        ],
        cwd=work,
        env=dict(os.environ),
    )
    project = work / "project"
    shutil.copytree(SHOP, project, ignore=shutil.ignore_patterns("__pycache__"))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FASHION_AI", "DJANGO", "CELERY", "DATABASE_URL", "PYTHONPATH"))
    }
    broker = os.environ.get("TEST_DEMO_BROKER_URL", "redis://127.0.0.1:6379/14")
    env.update(
        PYTHONPATH=str(site),
        DJANGO_SETTINGS_MODULE="minimal_shop.settings",
        CELERY_BROKER_URL=broker,
        PYTHONUNBUFFERED="1",
    )
    import redis

    redis.Redis.from_url(broker).flushdb()  # this broker database belongs to the tests
    yield project, env


@pytest.mark.slow
def test_the_wheel_holds_the_plugin_only_with_its_licence(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "oscar_fashion_ai/weights/lite0-fashion.safetensors" in names
    for template in (
        "oscar/catalogue/detail.html",
        "oscar/partials/search.html",
        "oscar/customer/profile/profile.html",
    ):
        assert f"oscar_fashion_ai/oscar_templates/{template}" in names
    assert not [n for n in names if n.endswith(".png")], "docs-only images are not shipped"
    assert not [n for n in names if n.split("/")[0] in {"shop", "tests", "benchmarks", "templates"}]
    assert not [n for n in names if n.endswith(("fashion_demo.py", "embedded_db.py"))]
    code = "\n".join(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith(".py"))
    for demo_only in ("admin@example.com", "fashion-demo", '"shared" / "datasets"', "../shared", "-A shop"):
        assert demo_only not in code, f"demo-only {demo_only!r} in the installable package"


@pytest.mark.worker
@pytest.mark.slow
def test_minimal_shop_from_the_wheel_indexes_searches_and_recommends(shop):
    project, env = shop
    pgdata = project / "var" / "pgdata"
    _run([sys.executable, "manage.py", "migrate", "--noinput"], project, env)
    check = _run([sys.executable, "manage.py", "check"], project, env)
    assert "no issues" in check.stdout
    log_path = project / "worker.log"
    log = open(log_path, "w")  # noqa: SIM115 - held open for the worker
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "minimal_shop",
            "worker",
            "--pool=solo",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=project,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while " ready." not in log_path.read_text():
            assert worker.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the worker did not start within 180 s"
            time.sleep(0.5)
        proc = _run([sys.executable, "exercise.py", "shop"], project, env, timeout=900)
    finally:
        worker.send_signal(signal.SIGTERM)  # warm shutdown, as a process manager stops it
        worker.wait(60)
        log.close()
    out = json.loads(proc.stdout.rsplit("RESULT ", 1)[1])
    # the plugin came from the wheel, not from this checkout
    assert Path(out["package"]).is_relative_to(Path(env["PYTHONPATH"])), out["package"]
    assert out["indexed_by_worker"] == 8
    page = out["product_page"]
    assert page["status"] == 200 and page["similar_section"] and page["sketch_link"] and page["photo_link"]
    assert page["similar_titles"] and all(t.startswith("Shirts") for t in page["similar_titles"][:3])
    assert out["dashboard"] == {"status": 200, "coverage": True, "menu_link": True}
    admin = out["admin"]
    assert admin["changelist"] == 200 and admin["offered"] and admin["post"] == 302 and admin["queued"]
    assert admin["admin_class"] == "oscar.apps.catalogue.admin.ProductAdmin"  # Oscar's own, not re-registered
    assert out["photo_api"]["status"] == 200 and out["photo_api"]["top"] == [True, True, True]
    assert out["sketch_api"]["status"] == 200 and out["sketch_api"]["results"] > 0
    assert out["sketch_api"]["generated_image"].startswith("data:image/png;base64")
    assert out["bot_events"] == 0 and out["shopper_events"] == 2  # the first view of a browser only opens a session
    assert out["recommendations"] == {"source": "personal", "top_is_shirt": True}
    assert out["homepage"] == {"status": 200, "personal": True}
    assert out["profile_forget_button"]
    assert out["forget"]["status"] == 302 and out["forget"]["location"] == "/" and out["forget"]["profiles_left"] == 0
    assert out["doctor_ok"], "\n".join(out["doctor"]) + out.get("doctor_error", "")
    assert not [line for line in out["doctor"] if "[FAIL]" in line]
    # files go under the project's data folder by default, not a shared temporary folder
    assert list((project / "var" / "fashion-ai" / "onnx").glob("*.onnx"))
    # quiet logs: one line per batch, no exporter warnings
    text = log_path.read_text()
    batches = len(re.findall(r"Task oscar_fashion_ai\.embed_products\[[^\]]+\] succeeded", text))
    assert batches >= 1 and text.count("Fashion AI: embedded batch of") == batches, text[-3000:]
    for exporter_noise in ("TorchScript", "torch.onnx", "Constant folding"):
        assert exporter_noise not in text, text[-3000:]

    # The same shop with the plugin's apps listed before Oscar's: starts, and the admin action is there.
    first = dict(env, MINIMAL_SHOP_PLUGIN_FIRST="1")
    assert "no issues" in _run([sys.executable, "manage.py", "check"], project, first).stdout
    again = json.loads(_run([sys.executable, "exercise.py", "admin"], project, first).stdout.rsplit("RESULT ", 1)[1])
    assert again["apps"][0] == "oscar_fashion_ai.apps.FashionAIConfig"
    assert again["admin"]["admin_class"] == "oscar.apps.catalogue.admin.ProductAdmin"
    assert again["admin"]["offered"] and again["admin"]["post"] == 302 and again["admin"]["queued"]

    deadline = time.monotonic() + 20
    while postgres_pids(pgdata) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not postgres_pids(pgdata), "the shop's embedded PostgreSQL was left running"


def _readme_install_section():
    text = (ROOT / "README.md").read_text()
    start = text.index("## Installing into your own Oscar shop")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_readme_install_steps_are_the_minimal_shop():
    """Every line of Python the README tells a shop owner to write is in the minimal shop the test above runs."""
    section = _readme_install_section()
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) >= 5
    shop_lines = set()
    for path in SHOP.rglob("*.py"):
        if path.name != "exercise.py":
            shop_lines.update(line.split("  # ")[0].strip() for line in path.read_text().splitlines())
    missing = []
    for block in blocks:
        for line in block.replace("yourshop", "minimal_shop").splitlines():
            line = line.split("  # ")[0].strip()
            if line and not line.startswith(("#", "...")) and line not in shop_lines:
                missing.append(line)
    assert not missing, f"README install lines not in tests/minimal_shop/: {missing}"
    # and the commands it names exist
    for command in re.findall(r"manage\.py (fashion_\w+)", section):
        assert (ROOT / "oscar_fashion_ai" / "management" / "commands" / f"{command}.py").exists(), command
