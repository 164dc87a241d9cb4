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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from psycopg import sql

import graven
from graven.sourcing import Aggregate as SourcedAggregate
from graven.sourcing import Repository, Snapshots

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


class Ledger(SourcedAggregate):
    """The same account as a graven.sourcing aggregate (its changes recorded per event, as that module does)."""

    stream_type = "account"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.owner = ""
        self.balance = 0

    def apply(self, event: str, data: Mapping[str, Any]) -> None:
        if event == "Opened":
            self.owner = data["owner"]
        elif event == "Credited":
            self.balance += data["amount"]


class Side:
    """One backend: opens and saves accounts, credits them, loads them with and without a snapshot."""

    name: str

    def new(self, owner: str) -> Any: ...
    def credit(self, account: Any) -> None: ...
    def save(self, account: Any) -> None: ...
    def ident(self, account: Any) -> Any: ...
    def load(self, ident: Any, *, snapshot: bool) -> int: ...
    def take_snapshot(self, ident: Any) -> None: ...
    def close(self) -> None: ...


class LibrarySide(Side):
    """An eventsourcing application on a persistence module (one app with snapshots, one without)."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.app = Accounts(env={**env, "IS_SNAPSHOTTING_ENABLED": "yes"})
        self.plain = Accounts(env=env)

    def new(self, owner: str) -> Account:
        return self.app.open(owner)

    def credit(self, account: Account) -> None:
        account.credit(1)

    def save(self, account: Account) -> None:
        self.app.save(account)

    def ident(self, account: Account) -> UUID:
        return account.id

    def load(self, ident: UUID, *, snapshot: bool) -> int:
        balance: int = (self.app if snapshot else self.plain).repository.get(ident).balance
        return balance

    def take_snapshot(self, ident: UUID) -> None:
        self.app.take_snapshot(ident)

    def close(self) -> None:
        self.app.close()
        self.plain.close()


class SourcingSide(Side):
    """The same account on graven.sourcing (its Repository; snapshots in an application database)."""

    ACTOR: ClassVar[dict[str, str]] = {"type": "service", "id": "bench"}

    def __init__(self, name: str, db: str, key: Path, snapshots: str) -> None:
        self.name = name
        self.trail = graven.open(db, signing_key=key)
        self.plain = Repository(self.trail)
        self.snapshots = Snapshots(snapshots)
        self.repo = Repository(self.trail, snapshots=self.snapshots, snapshot_every=2**62)

    def new(self, owner: str) -> Ledger:
        account = Ledger(f"acct-{secrets.token_hex(8)}")
        account.trigger("Opened", {"owner": owner}, actor=self.ACTOR)
        self.plain.save(account)
        return account

    def credit(self, account: Ledger) -> None:
        account.trigger("Credited", {"amount": 1}, actor=self.ACTOR)

    def save(self, account: Ledger) -> None:
        self.plain.save(account)

    def ident(self, account: Ledger) -> str:
        return account.id

    def load(self, ident: str, *, snapshot: bool) -> int:
        return (self.repo if snapshot else self.plain).get(Ledger, ident).balance

    def take_snapshot(self, ident: str) -> None:
        self.repo.snapshot(self.plain.get(Ledger, ident))

    def close(self) -> None:
        self.snapshots.close()
        self.trail.close()


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
    accounts = {side.name: side.new(side.name) for side in sides}
    spent = dict.fromkeys(accounts, 0.0)
    turn = TURN if per_command == 1 else 1
    rounds = max(1, commands // turn)
    for _ in range(rounds):
        for side in sides:
            account = accounts[side.name]
            started = time.perf_counter()
            for _ in range(turn):
                for _ in range(per_command):
                    side.credit(account)
                side.save(account)
            spent[side.name] += time.perf_counter() - started
    return {name: rounds * turn * per_command / seconds for name, seconds in spent.items()}


def build(side: Side, events: int) -> Any:
    account = side.new("big")
    for start in range(0, events, BUILD):
        for _ in range(min(BUILD, events - start)):
            side.credit(account)
        side.save(account)
    return side.ident(account)


def load_times(side: Side, ident: Any, events: int, repeat_plain: int, repeat_snap: int) -> tuple[float, float]:
    """Median seconds to load the account with no snapshot, and with one taken at its last version."""
    plain = []
    for _ in range(repeat_plain):
        started = time.perf_counter()
        balance = side.load(ident, snapshot=False)
        plain.append(time.perf_counter() - started)
        assert balance == events, (side.name, balance)
    side.take_snapshot(ident)
    snap = []
    for _ in range(repeat_snap):
        started = time.perf_counter()
        balance = side.load(ident, snapshot=True)
        snap.append(time.perf_counter() - started)
        assert balance == events, (side.name, balance)
    return statistics.median(plain), statistics.median(snap)


# --------------------------------------------------------------------------- the report


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x"


def append_rows(rates: dict[str, float], label: str, goal: float, pairs: list[tuple[str, str]]) -> list[Row]:
    rows = []
    for ours, theirs in pairs:
        goal_here = ours.endswith("/SQLite")  # the goals are set on SQLite
        ok = rates[ours] >= goal * rates[theirs]
        rows.append(Row(f"{label}, {ours} vs {theirs}", per_second(rates[ours]), per_second(rates[theirs]),
                        ratio(rates[ours], rates[theirs]), f">= {goal:g}x" if goal_here else "-",
                        verdict(ok) if goal_here else ""))  # fmt: skip
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
    module, sourcing, library = "graven.eventsourcing", "graven.sourcing", "library"
    sides: list[Side] = [
        LibrarySide(f"{module}/SQLite", {"PERSISTENCE_MODULE": "graven.eventsourcing",
                                         "GRAVEN_DB": str(workdir / "module.db"),
                                         "GRAVEN_SIGNING_KEY": str(workdir / "module.key")}),
        SourcingSide(f"{sourcing}/SQLite", str(workdir / "sourcing.db"), workdir / "sourcing.key",
                     str(workdir / "snapshots.db")),
        LibrarySide(f"{library}/SQLite", {"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                                          "SQLITE_DBNAME": str(workdir / "library.db")}),
    ]  # fmt: skip
    pairs = [(f"{module}/SQLite", f"{library}/SQLite"), (f"{sourcing}/SQLite", f"{library}/SQLite")]
    if dbname is not None:
        sides += [
            LibrarySide(f"{module}/PostgreSQL", {"PERSISTENCE_MODULE": "graven.eventsourcing",
                                                 "GRAVEN_DB": db_url(args.url, dbname, "module"),
                                                 "GRAVEN_SIGNING_KEY": str(workdir / "module-pg.key")}),
            SourcingSide(f"{sourcing}/PostgreSQL", db_url(args.url, dbname, "sourcing"), workdir / "sourcing-pg.key",
                         db_url(args.url, dbname, "snapshots")),
            LibrarySide(f"{library}/PostgreSQL", library_pg_env(args.url, dbname)),
        ]  # fmt: skip
        pairs += [
            (f"{module}/PostgreSQL", f"{library}/PostgreSQL"),
            (f"{sourcing}/PostgreSQL", f"{library}/PostgreSQL"),
        ]
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

    print("graven (its eventsourcing module, and graven.sourcing) beside the eventsourcing library's own")
    print("persistence, measured in this run")
    print(f"  Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, eventsourcing "
          f"{getattr(eventsourcing, '__version__', '9')}, {os.cpu_count()} CPUs")  # fmt: skip
    print("  graven.eventsourcing and library: the same Account aggregate and application, only")
    print("  PERSISTENCE_MODULE differs; graven.sourcing: the same account as its own Aggregate (each event")
    print("  also records the balance's old and new value), snapshots in an application database.")
    print("  Every SQLite side uses WAL with synchronous=FULL; graven also builds the Merkle tree, keeps the")
    print("  stream index and signs a checkpoint every second.")
    print()
    rows = append_rows(single, f"append, 1 event per command ({args.single:,})", 1, pairs)
    rows += append_rows(batched, f"append, 100 events per command ({args.batched:,})", 2, pairs)
    for ours, theirs in pairs:
        (ours_plain, ours_snap), (their_plain, their_snap) = loads[ours], loads[theirs]
        rows.append(Row(f"load {args.events:,} events, no snapshot, {ours} vs {theirs}", ms(ours_plain),
                        ms(their_plain), ratio(ours_plain, their_plain), "-", ""))  # fmt: skip
        goal = ours.startswith("graven")
        rows.append(Row(f"load {args.events:,} events, with snapshot, {ours} vs {theirs}", ms(ours_snap),
                        ms(their_snap), ratio(ours_snap, their_snap), "< 5 ms" if goal else "-",
                        verdict(ours_snap < 0.005) if goal else ""))  # fmt: skip
    print_table(rows)
    print()
    print("ratio: graven's figure over the library's (rates: higher is better; load times: lower is better)")


if __name__ == "__main__":
    raise SystemExit(main())
