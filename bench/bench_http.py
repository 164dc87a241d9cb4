"""Graven's HTTP service under load: clients x events over a real socket, beside the library itself.

    .venv/bin/python bench/bench_http.py               # 4 client processes x 10,000 events, batches of 100
    .venv/bin/python bench/bench_http.py --quick       # a smoke run with small sizes (CI)
    .venv/bin/python bench/bench_http.py --db postgresql://postgres@127.0.0.1:5432/postgres?schema=bench_x

For each batch size (1 and 100 events per request by default): one `graven serve` (uvicorn, one
process) listens on a free local port. Each client process builds its request bodies before the
clock starts, waits at a barrier, then POSTs its batches one after another over one keep-alive
connection. Afterwards the log must hold every event exactly once, each at the index the server
returned, and must verify. Then, in the same turn, the same clients send the same bodies with the
same key to the plain baseline (bench/plain_ingest.py: FastAPI under uvicorn, the key checked the
same way, the JSON inserted into a plain SQLite table, durable). For reference the library records
the same events in one process with one thread per client (group commit, as the server does).

This is a benchmark, not a test: a MISS is reported, not raised. The exit status is non-zero only
when something is wrong (an event missing or twice, a log that does not verify).
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
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

import graven
from graven.server.accounts import open_accounts
from graven.server.accounts.service import Accounts, By
from graven.server.credentials import default_secret_path, load_secret

sys.path.insert(0, str(Path(__file__).resolve().parent))
import plain_ingest

AGENTS = ("billing-worker/4.2 httpx/0.28", "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0")


def make_event(client: int, n: int) -> dict[str, Any]:
    """About 500 bytes of JSON, like bench_log.py's events: who, what, to what, changes, context."""
    return {
        "id": f"bench-{client}-{n}",
        "action": ("invoice.pay", "customer.update", "session.login")[n % 3],
        "actor": {"type": "user", "id": f"u-{n % 97}", "name": f"User {n % 97}", "ip": f"10.{client}.{n % 250}.7",
                  "user_agent": AGENTS[n % 2]},
        "targets": [{"type": "customer", "id": f"c-{(client * 7919 + n) % 5000}"}],
        "outcome": "success" if n % 17 else "failure",
        "reason": "monthly run" if n % 2 else "ticket SUP-2231",
        "changes": [{"field": "status", "old": "open", "new": "paid"}, {"field": "amount", "old": n, "new": n + 20}],
        "source": "job",
        "context": {"request_id": f"req-{client}-{n}", "route": "/invoices/pay"},
    }  # fmt: skip


def batches(client: int, events: int, batch: int) -> list[bytes]:
    return [orjson.dumps([make_event(client, n) for n in range(start, min(start + batch, events))])
            for start in range(0, events, batch)]  # fmt: skip


# --------------------------------------------------------------------------- HTTP side


def client_process(client: int, base: str, key: str, bodies: list[bytes], barrier: Any, out: Any) -> None:
    """POST each body in turn on one keep-alive connection; report the indices and the CPU time used.

    ``http.client`` sends a request's headers and body in one write, so Nagle's algorithm never
    waits for a delayed ACK between them (a 40 ms stall per request otherwise).
    """
    host, port = base.removeprefix("http://").split(":")
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    indices: list[int] = []
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    barrier.wait()
    cpu = time.process_time()
    for body in bodies:
        conn.request("POST", "/api/v1/events", body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 201:
            out.put((client, f"HTTP {response.status}: {data[:300]!r}", 0.0))
            return
        indices += orjson.loads(data)["indices"]
    conn.close()
    out.put((client, indices, time.process_time() - cpu))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(workdir: Path, db: str, port: int, workers: int) -> subprocess.Popen[str]:
    exe = Path(sys.executable).with_name("graven")
    command = [str(exe), "--db", db, "--signing-key", str(workdir / "signing.key"), "serve",
               "--port", str(port), "--workers", str(workers),
               "--auth-failures", "1000000"]  # fmt: skip
    server = subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_listening(server, port, "graven serve")
    return server


def start_plain(workdir: Path, port: int, secret: str, key: str) -> subprocess.Popen[str]:
    """The baseline endpoint (bench/plain_ingest.py) under uvicorn, one process, like graven serve."""
    key_id = key.removeprefix("graven_")[:12]
    env = {**os.environ, "PLAIN_DB": str(workdir / "plain.db"), "PLAIN_SECRET": secret, "PLAIN_KEY_ID": key_id,
           "PLAIN_KEY_HASH": plain_ingest.key_hash(secret.encode(), key)}  # fmt: skip
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(__file__).parent), "--factory",
               "plain_ingest:create_app", "--port", str(port), "--no-access-log", "--log-level", "warning"]  # fmt: skip
    server = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)  # fmt: skip
    wait_listening(server, port, "the plain baseline")
    return server


def wait_listening(server: subprocess.Popen[str], port: int, what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                reason = server.stderr.read() if server.stderr else ""
                raise SystemExit(f"{what} did not start: {reason}") from None
            time.sleep(0.1)


@dataclass
class Load:
    rate: float  # entries/s
    indices: list[list[int]]  # each client's indices, in the order it sent its events
    server_cpu: float  # CPU seconds of the server process during the load
    requests: int

    @property
    def cpu_us(self) -> float:
        """Server CPU per request, microseconds."""
        return self.server_cpu / self.requests * 1e6


def load(server: subprocess.Popen[str], port: int, key: str, clients: int, events: int, batch: int) -> Load:
    """Clients in their own processes POST their batches; then the server is stopped."""
    try:
        ctx = multiprocessing.get_context("spawn")
        barrier, out = ctx.Barrier(clients + 1), ctx.Queue()
        procs = [ctx.Process(target=client_process,
                             args=(c, f"http://127.0.0.1:{port}", key, batches(c, events, batch), barrier, out))
                 for c in range(clients)]  # fmt: skip
        for p in procs:
            p.start()
        cpu_before = _cpu_seconds(server.pid)
        barrier.wait()
        started = time.perf_counter()
        results = [out.get(timeout=1800) for _ in procs]
        elapsed = time.perf_counter() - started
        server_cpu = _cpu_seconds(server.pid) - cpu_before
        for p in procs:
            p.join()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    errors = [r[1] for r in results if isinstance(r[1], str)]
    if errors:
        raise SystemExit(f"a client failed: {errors[0]}")
    by_client = {r[0]: r[1] for r in results}
    requests = clients * -(-events // batch)
    return Load(clients * events / elapsed, [by_client[c] for c in range(clients)], server_cpu, requests)


def run_http(workdir: Path, db: str, clients: int, events: int, batch: int, workers: int) -> tuple[Load, Load]:
    """graven serve, then the plain baseline, loaded by the same clients with the same bodies and key."""
    with graven.init(db, signing_key=workdir / "signing.key") as trail:
        store = open_accounts(trail.store)
        secret = load_secret(default_secret_path(workdir / "signing.key"))
        accounts = Accounts(trail, store, secret)
        key = accounts.create_key("bench-writer", "writer", by=By({"type": "system", "id": "bench"}, "cli"))[1]
        store.close()
    port = free_port()
    ours = load(start_server(workdir, db, port, workers), port, key, clients, events, batch)
    port = free_port()
    plain = load(start_plain(workdir, port, secret.decode(), key), port, key, clients, events, batch)
    (workdir / "plain.db").unlink()
    return ours, plain


# --------------------------------------------------------------------------- checks and baseline


def check_log(db: str, key: Path, clients: int, events: int, returned: list[list[int]]) -> list[str]:
    """Every event is in the log exactly once, at an index the server returned, and the log verifies."""
    problems = []
    with graven.open(db, signing_key=key) as trail:
        seen: dict[str, list[int]] = {}
        after = None
        while True:
            page = trail.query(after=after, limit=10_000)
            for e in page.entries:
                if e.id.startswith("bench-"):
                    seen.setdefault(e.id, []).append(e.index)
            if page.next_cursor is None:
                break
            after = page.next_cursor
        expected = {f"bench-{c}-{n}" for c in range(clients) for n in range(events)}
        missing = expected - set(seen)
        twice = [i for i, where in seen.items() if len(where) > 1]
        if missing:
            problems.append(f"{len(missing)} events missing, e.g. {sorted(missing)[:3]}")
        if twice:
            problems.append(f"{len(twice)} events recorded twice, e.g. {twice[:3]}")
        for c, indices in enumerate(returned):
            stored = [seen.get(f"bench-{c}-{n}", [-1])[0] for n in range(events)]
            if stored != indices:
                problems.append(f"client {c}: the indices the server returned are not where its events are")
        report = trail.verify()
        if not report.ok:
            problems.append(f"the log does not verify: {report.message}")
    return problems


def run_library(db: str, key: Path, clients: int, events: int, batch: int) -> float:
    """Entries/s of the same events through trail.record_many, one thread per client."""
    bodies = [batches(c, events, batch) for c in range(clients)]
    with graven.init(db, signing_key=key) as trail:
        barrier = threading.Barrier(clients + 1)

        def work(mine: list[bytes]) -> None:
            barrier.wait()
            for body in mine:
                trail.record_many(orjson.loads(body))

        threads = [threading.Thread(target=work, args=(b,)) for b in bodies]
        for t in threads:
            t.start()
        barrier.wait()
        started = time.perf_counter()
        for t in threads:
            t.join()
        return clients * events / (time.perf_counter() - started)


# --------------------------------------------------------------------------- report


def _target(workdir: Path, base: str | None, name: str) -> str:
    if base is None:
        return str(workdir / f"{name}.db")
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(base)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"] + [("schema", f"bench_{name}_{os.getpid()}")]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _drop_schemas(base: str, urls: list[str]) -> None:
    """Remove the benchmark's schemas from the PostgreSQL database."""
    import psycopg
    from psycopg import sql

    from graven.store.postgres import parse_url

    with psycopg.connect(parse_url(base).conninfo, autocommit=True) as conn:
        for url in urls:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(parse_url(url).schema)))


GOAL_BATCH = 15_000  # entries/s with 100 events per request, one worker
GOAL_SINGLE = 0.50  # one event per request: at least half the plain endpoint's rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--events", type=int, default=10_000, help="events per client (default 10,000)")
    parser.add_argument("--batch", type=int, action="append",
                        help="events per request; may repeat (default: 1, then 100)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="graven serve --workers (default 1)")
    parser.add_argument("--quick", action="store_true", help="2 clients x 500 events: a smoke run")
    parser.add_argument("--db", help="a postgresql:// URL to run against (default: SQLite files in --workdir)")
    parser.add_argument("--workdir", type=Path, help="keep the logs here (default: a temporary folder)")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.events = 2, 500
    sizes = args.batch or [1, 100]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="graven-bench-http-"))
    workdir.mkdir(parents=True, exist_ok=True)
    total = args.clients * args.events
    print(f"graven HTTP benchmark: {args.clients} clients x {args.events:,} events ({total:,} events) per "
          f"batch size {', '.join(map(str, sizes))}; {platform.python_implementation()} "
          f"{platform.python_version()}, {len(os.sched_getaffinity(0))} cores; log: "
          f"{'PostgreSQL' if args.db else 'SQLite'}; graven serve --workers {args.workers}")  # fmt: skip
    rows: list[tuple[int, Load, Load, float]] = []
    problems: list[str] = []
    names: list[str] = []
    try:
        for batch in sizes:
            name = f"b{batch}"
            names += [f"http_{name}", f"lib_{name}"]
            http_db = _target(workdir, args.db, f"http_{name}")
            (workdir / f"http_{name}").mkdir(exist_ok=True)
            ours, plain = run_http(workdir / f"http_{name}", http_db, args.clients, args.events, batch, args.workers)
            print(f"  {batch} per request: graven serve {ours.rate:,.0f}/s ({ours.cpu_us:,.0f} us server CPU per "
                  f"request); plain endpoint {plain.rate:,.0f}/s ({plain.cpu_us:,.0f} us)")  # fmt: skip
            problems += check_log(http_db, workdir / f"http_{name}" / "signing.key", args.clients, args.events,
                                  ours.indices)  # fmt: skip
            (workdir / f"lib_{name}").mkdir(exist_ok=True)
            lib_rate = run_library(_target(workdir, args.db, f"lib_{name}"), workdir / f"lib_{name}" / "signing.key",
                                   args.clients, args.events, batch)  # fmt: skip
            rows.append((batch, ours, plain, lib_rate))
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        if args.db:
            _drop_schemas(args.db, [_target(workdir, args.db, name) for name in names])
    print(f"{'measurement':<44}{'graven serve':>14}{'plain':>10}{'ratio':>7}{'library':>10}  goal")
    for batch, ours, plain, lib_rate in rows:
        label = f"entries/s, {batch} per request, {args.clients} clients"
        if batch == 1:
            goal, ok = f">= {GOAL_SINGLE:.0%} of the plain endpoint", ours.rate >= GOAL_SINGLE * plain.rate
        else:
            goal, ok = f">= {GOAL_BATCH:,}/s", ours.rate >= GOAL_BATCH
        print(f"{label:<44}{ours.rate:>14,.0f}{plain.rate:>10,.0f}{ours.rate / plain.rate:>7.0%}{lib_rate:>10,.0f}"
              f"  {goal}: {'PASS' if ok else 'MISS'}")  # fmt: skip
    print("plain: a FastAPI endpoint under uvicorn that checks the same bearer key (HMAC-SHA256, constant-time)")
    print("       and inserts each event's JSON into a plain SQLite table, one durable commit per request")
    print("library: trail.record_many / record of the same batches, one thread per client, in one process")
    print(f"every event present exactly once at its returned index, log verifies: {'yes' if not problems else 'NO'}")
    for problem in problems:
        print(f"  PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
