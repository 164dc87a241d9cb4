"""A target's state as of a moment: ``trail.state(target, as_of=T)`` beside plain sqlite3, in one run.

    .venv/bin/python bench/bench_sourcing_state.py            # 1,000,000 entries, 1,000 changes of the target
    .venv/bin/python bench/bench_sourcing_state.py --quick    # a smoke run with small sizes (CI)
    .venv/bin/python bench/bench_sourcing_state.py --workdir DIR   # keep the files; reuse the big logs

The log holds ``--entries`` events about ``--targets`` customers; one customer, ``customer:c-star``,
is changed ``--changes`` times, spread evenly through the log, each entry changing two of its fields.
Graven answers ``trail.state("customer:c-star", as_of=T)`` for moments T spread over the log's time
span (fields replayed from the recorded changes, redaction and erasure rules included). The baseline
is what an engineer would write on a plain table of the same events: one SQLite file, the JSON body
plus extracted target and time columns, a b-tree index on (target_type, target_id, idx), the time
filtered in SQL, and a Python fold of the bodies' changes. Both answer each moment in turn (the order
alternating), so a noisy spell of the shared machine hits both alike. Goal: Graven's p50 under 10 ms.

This is a benchmark, not a test: a MISS is reported, not raised. The exit status is non-zero only
when something is wrong (the two answers differ, or the log does not verify).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

import graven

STAR = ("customer", "c-star")
START = datetime(2026, 1, 1, tzinfo=UTC)
BUILD_BATCH = 10_000
GOAL_MS = 10.0


def stamp(i: int) -> str:
    """Entry i happened i seconds after the start (a clock that only moves forward)."""
    return (START + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def events(entries: int, targets: int, changes: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """The log's events in order: the star's changes spread evenly, the rest about random customers."""
    rng = random.Random(seed)
    every = max(entries // changes, 1)
    star_done = 0
    for i in range(entries):
        if i % every == every - 1 and star_done < changes:
            target = STAR[1]
            star_done += 1
        else:
            target = f"c-{rng.randrange(targets)}"
        yield {
            "id": f"evt-{i:09d}",
            "occurred_at": stamp(i),
            "actor": {"type": "user", "id": f"u-{rng.randrange(500)}"},
            "action": "customer.update",
            "targets": [{"type": "customer", "id": target}],
            "changes": [
                {"field": "email", "old": f"{i}@old.example", "new": f"{i}@example.com"},
                {
                    "field": rng.choice(("plan", "status", "credit_limit")),
                    "old": rng.randrange(100),
                    "new": rng.randrange(100),
                },
            ],
            "source": "web",
        }


def build(workdir: Path, entries: int, targets: int, changes: int) -> tuple[Path, Path, Path]:
    """The Graven log and the plain table (reused from ``workdir`` when already built at this size)."""
    tag = f"{entries}-{targets}-{changes}"
    log, key, plain = workdir / f"state-{tag}.db", workdir / "signing.key", workdir / f"plain-{tag}.db"
    if log.exists() and plain.exists():
        return log, key, plain
    for path in (log, plain):
        path.unlink(missing_ok=True)
    started = time.perf_counter()
    conn = sqlite3.connect(plain)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(
        "CREATE TABLE events (idx INTEGER PRIMARY KEY, target_type TEXT, target_id TEXT, occurred_at TEXT, body TEXT)"
    )
    conn.execute("CREATE INDEX events_target ON events (target_type, target_id, idx)")
    with graven.init(log, signing_key=key) as trail:
        batch: list[dict[str, Any]] = []
        for n, event in enumerate(events(entries, targets, changes)):
            batch.append(event)
            if len(batch) == BUILD_BATCH or n == entries - 1:
                trail.record_many(batch)
                rows = [(n - len(batch) + 1 + k, "customer", e["targets"][0]["id"], e["occurred_at"],
                         orjson.dumps(e).decode()) for k, e in enumerate(batch)]  # fmt: skip
                conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", rows)
                conn.commit()
                batch = []
    conn.close()
    print(
        f"built {entries:,} entries ({changes:,} changes of {STAR[0]}:{STAR[1]}) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return log, key, plain


def plain_state(conn: sqlite3.Connection, as_of: str) -> dict[str, Any]:
    """The baseline: the target's bodies up to ``as_of`` from the plain table (time filtered in SQL),
    changes folded in Python."""
    fields: dict[str, Any] = {}
    rows = conn.execute(
        "SELECT body FROM events WHERE target_type = ? AND target_id = ? AND occurred_at <= ? ORDER BY idx",
        (*STAR, as_of),
    ).fetchall()
    for (body,) in rows:
        doc = orjson.loads(body)
        for change in doc["changes"]:
            fields[change["field"]] = change.get("new")
    return fields


def timed(
    ours: Callable[[str], Any], theirs: Callable[[str], Any], moments: list[str]
) -> tuple[list[float], list[Any], list[float], list[Any]]:
    """Both sides answer each moment in turn (the order alternating), so a noisy spell of the shared
    machine hits both alike; each call's wall time in milliseconds and its answer."""
    times: tuple[list[float], list[float]] = ([], [])
    answers: tuple[list[Any], list[Any]] = ([], [])
    for n, moment in enumerate(moments):
        for side in (0, 1) if n % 2 == 0 else (1, 0):
            fn = ours if side == 0 else theirs
            started = time.perf_counter()
            answers[side].append(fn(moment))
            times[side].append((time.perf_counter() - started) * 1000)
    return times[0], answers[0], times[1], answers[1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run (CI)")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--targets", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=1_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--workdir", type=Path, help="keep the logs here and reuse them next time")
    args = parser.parse_args(argv)
    if args.quick:
        args.entries, args.targets, args.changes, args.queries = 20_000, 2_000, 100, 30
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="graven-bench-state-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        log, key, plain = build(workdir, args.entries, args.targets, args.changes)
        rng = random.Random(11)
        moments = [stamp(rng.randrange(args.entries)) for _ in range(args.queries)]
        conn = sqlite3.connect(plain)
        with graven.open(log, signing_key=key, create=False) as trail:
            cold_started = time.perf_counter()
            trail.state(STAR, as_of=moments[0])
            cold = (time.perf_counter() - cold_started) * 1000
            ours, states, theirs, folded = timed(
                lambda t: trail.state(STAR, as_of=t), lambda t: plain_state(conn, t), moments
            )
            wrong = [
                m for m, s, f in zip(moments, states, folded, strict=True) if s.values() != dict(sorted(f.items()))
            ]
            ok = trail.verify().ok
        conn.close()
        p50, base50 = statistics.median(ours), statistics.median(theirs)
        verdict = "PASS" if p50 < GOAL_MS else "MISS"
        print(
            f"state of {STAR[0]}:{STAR[1]} as of a moment: {args.changes:,} changes "
            f"in a log of {args.entries:,} entries"
        )
        print(f"{'':28}{'Graven':>12}{'plain sqlite3':>16}{'ratio':>9}   goal")
        print(f"{'p50 (ms)':28}{p50:12.2f}{base50:16.2f}{p50 / base50:9.2f}   < {GOAL_MS:g} ms  {verdict}")
        print(
            f"{'p99 (ms)':28}{pct(ours, 0.99):12.2f}{pct(theirs, 0.99):16.2f}{pct(ours, 0.99) / pct(theirs, 0.99):9.2f}"
        )
        print(f"{'first call, cold (ms)':28}{cold:12.2f}")
        if wrong:
            print(f"ERROR: the answers differ at {len(wrong)} moments, first {wrong[0]}", file=sys.stderr)
            return 1
        if not ok:
            print("ERROR: the log does not verify", file=sys.stderr)
            return 1
        return 0
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
