"""Every number of the Results table (README's summary, docs/BENCHMARKS.md in full) in one reproducible report.

    python benchmarks/run.py [--quick] [--gpu] [--out DIR] [--only quality,speed,scale | --skip ...]
                             [--sizes 10000,100000,1000000] [--ef-search auto,40,100,200,400]
                             [--vectors synthetic,real]

Needs the demo database with the CC0 catalog imported and indexed (`manage.py fashion_load_catalog`, then
`manage.py fashion_reindex --all --sync` or a running worker) and Redis at CELERY_BROKER_URL (the reindex
and homepage-freshness jobs start their own Celery workers). Each measurement runs as its own process:

  quality  manage.py fashion_evaluate --task image|sketch|recommend --json   (JSON passed through as is)
  speed    embed_throughput.py (CPU; with --gpu also CUDA), http_latency.py (gunicorn on 127.0.0.1, 1/4/16
           clients: sketch and photo search, similar-products API, homepage), homepage.py (server time and
           freshness), reindex_worker.py (full catalog through a real Celery worker; last of the speed jobs
           because it clears the vectors while it reindexes)
  scale    hnsw_scale.py per size and vector kind (synthetic clusters; real embeddings of both data sets, grown):
           HNSW build time and memory, index size, recall@10 and p95 latency, without and with a category filter
           (iterative_scan off / relaxed_order), for each ef_search (auto: the plugin's choice for the size)

Writes to --out (default benchmarks/results/; --quick: benchmarks/results/quick/): each job's JSON,
logs/<job>.log, report.json, report.md (the Results table of docs/BENCHMARKS.md) and PNG plots. A failing job is
recorded in the report and the other jobs still run; the exit status is 1 if any stage failed (130 if interrupted).

Profiles: --quick (a 500-product reindex, 10k vectors, fewer requests and shoppers) and the default (3 full
reindexes, 10k/100k/1M vectors); their measured run times are in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, machine
from report import render_markdown, write_plots

STAGES = ("quality", "speed", "scale")
BENCH = Path("benchmarks")

PROFILES = {
    "default": {
        "shoppers": 500,
        "embed": ["--images", "512", "--runs", "3"],
        "embed_cuda": ["--images", "2048", "--runs", "3", "--batch", "128", "--decode-threads", "8"],
        "http": [
            "--concurrency",
            "1,4,16",
            "--runs",
            "3",
            "--per-client",
            "10",
            "--min-requests",
            "40",
            "--warmup",
            "8",
        ],
        "homepage": ["--requests", "100", "--runs", "3"],
        "reindex": ["--runs", "3"],
        "sizes": "10000,100000,1000000",
        "scale": ["--queries", "200", "--runs", "3"],
    },
    "quick": {
        "shoppers": 100,
        "embed": ["--images", "128", "--runs", "2"],
        "embed_cuda": ["--images", "512", "--runs", "2", "--batch", "128", "--decode-threads", "8"],
        "http": [
            "--concurrency",
            "1,4,16",
            "--runs",
            "2",
            "--per-client",
            "2",
            "--min-requests",
            "12",
            "--warmup",
            "4",
        ],
        "homepage": ["--requests", "20", "--runs", "2"],
        "reindex": ["--runs", "1", "--limit", "500"],
        "sizes": "10000",
        "scale": ["--queries", "50", "--runs", "2"],
    },
}


class Job:
    """One measurement: a command, where its JSON lands, and how long it may take."""

    def __init__(self, stage, name, argv, timeout, stdout_json=False):
        self.stage, self.name, self.argv, self.timeout, self.stdout_json = stage, name, argv, timeout, stdout_json

    @property
    def command(self) -> str:
        argv = [("python" if a == sys.executable else a) for a in self.argv]
        return " ".join(shlex.quote(a) for a in argv)


def _relative(path: Path) -> str:
    """A path relative to the repository when it lies inside it (reports carry no machine paths)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def plan(args) -> list[Job]:
    """The jobs of the selected stages, in the order they run."""
    p = PROFILES["quick" if args.quick else "default"]
    py, manage = sys.executable, "manage.py"  # every job runs in the project root
    jobs = []
    if "quality" in args.stages:
        for task, extra in (
            ("image", []),
            ("sketch", ["--pipeline", "all"]),
            ("recommend", ["--shoppers", str(p["shoppers"])]),
        ):
            jobs.append(
                Job(
                    "quality",
                    f"evaluate_{task}",
                    [py, manage, "fashion_evaluate", "--task", task, *extra, "--json"],
                    1200,
                    stdout_json=True,
                )
            )
        # the generalisation protocols (in-domain, cross-domain, unseen classes) of the shipped photo model on the
        # test splits, beside the untrained ImageNet features measured the same way (no choice is made on them)
        jobs.append(
            Job(
                "quality",
                "generalisation",
                [
                    py,
                    str(BENCH / "generalisation.py"),
                    "--split",
                    "test",
                    "--photo",
                    "oscar_fashion_ai/weights/lite0-fashion.safetensors",
                ],
                2400,
                stdout_json=True,
            )
        )
    if "speed" in args.stages:
        jobs.append(
            Job(
                "speed",
                "embed_throughput",
                [py, str(BENCH / "embed_throughput.py"), "--device", "cpu", *p["embed"]],
                600,
            )
        )
        if args.gpu:
            jobs.append(
                Job(
                    "speed",
                    "embed_throughput_cuda",
                    [
                        py,
                        str(BENCH / "embed_throughput.py"),
                        "--device",
                        "cuda",
                        "--runtime",
                        "torch",
                        "--name",
                        "embed_throughput_cuda",
                        *p["embed_cuda"],
                    ],
                    600,
                )
            )
        jobs.append(Job("speed", "http_latency", [py, str(BENCH / "http_latency.py"), *p["http"]], 1200))
        jobs.append(Job("speed", "homepage", [py, str(BENCH / "homepage.py"), *p["homepage"]], 900))
        jobs.append(Job("speed", "reindex_worker", [py, str(BENCH / "reindex_worker.py"), *p["reindex"]], 1800))
    if "scale" in args.stages:
        sizes = [int(s) for s in (args.sizes or p["sizes"]).split(",") if s.strip()]
        for kind in args.vectors:
            for rows in sizes:
                # The HNSW build (m=24, ef_construction=100) took 777 s for 1M vectors on the 2-core machine
                # while other work ran; about 4x margin per size.
                timeout = int(300 + rows * 0.003)
                name = f"hnsw_scale_{rows}" + ("" if kind == "synthetic" else f"_{kind}")
                jobs.append(
                    Job(
                        "scale",
                        name,
                        [
                            py,
                            str(BENCH / "hnsw_scale.py"),
                            "--rows",
                            str(rows),
                            "--vectors",
                            kind,
                            "--ef-search",
                            args.ef_search,
                            "--modes",
                            "unfiltered,filter_off,filter_relaxed",
                            *p["scale"],
                            "--statement-timeout",
                            str(timeout - 60),
                            "--name",
                            name,
                        ],
                        timeout,
                    )
                )
    return jobs


def stdout_json(text: str) -> dict:
    """The JSON a command printed: the whole output if it is one JSON object, else its JSON-object lines (one:
    that object; several, e.g. one per sketch mode: {"outputs": [...]}), skipping any logging around them."""
    text = text.strip()
    try:
        whole = json.loads(text)
        if isinstance(whole, dict):
            return whole
    except json.JSONDecodeError:
        pass
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    if not found:
        raise ValueError("no JSON object in the output")
    return found[0] if len(found) == 1 else {"outputs": found}


def stop_group(proc: subprocess.Popen, grace=20):
    """Stop a job and everything it started (its own process group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def run_job(job: Job, out: Path, env: dict) -> dict:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{job.name}.log"
    json_path = out / f"{job.name}.json"
    json_path.unlink(missing_ok=True)
    entry = {"command": job.command, "log": str(log_path.relative_to(out))}
    print(f"==> [{job.stage}] {job.name}: {job.command}", flush=True)
    started = time.perf_counter()
    with open(log_path, "w") as log:
        stdout = subprocess.PIPE if job.stdout_json else log
        proc = subprocess.Popen(
            job.argv, cwd=ROOT, env=env, stdout=stdout, stderr=log, text=True, start_new_session=True
        )
        try:
            captured, _ = proc.communicate(timeout=job.timeout)
        except subprocess.TimeoutExpired:
            stop_group(proc)
            captured = None
            entry.update(status="failed", error=f"timed out after {job.timeout} s")
        except KeyboardInterrupt:
            stop_group(proc)
            entry.update(status="interrupted", error="interrupted", seconds=round(time.perf_counter() - started, 1))
            raise JobInterrupted(entry) from None
        if captured:
            log.write(captured)
    entry["seconds"] = round(time.perf_counter() - started, 1)
    if "status" not in entry:
        try:
            if proc.returncode != 0:
                raise RuntimeError(f"exit status {proc.returncode}")
            if job.stdout_json:
                entry["result"] = stdout_json(captured or "")
                json_path.write_text(json.dumps(entry["result"], indent=2) + "\n")
            else:
                entry["result"] = json.loads(json_path.read_text())
            entry["status"] = "ok"
        except (RuntimeError, ValueError, OSError) as exc:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            entry.update(status="failed", error="\n".join([str(exc), *tail]))
    if entry["status"] == "ok" and job.name == "reindex_worker" and not entry["result"].get("completed", True):
        entry.update(status="failed", error="the reindex did not complete within its timeout")
    print(
        f"    {entry['status']} in {entry['seconds']} s"
        + (f": {entry.get('error')}" if entry["status"] != "ok" else ""),
        flush=True,
    )
    return entry


class JobInterrupted(Exception):
    def __init__(self, entry):
        super().__init__("interrupted")
        self.entry = entry


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes and fewer requests (under 5 minutes)")
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="let the jobs use CUDA (torch picks it) and add embedding throughput on CUDA; without "
        "it CUDA is hidden so every figure is the CPU configuration",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default benchmarks/results/ (--quick: benchmarks/results/quick/, so a quick run never "
        "overwrites the published figures)",
    )
    parser.add_argument("--only", default=None, help=f"comma-separated stages from {', '.join(STAGES)}")
    parser.add_argument("--skip", default="", help="comma-separated stages to skip")
    parser.add_argument(
        "--sizes", default=None, help="vector counts for the scale stage (default 10000,100000,1000000; --quick 10000)"
    )
    parser.add_argument(
        "--ef-search",
        default="auto,40,100,200,400",
        help="hnsw.ef_search values for the scale stage (auto: the plugin's choice per query)",
    )
    parser.add_argument(
        "--vectors",
        default="synthetic,real",
        help="vector kinds of the scale stage (synthetic clusters; real: the model's embeddings of "
        "both data sets, grown; see benchmarks/real_vectors.py)",
    )
    args = parser.parse_args(argv)
    only = [s.strip() for s in (args.only or ",".join(STAGES)).split(",") if s.strip()]
    skip = [s.strip() for s in args.skip.split(",") if s.strip()]
    unknown = set(only + skip) - set(STAGES)
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(sorted(unknown))}; use {', '.join(STAGES)}")
    args.stages = [s for s in STAGES if s in only and s not in skip]
    args.vectors = [v.strip() for v in args.vectors.split(",") if v.strip()]
    if set(args.vectors) - {"synthetic", "real"}:
        parser.error("--vectors takes synthetic and/or real")
    if args.out is None:
        args.out = ROOT / "benchmarks" / "results" / ("quick" if args.quick else "")
    return args


def summarise(stages: dict) -> dict:
    for stage in stages.values():
        if stage.get("status") == "skipped":
            continue
        statuses = [j["status"] for j in stage["jobs"].values()]
        if not statuses or "interrupted" in statuses:
            stage["status"] = "interrupted"  # the run was stopped before or during this stage
        else:
            stage["status"] = "ok" if all(s == "ok" for s in statuses) else "failed"
        stage["seconds"] = round(sum(j.get("seconds", 0) for j in stage["jobs"].values()), 1)
    return stages


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM: stop the current job's process group, then write the partial report


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, FASHION_BENCH_RESULTS=str(out), PYTHONUNBUFFERED="1")
    if not args.gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the default run measures the CPU configuration, even on a GPU machine
    command = "python benchmarks/run.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    profile = "quick" if args.quick else "default"
    stages = {
        s: ({"status": "pending", "jobs": {}} if s in args.stages else {"status": "skipped", "jobs": {}})
        for s in STAGES
    }
    started = time.perf_counter()
    load_start = os.getloadavg()
    date = datetime.now(UTC).isoformat(timespec="seconds")
    interrupted = False
    for job in plan(args):
        try:
            stages[job.stage]["jobs"][job.name] = run_job(job, out, env)
        except JobInterrupted as exc:
            stages[job.stage]["jobs"][job.name] = exc.entry
            interrupted = True
            break
    summarise(stages)
    notes = [
        "Quality: deterministic (fixed split and seed), one run each; the fashion_evaluate JSON is kept as printed.",
        "Latency figures have a warm-up; HTTP load uses closed-loop clients on the same 2 cores as the server.",
    ]
    if "scale" in args.stages and not args.sizes and not args.quick:
        notes.append(
            "Scale sizes 10k/100k/1M: a 1M-vector HNSW build fits the 40-minute budget on 2 cores "
            "(see docs/BENCHMARKS.md); pass --sizes to change them."
        )
    report = {
        "benchmark": "report",
        "date": date,
        "machine": machine(),
        "command": command,
        "profile": profile,
        "options": {
            "quick": args.quick,
            "gpu": args.gpu,
            "stages": args.stages,
            "sizes": args.sizes,
            "ef_search": args.ef_search,
            "vectors": args.vectors,
            "out": _relative(out),
        },
        "wall_s": round(time.perf_counter() - started, 1),
        # 1-minute load average before and after: the figures are only comparable on an otherwise idle machine.
        "load_average": {"start": round(load_start[0], 2), "end": round(os.getloadavg()[0], 2)},
        "ok": not interrupted and all(s["status"] in {"ok", "skipped"} for s in stages.values()),
        "stages": stages,
        "notes": notes,
        "plots": [],
    }
    try:
        report["plots"] = write_plots(report, out)
    except ImportError:
        report["notes"].append("Plots skipped: matplotlib is not installed (pip install -r requirements-dev.txt).")
    except Exception as exc:  # noqa: BLE001 - a plot must not lose the report
        report["notes"].append(f"Plots failed: {exc!r}")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(render_markdown(report))
    print(
        f"==> report: {out / 'report.md'} ({report['wall_s']} s); "
        + ", ".join(f"{k} {v['status']}" for k, v in stages.items()),
        flush=True,
    )
    if interrupted:
        return 130
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
