"""Shared helpers for benchmark scripts: machine description, result files, Django setup."""

import json
import os
import platform
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# benchmarks/run.py points FASHION_BENCH_RESULTS at its --out folder so every script writes there.
RESULTS = Path(os.environ.get("FASHION_BENCH_RESULTS") or ROOT / "benchmarks" / "results")
sys.path.insert(0, str(ROOT))


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def machine() -> dict:
    """The machine a result was measured on, with a one-line ``description`` (cores, memory, GPU)."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    info = {
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    info["description"] = (
        f"{info['cpu_count']} {info['cpu']} CPU cores"
        + (f" ({info['cpu_model']})" if info["cpu_model"] else "")
        + (f", {info['memory_gib']:.0f} GiB memory" if info["memory_gib"] else "")
        + f", {gpu or 'no GPU'}"
    )
    return info


def spread(values) -> dict:
    """Median, min, max and number of runs of repeated measurements (at least one value)."""
    values = sorted(values)
    if not values:
        raise ValueError("spread() of no values")
    return {"median": statistics.median(values), "min": values[0], "max": values[-1], "runs": len(values)}


def percentile(values, q):
    """Nearest-rank percentile ``q`` (0-100) of a non-empty sequence."""
    values = sorted(values)
    if not values:
        raise ValueError("percentile() of no values")
    idx = min(len(values) - 1, max(0, int(round(q / 100 * (len(values) - 1)))))
    return values[idx]


def write(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    return path


def repo_path(path) -> str:
    """A path relative to the repository when it lies inside it, else its file name (results carry no machine
    paths)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return Path(path).name


def django_setup(settings="shop.settings"):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings)
    import django

    django.setup()


def dataset_path(arg=None) -> Path:
    path = Path(arg or os.environ.get("FASHION_AI_DATASET") or ROOT / ".." / "shared" / "datasets" / "clothing-dataset")
    if not path.exists():
        raise SystemExit(f"data set not found at {path}; pass --source or set FASHION_AI_DATASET")
    return path


def compare_on_validation(source: Path, models: list) -> dict:
    """``benchmarks/compare_models.py --source SOURCE --split validation MODELS...`` (``models``: its remaining
    arguments, e.g. ["--photo", P, "--sketch", S]) run as a process; its printed JSON object."""
    import subprocess

    command = [sys.executable, str(ROOT / "benchmarks" / "compare_models.py"), "--source", str(source)]
    printed = subprocess.run(
        command + ["--split", "validation", *map(str, models)], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return json.loads(printed[printed.index("{") :])
