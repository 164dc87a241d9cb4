"""A writer process for the many-processes tests (importable, so spawned processes can run it)."""

from __future__ import annotations

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
