"""Shared pieces of the forwarding tests: a log with entries, a sink that records what it got."""

from __future__ import annotations

from typing import Any

import orjson

from graven.forward.config import SinkConfig
from graven.forward.sinks import Batch, Refused, Retry
from graven.trail import Trail


def fill(trail: Trail, count: int, action: str = "document.read") -> None:
    trail.record_many(
        {"action": action, "actor": {"type": "user", "id": f"u-{i}"}, "targets": [{"type": "doc", "id": str(i)}]}
        for i in range(count)
    )


class Collecting:
    """An in-memory receiver: keeps every line it acknowledged; can fail or refuse on demand."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.batches: list[tuple[int, int]] = []
        self.fail_next = 0
        self.refuse: set[int] = set()
        self.ticks = 0

    def open(self) -> None:
        return None

    def send(self, batch: Batch) -> Refused:
        if self.fail_next:
            self.fail_next -= 1
            raise Retry("receiver down")
        refused = Refused()
        for record in batch.records:
            if record.index in self.refuse:
                refused.entries.append((record.index, record.entry_id, "refused by the receiver"))
            else:
                self.lines.append(record.line)
        if batch.proof_line is not None:
            self.lines.append(batch.proof_line)
        self.batches.append((batch.first, batch.end))
        return refused

    def tick(self) -> None:
        self.ticks += 1

    def close(self) -> None:
        return None

    def indices(self) -> list[int]:
        out = []
        for line in self.lines:
            value: Any = orjson.loads(line)
            if "index" in value:
                out.append(value["index"])
        return out


def config(name: str = "test", **options: Any) -> SinkConfig:
    fields = {k: options.pop(k) for k in ("batch", "proofs", "format", "retry_max_seconds") if k in options}
    return SinkConfig(name=name, sink=options.pop("sink", "stdout"), options=options, **fields)
