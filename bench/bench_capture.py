"""What capture costs the application: auditing on a request path, and SQLAlchemy tracking beside Continuum.

    .venv/bin/python bench/bench_capture.py                 # the full run (a minute or two)
    .venv/bin/python bench/bench_capture.py --quick         # a smoke run with small sizes (CI)
    .venv/bin/python bench/bench_capture.py --pg URL        # the ORM part on PostgreSQL too
    .venv/bin/python bench/bench_capture.py --workdir DIR   # keep the files in DIR

Part 1, the request path: the same request function (parse a JSON body, look a customer up,
build and encode the response) run bare, with ``trail.record()`` after it, inside
``with trail.action(...)``, and with a plain durable ``sqlite3`` INSERT + COMMIT after it (WAL,
``synchronous=FULL``: the floor of any audit write that is durable before the request returns).
Each of them inside ``trail.context(actor, ip, request id)`` as the middleware would set it,
except the bare and plain ones. Per-call latency, p50 and p99 in microseconds; "added" is the
percentile of the per-call differences from the bare request (call n of each variant ran in the
same turn), not the difference of two percentiles.

Part 2, ORM writes: the same model and the same writes through three sessionmakers, each on its
own SQLite file (WAL, ``synchronous=FULL``): untracked, tracked by ``graven.capture.sqlalchemy.track``
(with its trail in a further file), and versioned by SQLAlchemy-Continuum (its own session class,
so it sees only its own sessions). Time per commit; the ratio is against untracked; the goal is
less overhead than Continuum. Continuum does not see ORM bulk UPDATE statements, so that row has no
Continuum figure. Sides take turns every block of commits, in rotating order, so a noisy spell of
the machine hits all alike; figures are the best of ``--repeat`` runs.

This is a benchmark, not a test: a MISS is reported, not raised. The exit status is non-zero only
when something is wrong (an entry or version row is missing, the trail fails verification).
"""

from __future__ import annotations

import argparse
import platform
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Session, configure_mappers, mapped_column, sessionmaker

import graven
from graven.capture.sqlalchemy import Tracker, track

BLOCK = 50  # calls or commits per turn


def say(message: str) -> None:
    """Progress goes to stderr, so that stdout carries the report alone."""
    print(message, file=sys.stderr, flush=True)


@dataclass
class Row:
    measurement: str
    ours: str
    base: str
    ratio: str
    goal: str
    result: str


def print_table(header: Row, rows: list[Row]) -> None:
    cells = [[r.measurement, r.ours, r.base, r.ratio, r.goal, r.result] for r in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(6)]
    right = (False, True, True, True, False, False)
    for n, row in enumerate(cells):
        print("  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} us"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# --------------------------------------------------------------------------- part 1: the request path

CUSTOMERS = {
    f"c-{n:04d}": {"id": f"c-{n:04d}", "email": f"user{n}@example.com", "plan": "business"} for n in range(500)
}


def handle(n: int) -> bytes:
    """The request's own work: decode the body, find the customer, encode the response."""
    body = orjson.loads(b'{"customer": "c-%04d", "fields": ["email", "plan"]}' % (n % 500))
    customer = CUSTOMERS[body["customer"]]
    return orjson.dumps({"customer": {k: customer[k] for k in body["fields"]}, "request": n})


def request_path(workdir: Path, calls: int) -> dict[str, list[float]]:
    """Per-call latencies of the four request variants, taking turns every BLOCK calls."""
    trail = graven.init(workdir / "request-trail.db", signing_key=workdir / "request.key")
    plain = sqlite3.connect(workdir / "request-plain.db", isolation_level=None)
    plain.execute("PRAGMA journal_mode = WAL")
    plain.execute("PRAGMA synchronous = FULL")
    plain.execute("CREATE TABLE IF NOT EXISTS audit (body TEXT NOT NULL)")
    where = {"ip": "198.51.100.23", "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"}

    def bare(n: int) -> None:
        handle(n)

    def with_plain_insert(n: int) -> None:
        handle(n)
        event = {"action": "customer.view", "actor": {"type": "user", "id": f"u-{n % 50}", **where},
                 "targets": [{"type": "customer", "id": f"c-{n % 500:04d}"}], "request_id": f"req-{n}"}  # fmt: skip
        plain.execute("BEGIN IMMEDIATE")
        plain.execute("INSERT INTO audit (body) VALUES (?)", (orjson.dumps(event).decode(),))
        plain.execute("COMMIT")

    def with_record(n: int) -> None:
        with trail.context(actor=f"u-{n % 50}", request_id=f"req-{n}", **where):
            handle(n)
            trail.record(action="customer.view", targets=[("customer", f"c-{n % 500:04d}")])

    def with_action(n: int) -> None:
        with trail.context(actor=f"u-{n % 50}", request_id=f"req-{n}", **where):  # noqa: SIM117
            with trail.action("customer.plan.change", target=("customer", f"c-{n % 500:04d}")) as a:
                handle(n)
                a.change("plan", "starter", "business")

    variants: dict[str, Callable[[int], None]] = {
        "bare request": bare,
        "+ plain sqlite3 INSERT/COMMIT": with_plain_insert,
        "+ trail.record()": with_record,
        "in trail.action()": with_action,
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    clock = time.perf_counter
    try:
        for n in range(BLOCK):  # warm-up: imports, caches, the first checkpoint
            for fn in variants.values():
                fn(n)
        order = list(variants.items())
        for k, first in enumerate(range(0, calls, BLOCK)):
            for name, fn in order[k % len(order) :] + order[: k % len(order)]:
                out = times[name]
                for n in range(first, min(first + BLOCK, calls)):
                    start = clock()
                    fn(n)
                    out.append(clock() - start)
        expected = 2 * (calls + BLOCK)
        if trail.size != expected:
            raise SystemExit(f"the request trail holds {trail.size} entries, expected {expected}")
        if not trail.verify().ok:
            raise SystemExit("the request trail fails verification")
    finally:
        plain.close()
        trail.close()
    return times


# --------------------------------------------------------------------------- part 2: ORM writes


class PlainBase(DeclarativeBase):
    pass


class TrackedBase(DeclarativeBase):
    pass


class VersionedBase(DeclarativeBase):
    pass


class VersionedSession(Session):
    """Continuum versions the sessions of this class only."""


def customer_columns() -> dict[str, Any]:
    return {
        "__tablename__": "customers",
        "id": mapped_column(sa.Integer, primary_key=True),
        "email": mapped_column(sa.String(200), nullable=False),
        "name": mapped_column(sa.String(200), nullable=False),
        "password_hash": mapped_column(sa.String(200), nullable=False),
        "plan": mapped_column(sa.String(40), nullable=False),
        "credit_limit": mapped_column(sa.Numeric(12, 2), nullable=False),
    }


def define_models() -> tuple[type, type, type]:
    """The same customer three times; Continuum must be set up before its class is declared."""
    from sqlalchemy_continuum import make_versioned

    make_versioned(user_cls=None, session=VersionedSession)
    plain = type("PlainCustomer", (PlainBase,), customer_columns())
    tracked = type("TrackedCustomer", (TrackedBase,), customer_columns())
    versioned = type("VersionedCustomer", (VersionedBase,), {**customer_columns(), "__versioned__": {}})
    configure_mappers()
    return plain, tracked, versioned


@dataclass
class Side:
    name: str
    maker: sessionmaker[Any]
    model: type
    engine: sa.Engine
    background: bool = False
    trail: graven.Trail | None = None
    tracker: Tracker | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def durable_sqlite(path: Path) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{path}")

    @sa.event.listens_for(engine, "connect")
    def pragmas(conn: Any, record: Any) -> None:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")

    return engine


def customer(model: type, n: int) -> Any:
    return model(
        id=n, email=f"user{n}@example.com", name=f"Customer {n}", password_hash=f"argon2id$v=19${n:08x}",
        plan="starter", credit_limit=Decimal(1000 + n % 100),
    )  # fmt: skip


Workload = Callable[[Side, int], None]


def insert_one(side: Side, n: int) -> None:
    with side.maker() as s:
        s.add(customer(side.model, n))
        s.commit()


def update_one(side: Side, n: int) -> None:
    with side.maker() as s:
        row = s.get(side.model, n)
        row.email, row.plan = f"user{n}@example.org", "business"
        s.commit()


def insert_batch(side: Side, n: int) -> None:
    with side.maker() as s:
        s.add_all([customer(side.model, 1_000_000 + n * 100 + k) for k in range(100)])
        s.commit()


def delete_one(side: Side, n: int) -> None:
    with side.maker() as s:
        s.delete(s.get(side.model, n))
        s.commit()


def bulk_update(side: Side, n: int) -> None:
    model: Any = side.model
    lo = 1_000_000 + n * 100
    with side.maker() as s:
        s.execute(sa.update(model).where(model.id >= lo, model.id < lo + 100).values(plan="enterprise"))
        s.commit()


# name, the function, commits it makes per call, rows it changes per call, whether Continuum records it
WORKLOADS: tuple[tuple[str, Workload, int, bool], ...] = (
    ("insert, 1 row per commit", insert_one, 1, True),
    ("update 2 columns, 1 row per commit", update_one, 1, True),
    ("insert, 100 rows per commit", insert_batch, 100, True),
    ("bulk update(...).where(), 100 rows", bulk_update, 100, False),
    ("delete, 1 row per commit", delete_one, 1, True),
)


def orm_run(sides: list[Side], commits: int) -> None:
    """Every workload on every side, taking turns every BLOCK commits; seconds per commit into each side.

    A background tracker's turn ends with ``drain()``, inside the timing: its figure is sustained
    throughput (every change in the trail), not just how soon the commits returned.
    """
    for label, work, _, _ in WORKLOADS:
        calls = commits if work not in (insert_batch, bulk_update) else max(commits // 10, BLOCK)
        for side in sides:
            side.seconds[label] = 0.0
        for k, first in enumerate(range(0, calls, BLOCK)):
            for side in sides[k % len(sides) :] + sides[: k % len(sides)]:
                start = time.perf_counter()
                for n in range(first, min(first + BLOCK, calls)):
                    work(side, n)
                if side.tracker is not None and side.background:
                    side.tracker.drain()
                side.seconds[label] += time.perf_counter() - start
        for side in sides:
            side.seconds[label] /= calls


SIDES = ("untracked", "graven", "graven-background", "continuum")


@contextmanager
def orm_sides(models: tuple[type, type, type], urls: list[str], trail_urls: list[str], key: Path) -> Iterator[
    list[Side]
]:  # fmt: skip
    """The four sides on fresh databases (``urls`` in SIDES order); the tracked ones with their trails."""
    engines = [durable_sqlite(Path(u)) if not u.startswith("postgresql") else sa.create_engine(u) for u in urls]
    plain, tracked, versioned = models
    for base, engine in zip((PlainBase, TrackedBase, TrackedBase, VersionedBase), engines, strict=True):
        base.metadata.drop_all(engine)
        base.metadata.create_all(engine)
    sides = [
        Side("untracked", sessionmaker(engines[0]), plain, engines[0]),
        Side("graven", sessionmaker(engines[1]), tracked, engines[1]),
        Side("graven-background", sessionmaker(engines[2]), tracked, engines[2], background=True),
        Side("continuum", sessionmaker(engines[3], class_=VersionedSession), versioned, engines[3]),
    ]
    for side, trail_url in zip(sides[1:3], trail_urls, strict=True):
        side.trail = graven.init(trail_url, signing_key=key.with_name(f"{key.name}-{side.name}"))
        side.tracker = track(side.trail, side.maker, tracked, background=side.background)
    try:
        yield sides
    finally:
        for side in sides:
            if side.tracker is not None:
                side.tracker.close()
            if side.trail is not None:
                side.trail.close()
            side.engine.dispose()


def check_counts(sides: list[Side], commits: int) -> None:
    """Every change is in each trail once and in Continuum's version table; the trails verify."""
    batch_calls = max(commits // 10, BLOCK)
    expected = commits * 3 + batch_calls * 100 * 2  # insert, update, delete; batch insert, bulk update
    for side in sides:
        if side.trail is None:
            continue
        assert side.tracker is not None
        side.tracker.drain()
        if side.trail.size != expected:
            raise SystemExit(f"the {side.name} trail holds {side.trail.size} entries, expected {expected}")
        report = side.trail.verify()
        if not report.ok:
            raise SystemExit(f"the {side.name} trail fails verification: {report.message}")
    from sqlalchemy_continuum import version_class

    with sides[3].maker() as s:
        versions = s.scalar(sa.select(sa.func.count()).select_from(version_class(sides[3].model)))
    if versions != commits * 3 + batch_calls * 100:
        raise SystemExit(f"Continuum holds {versions} versions, expected {commits * 3 + batch_calls * 100}")


def orm_best(models: tuple[type, type, type], urls: Callable[[int], tuple[list[str], list[str]]], commits: int,
             repeat: int, key: Path) -> list[Side]:  # fmt: skip
    """The best (least) seconds per commit of ``repeat`` runs, per side and workload."""
    best: list[Side] = []
    for r in range(repeat):
        app_urls, trail_urls = urls(r)
        with orm_sides(models, app_urls, trail_urls, key.with_name(f"{key.name}-{r}")) as sides:
            orm_run(sides, commits)
            check_counts(sides, commits)
        if not best:
            best = sides
        else:
            for kept, side in zip(best, sides, strict=True):
                for label, seconds in side.seconds.items():
                    kept.seconds[label] = min(kept.seconds[label], seconds)
        say(f"    run {r + 1}/{repeat} done")
    return best


def orm_rows(sides: list[Side], where: str) -> list[Row]:
    plain, ours, background, continuum = sides
    rows = []
    for label, _, rows_per_call, continuum_sees in WORKLOADS:
        base = plain.seconds[label]
        reference = continuum.seconds[label] / base
        per = "per commit" if rows_per_call == 1 else "per 100 rows"
        for side, name in ((ours, label), (background, f"  background=True, same {per}")):
            ratio = side.seconds[label] / base
            if continuum_sees:
                goal, result = f"< {reference:.2f}x (Continuum)", "PASS" if ratio < reference else "MISS"
            else:
                goal, result = "Continuum: not recorded", "-"
            rows.append(Row(f"{where}: {name}", us(side.seconds[label]), us(base), f"{ratio:.2f}x", goal, result))
        if continuum_sees:
            rows.append(Row(f"{where}:   Continuum, same {per}", us(continuum.seconds[label]), us(base),
                            f"{reference:.2f}x", "(reference)", ""))  # fmt: skip
    return rows


# --------------------------------------------------------------------------- PostgreSQL scratch databases


@contextmanager
def pg_databases(url: str, count: int) -> Iterator[list[str]]:
    """``count`` scratch databases on the server ``url`` names (the role needs CREATEDB); dropped after."""
    import psycopg

    names = [f"graven_bench_capture_{secrets.token_hex(4)}_{n}" for n in range(count)]
    admin = psycopg.connect(url, autocommit=True)
    try:
        for name in names:
            admin.execute(f'CREATE DATABASE "{name}"')
        base = url.rsplit("/", 1)[0]
        yield [f"{base}/{name}" for name in names]
    finally:
        for name in names:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--calls", type=int, help="request-path calls per variant (default 3,000; quick 200)")
    parser.add_argument("--commits", type=int, help="ORM commits per side and workload (default 1,000; quick 100)")
    parser.add_argument("--repeat", type=int, help="ORM runs, best kept (default 3; quick 1)")
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: a temporary folder)")
    parser.add_argument("--pg", metavar="URL", help="also run the ORM part on this PostgreSQL server")
    args = parser.parse_args()
    calls = args.calls or (200 if args.quick else 3000)
    commits = args.commits or (100 if args.quick else 1000)
    repeat = args.repeat or (1 if args.quick else 3)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="graven-bench-capture-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        say(f"request path: {calls:,} calls per variant ...")
        times = request_path(workdir, calls)
        say(f"ORM writes on SQLite: {commits:,} commits per side and workload, {repeat} run(s) ...")
        models = define_models()

        def sqlite_urls(r: int) -> tuple[list[str], list[str]]:
            names = [*SIDES, "trail-graven", "trail-graven-background"]
            for name in names:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{workdir / name}-{r}.db{suffix}").unlink(missing_ok=True)
            paths = [str(workdir / f"{name}-{r}.db") for name in names]
            return paths[:4], paths[4:]

        sqlite_sides = orm_best(models, sqlite_urls, commits, repeat, workdir / "orm.key")
        pg_sides: list[Side] = []
        if args.pg:
            say(f"ORM writes on PostgreSQL: {commits:,} commits per side and workload, {repeat} run(s) ...")
            with pg_databases(args.pg, len(SIDES)) as dbs:
                sa_urls = [u.replace("postgresql://", "postgresql+psycopg://", 1) for u in dbs]

                def pg_urls(r: int) -> tuple[list[str], list[str]]:
                    return sa_urls, [f"{dbs[1]}?schema=audit_{r}", f"{dbs[2]}?schema=audit_{r}"]

                pg_sides = orm_best(models, pg_urls, commits, repeat, workdir / "orm-pg.key")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    bare = times["bare request"]
    floor = times["+ plain sqlite3 INSERT/COMMIT"]
    print(f"Graven capture benchmark: Python {platform.python_version()}, SQLAlchemy {sa.__version__}, "
          f"{platform.machine()}, {'quick' if args.quick else 'full'} run")  # fmt: skip
    print()
    print(f"1. The request path, {calls:,} calls each (added: p50 / p99 of each call minus its bare twin)")
    print()
    rows = []
    # Call n of every variant ran in the same block turn, so each call has its own bare twin: the
    # percentile is taken of the per-call differences (not the difference of two percentiles).
    floor_diffs = [f - b for f, b in zip(floor, bare, strict=True)]
    for name in ("+ trail.record()", "in trail.action()"):
        diffs = [t - b for t, b in zip(times[name], bare, strict=True)]
        for p in (50, 99):
            added = pct(diffs, p)
            floor_added = pct(floor_diffs, p)
            limit = 2 if p == 50 else 3
            ratio = added / floor_added
            rows.append(Row(f"{name} added, p{p}", us(added), us(floor_added), f"{ratio:.2f}x",
                            f"<= {limit}x a durable sqlite3 write", "PASS" if ratio <= limit else "MISS"))  # fmt: skip
    print_table(Row("measurement", "graven", "plain INSERT", "ratio", "goal", "result"), rows)
    print()
    for name, values in times.items():
        print(f"  {name:<31} p50 {us(pct(values, 50)):>9}   p99 {us(pct(values, 99)):>9}   "
              f"mean {us(statistics.fmean(values)):>9}")  # fmt: skip
    print()
    print("2. ORM writes, time per commit (per call of 100 rows for the batch rows), best of runs")
    print()
    rows = orm_rows(sqlite_sides, "SQLite") + (orm_rows(pg_sides, "PostgreSQL") if pg_sides else [])
    print_table(Row("measurement", "graven", "untracked", "ratio", "goal", "result"), rows)
    print()
    print("Baselines")
    print("  bare request: the request function alone (no context, no audit)")
    print("  plain INSERT: the request, then one orjson-encoded event into a one-column sqlite3 table,")
    print("                BEGIN IMMEDIATE ... COMMIT, WAL, synchronous=FULL (a durable write's floor)")
    print("  untracked:    the same ORM model and writes through a plain sessionmaker")
    print("  graven:       track(trail, sessionmaker, Model): the commit returns once the entries are in the")
    print("                trail; background=True: once the application's transaction (outbox rows")
    print("                included) is durable, a worker records them (its turns end with drain(), timed)")
    print("  Continuum:    SQLAlchemy-Continuum versioning the same model (a version row per change and")
    print("                a transaction row per commit, in the application's transaction)")
    print("  SQLite sides: one file each, WAL, synchronous=FULL; each graven trail in a further file")
    print("  PostgreSQL:   one scratch database per side; each graven trail in a schema of its side's database")
    print(f"  total time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
