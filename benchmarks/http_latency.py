"""HTTP latency of the storefront's search endpoints against a real server process on 127.0.0.1.

    python benchmarks/http_latency.py [--concurrency 1,4,16] [--runs 3] [--per-client 10] [--min-requests 40]
                                      [--endpoints sketch,photo,similar,homepage] [--server-workers 2]
                                      [--compare-root OTHER_CHECKOUT [--compare-label release]] [--out NAME]

Starts gunicorn (`shop.wsgi`, sync workers, one inference thread each) on a free port of 127.0.0.1 with
DEBUG off and the search rate limits disabled, waits for /fashion-ai/api/health/, warms every worker up,
then for each endpoint and concurrency level runs `--runs` rounds of closed-loop clients (threads, each
with its own http.client connection; each request waits for the previous one of its thread). A round
sends max(--min-requests, --per-client x concurrency) requests and stops by itself (also after
--round-timeout seconds). Reported per level: p50/p95 latency and throughput, median over rounds with
min/max. Needs the catalog imported and indexed. The load client runs on the same 2 cores as the server.

Endpoints:
  sketch    POST /fashion-ai/api/search/sketch/  JSON, synthetic XDoG drawings of test-split photos (400 px)
  photo     POST /fashion-ai/api/search/photo/   multipart, test-split photos of the data set
  similar   GET  /fashion-ai/api/products/<id>/similar/?k=10
  homepage  GET  /fashion-ai/  anonymous shopper ("Popular right now")
"""

import argparse
import base64
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.cookies import SimpleCookie
from pathlib import Path

from _common import ROOT, dataset_path, django_setup, percentile, spread, write

ENDPOINTS = ("sketch", "photo", "similar", "homepage")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, workers: int, log_path, root=ROOT) -> subprocess.Popen:
    """gunicorn serving the code under ``root`` (another checkout for --compare-root) on this checkout's database,
    media and search index (``FASHION_VAR_DIR``)."""
    env = dict(
        os.environ,
        DJANGO_DEBUG="0",
        FASHION_AI_SKETCH_RATE_LIMIT="",
        FASHION_AI_PHOTO_RATE_LIMIT="",
        FASHION_AI_TORCH_THREADS=os.environ.get("FASHION_AI_TORCH_THREADS", "1"),
        FASHION_VAR_DIR=os.environ.get("FASHION_VAR_DIR", str(ROOT / "var")),
    )
    log = open(log_path, "ab")  # noqa: SIM115 - the server writes to it after this returns
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "shop.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--timeout",
            "120",
            "--log-level",
            "warning",
        ],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop_server(proc: subprocess.Popen):
    if proc.poll() is None:
        proc.terminate()  # gunicorn: graceful shutdown on SIGTERM
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_ready(port, proc, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with code {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/fashion-ai/api/health/")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the server on port {port} did not become ready within {timeout} s")


def csrf_cookie(port) -> tuple[str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/fashion-ai/search/sketch/")
    resp = conn.getresponse()
    resp.read()
    cookie = SimpleCookie()
    for header in resp.headers.get_all("Set-Cookie") or []:
        cookie.load(header)
    if "csrftoken" not in cookie:
        raise SystemExit("no csrftoken cookie from /fashion-ai/search/sketch/")
    token = cookie["csrftoken"].value
    return f"csrftoken={token}", token


def multipart(fields: dict, files: dict) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, content, ctype) in files.items():
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {ctype}\r\n\r\n".encode()
        )
        out.write(content + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def build_requests(endpoints, cookie, token, queries):
    """For each endpoint, a list of (method, path, body, headers) cycled through by the clients."""
    from oscar.core.loading import get_model
    from PIL import Image

    from oscar_fashion_ai.ml import datasets
    from oscar_fashion_ai.ml.evaluate import synthetic_sketch
    from oscar_fashion_ai.models import ProductEmbedding

    post_headers = {"Cookie": cookie, "X-CSRFToken": token}
    out = {}
    photos = []
    if {"sketch", "photo"} & set(endpoints):
        records = [r for r in datasets.labelled_records(dataset_path()) if datasets.is_test(r.source_id)]
        photos = [r.path for r in records[:queries]]
    if "photo" in endpoints:
        reqs = []
        for path in photos:
            body, ctype = multipart({"k": "12"}, {"image": (path.name, path.read_bytes(), "image/jpeg")})
            reqs.append(("POST", "/fashion-ai/api/search/photo/", body, {**post_headers, "Content-Type": ctype}))
        out["photo"] = reqs
    if "sketch" in endpoints:
        reqs = []
        for path in photos:
            with Image.open(path) as img:
                drawing = synthetic_sketch(img.convert("RGB"), 160).convert("L").resize((400, 400))
            buf = io.BytesIO()
            drawing.save(buf, "PNG")
            body = json.dumps(
                {"sketch": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(), "k": 12}
            ).encode()
            reqs.append(
                ("POST", "/fashion-ai/api/search/sketch/", body, {**post_headers, "Content-Type": "application/json"})
            )
        out["sketch"] = reqs
    if "similar" in endpoints:
        ids = list(
            ProductEmbedding.objects.filter(status="indexed")
            .order_by("product_id")
            .values_list("product_id", flat=True)[: queries * 20 : 20]
        )
        out["similar"] = [("GET", f"/fashion-ai/api/products/{pk}/similar/?k=10", None, {}) for pk in ids]
    if "homepage" in endpoints:
        out["homepage"] = [("GET", "/fashion-ai/", None, {})]
    Product = get_model("catalogue", "Product")
    for name, reqs in out.items():
        if not reqs:
            raise SystemExit(f"no requests for {name}: is the catalog ({Product.objects.count()} products) indexed?")
    return out


def run_round(port, requests, concurrency, total, timeout):
    """Closed-loop load: `concurrency` threads share `total` requests. Returns (latencies_ms, errors, wall_s)."""
    lock = threading.Lock()
    state = {"issued": 0}
    latencies, errors = [], []
    deadline = time.monotonic() + timeout

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                if state["issued"] >= total or time.monotonic() > deadline:
                    break
                i = state["issued"]
                state["issued"] += 1
            method, path, body, headers = requests[i % len(requests)]
            started = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    (latencies.append(elapsed) if resp.status == 200 else errors.append(f"HTTP {resp.status}"))
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    errors.append(type(exc).__name__)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 130)
    return latencies, errors, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--per-client", type=int, default=10, help="requests per client thread per round")
    parser.add_argument("--min-requests", type=int, default=40, help="at least this many requests per round")
    parser.add_argument("--warmup", type=int, default=8, help="warm-up requests per endpoint (at concurrency 4)")
    parser.add_argument("--queries", type=int, default=32, help="distinct query images / products")
    parser.add_argument("--server-workers", type=int, default=2)
    parser.add_argument("--round-timeout", type=float, default=120)
    parser.add_argument("--port", type=int, default=0, help="0 = a free port")
    parser.add_argument(
        "--compare-root",
        type=Path,
        default=None,
        help="another checkout (e.g. a `git worktree` of the current release) served side by side on "
        "the same database: each round runs on both servers in turn, and the ratios are reported",
    )
    parser.add_argument("--compare-label", default="release")
    parser.add_argument("--out", default="http_latency", help="result file name under benchmarks/results")
    args = parser.parse_args()
    if args.compare_root is not None:
        return compare(args)
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    unknown = set(endpoints) - set(ENDPOINTS)
    if unknown:
        parser.error(f"unknown endpoint(s) {', '.join(sorted(unknown))}")
    django_setup()
    from _common import RESULTS

    (RESULTS / "logs").mkdir(parents=True, exist_ok=True)
    port = args.port or free_port()
    proc = start_server(port, args.server_workers, RESULTS / "logs" / "http_latency.server.log")
    results = {}
    try:
        t = time.perf_counter()
        wait_ready(port, proc)
        startup_s = time.perf_counter() - t
        cookie, token = csrf_cookie(port)
        requests = build_requests(endpoints, cookie, token, args.queries)
        for name in endpoints:
            _, warm_errors, _ = run_round(port, requests[name], 4, max(args.warmup, 1), args.round_timeout)
            per_level = {}
            for c in levels:
                total = max(args.min_requests, args.per_client * c)
                p50, p95, rps, ok, errors = [], [], [], 0, []
                for _ in range(args.runs):
                    latencies, errs, wall = run_round(port, requests[name], c, total, args.round_timeout)
                    errors += errs
                    ok += len(latencies)
                    if latencies:
                        p50.append(percentile(latencies, 50))
                        p95.append(percentile(latencies, 95))
                        rps.append(len(latencies) / wall)
                if not p50:
                    raise SystemExit(f"{name} at concurrency {c}: every request failed ({errors[:3]})")
                per_level[str(c)] = {
                    "p50_ms": spread(p50),
                    "p95_ms": spread(p95),
                    "requests_per_s": spread(rps),
                    "ok": ok,
                    "errors": len(errors),
                    "error_kinds": sorted(set(errors))[:5],
                    "requests_per_round": total,
                }
                print(
                    f"{name} c={c}: p50 {per_level[str(c)]['p50_ms']['median']:.1f} ms, "
                    f"p95 {per_level[str(c)]['p95_ms']['median']:.1f} ms, "
                    f"{per_level[str(c)]['requests_per_s']['median']:.1f} req/s, {len(errors)} errors",
                    flush=True,
                )
            results[name] = {"warmup_errors": len(warm_errors), "levels": per_level}
    finally:
        stop_server(proc)
    write(
        args.out,
        {
            "command": f"python benchmarks/http_latency.py --concurrency {args.concurrency} "
            f"--endpoints {args.endpoints} "
            f"--runs {args.runs} --per-client {args.per_client} --min-requests {args.min_requests} "
            f"--server-workers {args.server_workers}",
            "server": f"gunicorn shop.wsgi, {args.server_workers} sync workers, DEBUG off, rate limits off",
            "address": f"127.0.0.1:{port}",
            "server_startup_s": round(startup_s, 1),
            "endpoints": results,
            "note": "closed-loop clients (threads + http.client) on the same machine as the server",
        },
    )


def compare(args):
    """Two servers (this checkout and --compare-root) on one database; for each endpoint and level, rounds alternate
    between them (``this, other, this, other, ...``) so both see the same machine load."""
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    unknown = set(endpoints) - set(ENDPOINTS)
    if unknown:
        raise SystemExit(f"unknown endpoint(s) {', '.join(sorted(unknown))}")
    django_setup()
    from _common import RESULTS

    (RESULTS / "logs").mkdir(parents=True, exist_ok=True)
    other_root = args.compare_root.resolve()
    label = "this checkout"
    servers = {}
    try:
        for name, root in ((label, ROOT), (args.compare_label, other_root)):
            port = free_port()
            log = RESULTS / "logs" / f"http_latency.{'this' if root == ROOT else 'other'}.server.log"
            servers[name] = (port, start_server(port, args.server_workers, log, root=root))
        for port, proc in servers.values():
            wait_ready(port, proc)
        requests = {}
        for name, (port, _) in servers.items():
            cookie, token = csrf_cookie(port)
            requests[name] = build_requests(endpoints, cookie, token, args.queries)
        results = {}
        for endpoint in endpoints:
            for name, (port, _) in servers.items():
                run_round(port, requests[name][endpoint], 4, max(args.warmup, 1), args.round_timeout)
            per_level = {}
            for c in levels:
                total = max(args.min_requests, args.per_client * c)
                rows = {name: {"p50": [], "p95": [], "rps": [], "ok": 0, "errors": []} for name in servers}
                for run in range(args.runs):
                    order = list(servers.items())
                    for name, (port, _) in order if run % 2 == 0 else order[::-1]:  # who goes first alternates
                        latencies, errs, wall = run_round(port, requests[name][endpoint], c, total, args.round_timeout)
                        row = rows[name]
                        row["errors"] += errs
                        row["ok"] += len(latencies)
                        if latencies:
                            row["p50"].append(percentile(latencies, 50))
                            row["p95"].append(percentile(latencies, 95))
                            row["rps"].append(len(latencies) / wall)
                level = {}
                for name, row in rows.items():
                    if not row["p50"]:
                        raise SystemExit(
                            f"{endpoint} at concurrency {c} on {name}: every request failed ({row['errors'][:3]})"
                        )
                    level[name] = {
                        "p50_ms": spread(row["p50"]),
                        "p95_ms": spread(row["p95"]),
                        "requests_per_s": spread(row["rps"]),
                        "ok": row["ok"],
                        "errors": len(row["errors"]),
                        "error_kinds": sorted(set(row["errors"]))[:5],
                    }
                ratio = level[label]["p95_ms"]["median"] / level[args.compare_label]["p95_ms"]["median"]
                level["p95_ratio"] = round(ratio, 3)
                per_level[str(c)] = level
                print(
                    f"{endpoint} c={c}: p95 {level[label]['p95_ms']['median']:.1f} ms ({label}) vs "
                    f"{level[args.compare_label]['p95_ms']['median']:.1f} ms ({args.compare_label}): "
                    f"x{ratio:.2f}",
                    flush=True,
                )
            results[endpoint] = per_level
    finally:
        for _, proc in servers.values():
            stop_server(proc)
    commit = subprocess.run(
        ["git", "-C", str(other_root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    write(
        args.out,
        {
            "command": f"python benchmarks/http_latency.py --compare-root <worktree of {args.compare_label}> "
            f"--concurrency {args.concurrency} --endpoints {args.endpoints} --runs {args.runs} "
            f"--per-client {args.per_client} --min-requests {args.min_requests} "
            f"--server-workers {args.server_workers}",
            "servers": f"gunicorn shop.wsgi, {args.server_workers} sync workers each, DEBUG off, rate limits off, "
            f"one database; rounds alternate between the two",
            "compared": {label: "this checkout", args.compare_label: f"commit {commit}"},
            "endpoints": results,
            "note": "closed-loop clients (threads + http.client) on the same machine as both servers",
        },
    )


if __name__ == "__main__":
    main()
