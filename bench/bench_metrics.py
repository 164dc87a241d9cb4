"""A /metrics scrape of `graven serve` while clients load it with events, beside /healthz in the same run.

    .venv/bin/python bench/bench_metrics.py            # 2 client processes x 20,000 events, 200 scrapes
    .venv/bin/python bench/bench_metrics.py --quick    # a smoke run with small sizes (CI)

One `graven serve` (uvicorn, one process) on a free local port and a fresh SQLite log. Client
processes POST batches of 10 events (bench_http.py's events) on keep-alive connections while a
scraper, on its own keep-alive connection, takes turns: one `GET /metrics` with a key of the
metrics role, then one `GET /healthz` (the service's cheapest route, no credentials, no database),
a few milliseconds apart, until it has `--scrapes` of each. The report gives the median and 99th
percentile of each and their ratio. Goal: a /metrics scrape under load in less than 5 ms (median).

This is a benchmark, not a test: a MISS is reported, not raised. The exit status is non-zero only
when something is wrong (a scrape or an ingest request fails, or a scrape lacks a figure).
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import graven
from graven.server.accounts import open_accounts
from graven.server.accounts.service import Accounts, By
from graven.server.credentials import default_secret_path, load_secret

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_http import batches, client_process, free_port, start_server

GOAL_MS = 5.0
BATCH = 10
PAUSE = 0.005  # seconds between two requests of the scraper


def scrape(port: int, key: str, scrapes: int) -> tuple[list[float], list[float], str]:
    """Alternate /metrics and /healthz on one connection; their latencies in ms, and a problem if any."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    timed: dict[str, list[float]] = {"/metrics": [], "/healthz": []}
    headers = {"/metrics": {"Authorization": f"Bearer {key}"}, "/healthz": {}}
    for n in range(scrapes * 2):
        path = ("/metrics", "/healthz")[n % 2]
        started = time.perf_counter()
        conn.request("GET", path, headers=headers[path])
        response = conn.getresponse()
        body = response.read()
        timed[path].append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            return [], [], f"GET {path}: HTTP {response.status} {body[:200]!r}"
        if path == "/metrics" and b"graven_entries_appended_total" not in body:
            return [], [], "a /metrics answer lacks graven_entries_appended_total"
        time.sleep(PAUSE)
    conn.close()
    return timed["/metrics"], timed["/healthz"], ""


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=2, help="loading client processes (default 2)")
    parser.add_argument("--events", type=int, default=20_000, help="events per client (default 20,000)")
    parser.add_argument("--scrapes", type=int, default=200, help="scrapes of each route (default 200)")
    parser.add_argument("--quick", action="store_true", help="1 client x 2,000 events, 30 scrapes: a smoke run")
    parser.add_argument("--workdir", type=Path, help="keep the log here (default: a temporary folder)")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.events, args.scrapes = 1, 2_000, 30
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="graven-bench-metrics-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"graven /metrics benchmark: {args.scrapes} scrapes of /metrics and of /healthz, taking turns, while "
          f"{args.clients} clients POST {args.events:,} events each ({BATCH} per request); "
          f"{platform.python_implementation()} {platform.python_version()}, "
          f"{len(os.sched_getaffinity(0))} cores; log: SQLite")  # fmt: skip
    db = str(workdir / "trail.db")
    try:
        with graven.init(db, signing_key=workdir / "signing.key") as trail:
            store = open_accounts(trail.store)
            accounts = Accounts(trail, store, load_secret(default_secret_path(workdir / "signing.key")))
            by = By({"type": "system", "id": "bench"}, "cli")
            writer = accounts.create_key("bench-writer", "writer", by=by)[1]
            scraper = accounts.create_key("bench-scraper", "metrics", by=by)[1]
            store.close()
        port = free_port()
        server = start_server(workdir, db, port, 1)
        try:
            ctx = multiprocessing.get_context("spawn")
            barrier, out = ctx.Barrier(args.clients + 1), ctx.Queue()
            procs = [ctx.Process(target=client_process, args=(c, f"http://127.0.0.1:{port}", writer,
                                                               batches(c, args.events, BATCH), barrier, out))
                     for c in range(args.clients)]  # fmt: skip
            for p in procs:
                p.start()
            barrier.wait()
            time.sleep(0.5)  # the load is under way
            metrics, healthz, problem = scrape(port, scraper, args.scrapes)
            loading = sum(p.is_alive() for p in procs)
            results = [out.get(timeout=1800) for _ in procs]
            for p in procs:
                p.join()
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    errors = [r[1] for r in results if isinstance(r[1], str)]
    if problem or errors:
        print(f"PROBLEM: {problem or errors[0]}")
        return 1
    ok = statistics.median(metrics) < GOAL_MS
    print(f"{'measurement':<40}{'/metrics':>10}{'/healthz':>10}{'ratio':>8}  goal")
    print(f"{'scrape latency, median (ms)':<40}{statistics.median(metrics):>10.2f}{statistics.median(healthz):>10.2f}"
          f"{statistics.median(metrics) / statistics.median(healthz):>8.1f}  < {GOAL_MS:g} ms: "
          f"{'PASS' if ok else 'MISS'}")  # fmt: skip
    print(f"{'scrape latency, p99 (ms)':<40}{p99(metrics):>10.2f}{p99(healthz):>10.2f}"
          f"{p99(metrics) / p99(healthz):>8.1f}  -")  # fmt: skip
    print(
        f"clients still loading when the scrapes ended: {loading} of {args.clients}"
        f"{'' if loading == args.clients else ' (use more --events for a scrape wholly under load)'}"
    )
    print("/healthz: the same server's cheapest route (no credentials, no database), in the same turns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
