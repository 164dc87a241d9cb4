"""A writer process for the many-processes tests (importable, so spawned processes can run it)."""

from __future__ import annotations

import multiprocessing
from typing import Any

import graven
from graven.testing.store_contract import make_event


def write_events(db: str, key: str, worker: int, batch: int, count: int, out: Any) -> None:
    """Record ``count`` events through ``graven.open(db)``, one per commit or ``batch`` at a time."""
    indices: list[int] = []
    with graven.open(db, signing_key=key) as trail:
        events = [make_event(worker * 100_000 + n) for n in range(count)]
        for start in range(0, count, batch):
            chunk = events[start : start + batch]
            indices += trail.record_many(chunk) if batch > 1 else [trail.record(chunk[0])]
    out.put(indices)


def run_writers(db: str, key: str, processes: int, count: int, timeout: float = 600) -> list[int]:
    """Start ``processes`` spawned writers (two commit one event at a time, the rest batches of 50,
    so both paths contend) and return every index they were given, sorted."""
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[list[int]] = ctx.Queue()
    procs = [
        ctx.Process(target=write_events, args=(db, key, w, 1 if w < 2 else 50, count, out)) for w in range(processes)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=timeout) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert 0 == p.exitcode
    return sorted(i for r in results for i in r)
