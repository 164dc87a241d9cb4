"""An ``eventsourcing`` application on Graven beside the same application on the library's own
SQLite and PostgreSQL persistence, in one run.

    .venv/bin/python bench/bench_sourcing.py              # the full benchmark (a few minutes)
    .venv/bin/python bench/bench_sourcing.py --quick      # a smoke run with small sizes (CI)
    .venv/bin/python bench/bench_sourcing.py --no-pg      # SQLite only
    .venv/bin/python bench/bench_sourcing.py --url postgresql://user@host:5432/postgres

One aggregate (an account whose ``credit`` command triggers one ``Credited`` event) and one
application class; only ``PERSISTENCE_MODULE`` differs: ``graven.eventsourcing`` (every event a
Merkle-tree entry of a signed log, the stream index refusing concurrent writers) beside
``eventsourcing.sqlite`` and ``eventsourcing.postgres`` (plain tables with a unique index).

1. Appends, 1 event per command (``--single`` commands) and 100 per command (``--batched``
   commands): ``app.save(account)`` after one or 100 ``credit`` calls on an account kept in memory.
   The backends take turns every 100 commands (single) or every command (batched), so a noisy
   spell of the CPU or of the disk's fsync latency hurts every side alike. Goals on SQLite: at
   least the library's rate for single commands, at least twice it with 100 per command.
2. Loading an account of ``--events`` (100,000) events: ``app.repository.get(id)`` with no
   snapshot (median of 3) and after ``app.take_snapshot(id)`` (p50 of 30, snapshots stored by the
   same persistence module). Goal: under 5 ms with a snapshot.

PostgreSQL runs in a scratch database ``graven_bench_es_<random>`` on the server ``--url`` names,
dropped at the end. This is a benchmark, not a test: a MISS is reported, not raised.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_log import Row, ms, per_second, print_table, say, verdict

BUILD = 1_000  # events per save while building the big account
TURN = 100  # single commands per turn


class Account(Aggregate):
    """The benchmark's aggregate: a balance credited one amount at a time."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.balance = 0

    @event("Credited")
    def credit(self, amount: int) -> None:
        self.balance += amount


class Accounts(Application[UUID]):
    """The one application class every backend runs."""

    def open(self, owner: str) -> Account:
        account = Account(owner)
        self.save(account)
        return account


@dataclass
class Side:
    """One backend: its name, its settings and its applications (one with snapshots, one without)."""

    name: str
    env: dict[str, str]
    app: Accounts | None = None
    plain: Accounts | None = None

    def open(self) -> None:
        self.app = Accounts(env={**self.env, "IS_SNAPSHOTTING_ENABLED": "yes"})
        self.plain = Accounts(env=self.env)

    def close(self) -> None:
        for app in (self.app, self.plain):
            if app is not None:
                app.close()


# --------------------------------------------------------------------------- PostgreSQL


def db_url(url: str, dbname: str, schema: str | None = None) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
    if schema is not None:
        query.append(("schema", schema))
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, urlencode(query), ""))


def library_pg_env(url: str, dbname: str) -> dict[str, str]:
    parts = urlsplit(url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": parts.hostname or "127.0.0.1", "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": parts.username or "postgres", "POSTGRES_PASSWORD": parts.password or "",
        "POSTGRES_SCHEMA": "library",
    }  # fmt: skip


@contextmanager
def scratch_database(url: str) -> Iterator[str]:
    name = f"graven_bench_es_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(db_url(url, name), autocommit=True) as conn:
            conn.execute("CREATE SCHEMA library")
        yield name
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --------------------------------------------------------------------------- measurements


def append_rates(sides: list[Side], commands: int, per_command: int) -> dict[str, float]:
    """Events per second of ``commands`` saves of ``per_command`` events each, the sides taking turns."""
    accounts = {}
    for side in sides:
        assert side.app is not None
        accounts[side.name] = side.app.open(side.name)
    spent = dict.fromkeys(accounts, 0.0)
    turn = TURN if per_command == 1 else 1
    for _ in range(0, commands, turn):
        for side in sides:
            assert side.app is not None
            app, account = side.app, accounts[side.name]
            started = time.perf_counter()
            for _ in range(turn):
                for _ in range(per_command):
                    account.credit(1)
                app.save(account)
            spent[side.name] += time.perf_counter() - started
    done = commands - commands % turn if commands % turn else commands
    return {name: done * per_command / seconds for name, seconds in spent.items()}


def build(side: Side, events: int) -> UUID:
    assert side.app is not None
    account = side.app.open("big")
    for start in range(0, events, BUILD):
        for _ in range(min(BUILD, events - start)):
            account.credit(1)
        side.app.save(account)
    return account.id


def load_times(side: Side, ident: UUID, events: int, repeat_plain: int, repeat_snap: int) -> tuple[float, float]:
    """Median seconds to load the account with no snapshot, and with one taken at its last version."""
    assert side.app is not None
    assert side.plain is not None
    plain = []
    for _ in range(repeat_plain):
        started = time.perf_counter()
        account = side.plain.repository.get(ident)
        plain.append(time.perf_counter() - started)
        assert account.balance == events, (side.name, account.balance)
    side.app.take_snapshot(ident)
    snap = []
    for _ in range(repeat_snap):
        started = time.perf_counter()
        account = side.app.repository.get(ident)
        snap.append(time.perf_counter() - started)
        assert account.balance == events, (side.name, account.balance)
    return statistics.median(plain), statistics.median(snap)


# --------------------------------------------------------------------------- the report


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x"


def append_rows(rates: dict[str, float], label: str, goal: float, pairs: list[tuple[str, str]]) -> list[Row]:
    rows = []
    for ours, theirs in pairs:
        ok = rates[ours] >= goal * rates[theirs]
        goal_text = f">= {goal:g}x" if ours == "graven/SQLite" else "-"
        result = verdict(ok) if ours == "graven/SQLite" else ""
        rows.append(Row(f"{label}, {ours} vs {theirs}", per_second(rates[ours]), per_second(rates[theirs]),
                        ratio(rates[ours], rates[theirs]), goal_text, result))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--single", type=int, default=2_000, help="commands of one event (default 2,000)")
    parser.add_argument("--batched", type=int, default=200, help="commands of 100 events (default 200)")
    parser.add_argument("--events", type=int, default=100_000, help="events of the account loaded (100,000)")
    parser.add_argument(
        "--url", default=os.environ.get("GRAVEN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--no-pg", action="store_true", help="leave PostgreSQL out")
    args = parser.parse_args(argv)
    if args.quick:
        args.single, args.batched, args.events = 200, 20, 2_000
    workdir = Path(tempfile.mkdtemp(prefix="graven-bench-es-"))
    try:
        if args.no_pg:
            run(args, workdir, None)
        else:
            with scratch_database(args.url) as dbname:
                run(args, workdir, dbname)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def run(args: argparse.Namespace, workdir: Path, dbname: str | None) -> None:
    sides = [
        Side("graven/SQLite", {"PERSISTENCE_MODULE": "graven.eventsourcing", "GRAVEN_DB": str(workdir / "graven.db"),
                               "GRAVEN_SIGNING_KEY": str(workdir / "graven.key")}),
        Side("library/SQLite", {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(workdir / "es.db")}),
    ]  # fmt: skip
    pairs = [("graven/SQLite", "library/SQLite")]
    if dbname is not None:
        sides += [
            Side("graven/PostgreSQL", {"PERSISTENCE_MODULE": "graven.eventsourcing",
                                       "GRAVEN_DB": db_url(args.url, dbname, "graven"),
                                       "GRAVEN_SIGNING_KEY": str(workdir / "graven-pg.key")}),
            Side("library/PostgreSQL", library_pg_env(args.url, dbname)),
        ]  # fmt: skip
        pairs.append(("graven/PostgreSQL", "library/PostgreSQL"))
    for side in sides:
        side.open()
    try:
        say(f"appends: {args.single:,} commands of 1 event ...")
        single = append_rates(sides, args.single, 1)
        say(f"appends: {args.batched:,} commands of 100 events ...")
        batched = append_rates(sides, args.batched, 100)
        loads: dict[str, tuple[float, float]] = {}
        for side in sides:
            say(f"{side.name}: building an account of {args.events:,} events ...")
            ident = build(side, args.events)
            loads[side.name] = load_times(side, ident, args.events, 3, 30)
    finally:
        for side in sides:
            side.close()
    report(args, single, batched, loads, pairs)


def report(args: argparse.Namespace, single: dict[str, float], batched: dict[str, float],
           loads: dict[str, tuple[float, float]], pairs: list[tuple[str, str]]) -> None:  # fmt: skip
    import eventsourcing

    print("graven.eventsourcing beside the eventsourcing library's own persistence, measured in this run")
    print(f"  Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, eventsourcing "
          f"{getattr(eventsourcing, '__version__', '9')}, {os.cpu_count()} CPUs")  # fmt: skip
    print("  the same Account aggregate and application; only PERSISTENCE_MODULE differs. Both SQLite")
    print("  sides use WAL with SQLite's default synchronous=FULL; graven also builds the Merkle tree,")
    print("  keeps the stream index and signs a checkpoint every second.")
    print()
    rows = append_rows(single, f"append, 1 event per command ({args.single:,})", 1, pairs)
    rows += append_rows(batched, f"append, 100 events per command ({args.batched:,})", 2, pairs)
    for ours, theirs in pairs:
        (ours_plain, ours_snap), (their_plain, their_snap) = loads[ours], loads[theirs]
        rows.append(Row(f"load {args.events:,} events, no snapshot, {ours} vs {theirs}", ms(ours_plain),
                        ms(their_plain), ratio(ours_plain, their_plain), "-", ""))  # fmt: skip
        goal = ours == "graven/SQLite" or ours == "graven/PostgreSQL"
        rows.append(Row(f"load {args.events:,} events, with snapshot, {ours} vs {theirs}", ms(ours_snap),
                        ms(their_snap), ratio(ours_snap, their_snap), "< 5 ms" if goal else "-",
                        verdict(ours_snap < 0.005) if goal else ""))  # fmt: skip
    print_table(rows)
    print()
    print("ratio: graven's figure over the library's (rates: higher is better; load times: lower is better)")


if __name__ == "__main__":
    raise SystemExit(main())
