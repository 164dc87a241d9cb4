"""Pure-core costs, measured in one run: the schema library, validation, and the verification pass.

    .venv/bin/python bench/bench_core.py            # full run: about a minute
    .venv/bin/python bench/bench_core.py --quick    # smoke run (CI), seconds

Rows (CPU time of this thread, so other processes disturb them little):

- schema conversion of one ~570-byte event (actor, 2 targets, 2 changes, reason, source, context,
  metadata): ``msgspec.convert`` into the schema's ``EventV1`` (what Graven uses) beside pydantic v2's
  ``model_validate`` of models with the same fields and limits (what FastAPI brings);
- ``prepare()`` of that event (validation, document, RFC 8785 leaf and its hash) beside the full
  checks alone (``_prepare_full``: the same document built by the rules that name every error);
- the verification pass over an intact in-memory log (``--entries``, 200,000): the one-pass,
  constant-memory ``verify_stream`` beside the whole-log ``verify_log``; goal >= 300,000 entries/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
import pydantic
from pydantic import BaseModel, ConfigDict, Field

from graven.core import audit, merkle, model, schema
from graven.core.audit_stream import verify_stream
from graven.core.note import Checkpoint, Signer, sign_checkpoint

NOW = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
EVENT: dict[str, Any] = {
    "id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
    "occurred_at": "2026-11-26T09:30:00.250000Z",
    "actor": {"type": "user", "id": "u-1234", "name": "Alice Example", "ip": "198.51.100.23",
              "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "session": "s-99"},
    "action": "customer.plan.change",
    "targets": [{"type": "customer", "id": "c-42", "name": "ACME"}, {"type": "plan", "id": 7}],
    "outcome": "success",
    "reason": "upgrade requested in ticket T-1",
    "changes": [{"field": "plan", "old": "basic", "new": "pro"}, {"field": "seats", "old": 5, "new": 10}],
    "source": "web",
    "context": {"request_id": "r-1", "route": "/customers/42"},
    "metadata": {"k": "v"},
}  # fmt: skip

# The pydantic baseline: the same fields and limits as graven.core.schema, written for pydantic.
Ident = Annotated[str, Field(min_length=1, max_length=schema.MAX_NAME)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PActor(_Strict):
    type: Literal["user", "service", "system", "anonymous"] = "user"
    id: Ident | None = None
    name: Ident | None = None
    ip: str | None = None
    user_agent: Annotated[str, Field(min_length=1, max_length=schema.MAX_USER_AGENT)] | None = None
    session: Ident | None = None


class PTarget(_Strict):
    type: Ident
    id: Ident | int
    name: Ident | None = None


class PChange(_Strict):
    field: Annotated[str, Field(min_length=1, max_length=schema.MAX_FIELD)]
    old: Any = None
    new: Any = None
    redacted: bool = False
    fingerprint: Ident | None = None


class PEvent(_Strict):
    action: Annotated[str, Field(min_length=1, max_length=schema.MAX_ACTION)]
    actor: PActor | Ident
    v: Literal[1] = 1
    id: Ident | None = None
    occurred_at: str | None = None
    targets: Annotated[list[PTarget], Field(max_length=schema.MAX_TARGETS)] = []
    outcome: Literal["success", "denied", "failure"] = "success"
    reason: str | None = None
    changes: Annotated[list[PChange], Field(max_length=schema.MAX_CHANGES)] = []
    source: Annotated[str, Field(min_length=1, max_length=schema.MAX_SOURCE)] | None = None
    context: dict[str, Any] | None = None
    tenant: Ident | None = None
    metadata: dict[str, Any] | None = None


def per_call(call: Callable[[], object], number: int, repeat: int) -> float:
    """The best of ``repeat`` runs of ``number`` calls, in seconds of this thread's CPU per call."""
    best = float("inf")
    for _ in range(repeat):
        started = time.thread_time()
        for _ in range(number):
            call()
        best = min(best, (time.thread_time() - started) / number)
    return best


def intact_log(
    entries: int,
) -> tuple[list[tuple[int, bytes]], list[tuple[int, int, bytes]], list[tuple[int, str]], Any]:
    """An in-memory log of ``entries`` ~500-byte leaves with its tree tiles and a few signed checkpoints."""
    signer = Signer.generate("bench.example/core")
    bodies = [model.prepare({**EVENT, "id": f"e-{i}"}, now=NOW, new_id=str).leaf for i in range(entries)]
    leaves = [merkle.leaf_hash(b) for b in bodies]
    rows = merkle.append(0, [], leaves).rows
    sizes = sorted({entries, entries // 2, entries // 3})
    roots = merkle.roots_at(leaves, sizes)
    notes = [(n, sign_checkpoint(Checkpoint("bench.example/core", n, roots[n]), signer)) for n in sizes if n]
    tiles = [(level, idx, hashes) for (level, idx), _, hashes in merkle.tile_deltas(0, rows)]
    return list(enumerate(bodies)), tiles, notes, signer.verifier()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--entries", type=int, help="entries of the verification pass (200,000)")
    args = parser.parse_args()
    number, repeat = (2_000, 3) if args.quick else (20_000, 7)
    entries = args.entries or (5_000 if args.quick else 200_000)

    assert msgspec.convert(EVENT, schema.EventV1, strict=True).action == PEvent.model_validate(EVENT).action
    converted = per_call(lambda: msgspec.convert(EVENT, schema.EventV1, strict=True), number, repeat)
    validated = per_call(lambda: PEvent.model_validate(EVENT), number, repeat)
    prepared = per_call(lambda: model.prepare(EVENT, now=NOW, new_id=str), number, repeat)
    checked = per_call(lambda: model._prepare_full(EVENT, now=NOW, new_id=str), number, repeat)

    rows, tree, notes, verifier = intact_log(entries)
    streamed = whole = float("inf")
    for _ in range(3):
        started = time.thread_time()
        report = verify_stream(iter(rows), iter(tree), notes, [verifier])
        streamed = min(streamed, time.thread_time() - started)
        started = time.thread_time()
        full = audit.verify_log(rows, tree, notes, [verifier])
        whole = min(whole, time.thread_time() - started)
        if report is None or not report.ok or not full.ok:
            raise SystemExit("the in-memory log does not verify")
    rate, base_rate = entries / streamed, entries / whole

    print("Graven pure-core benchmark, CPU time of one thread, every figure from this run")
    print(f"  Python {platform.python_version()}, msgspec {msgspec.__version__}, pydantic {pydantic.VERSION}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    header = ("measurement", "graven", "baseline", "ratio", "goal")
    table = [
        ("schema conversion of one event", f"{converted * 1e6:.2f} µs", f"{validated * 1e6:.2f} µs (pydantic v2)",
         f"{converted / validated:.0%}", "-"),
        ("prepare(): checks, leaf and hash", f"{prepared * 1e6:.2f} µs", f"{checked * 1e6:.2f} µs (full checks)",
         f"{prepared / checked:.0%}", "-"),
        (f"verification pass, {entries:,} entries", f"{rate:,.0f} /s", f"{base_rate:,.0f} /s (verify_log)",
         f"{rate / base_rate:.0%}", ">= 300,000 /s " + ("PASS" if rate >= 300_000 else "MISS")),
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
