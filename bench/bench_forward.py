"""Forwarding throughput, lag and memory, beside plain loops that do the same work without Graven.

    .venv/bin/python bench/bench_forward.py            # 1,000,000 entries
    .venv/bin/python bench/bench_forward.py --quick    # a smoke run with small sizes (CI)

Rows (one run each, batches of 500):

* JSONL sink: ``Forwarder`` + ``JsonlSink`` (native format, a proof record per batch, fsync per
  batch, the cursor committed per batch) delivering the whole log, beside a plain loop that reads
  the same stored JSON page by page and writes it to a file with an fsync per 500 lines.
* HEC sink: ``Forwarder`` + ``HecSink`` posting to a local HEC receiver (another process that
  parses each event and answers HEC's JSON), beside a plain loop posting the same pages as HEC
  batches over one kept-alive connection to the same receiver.
* Lag: a writer records 5,000 entries/s (50 every 10 ms) for a few seconds while the JSONL
  forwarder runs in the same process; the largest age of the oldest undelivered entry.
* Memory: the process's resident size while the JSONL forwarder delivers the whole log, sampled
  every 10% (it reads the log page by page, so it should stay flat).

Goals (from the issue): JSONL at least 50,000 entries/s and at least 50 % of the plain loop; HEC
at least 20,000 entries/s; lag under 1 s at 5,000 entries/s; memory flat over 1,000,000 entries.
A benchmark, not a test: a MISS is printed beside its row, never raised.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import shutil
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

import graven
from graven.forward.config import parse_sink
from graven.forward.cursor import Cursors
from graven.forward.runner import Forwarder
from graven.trail import Trail

BATCH = 500
TOKEN = "bench-token"  # noqa: S105 (a local receiver's test token)


def make_event(n: int) -> dict[str, Any]:
    """About 500 bytes of JSON, like the other benchmarks' events."""
    return {
        "action": ("invoice.pay", "customer.update", "session.login")[n % 3],
        "actor": {"type": "user", "id": f"u-{n % 97}", "name": f"User {n % 97}", "ip": f"10.0.{n % 250}.7",
                  "user_agent": "billing-worker/4.2 httpx/0.28"},
        "targets": [{"type": "customer", "id": f"c-{n % 5000}"}],
        "outcome": "success" if n % 17 else "failure",
        "reason": "monthly run" if n % 2 else "ticket SUP-2231",
        "changes": [{"field": "status", "old": "open", "new": "paid"}, {"field": "amount", "old": n, "new": n + 20}],
        "source": "job",
        "context": {"request_id": f"req-{n}", "route": "/invoices/pay"},
    }  # fmt: skip


def fill(trail: Trail, count: int) -> None:
    done = 0
    while done < count:
        size = min(10_000, count - done)
        trail.record_many(make_event(done + i) for i in range(size))
        done += size
    trail.checkpoint()


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


# --------------------------------------------------------------------------- HEC receiver


def serve_hec(port_out: Any, stop: Any) -> None:
    """A HEC endpoint in its own process: checks the token, parses every event, answers HEC's JSON."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            return None

        def setup(self) -> None:
            super().setup()  # the answer's headers and body leave at once: no Nagle / delayed-ACK stall
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Authorization") != f"Splunk {TOKEN}":
                status, answer = 401, b'{"text":"Invalid authorization","code":3}'
            else:
                events = [orjson.loads(line) for line in body.split(b"\n") if line.strip()]
                status, answer = (200, b'{"text":"Success","code":0}') if events else (400, b'{"code":5}')
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_out.put(server.server_address[1])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop.wait()
    server.shutdown()


# --------------------------------------------------------------------------- runs


def deliver(trail: Trail, config: Any, samples: list[float] | None = None) -> float:
    cursors = Cursors(trail.store)
    forwarder = Forwarder(trail, config, cursors)
    forwarder.open()
    size = trail.size
    step_every = max(1, size // 10)
    next_sample = 0
    started = time.perf_counter()
    delivered = 0
    while True:
        moved = forwarder.step()
        if not moved:
            break
        delivered += moved
        if samples is not None and delivered >= next_sample:
            samples.append(rss_mib())
            next_sample += step_every
    elapsed = time.perf_counter() - started
    forwarder.close()
    cursors.close()
    assert delivered == size, f"delivered {delivered} of {size}"
    return size / elapsed


def plain_file(db: Path, out: Path) -> float:
    conn = sqlite3.connect(db)
    started = time.perf_counter()
    count = 0
    last = -1
    with out.open("wb") as f:
        while True:
            rows = conn.execute(
                "SELECT idx, body FROM entries WHERE idx > ? ORDER BY idx LIMIT ?", (last, BATCH)
            ).fetchall()
            if not rows:
                break
            f.write(b"".join(body.encode() + b"\n" for _, body in rows))
            f.flush()
            os.fsync(f.fileno())
            count += len(rows)
            last = rows[-1][0]
    elapsed = time.perf_counter() - started
    conn.close()
    return count / elapsed


def plain_hec(db: Path, port: int) -> float:
    conn = sqlite3.connect(db)
    client = http.client.HTTPConnection("127.0.0.1", port)
    client.connect()
    assert client.sock is not None
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the HEC sink does
    headers = {"Authorization": f"Splunk {TOKEN}", "Content-Type": "application/json"}
    started = time.perf_counter()
    count = 0
    last = -1
    while True:
        rows = conn.execute(
            "SELECT idx, body FROM entries WHERE idx > ? ORDER BY idx LIMIT ?", (last, BATCH)
        ).fetchall()
        if not rows:
            break
        body = b"\n".join(b'{"source":"graven","event":' + b.encode() + b"}" for _, b in rows)
        client.request("POST", "/services/collector/event", body, headers)
        response = client.getresponse()
        answer = response.read()
        if response.status != 200 or orjson.loads(answer)["code"] != 0:
            raise RuntimeError(f"the HEC receiver answered {response.status}: {answer!r}")
        count += len(rows)
        last = rows[-1][0]
    elapsed = time.perf_counter() - started
    client.close()
    conn.close()
    return count / elapsed


def lag_run(folder: Path, seconds: float, rate: int) -> tuple[float, int]:
    """Worst lag (seconds) of the JSONL forwarder under a steady ingest of ``rate`` entries/s."""
    with graven.init(folder / "lag.db", signing_key=folder / "lag.key") as trail:
        config = parse_sink("lag", {"sink": "jsonl", "path": str(folder / "lag-out"), "batch": BATCH})
        cursors = Cursors(trail.store)
        forwarder = Forwarder(trail, config, cursors)
        forwarder.open()
        stop = threading.Event()
        recorded: list[float] = []  # when each index was recorded
        thread = threading.Thread(target=forwarder.run, args=(stop,), kwargs={"poll": 0.01})
        thread.start()
        worst = 0.0
        started = time.perf_counter()
        n = 0
        while (elapsed := time.perf_counter() - started) < seconds:
            due = int(rate * elapsed) - n  # whatever is due by now: the rate holds even when a tick runs late
            if due > 0:
                trail.record_many(make_event(n + i) for i in range(due))
                recorded += [time.perf_counter()] * due
                n += due
            now = time.perf_counter()
            position = cursors.get("lag").position
            if position < len(recorded):
                worst = max(worst, now - recorded[position])
            time.sleep(0.01)
        deadline = time.perf_counter() + 10
        while cursors.get("lag").position < n and time.perf_counter() < deadline:
            time.sleep(0.005)
        stop.set()
        thread.join(30)
        forwarder.close()
        cursors.close()
        return worst, n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--lag-seconds", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.entries, args.lag_seconds = 5_000, 1.0
    folder = Path(tempfile.mkdtemp(dir=args.workdir))
    try:
        print(f"bench_forward: {args.entries:,} entries of ~500 bytes, batches of {BATCH}, {os.cpu_count()} cores")
        started = time.perf_counter()
        with graven.init(folder / "trail.db", signing_key=folder / "signing.key") as trail:
            fill(trail, args.entries)
        print(f"  (log made in {time.perf_counter() - started:.1f}s)")
        with graven.open(folder / "trail.db", signing_key=folder / "signing.key") as trail:
            samples: list[float] = []
            jsonl = parse_sink("bench", {"sink": "jsonl", "path": str(folder / "out"), "batch": BATCH,
                                         "max_bytes": 256 * 2**20})  # fmt: skip
            graven_rate = deliver(trail, jsonl, samples)
            plain_rate = plain_file(folder / "trail.db", folder / "plain.jsonl")
            ratio = graven_rate / plain_rate
            ok = graven_rate >= 50_000 and ratio >= 0.5
            print(f"  JSONL sink            {graven_rate:>10,.0f} entries/s   plain loop {plain_rate:>10,.0f}/s   "
                  f"ratio {ratio:.2f}   goal >= 50,000/s and >= 0.50: {verdict(ok)}")  # fmt: skip
            growth = samples[-1] - samples[0] if len(samples) > 1 else 0.0
            print(f"  memory while delivering {args.entries:,}: {samples[0]:.0f} MiB -> {samples[-1]:.0f} MiB "
                  f"(growth {growth:+.1f} MiB)   goal flat (< 32 MiB): {verdict(growth < 32)}")  # fmt: skip
            ctx = multiprocessing.get_context("spawn")
            ports, stop = ctx.Queue(), ctx.Event()
            receiver = ctx.Process(target=serve_hec, args=(ports, stop), daemon=True)
            receiver.start()
            port = ports.get(timeout=30)
            os.environ["BENCH_HEC_TOKEN"] = TOKEN
            hec = parse_sink("hec", {"sink": "hec", "url": f"http://127.0.0.1:{port}", "token_env": "BENCH_HEC_TOKEN",
                                     "batch": BATCH})  # fmt: skip
            hec_rate = deliver(trail, hec)
            plain_post = plain_hec(folder / "trail.db", port)
            stop.set()
            receiver.join(10)
            print(f"  HEC sink              {hec_rate:>10,.0f} entries/s   plain POSTs {plain_post:>9,.0f}/s   "
                  f"ratio {hec_rate / plain_post:.2f}   goal >= 20,000/s: {verdict(hec_rate >= 20_000)}")  # fmt: skip
        worst, n = lag_run(folder, args.lag_seconds, 5_000)
        print(
            f"  lag at 5,000 entries/s ingest ({n:,} entries, JSONL): worst {worst * 1000:.0f} ms   "
            f"goal < 1 s: {verdict(worst < 1.0)}"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(60)
    sys.exit(main())
