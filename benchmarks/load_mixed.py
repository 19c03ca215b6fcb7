"""Mixed storefront traffic for a fixed time against a real server process and a running Celery worker.

    python benchmarks/load_mixed.py [--duration 600] [--clients 4] [--server-workers 2]

Starts gunicorn (`shop.wsgi`, DEBUG off, search rate limits off) on a free port of 127.0.0.1 and a
`celery -A shop worker` (the shoppers' product views queue preference updates), then runs `--clients`
closed-loop shoppers for `--duration` seconds. Each shopper keeps its own cookies (session, CSRF) and picks
requests at random with these weights: catalogue browsing 30 %, product pages 30 %, homepage 15 %, sketch search
10 %, photo search 10 %, similar-products API 5 %. Reported: requests served per endpoint, p50/p95 latency,
4xx and error counts (an error is a 5xx or a failed connection; target 0), and the server's memory (resident
set of the gunicorn master and its workers) after the warm-up and at the end (target: growth under 10 %).
Needs the catalog imported and indexed; stops by itself and targets 127.0.0.1 only.
"""

import argparse
import http.client
import os
import random
import subprocess
import sys
import threading
import time
from http.cookies import SimpleCookie

from _common import ROOT, django_setup, percentile, write
from http_latency import build_requests, csrf_cookie, free_port, start_server, stop_server, wait_ready

WEIGHTS = {"browse": 30, "product": 30, "homepage": 15, "sketch": 10, "photo": 10, "similar": 5}


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def server_rss_mib(master_pid: int) -> float:
    """Resident memory of the gunicorn master and its direct children, in MiB."""
    pids = [master_pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == master_pid:
                        pids.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return sum(rss_kib(p) for p in pids) / 1024


def start_worker(log_path) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - the worker writes to it after this returns
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "shop",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "WARNING",
            "-n",
            f"load-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=dict(os.environ, FASHION_AI_TORCH_THREADS="1"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def product_paths(n):
    from oscar.core.loading import get_model

    Product = get_model("catalogue", "Product")
    return [p.get_absolute_url() for p in Product.objects.filter(is_public=True).order_by("pk")[: n * 10 : 10]]


def shopper(port, plan, deadline, results, lock, seed):
    rng = random.Random(seed)
    names = list(WEIGHTS)
    weights = [WEIGHTS[n] for n in names]
    cookies = SimpleCookie()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", "/fashion-ai/search/sketch/")  # a shopper lands on a page first: session and CSRF cookies
    resp = conn.getresponse()
    resp.read()
    for header in resp.headers.get_all("Set-Cookie") or []:
        cookies.load(header)
    while time.monotonic() < deadline:
        name = rng.choices(names, weights)[0]
        method, path, body, headers = rng.choice(plan[name])
        headers = dict(headers)
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v.value}" for k, v in cookies.items())
            if "csrftoken" in cookies and method == "POST":
                headers["X-CSRFToken"] = cookies["csrftoken"].value
        started = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            for header in resp.headers.get_all("Set-Cookie") or []:
                cookies.load(header)
            status = resp.status
        except (OSError, http.client.HTTPException) as exc:
            status = type(exc).__name__
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        elapsed = (time.perf_counter() - started) * 1000
        with lock:
            results.append((name, status, elapsed))
    conn.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--server-workers", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=20, help="seconds of traffic before memory is first read")
    args = parser.parse_args()
    django_setup()
    from _common import RESULTS

    (RESULTS / "logs").mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = start_server(port, args.server_workers, RESULTS / "logs" / "load_mixed.server.log")
    worker = start_worker(RESULTS / "logs" / "load_mixed.worker.log")
    try:
        wait_ready(port, server)
        cookie, token = csrf_cookie(port)
        plan = build_requests(["sketch", "photo", "similar", "homepage"], cookie, token, 32)
        plan["browse"] = [("GET", f"/catalogue/?page={n}", None, {}) for n in range(1, 21)]
        plan["product"] = [("GET", path, None, {}) for path in product_paths(200)]
        for name in ("sketch", "photo"):  # each shopper sends its own CSRF cookie and token
            plan[name] = [
                (m, p, b, {k: v for k, v in h.items() if k not in ("Cookie", "X-CSRFToken")})
                for m, p, b, h in plan[name]
            ]
        lock = threading.Lock()

        def run(seconds, results, seed):
            deadline = time.monotonic() + seconds
            threads = [
                threading.Thread(target=shopper, args=(port, plan, deadline, results, lock, seed + i), daemon=True)
                for i in range(args.clients)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(seconds + 150)

        run(args.warmup, [], 1000)
        memory_start = server_rss_mib(server.pid)
        results = []
        started = time.perf_counter()
        run(args.duration, results, 0)
        wall = time.perf_counter() - started
        memory_end = server_rss_mib(server.pid)
    finally:
        stop_server(server)
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    per_endpoint = {}
    for name in WEIGHTS:
        rows = [r for r in results if r[0] == name]
        ok = [ms for _, s, ms in rows if s == 200]
        per_endpoint[name] = {
            "requests": len(rows),
            "ok": len(ok),
            "client_errors_4xx": sum(1 for _, s, _ in rows if isinstance(s, int) and 400 <= s < 500),
            "errors": sum(1 for _, s, _ in rows if not isinstance(s, int) or s >= 500),
            "p50_ms": round(percentile(ok, 50), 1) if ok else None,
            "p95_ms": round(percentile(ok, 95), 1) if ok else None,
        }
    errors = sum(e["errors"] for e in per_endpoint.values())
    write(
        "load_mixed",
        {
            "command": f"python benchmarks/load_mixed.py --duration {args.duration:g} --clients {args.clients} "
            f"--server-workers {args.server_workers}",
            "server": f"gunicorn shop.wsgi, {args.server_workers} sync workers, DEBUG off, rate limits off; "
            "celery worker (solo) running",
            "duration_s": round(wall, 1),
            "clients": args.clients,
            "requests": len(results),
            "requests_per_s": round(len(results) / wall, 2),
            "errors": errors,
            "endpoints": per_endpoint,
            "server_rss_mib": {
                "start": round(memory_start, 1),
                "end": round(memory_end, 1),
                "growth_pct": round(100 * (memory_end - memory_start) / max(memory_start, 1e-9), 1),
            },
            "targets": {"errors": 0, "memory_growth_pct_max": 10},
        },
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
