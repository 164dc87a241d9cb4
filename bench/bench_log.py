"""Graven beside plain sqlite3: recording, verification, proofs and bytes on disk, in one run.

    .venv/bin/python bench/bench_log.py                  # the full benchmark (a few minutes)
    .venv/bin/python bench/bench_log.py --quick          # a smoke run with small sizes (CI)
    .venv/bin/python bench/bench_log.py --workdir DIR    # keep files in DIR, reuse the big log
    .venv/bin/python bench/bench_log.py --profile        # cProfile of record_many and verify only

Every figure of the library is printed beside a baseline measured in the same run on the same
machine: plain ``sqlite3`` inserts of the same events as JSON text (serialised with orjson inside
the timed loop, one TEXT column, no index, WAL, ``synchronous=FULL``, the same transaction sizes).
Each throughput row shows one run of ``--repeat``: the one whose ratio of library to baseline is
the median, both figures from that run (never each side's best picked apart). Within a run the
library and the baseline take turns every 100 records or every batch, so a noisy spell of the CPU
or of the disk's fsync latency hurts both alike.

This is a benchmark, not a test: a MISS is reported, not raised. The exit status is non-zero only
when something is wrong (a log fails verification, a proof does not check).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import os
import platform
import pstats
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

import graven
from graven.core import merkle
from graven.core.audit_stream import verify_stream
from graven.core.note import open_checkpoint
from graven.store.sqlite import SQLiteStore
from graven.store.sqlite import check_parts as derived_parts

BATCH = 1_000  # events per record_many call / rows per plain commit
SINGLE_BLOCK = 100  # one-at-a-time records per turn when library and baseline take turns
BUILD_BATCH = 10_000  # events per record_many call when building the big log
BASE_TIME = 1_764_150_000  # 2025-11-26, for the request ids' look only

# --------------------------------------------------------------------------- realistic events

FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Linus",
         "Margaret", "Dennis", "Katherine", "Tim", "Shafi", "Leslie")  # fmt: skip
LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
        "Perlman", "Torvalds", "Hamilton", "Ritchie", "Johnson", "Berners-Lee", "Goldwasser",
        "Lamport")  # fmt: skip
AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0) Chrome/131.0",
    "Mozilla/5.0 (Macintosh) Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
    "billing-worker/4.2 httpx/0.27",
)
SERVICES = ("svc-billing", "svc-sync", "svc-scheduler", "svc-importer")
COMPANIES = ("Acme Widgets GmbH", "Globex Corporation", "Initech LLC", "Umbrella Health plc",
             "Stark Industries", "Wayne Enterprises", "Hooli Inc.", "Soylent Foods SA")  # fmt: skip
PLANS = ("free", "starter", "business", "enterprise")
STATUSES = ("active", "suspended", "locked", "closed")
ROLES = ("viewer", "editor", "admin", "owner")
DATES = ("2025-12-01", "2025-12-15", "2026-01-05", "2026-01-31")

Changer = Callable[[random.Random], tuple[Any, Any]]


def _pick(values: tuple[str, ...]) -> Changer:
    def change(rng: random.Random) -> tuple[Any, Any]:
        old, new = rng.sample(values, 2)
        return old, new

    return change


def _email(rng: random.Random) -> tuple[Any, Any]:
    a, b = rng.sample(FIRST, 2)
    return f"{a.lower()}.{rng.randrange(1000)}@example.com", f"{b.lower()}@example.org"


def _amount(rng: random.Random) -> tuple[Any, Any]:
    old = rng.randrange(1, 50) * 1000
    return old, old + rng.randrange(1, 20) * 500


def _phone(rng: random.Random) -> tuple[Any, Any]:
    return f"+49 30 {rng.randrange(10**7):07d}", f"+49 89 {rng.randrange(10**7):07d}"


def _flag(rng: random.Random) -> tuple[Any, Any]:
    old = rng.random() < 0.5
    return old, not old


# action, target type, the reason given, and the two changed fields with their (old, new) values
ACTIONS: tuple[tuple[str, str, str, tuple[tuple[str, Changer], ...]], ...] = (
    ("customer.update", "customer", "customer asked to change the billing contact",
     (("billing.email", _email), ("billing.phone", _phone))),
    ("customer.plan.change", "customer", "upgrade approved by the account manager",
     (("plan", _pick(PLANS)), ("credit_limit", _amount))),
    ("user.status.change", "user", "locked after repeated failed sign-ins",
     (("status", _pick(STATUSES)), ("failed_logins", _amount))),
    ("user.role.change", "user", "role change requested by the team owner",
     (("role", _pick(ROLES)), ("mfa_required", _flag))),
    ("invoice.update", "invoice", "due date moved after a payment dispute",
     (("due_date", _pick(DATES)), ("amount_cents", _amount))),
)  # fmt: skip


def make_event(rng: random.Random, n: int) -> dict[str, Any]:
    """One realistic event (about 500 bytes as JSON); ``n`` varies its ids."""
    action, target_type, reason, fields = ACTIONS[n % len(ACTIONS)]
    if rng.random() < 0.85:
        uid = rng.randrange(5000)
        actor = {
            "type": "user",
            "id": f"u-{uid:05d}",
            "name": f"{FIRST[uid % len(FIRST)]} {LAST[uid % len(LAST)]}",
            "ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            "user_agent": AGENTS[uid % 3],
        }
    else:
        service = rng.choice(SERVICES)
        actor = {
            "type": "service",
            "id": service,
            "name": service.removeprefix("svc-") + " worker",
            "ip": f"2001:db8::{rng.randrange(1, 0xFFFF):x}",
            "user_agent": AGENTS[3],
        }
    tid = rng.randrange(1_000_000)
    if target_type == "user":
        name = f"{FIRST[tid % len(FIRST)]} {LAST[tid % len(LAST)]}"
    else:
        name = COMPANIES[tid % len(COMPANIES)]
    outcome = rng.choices(("success", "denied", "failure"), (90, 7, 3))[0]
    changes = []
    for field, values in fields:
        old, new = values(rng)
        changes.append({"field": field, "old": old, "new": new})
    return {
        "action": action,
        "actor": actor,
        "targets": [{"type": target_type, "id": f"{target_type[0]}-{tid:06d}", "name": name}],
        "outcome": outcome,
        "reason": reason,
        "changes": changes,
        "source": rng.choice(("web", "api", "job")),
        "context": {
            "request_id": f"{BASE_TIME + n:x}{rng.getrandbits(32):08x}",
            "route": f"/api/{target_type}s/{{id}}",
        },
    }  # fmt: skip


def make_events(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [make_event(rng, n) for n in range(count)]


def batches(events: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


def variant(base: dict[str, Any], n: int) -> dict[str, Any]:
    """A cheap copy of ``base`` with its own target id and request id (for building big logs)."""
    target = base["targets"][0]
    request_id = f"{BASE_TIME + n:x}{n * 2654435761 % 2**32:08x}"
    return {
        **base,
        "targets": [{**target, "id": f"{target['type'][0]}-{n:07d}"}],
        "context": {**base["context"], "request_id": request_id},
    }


# --------------------------------------------------------------------------- files


def say(message: str) -> None:
    """Progress goes to stderr, so that stdout carries the report alone."""
    print(message, file=sys.stderr, flush=True)


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def key_of(db: Path) -> Path:
    return db.with_suffix(".key")


def remove_log(db: Path) -> None:
    """Remove a log, its signing key and the witnessed checkpoint kept beside the key."""
    remove_db(db)
    key = key_of(db)
    for path in (key, key.with_name(key.name + ".checkpoint")):
        path.unlink(missing_ok=True)


def new_trail(db: Path) -> graven.Trail:
    remove_log(db)
    return graven.init(str(db), signing_key=key_of(db))


def open_trail(db: Path) -> graven.Trail:
    return graven.open(str(db), signing_key=key_of(db), create=False)


def plain_connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        raise SystemExit(f"{db}: SQLite refused WAL mode ({mode})")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def new_plain(db: Path) -> sqlite3.Connection:
    remove_db(db)
    conn = plain_connect(db)
    conn.execute("CREATE TABLE rows (body TEXT NOT NULL)")
    return conn


def bytes_on_disk(db: Path) -> int:
    """The file's size after ``PRAGMA wal_checkpoint(TRUNCATE)``, plus whatever WAL is left."""
    conn = sqlite3.connect(db)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()
    if busy:
        raise SystemExit(f"{db}: the WAL checkpoint did not complete (a connection is still open)")
    wal = Path(f"{db}-wal")
    return db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def space_by_object(db: Path) -> list[tuple[str, int]]:
    """Bytes per table and index (SQLite's dbstat), largest first; empty when dbstat is missing."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
    except sqlite3.DatabaseError:
        return []
    finally:
        conn.close()


def mean_body(db: Path, table: str) -> float:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute(f"SELECT avg(length(CAST(body AS BLOB))) FROM {table}").fetchone()
        return float(row[0])
    finally:
        conn.close()


# --------------------------------------------------------------------------- measurements


@dataclass
class Run:
    """One timed run: how many entries, wall-clock seconds and CPU seconds of this process."""

    count: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.count / self.wall

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.count * 1e6


class Stopwatch:
    """Wall-clock and process CPU time of a ``with`` block, added up over every use."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self._started = (0.0, 0.0)

    def __enter__(self) -> Stopwatch:
        self._started = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *exc: object) -> None:
        wall, cpu = self._started
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu


INSERT = "INSERT INTO rows (body) VALUES (?)"


def record_pair(lib_db: Path, plain_db: Path, blocks: list[list[dict[str, Any]]], *, batched: bool) -> tuple[Run, Run]:
    """Record the same events through the library and plain sqlite3, block by block.

    The two sides take turns block by block (and swap who goes first on every block), so that
    a noisy spell of the machine or of the disk's fsync latency hits both alike. ``batched``:
    one ``record_many(block)`` / one plain commit per block; otherwise ``record(event)`` / one
    plain commit per event.
    """
    trail = new_trail(lib_db)
    conn = new_plain(plain_db)
    lib, plain = Stopwatch(), Stopwatch()
    record, record_many = trail.record, trail.record_many
    execute, executemany, dumps = conn.execute, conn.executemany, orjson.dumps

    def library(block: list[dict[str, Any]]) -> None:
        with lib:
            if batched:
                record_many(block)
            else:
                for event in block:
                    record(event)

    def baseline(block: list[dict[str, Any]]) -> None:
        with plain:
            if batched:
                execute("BEGIN IMMEDIATE")
                executemany(INSERT, [(dumps(event).decode(),) for event in block])
                execute("COMMIT")
            else:
                for event in block:
                    execute("BEGIN IMMEDIATE")
                    execute(INSERT, (dumps(event).decode(),))
                    execute("COMMIT")

    total = sum(len(block) for block in blocks)
    try:
        for k, block in enumerate(blocks):
            for side in (library, baseline) if k % 2 == 0 else (baseline, library):
                side(block)
        stored = trail.size
        rows = conn.execute("SELECT count(*) FROM rows").fetchone()[0]
    finally:
        conn.close()
        trail.close()
    if (stored, rows) != (total, total):
        raise SystemExit(f"recorded {stored:,} entries and {rows:,} rows, expected {total:,}")
    return Run(total, lib.wall, lib.cpu), Run(total, plain.wall, plain.cpu)


def verify_run(db: Path) -> tuple[Run, graven.Report]:
    """Library: ``trail.verify()`` on a freshly opened trail."""
    trail = open_trail(db)
    try:
        with Stopwatch() as clock:
            report = trail.verify()
    finally:
        trail.close()
    if not report.ok:
        raise SystemExit(f"{db}: verification failed: {report.message}")
    return Run(report.entries, clock.wall, clock.cpu), report


def verify_halves(db: Path) -> tuple[Run, Run]:
    """What verify() runs at once, each timed alone on a freshly opened trail: the streaming pass
    over the entry rows and tiles (the calling thread), and the check of the derived query columns,
    target rows and stream rows (``store.derived_mismatch``, in ranges on other threads)."""
    trail = open_trail(db)
    try:
        assert trail.signer is not None
        trusted = [trail.signer.verifier()]
        with Stopwatch() as streaming, trail.store.scan() as scan:
            signed = [(c.size, c.note) for c in scan.checkpoints()]
            report = verify_stream(scan.entries(), scan.tiles(), signed, trusted)
        if report is None or not report.ok:
            raise SystemExit(f"{db}: the streaming pass failed")
        with Stopwatch() as derived:
            if trail.store.derived_mismatch() is not None:
                raise SystemExit(f"{db}: the derived data disagree with the entries")
    finally:
        trail.close()
    return Run(report.entries, streaming.wall, streaming.cpu), Run(report.entries, derived.wall, derived.cpu)


def plain_read_hash(db: Path) -> Run:
    """Baseline: read every plain row and SHA-256 it (the floor of any full verification)."""
    conn = sqlite3.connect(db)
    conn.text_factory = bytes
    try:
        sha = hashlib.sha256
        count = 0
        with Stopwatch() as clock:
            for (body,) in conn.execute("SELECT body FROM rows ORDER BY rowid"):
                sha(body).digest()
                count += 1
    finally:
        conn.close()
    return Run(count, clock.wall, clock.cpu)


def best(runs: list[Run]) -> Run:
    return max(runs, key=lambda r: r.rate)


def paired(ours: list[Run], theirs: list[Run]) -> tuple[Run, Run]:
    """The library's run and the baseline's run of the same turn: the turn whose ratio is the median.

    Picking each side's best run separately would compare a quiet moment of one side with a noisy
    one of the other; the two runs of one turn saw the same machine.
    """
    turns = sorted(zip(ours, theirs, strict=True), key=lambda pair: pair[0].rate / pair[1].rate)
    return turns[(len(turns) - 1) // 2]


def cpu_count() -> int:
    """The cores this process may run on (the affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def least_cpu(runs: list[Run]) -> float:
    return min(r.cpu_us for r in runs)


# --------------------------------------------------------------------------- the big log


def big_log(workdir: Path, size: int, seed: int) -> tuple[Path, str]:
    """The ``size``-entry log for the proofs; a cached one of exactly that size is reused."""
    db = workdir / f"proofs-{size}.db"
    if db.exists() and key_of(db).exists():
        try:
            trail = open_trail(db)
        except graven.GravenError as exc:
            say(f"  the cached {db} is unusable ({exc}); rebuilding it")
        else:
            try:
                cached = trail.size
                if cached == size:
                    trail.checkpoint()  # a no-op when the latest checkpoint covers the whole log
                    return db, f"reused the cached {db}"
                say(f"  the cached {db} has {cached:,} entries, not {size:,}; rebuilding it")
            finally:
                trail.close()
    say(f"  building {db} with record_many in batches of {BUILD_BATCH:,} ...")
    pool = make_events(min(size, 20_000), seed)
    trail = new_trail(db)
    inside = 0.0
    try:
        with Stopwatch() as whole:
            for first in range(0, size, BUILD_BATCH):
                last = min(first + BUILD_BATCH, size)
                group = [variant(pool[n % len(pool)], n) for n in range(first, last)]
                with Stopwatch() as clock:
                    trail.record_many(group)
                inside += clock.wall
                if last % max(size // 10, BUILD_BATCH) < BUILD_BATCH or last == size:
                    say(f"    {last:>10,} entries, {last / inside:,.0f}/s inside record_many")
            trail.checkpoint()
    finally:
        trail.close()
    return db, (f"built in {whole.wall:.1f} s ({inside:.1f} s inside record_many, {size / inside:,.0f} entries/s)")


@dataclass
class Timings:
    """Per-call latencies in seconds."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def pct(self, p: float) -> float:
        ordered = sorted(self.values)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def summary(self) -> str:
        return (
            f"median {ms(self.median)}, p90 {ms(self.pct(90))}, p99 {ms(self.pct(99))}, "
            f"max {ms(max(self.values))} (n={len(self.values):,})"
        )


def timed(call: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call(*args)
    return time.perf_counter() - start, result


def raw_inclusion(trail: graven.Trail, index: int, size: int) -> list[bytes]:
    """The proof path without the bundle: fetch the perfect subtrees, fold them."""
    _, hashes = trail.store.tree_hashes(merkle.inclusion_nodes(index, size))
    return merkle.inclusion_proof(index, size, hashes)


def random_pair(rng: random.Random, size: int) -> tuple[int, int]:
    new = rng.randrange(1, size + 1)
    return rng.randrange(1, new + 1), new


def point_read(conn: sqlite3.Connection, index: int) -> Any:
    return conn.execute("SELECT body FROM entries WHERE idx = ?", (index,)).fetchone()


def proof_timings(db: Path, size: int, cold_runs: int, warm_runs: int, seed: int) -> dict[str, Timings]:
    """Cold (first call on a freshly opened trail) and warm (many calls) proof latencies."""
    rng = random.Random(seed)
    out: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        out.setdefault(name, []).append(seconds)

    trail = open_trail(db)
    try:
        assert trail.signer is not None
        verifier = trail.signer.verifier()
        note = trail.latest_checkpoint()
        assert note is not None
        checkpoint, _ = open_checkpoint(note, [verifier])
    finally:
        trail.close()
    if checkpoint.size != size:
        raise SystemExit(f"{db}: the latest checkpoint has size {checkpoint.size}, not {size}")

    def check(trail: graven.Trail, index: int, proof: list[bytes]) -> None:
        leaf = trail.store.entry(index)
        assert leaf is not None
        root = checkpoint.root_hash
        if not merkle.verify_inclusion(merkle.leaf_hash(leaf), index, size, proof, root):
            raise SystemExit(f"the inclusion proof of entry {index} does not check")

    def check_consistency(trail: graven.Trail, old: int, new: int, proof: list[bytes]) -> None:
        roots = []
        for n in (old, new):
            _, hashes = trail.store.tree_hashes(merkle.root_nodes(n))
            roots.append(merkle.root_from(n, hashes))
        if not merkle.verify_consistency(old, new, roots[0], roots[1], proof):
            raise SystemExit(f"the consistency proof from {old} to {new} does not check")

    # Cold: each figure is the first call on its own freshly opened trail (or plain connection).
    for _ in range(cold_runs):
        index = rng.randrange(size)
        with open_trail(db) as trail:
            seconds, bundle = timed(trail.prove, index)
        add("prove cold", seconds)
        result = graven.verify_bundle(bundle, [verifier])
        if not result.ok:
            raise SystemExit(f"the bundle of entry {index} does not verify: {result.message}")

        index = rng.randrange(size)
        with open_trail(db) as trail:
            seconds, proof = timed(raw_inclusion, trail, index, size)
            check(trail, index, proof)
        add("raw cold", seconds)

        old, new = random_pair(rng, size)
        with open_trail(db) as trail:
            seconds, proof = timed(trail.consistency, old, new)
            check_consistency(trail, old, new, proof)
        add("consistency cold", seconds)

        index = rng.randrange(size)
        conn = plain_connect(db)
        try:
            seconds, _ = timed(point_read, conn, index)
        finally:
            conn.close()
        add("point cold", seconds)

    # Warm: one trail, many calls at random indices and size pairs.
    clock = time.perf_counter
    with open_trail(db) as trail:
        for _ in range(warm_runs):
            index = rng.randrange(size)
            start = clock()
            trail.prove(index)
            add("prove warm", clock() - start)
        for k in range(warm_runs):
            index = rng.randrange(size)
            start = clock()
            proof = raw_inclusion(trail, index, size)
            add("raw warm", clock() - start)
            if k < 20:
                check(trail, index, proof)
        for k in range(warm_runs):
            old, new = random_pair(rng, size)
            start = clock()
            proof = trail.consistency(old, new)
            add("consistency warm", clock() - start)
            if k < 20:
                check_consistency(trail, old, new, proof)
    conn = plain_connect(db)
    try:
        for _ in range(warm_runs):
            index = rng.randrange(size)
            start = clock()
            point_read(conn, index)
            add("point warm", clock() - start)
    finally:
        conn.close()
    return {name: Timings(values) for name, values in out.items()}


# --------------------------------------------------------------------------- the report


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def per_second(value: float) -> str:
    return f"{value:,.0f} /s"


@dataclass
class Row:
    measurement: str
    ours: str
    base: str
    ratio: str
    goal: str
    result: str


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_table(rows: list[Row]) -> None:
    header = Row("measurement", "graven", "baseline", "ratio", "goal", "result")
    cells = [[r.measurement, r.ours, r.base, r.ratio, r.goal, r.result] for r in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(6)]
    right = (False, True, True, True, False, False)
    for n, row in enumerate(cells):
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right, strict=True)]
        print("  ".join(parts).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


# --------------------------------------------------------------------------- profiles


def profile(workdir: Path, entries: int, seed: int, top: int) -> None:
    """cProfile of record_many (batches of BATCH) and of verify() on the log it wrote."""
    groups = batches(make_events(entries, seed), BATCH)
    db = workdir / "profile.db"
    profiler = cProfile.Profile()
    with new_trail(db) as trail, Stopwatch() as clock:
        profiler.enable()
        for group in groups:
            trail.record_many(group)
        profiler.disable()
    print(f"== cProfile: record_many of {entries:,} events in batches of {BATCH:,}, "
          f"top {top} by tottime ({clock.wall:.2f} s wall under the profiler) ==")  # fmt: skip
    print_profile(profiler, top)

    profiler = cProfile.Profile()
    with open_trail(db) as trail, Stopwatch() as clock:
        profiler.enable()
        report = trail.verify()
        profiler.disable()
    if not report.ok:
        raise SystemExit(f"{db}: verification failed: {report.message}")
    print(f"== cProfile: verify() of that {entries:,}-entry log, top {top} by tottime "
          f"({clock.wall:.2f} s wall under the profiler) ==")  # fmt: skip
    print("   cProfile sees the calling thread only: verify() checks the derived query columns in")
    print("   a second thread (store.derived_mismatch, timed alone below) and waits for it at the")
    print("   end (a lock 'acquire' line above, when it finishes after the calling thread).")
    print_profile(profiler, top)

    with open_trail(db) as trail:
        total, _ = timed(trail.verify)
        derived, _ = timed(trail.store.derived_mismatch)
        assert isinstance(trail.store, SQLiteStore)
        one_range, _ = timed(trail.store.derived_mismatch, 1)
        with trail.store.scan() as scan:
            entry_rows, _ = timed(lambda: sum(1 for _ in scan.entries()))
            tree_rows, _ = timed(lambda: sum(1 for _ in scan.tiles()))
    print(f"Without the profiler, on the same {entries:,}-entry log:")
    print(f"  verify()                                  {ms(total):>12}")
    print(f"  store.derived_mismatch() alone (SQL)      {ms(derived):>12} ({derived_parts()} ranges at once)")
    print(f"  ... in one range, on one thread           {ms(one_range):>12}")
    print(f"  reading the entry rows alone              {ms(entry_rows):>12}")
    print(f"  reading the tiles alone                   {ms(tree_rows):>12}")


def print_profile(profiler: cProfile.Profile, top: int) -> None:
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).strip_dirs().sort_stats("tottime").print_stats(top)
    lines = [line.rstrip() for line in stream.getvalue().splitlines() if line.strip()]
    print("\n".join(lines))
    print()


# --------------------------------------------------------------------------- main


@dataclass
class Sizes:
    entries: int
    single: int
    big: int
    proofs: int
    cold: int
    repeat: int


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Graven beside plain sqlite3: recording, verification, proofs, bytes on disk."
    )
    add = parser.add_argument
    add("--entries", type=int, help="entries for the batched recording and verify runs (20,000)")
    add("--single", type=int, help="entries for the one-at-a-time runs, one fsync each (2,000)")
    add("--big", type=int, help="size of the log for the proof timings (1,000,000)")
    add("--proofs", type=int, help="warm calls per kind of proof, at random indices (2,000)")
    add("--cold", type=int, help="cold calls per kind, each on a freshly opened trail (21)")
    add("--repeat", type=int, default=3, help="runs per throughput figure; the median-ratio run is shown (3)")
    add("--workdir", type=Path, help="keep the files here and reuse the big log across runs "
        "(default: a temporary directory, removed at the end)")  # fmt: skip
    add("--quick", action="store_true", help="a fast smoke run with small sizes (CI)")
    add("--profile", action="store_true",
        help="print cProfile of record_many and verify() instead of the benchmark")  # fmt: skip
    add("--seed", type=int, default=7, help="seed of the generated events and indices (7)")
    args = parser.parse_args(argv)
    quick = Sizes(2_000, 200, 10_000, 200, 5, args.repeat)
    full = Sizes(20_000, 2_000, 1_000_000, 2_000, 21, args.repeat)
    default = quick if args.quick else full
    sizes = Sizes(**{
        name: default_value if getattr(args, name) is None else getattr(args, name)
        for name, default_value in vars(default).items()
    })  # fmt: skip
    if min(vars(sizes).values()) < 1:
        parser.error("sizes and counts must be positive")
    with workspace(args.workdir) as workdir:
        if args.profile:
            profile(workdir, sizes.entries, args.seed, 15)
        else:
            run(workdir, sizes, args.seed)
    return 0


@contextmanager
def workspace(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path.resolve()
        return
    temp = Path(tempfile.mkdtemp(prefix="graven-bench-"))
    try:
        yield temp
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def run(workdir: Path, sizes: Sizes, seed: int) -> None:
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    entries, single, big, repeat = sizes.entries, sizes.single, sizes.big, sizes.repeat
    events = make_events(max(entries, single), seed)
    single_blocks = batches(events[:single], SINGLE_BLOCK)
    groups = batches(events[:entries], BATCH)
    event_bytes = statistics.mean(len(orjson.dumps(e)) for e in events[:entries])
    files = {name: workdir / f"{name}.db" for name in ("lib1", "plain1", "libN", "plainN")}

    say(f"workdir {workdir}")
    say(f"recording: {single:,} one at a time, {entries:,} in batches of {BATCH:,}; "
        f"{repeat} runs each; library and baseline take turns every block")  # fmt: skip
    runs: dict[str, list[Run]] = {name: [] for name in files}
    for rep in range(repeat):
        lib, plain = record_pair(files["lib1"], files["plain1"], single_blocks, batched=False)
        runs["lib1"].append(lib)
        runs["plain1"].append(plain)
        lib, plain = record_pair(files["libN"], files["plainN"], groups, batched=True)
        runs["libN"].append(lib)
        runs["plainN"].append(plain)
        say("  run {}: record {}, plain {}; record_many {}, plain {}".format(
            rep + 1, *(per_second(runs[k][-1].rate) for k in files)))  # fmt: skip

    say(f"verify(): the {entries:,}-entry record_many log, {repeat} runs")
    verify_runs: list[Run] = []
    hash_runs: list[Run] = []
    for _ in range(repeat):
        result, report = verify_run(files["libN"])
        verify_runs.append(result)
        hash_runs.append(plain_read_hash(files["plainN"]))
        say(f"  verify {per_second(result.rate)}, plain read+hash {per_second(hash_runs[-1].rate)}")
    halves = [verify_halves(files["libN"]) for _ in range(repeat)]

    say(f"proofs on a {big:,}-entry log")
    big_db, how = big_log(workdir, big, seed + 1)
    say(f"  {how}")
    say(f"  {sizes.cold} cold and {sizes.proofs:,} warm calls per kind ...")
    timings = proof_timings(big_db, big, sizes.cold, sizes.proofs, seed + 2)

    lib_bytes, plain_bytes = bytes_on_disk(files["libN"]), bytes_on_disk(files["plainN"])
    big_bytes = bytes_on_disk(big_db)
    breakdown = space_by_object(files["libN"])
    leaf_bytes = mean_body(files["libN"], "entries")
    elapsed = time.perf_counter() - started

    lib1, plain1 = paired(runs["lib1"], runs["plain1"])
    libn, plainn = paired(runs["libN"], runs["plainN"])
    ver, hashed = paired(verify_runs, hash_runs)
    print("Graven benchmark: the library beside plain sqlite3, both measured in this run")
    print(f"  Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, orjson "
          f"{orjson.__version__}, graven {graven.__version__}, {platform.system()} "
          f"{platform.machine()}, {cpu_count()} cores; load average {load_before:.1f} at the "
          f"start, {os.getloadavg()[0]:.1f} at the end")  # fmt: skip
    print(
        f"  events: {event_bytes:,.0f} bytes of JSON on average (actor, 1 target, 2 changes, "
        f"reason, source, context); stored by graven as {leaf_bytes:,.0f}-byte RFC 8785 leaves"
    )
    print(f"  throughput: of {repeat} runs, the run whose graven/baseline ratio is the median (both sides "
          f"from that run); within a run they take turns every {SINGLE_BLOCK} records or batch; "
          "latencies: medians")  # fmt: skip
    print()
    rows = [
        Row(f"record(), 1 per commit ({single:,})", per_second(lib1.rate),
            per_second(plain1.rate), f"{lib1.rate / plain1.rate:.0%}", ">= 70 % of baseline",
            verdict(lib1.rate >= 0.70 * plain1.rate)),
        Row(f"record_many(), {BATCH:,} per commit ({entries:,})", per_second(libn.rate),
            per_second(plainn.rate), f"{libn.rate / plainn.rate:.0%}", ">= 40 % of baseline",
            verdict(libn.rate >= 0.40 * plainn.rate)),
        Row(f"verify() ({entries:,} entries)", per_second(ver.rate), per_second(hashed.rate),
            f"{ver.rate / hashed.rate:.0%}", ">= 300,000 /s", verdict(ver.rate >= 300_000)),
    ]  # fmt: skip
    for kind, label in (("prove", "prove(i)"), ("raw", "raw inclusion proof"),
                        ("consistency", "consistency(m, n)")):  # fmt: skip
        for temp in ("cold", "warm"):
            ours, base = timings[f"{kind} {temp}"].median, timings[f"point {temp}"].median
            rows.append(Row(f"{label} at {big:,}, {temp}", ms(ours), ms(base),
                            f"{ours / base:.1f}x", "< 1 ms", verdict(ours < 0.001)))  # fmt: skip
    lib_per, plain_per = lib_bytes / entries, plain_bytes / entries
    rows.append(Row(f"bytes on disk per entry ({entries:,})", f"{lib_per:,.0f} B",
                    f"{plain_per:,.0f} B", f"{lib_per / plain_per:.2f}x", "<= 2x baseline",
                    verdict(lib_per <= 2 * plain_per)))  # fmt: skip
    print_table(rows)
    print()
    print("Baselines (plain sqlite3, WAL, synchronous=FULL)")
    print("  recording: orjson.dumps of the same events into one TEXT column, no index, the same")
    print("             rows per commit (BEGIN IMMEDIATE ... COMMIT)")
    print("  verify():  read every plain row and SHA-256 it: the floor of any full check")
    print("  proofs:    one primary-key read (SELECT body FROM entries WHERE idx = ?) of the same")
    print(f"             {big:,}-entry file; cold = first query on a new connection")
    print()
    print("Details")
    print("  cold = first call on a freshly opened graven.open(...) trail: new connections, an")
    print(f"  empty SQLite cache, a warm OS page cache; median of {sizes.cold} fresh opens.")
    print(f"  warm = one trail, {sizes.proofs:,} calls at random indices (consistency: random")
    print(f"  1 <= m <= n <= {big:,})")
    for kind in ("prove", "raw", "consistency", "point"):
        for temp in ("cold", "warm"):
            print(f"    {kind + ' ' + temp:<17} {timings[f'{kind} {temp}'].summary()}")
    print("  every run, entries/s (CPU us per entry, least of the runs):")
    for label, ours, base in (
        ("record()", runs["lib1"], runs["plain1"]),
        ("record_many()", runs["libN"], runs["plainN"]),
        ("verify()", verify_runs, hash_runs),
    ):
        print(f"    {label:<14} graven {fmt_runs(ours)} ({least_cpu(ours):,.1f} us); "
              f"baseline {fmt_runs(base)} ({least_cpu(base):,.1f} us)")  # fmt: skip
    streaming, derived = least_cpu([h[0] for h in halves]), least_cpu([h[1] for h in halves])
    print(f"  verify() is two halves run at once (CPU us per entry, each alone, least of {repeat} runs):")
    print(f"    the streaming pass over entries and tiles {streaming:,.2f} us; the derived-data check "
          f"{derived:,.2f} us, in {derived_parts()} ranges on {derived_parts()} threads")  # fmt: skip
    print(f"  big log ({big:,} entries): {how}; {big_bytes / big:,.0f} bytes on disk per entry")
    print(
        f"  bytes on disk, {entries:,} entries after PRAGMA wal_checkpoint(TRUNCATE): graven "
        f"{lib_bytes:,}, baseline {plain_bytes:,}; graven per table and index (dbstat):"
    )
    shown = [(name, used) for name, used in breakdown if used >= 4 * entries]
    width = max((len(name) for name, _ in shown), default=0)
    for name, used in shown:
        print(f"    {name:<{width}}  {used / entries:>7,.0f} B/entry")
    print(f"    (everything else: {sum(u for n, u in breakdown if (n, u) not in shown):,} bytes)")
    print(f"  verify() said: {report.message}")
    print(f"  total time {elapsed:.0f} s")


def fmt_runs(runs: list[Run]) -> str:
    return " / ".join(f"{r.rate:,.0f}" for r in runs)


if __name__ == "__main__":
    sys.exit(main())
