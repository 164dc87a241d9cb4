"""Graven on PostgreSQL beside what an engineer would otherwise write, in one run.

    .venv/bin/python bench/bench_pg.py                   # the full benchmark (about 10 minutes)
    .venv/bin/python bench/bench_pg.py --quick           # a smoke run with small sizes (CI), seconds
    .venv/bin/python bench/bench_pg.py --keep            # keep the big log and reuse it next time
    .venv/bin/python bench/bench_pg.py --profile         # cProfile and EXPLAIN of the hot paths instead
    .venv/bin/python bench/bench_pg.py --url postgresql://user@host:5432/postgres

Everything happens in a scratch database ``graven_bench_<random>`` created on the server ``--url``
names and dropped at the end. With ``--keep`` the big log (and its plain twin) is built in the
database ``graven_bench_kept`` instead, which is left in place, and its signing key is kept under
``~/.cache/graven-bench``; later runs reuse it when its size matches ``--big``.

Three parts, each figure beside a baseline measured in the same run on the same server:

1. Recording: ``trail.record_many`` in batches of 1,000 beside a plain ``COPY`` of the same events
   (serialised with orjson inside the timed loop) into an unindexed ``jsonb`` table, one commit per
   batch, the two taking turns batch by batch; of ``--repeat`` runs, the run with the median ratio
   (both figures from that run). Then ``verify()`` of each such log beside reading and SHA-256-ing
   the plain table's rows.
2. Trigger capture: single-row UPDATEs (one transaction each) and one bulk UPDATE of every row, on
   a table tracked by ``graven.capture.pg.track`` beside an identical untracked table and beside a
   table carrying the hand-written audit trigger an engineer would otherwise write (``to_jsonb(OLD)``,
   ``to_jsonb(NEW)``, ``TG_OP``, ``now()`` into a plain table, as supa_audit and django-pghistory do);
   then ``trail.integrate()``, which moves the captured events into the Merkle log: the bulk
   UPDATE's events are integrated and timed on their own, and counted with the UPDATE against the
   goal (the whole price of a tracked bulk UPDATE).
2b. A request's durable write and its audit event: a one-row UPDATE and its COMMIT bare, with the
   event written in the same transaction by ``graven.capture.pg.record`` (the SECURITY DEFINER
   ``capture_record``; the application's commit is the only commit), and with ``trail.record()``
   after the commit (a second commit); then one-row ORM updates through SQLAlchemy, untracked
   beside tracked with ``same_database=True`` and beside tracked through the application's outbox.
   Sides take turns every 100 requests; each ratio comes from the run whose ratio is the median.
3. Reading a big log (1,000,000 entries by default): ``trail.history(("customer", id))`` and
   ``trail.query(actor=..., since=..., until=...)`` at random targets and actors, cold (first call
   on a freshly opened trail) and warm, beside the same questions asked of a plain table of the same
   events (jsonb body plus the extracted columns, with the b-tree indexes an engineer would add).

This is a benchmark, not a test: a MISS is reported, not raised. The exit status is non-zero only
when something is wrong (a count does not match, a log fails verification).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import os
import platform
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_log import (
    BATCH,
    BUILD_BATCH,
    Row,
    Run,
    Stopwatch,
    Timings,
    batches,
    cpu_count,
    fmt_runs,
    least_cpu,
    make_events,
    ms,
    paired,
    per_second,
    print_profile,
    print_table,
    say,
    verdict,
)

import graven
from graven.capture.pg import context as pg_context
from graven.capture.pg import track

KEPT_DB = "graven_bench_kept"
SINGLE_BLOCK = 100  # single-row UPDATEs per turn when the tables take turns
QUERY_BLOCK = 100  # queries per turn when graven and the plain table take turns
SPAN = timedelta(days=100)  # the big log's events occur over this span, evenly
WINDOW = timedelta(days=7)  # the time window of the actor queries
START = datetime(2025, 9, 1, tzinfo=UTC)

# --------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class Server:
    """The server ``--url`` names; builds URLs and connections for other databases on it."""

    url: str

    def url_for(self, dbname: str, schema: str | None = None) -> str:
        parts = urlsplit(self.url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "schema"]
        if schema is not None:
            query.append(("schema", schema))
        return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, urlencode(query), ""))

    def connect(self, dbname: str | None = None, *, autocommit: bool = False) -> psycopg.Connection[Any]:
        url = self.url if dbname is None else self.url_for(dbname)
        return psycopg.connect(url, autocommit=autocommit, application_name="graven-bench")

    def database_exists(self, dbname: str) -> bool:
        with self.connect(autocommit=True) as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None

    def create_database(self, dbname: str) -> None:
        with self.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))

    def drop_database(self, dbname: str) -> None:
        with self.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))

    def describe(self) -> str:
        with self.connect(autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            settings = dict(
                conn.execute(
                    "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN "
                    "('shared_buffers', 'synchronous_commit', 'fsync', 'wal_sync_method', 'work_mem')"
                ).fetchall()
            )
        pages = int(settings.get("shared_buffers", "0").removesuffix("8kB") or 0)
        return (
            f"PostgreSQL {version[0] if version else '?'} (shared_buffers {pages * 8 // 1024} MB, "
            f"synchronous_commit {settings.get('synchronous_commit')}, fsync {settings.get('fsync')}, "
            f"wal_sync_method {settings.get('wal_sync_method')})"
        )


@dataclass
class Scratch:
    """The scratch database of this run and the directory of its signing keys."""

    server: Server
    dbname: str
    keys: Path

    def url(self, schema: str) -> str:
        return self.server.url_for(self.dbname, schema)

    def connect(self, *, autocommit: bool = False) -> psycopg.Connection[Any]:
        return self.server.connect(self.dbname, autocommit=autocommit)

    def new_trail(self, schema: str) -> graven.Trail:
        return graven.init(self.url(schema), signing_key=self.keys / f"{schema}.key")


@contextmanager
def scratch_database(server: Server) -> Iterator[Scratch]:
    dbname = f"graven_bench_{secrets.token_hex(4)}"
    keys = Path(tempfile.mkdtemp(prefix="graven-bench-pg-"))
    server.create_database(dbname)
    say(f"scratch database {dbname}")
    try:
        yield Scratch(server, dbname, keys)
    finally:
        try:
            server.drop_database(dbname)
            say(f"dropped {dbname}")
        finally:
            shutil.rmtree(keys, ignore_errors=True)


def kept_keys() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "graven-bench"


# --------------------------------------------------------------------------- 1. recording


COPY_SQL = "COPY {} (body) FROM STDIN"


def record_runs(scratch: Scratch, events: list[dict[str, Any]], repeat: int) -> tuple[list[Run], list[Run]]:
    """record_many beside COPY into an unindexed jsonb table, batch by batch, ``repeat`` times."""
    groups = batches(events, BATCH)
    lib_runs: list[Run] = []
    plain_runs: list[Run] = []
    for rep in range(repeat):
        lib, plain = record_run(scratch, groups, rep + 1)
        lib_runs.append(lib)
        plain_runs.append(plain)
        say(f"  run {rep + 1}: record_many {per_second(lib.rate)}, COPY {per_second(plain.rate)}")
    return lib_runs, plain_runs


def record_run(scratch: Scratch, groups: list[list[dict[str, Any]]], number: int) -> tuple[Run, Run]:
    """One run: a new log and a new plain table, the two taking turns batch by batch."""
    schema, table = f"rec_{number}", sql.Identifier(f"plain_rec_{number}")
    total = sum(len(group) for group in groups)
    trail = scratch.new_trail(schema)
    conn = scratch.connect()
    lib, plain = Stopwatch(), Stopwatch()
    record_many, dumps = trail.record_many, orjson.dumps
    copy_sql = sql.SQL(COPY_SQL).format(table)

    def library(group: list[dict[str, Any]]) -> None:
        with lib:
            record_many(group)

    def baseline(group: list[dict[str, Any]]) -> None:
        with plain:
            with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                for event in group:
                    copy.write_row((dumps(event).decode(),))
            conn.commit()

    try:
        conn.execute(sql.SQL("CREATE TABLE {} (body jsonb NOT NULL)").format(table))
        conn.commit()
        for k, group in enumerate(groups):
            for side in (library, baseline) if k % 2 == 0 else (baseline, library):
                side(group)
        stored = trail.size
        rows = count_of(conn, table.as_string(conn))
    finally:
        conn.close()
        trail.close()
    if (stored, rows) != (total, total):
        raise SystemExit(f"recorded {stored:,} entries and copied {rows:,} rows, expected {total:,}")
    return Run(total, lib.wall, lib.cpu), Run(total, plain.wall, plain.cpu)


def verify_runs(scratch: Scratch, repeat: int) -> tuple[list[Run], list[Run]]:
    """``verify()`` of each record_many log beside reading its plain twin's rows and hashing them."""
    lib_runs: list[Run] = []
    plain_runs: list[Run] = []
    for rep in range(repeat):
        trail = graven.open(scratch.url(f"rec_{rep + 1}"), signing_key=scratch.keys / f"rec_{rep + 1}.key")
        try:
            with Stopwatch() as clock:
                report = trail.verify()
        finally:
            trail.close()
        if not report.ok:
            raise SystemExit(f"the record_many log of run {rep + 1} fails verification: {report.message}")
        lib_runs.append(Run(report.entries, clock.wall, clock.cpu))
        table = sql.Identifier(f"plain_rec_{rep + 1}")
        conn = scratch.connect()
        try:
            sha, count = hashlib.sha256, 0
            with Stopwatch() as clock, conn.cursor(f"hash_{rep}") as cur:
                cur.execute(sql.SQL("SELECT body::text FROM {}").format(table))
                for (body,) in cur:
                    sha(body.encode()).digest()
                    count += 1
        finally:
            conn.close()
        plain_runs.append(Run(count, clock.wall, clock.cpu))
        say(f"  run {rep + 1}: verify {per_second(lib_runs[-1].rate)}, read+hash {per_second(plain_runs[-1].rate)}")
    return lib_runs, plain_runs


SINGLE_BLOCK_RECORD = 100


def single_runs(scratch: Scratch, events: list[dict[str, Any]], repeat: int) -> tuple[list[Run], list[Run]]:
    """record() one event per commit beside a one-row INSERT per commit, every 100 in turn."""
    lib_runs: list[Run] = []
    plain_runs: list[Run] = []
    for rep in range(repeat):
        lib, plain = single_run(scratch, events, rep + 1)
        lib_runs.append(lib)
        plain_runs.append(plain)
        say(f"  run {rep + 1}: record() {per_second(lib.rate)}, INSERT {per_second(plain.rate)}")
    return lib_runs, plain_runs


def single_run(scratch: Scratch, events: list[dict[str, Any]], number: int) -> tuple[Run, Run]:
    """One run: a new log and a new plain table (autocommit: one statement, one commit, one fsync)."""
    schema, table = f"one_{number}", sql.Identifier(f"plain_one_{number}")
    trail = scratch.new_trail(schema)
    conn = scratch.connect(autocommit=True)
    lib, plain = Stopwatch(), Stopwatch()
    record, dumps, execute = trail.record, orjson.dumps, conn.execute
    insert = sql.SQL("INSERT INTO {} (body) VALUES (%s::jsonb)").format(table).as_string(conn)

    def library(block: list[dict[str, Any]]) -> None:
        with lib:
            for event in block:
                record(event)

    def baseline(block: list[dict[str, Any]]) -> None:
        with plain:
            for event in block:
                execute(insert, (dumps(event).decode(),))

    try:
        conn.execute(sql.SQL("CREATE TABLE {} (body jsonb NOT NULL)").format(table))
        for k, first in enumerate(range(0, len(events), SINGLE_BLOCK_RECORD)):
            block = events[first : first + SINGLE_BLOCK_RECORD]
            for side in (library, baseline) if k % 2 == 0 else (baseline, library):
                side(block)
        stored = trail.size
        rows = count_of(conn, table.as_string(conn))
    finally:
        conn.close()
        trail.close()
    if (stored, rows) != (len(events), len(events)):
        raise SystemExit(f"recorded {stored:,} entries and inserted {rows:,} rows, expected {len(events):,}")
    return Run(len(events), lib.wall, lib.cpu), Run(len(events), plain.wall, plain.cpu)


# --------------------------------------------------------------------------- 2. trigger capture

CUSTOMERS = """
CREATE TABLE {table} (
    id            bigint PRIMARY KEY,
    email         text NOT NULL,
    password_hash text NOT NULL,
    credit_limit  numeric(12, 2) NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
INSERT INTO {table} (id, email, password_hash, credit_limit, updated_at)
SELECT g, 'customer' || g || '@example.com',
       '$argon2id$v=19$m=65536,t=3,p=4$' || encode(sha256(('salt' || g)::bytea), 'base64')
           || '$' || encode(sha256(('pw' || g)::bytea), 'base64'),
       (g % 50 + 1) * 1000, now() - (g || ' minutes')::interval
  FROM generate_series(1, {rows}) AS g;
"""

# The trigger an engineer writes when there is no library (supa_audit, django-pghistory style).
AUDIT_TRIGGER = """
CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    table_name text NOT NULL,
    op         text NOT NULL,
    old_row    jsonb,
    new_row    jsonb,
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO audit_log (table_name, op, old_row, new_row, changed_at)
    VALUES (TG_TABLE_NAME, TG_OP,
            CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN to_jsonb(OLD) END,
            CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN to_jsonb(NEW) END,
            now());
    RETURN NULL;
END
$fn$;
CREATE TRIGGER customers_audit_row AFTER INSERT OR UPDATE OR DELETE ON customers_audit
    FOR EACH ROW EXECUTE FUNCTION audit_row();
"""

SINGLE_UPDATE = "UPDATE {} SET credit_limit = credit_limit + 100, updated_at = now() WHERE id = %s"
BULK_UPDATE = "UPDATE {} SET credit_limit = credit_limit + 1, updated_at = now()"
CAPTURE_SCHEMA = "capture"
TRACK_OPTIONS: dict[str, Any] = {"exclude": ["updated_at"], "redact": ["password_hash"]}


@dataclass(frozen=True)
class Side:
    """One table of the capture comparison and how its single-row UPDATEs run."""

    name: str
    table: str
    tracked: bool
    in_context: bool  # each UPDATE inside pg_context(conn, actor=...), a transaction of its own


SIDES = (
    Side("untracked", "customers_plain", tracked=False, in_context=False),
    Side("graven", "customers_graven", tracked=True, in_context=False),
    Side("audit trigger", "customers_audit", tracked=False, in_context=False),
    Side("untracked, context", "customers_plain_ctx", tracked=False, in_context=True),
    Side("graven, context", "customers_graven_ctx", tracked=True, in_context=True),
)
BULK_SIDES = SIDES[:3]


@dataclass
class CaptureResult:
    single: dict[str, list[float]]  # seconds for ``updates`` single-row UPDATEs, per run
    bulk: dict[str, list[float]]  # seconds of the bulk UPDATE, per run
    integrate: list[Run]  # integrate() of the bulk UPDATE's events alone, per run
    updates: int
    rows: int
    captured_bytes: float  # average pg_column_size of a captured event
    audit_bytes: float  # average pg_column_size of an audit_log row's old_row + new_row
    log_size: int
    verified: str


def capture_runs(scratch: Scratch, rows: int, updates: int, repeat: int, seed: int) -> CaptureResult:
    """Single-row and bulk UPDATEs on tracked, untracked and hand-audited tables; then integrate()."""
    trail = scratch.new_trail(CAPTURE_SCHEMA)
    setup = scratch.connect()
    try:
        for side in SIDES:
            setup.execute(customers_sql(side.table, rows))
        setup.execute(AUDIT_TRIGGER)
        for side in SIDES:
            if side.tracked:
                track(setup, CAPTURE_SCHEMA, side.table, **TRACK_OPTIONS)
        setup.commit()
        setup.autocommit = True
        for side in SIDES:
            setup.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(side.table)))
        base_size = trail.size + trail.integrate()  # the two audit.track events
        rng = random.Random(seed)
        conns = {side.name: scratch.connect(autocommit=True) for side in SIDES}
        single: dict[str, list[float]] = {side.name: [] for side in SIDES}
        bulk: dict[str, list[float]] = {side.name: [] for side in BULK_SIDES}
        integrate_runs: list[Run] = []
        captured_bytes = 0.0
        expected = base_size
        for rep in range(repeat):
            for side in SIDES:  # every table starts each run equally clean
                setup.execute(sql.SQL("VACUUM {}").format(sql.Identifier(side.table)))
            ids = [rng.randrange(1, rows + 1) for _ in range(updates)]
            clocks = {side.name: Stopwatch() for side in SIDES}
            for k, first in enumerate(range(0, updates, SINGLE_BLOCK)):
                block = ids[first : first + SINGLE_BLOCK]
                order = SIDES[k % len(SIDES) :] + SIDES[: k % len(SIDES)]
                for side in order:
                    single_block(trail, conns[side.name], side, block, clocks[side.name])
            for side in SIDES:
                single[side.name].append(clocks[side.name].wall)
            expected += 2 * updates
            if trail.integrate() != 2 * updates:  # the single-row UPDATEs' events, so the bulk's are timed alone
                raise SystemExit(f"integrate() did not move the {2 * updates:,} single-row UPDATE events")
            shift = rep % len(BULK_SIDES)
            for side in BULK_SIDES[shift:] + BULK_SIDES[:shift]:
                statement = sql.SQL(BULK_UPDATE).format(sql.Identifier(side.table))
                with Stopwatch() as clock:
                    conns[side.name].execute(statement)
                bulk[side.name].append(clock.wall)
            pending = count_of(setup, f"{CAPTURE_SCHEMA}.captured")
            captured_bytes = average(setup, f"SELECT avg(pg_column_size(event)) FROM {CAPTURE_SCHEMA}.captured")
            with Stopwatch() as clock:
                moved = trail.integrate()
            expected += rows
            if moved != pending or trail.size != expected:
                raise SystemExit(f"integrate() moved {moved:,} of {pending:,} captured events; the log has "
                                 f"{trail.size:,} entries, expected {expected:,}")  # fmt: skip
            integrate_runs.append(Run(moved, clock.wall, clock.cpu))
            say("  run {}: single-row UPDATE {}; bulk {}; integrate() {}".format(
                rep + 1,
                ", ".join(f"{s.name} {ms(single[s.name][-1] / updates)}" for s in SIDES),
                ", ".join(f"{s.name} {ms(bulk[s.name][-1])}" for s in BULK_SIDES),
                per_second(moved / clock.wall)))  # fmt: skip
        for conn in conns.values():
            conn.close()
        audit_bytes = average(setup, "SELECT avg(pg_column_size(old_row) + pg_column_size(new_row)) FROM audit_log")
        check_captured(trail, rows)
        report = trail.verify()
        if not report.ok:
            raise SystemExit(f"the capture log fails verification: {report.message}")
        return CaptureResult(single, bulk, integrate_runs, updates, rows, captured_bytes, audit_bytes,
                             trail.size, report.message)  # fmt: skip
    finally:
        setup.close()
        trail.close()


# --------------------------------------------------------------------------- 2b. a request's write + its event

REQUEST_SCHEMAS = ("req_tx", "req_after", "orm_tx", "orm_outbox")
ORDERS = (
    "CREATE TABLE {} (id bigint PRIMARY KEY, total bigint NOT NULL); "
    "INSERT INTO {} SELECT g, 0 FROM generate_series(1, {}) g"
)
ORDER_UPDATE = "UPDATE {} SET total = total + 1 WHERE id = %s"
ORDER_ROWS = 1_000


@dataclass
class RequestResult:
    runs: list[dict[str, float]]  # seconds of ``requests`` requests per side, per run
    requests: int
    integrate: list[Run]  # integrate() of the in-transaction events, per run
    orm: bool  # whether SQLAlchemy was there for the ORM sides


REQUEST_SIDES = ("plain", "in transaction", "record() after")
ORM_SIDES = ("orm untracked", "orm same_database", "orm outbox")


def order_event(ident: int) -> dict[str, Any]:
    return {"action": "order.update", "actor": {"type": "user", "id": f"u-{ident % 1000:05d}", "ip": "10.1.2.3"},
            "targets": [{"type": "order", "id": str(ident)}], "changes": [{"field": "total", "old": 0, "new": 1}],
            "context": {"request_id": f"req-{ident}"}}  # fmt: skip


def request_runs(scratch: Scratch, requests: int, repeat: int, seed: int) -> RequestResult:
    """A request's durable write (a one-row UPDATE and its COMMIT) bare, with its audit event written
    in the same transaction (graven.capture.pg.record), and with trail.record() after the commit
    (a second commit); then the same through the SQLAlchemy ORM: untracked, tracked with
    same_database=True, tracked with the application's outbox. Sides take turns every SINGLE_BLOCK."""
    from graven.capture import pg as capture

    trails = {name: scratch.new_trail(name) for name in REQUEST_SCHEMAS}
    setup = scratch.connect(autocommit=True)
    tables = {side: f"orders_{n}" for n, side in enumerate(REQUEST_SIDES + ORM_SIDES)}
    for table in tables.values():
        t = sql.Identifier(table)
        setup.execute(sql.SQL(ORDERS).format(t, t, sql.Literal(ORDER_ROWS)))
    setup.execute(capture.install_sql("req_tx"))  # capture_record (graven pg grant-record does this too)
    conns = {side: scratch.connect() for side in REQUEST_SIDES}
    statements = {side: sql.SQL(ORDER_UPDATE).format(sql.Identifier(tables[side])).as_string(setup)
                  for side in tables}  # fmt: skip
    in_tx, after = trails["req_tx"], trails["req_after"]

    def plain(conn: psycopg.Connection[Any], ident: int) -> None:
        conn.execute(statements["plain"], (ident,))
        conn.commit()

    def in_transaction(conn: psycopg.Connection[Any], ident: int) -> None:
        conn.execute(statements["in transaction"], (ident,))
        capture.record(conn, in_tx, order_event(ident))
        conn.commit()

    def record_after(conn: psycopg.Connection[Any], ident: int) -> None:
        conn.execute(statements["record() after"], (ident,))
        conn.commit()
        after.record(order_event(ident))

    steps: dict[str, Callable[[int], None]] = {
        "plain": lambda i: plain(conns["plain"], i),
        "in transaction": lambda i: in_transaction(conns["in transaction"], i),
        "record() after": lambda i: record_after(conns["record() after"], i),
    }
    closers: list[Callable[[], None]] = []
    orm = orm_steps(scratch, tables, trails, steps, closers)
    sides = list(steps)
    rng = random.Random(seed)
    runs: list[dict[str, float]] = []
    integrate_runs: list[Run] = []
    try:
        for rep in range(repeat):
            ids = [rng.randrange(1, ORDER_ROWS + 1) for _ in range(requests)]
            clocks = {side: Stopwatch() for side in sides}
            for k, first in enumerate(range(0, requests, SINGLE_BLOCK)):
                block = ids[first : first + SINGLE_BLOCK]
                for side in sides[k % len(sides) :] + sides[: k % len(sides)]:
                    step = steps[side]
                    with clocks[side]:
                        for ident in block:
                            step(ident)
            runs.append({side: clocks[side].wall for side in sides})
            with Stopwatch() as clock:
                moved = in_tx.integrate()
            if moved != requests:
                raise SystemExit(f"integrate() moved {moved:,} of the {requests:,} events recorded in transactions")
            integrate_runs.append(Run(moved, clock.wall, clock.cpu))
            say("  run {}: {}".format(rep + 1, ", ".join(f"{side} {ms(runs[-1][side] / requests)}" for side in sides)))
        for close in closers:
            close()
        expected = {"req_tx": requests * repeat, "req_after": requests * repeat}
        if orm:
            expected |= {"orm_tx": requests * repeat, "orm_outbox": requests * repeat}
        for name, count in expected.items():
            trail = trails[name]
            trail.integrate()
            if trail.size != count:
                raise SystemExit(f"the {name} log holds {trail.size:,} entries, expected {count:,}")
            report = trail.verify()
            if not report.ok:
                raise SystemExit(f"the {name} log fails verification: {report.message}")
    finally:
        for conn in conns.values():
            conn.close()
        setup.close()
        for trail in trails.values():
            trail.close()
    return RequestResult(runs, requests, integrate_runs, orm)


def orm_steps(scratch: Scratch, tables: dict[str, str], trails: dict[str, graven.Trail],
              steps: dict[str, Callable[[int], None]], closers: list[Callable[[], None]]) -> bool:  # fmt: skip
    """The ORM sides (one-row UPDATE through a Session, commit), when SQLAlchemy is installed."""
    try:
        import sqlalchemy as sa
        from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

        from graven.capture.sqlalchemy import track as track_orm
    except ImportError:
        say("  (SQLAlchemy is not installed: no ORM figures)")
        return False

    class Base(DeclarativeBase):
        pass

    models = {}
    for side in ORM_SIDES:
        models[side] = type(f"Order{len(models)}", (Base,), {
            "__tablename__": tables[side], "id": mapped_column(sa.BigInteger, primary_key=True),
            "total": mapped_column(sa.BigInteger), "__annotations__": {"id": Mapped[int], "total": Mapped[int]},
        })  # fmt: skip
    engine = sa.create_engine(
        scratch.server.url_for(scratch.dbname).replace("postgresql://", "postgresql+psycopg://", 1)
    )
    makers = {side: sessionmaker(engine) for side in ORM_SIDES}
    trackers = [
        track_orm(trails["orm_tx"], makers["orm same_database"], models["orm same_database"], same_database=True,
                  outbox="graven_outbox_tx"),
        track_orm(trails["orm_outbox"], makers["orm outbox"], models["orm outbox"], outbox="graven_outbox_ob"),
    ]  # fmt: skip

    def update(side: str) -> Callable[[int], None]:
        maker, model = makers[side], models[side]

        def step(ident: int) -> None:
            with maker() as session:
                row: Any = session.get(model, ident)
                row.total += 1
                session.commit()

        return step

    for side in ORM_SIDES:
        steps[side] = update(side)

    def close() -> None:
        for tracker in trackers:
            tracker.drain()
            tracker.close()
        engine.dispose()

    closers.append(close)
    return True


def customers_sql(table: str, rows: int) -> sql.Composed:
    return sql.SQL(CUSTOMERS).format(table=sql.Identifier(table), rows=sql.Literal(rows))


def single_block(trail: graven.Trail, conn: psycopg.Connection[Any], side: Side, ids: list[int],
                 clock: Stopwatch) -> None:  # fmt: skip
    statement = sql.SQL(SINGLE_UPDATE).format(sql.Identifier(side.table))
    execute = conn.execute
    with clock:
        if side.in_context:
            for ident in ids:
                with pg_context(conn, actor=f"u-{ident % 1000:05d}", ip="10.1.2.3", reason="limit review"):
                    execute(statement, (ident,))
        else:
            for ident in ids:
                execute(statement, (ident,))


def median_turn(ours: list[float], theirs: list[float]) -> tuple[float, float]:
    """Both seconds of the run whose ratio is the median (the two sides of one run saw one machine)."""
    turns = sorted(zip(ours, theirs, strict=True), key=lambda t: t[0] / t[1])
    return turns[(len(turns) - 1) // 2]


def count_of(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def average(conn: psycopg.Connection[Any], query: str) -> float:
    row = conn.execute(query).fetchone()
    return float(row[0]) if row and row[0] is not None else 0.0


def check_captured(trail: graven.Trail, rows: int) -> None:
    """The captured entries name the row, keep the actor given in context, and redact the hash."""
    for table, in_context in (("customers_graven", False), ("customers_graven_ctx", True)):
        found = None
        for ident in range(1, min(rows, 50) + 1):
            entries = trail.history((table, str(ident)))
            if entries:
                found = entries[-1].data
                break
        if found is None:
            raise SystemExit(f"no captured entry names a row of {table}")
        fields = {change["field"]: change for change in found["changes"]}
        if "updated_at" in fields or "credit_limit" not in fields:
            raise SystemExit(f"a captured change of {table} has the wrong fields: {sorted(fields)}")
        wanted = "user" if in_context else "system"
        if found["action"] != f"{table}.update" or found["actor"]["type"] != wanted:
            raise SystemExit(f"a captured change of {table} has the wrong action or actor: {found}")
    for entry in trail.query(text="$argon2id$", limit=1):
        raise SystemExit(f"entry {entry.index} holds a redacted password hash")


# --------------------------------------------------------------------------- 3. the big log


@dataclass(frozen=True)
class BigShape:
    """How the big log's events are spread."""

    size: int
    targets: int
    actors: int

    @property
    def step(self) -> float:
        return SPAN.total_seconds() / self.size


def shape_of(size: int) -> BigShape:
    return BigShape(size, max(1, size // 10), max(1, size // 1000))


def big_batch(pool: list[dict[str, Any]], shape: BigShape, first: int, last: int, seed: int) -> list[dict[str, Any]]:
    """Events ``first`` .. ``last - 1`` of the big log: pool events with their own actor, target and time."""
    rng = random.Random(seed * 1_000_003 + first)
    out = []
    start = START.timestamp()
    for n in range(first, last):
        base = pool[n % len(pool)]
        target, actor = rng.randrange(shape.targets), rng.randrange(shape.actors)
        moment = datetime.fromtimestamp(start + n * shape.step, UTC)
        out.append({
            **base,
            "occurred_at": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "actor": {**base["actor"], "type": "user", "id": f"u-{actor:05d}"},
            "targets": [{"type": "customer", "id": f"c-{target:07d}", "name": base["targets"][0]["name"]}],
            "context": {**base["context"], "request_id": f"{n:012x}{rng.getrandbits(32):08x}"},
        })  # fmt: skip
    return out


PLAIN_BIG = """
CREATE SCHEMA IF NOT EXISTS bench_plain;
CREATE TABLE {table} (
    seq         bigint PRIMARY KEY,
    target_type text NOT NULL,
    target_id   text NOT NULL,
    actor_id    text NOT NULL,
    occurred_at timestamptz NOT NULL,
    body        jsonb NOT NULL
)
"""
PLAIN_INDEXES = """
CREATE INDEX ON {table} (target_type, target_id);
CREATE INDEX ON {table} (actor_id, occurred_at)
"""
PLAIN_HISTORY = "SELECT seq, body::text FROM {} WHERE target_type = %s AND target_id = %s ORDER BY seq LIMIT 10000"
PLAIN_ACTOR = (
    "SELECT seq, body::text FROM {} WHERE actor_id = %s AND occurred_at >= %s AND occurred_at < %s "
    "ORDER BY seq LIMIT 100"
)


@dataclass
class BigLog:
    url: str  # the graven log
    dbname: str
    schema: str
    plain: str  # the plain table, schema-qualified
    key: Path
    shape: BigShape
    how: str


def find_big(server: Server, size: int) -> BigLog | None:
    """The kept big log of exactly ``size`` entries, when an earlier ``--keep`` run left one."""
    schema = f"big_{size}"
    key = kept_keys() / f"{schema}.key"
    if not key.exists() or not server.database_exists(KEPT_DB):
        return None
    plain = f"bench_plain.events_{size}"
    try:
        with server.connect(KEPT_DB, autocommit=True) as conn:
            present = conn.execute("SELECT to_regclass(%s), to_regclass(%s)", (f"{schema}.entries", plain)).fetchone()
            if present is None or None in present:
                return None
            rows = count_of(conn, plain)
        with graven.open(server.url_for(KEPT_DB, schema), signing_key=key, create=False) as trail:
            entries = trail.size
    except (psycopg.Error, graven.GravenError) as exc:
        say(f"  the kept big log {schema} in {KEPT_DB} is unusable ({exc}); rebuilding it")
        return None
    if (entries, rows) != (size, size):
        say(f"  the kept big log has {entries:,} entries and {rows:,} plain rows, not {size:,}; rebuilding it")
        return None
    how = f"reused {schema} in {KEPT_DB}"
    return BigLog(server.url_for(KEPT_DB, schema), KEPT_DB, schema, plain, key, shape_of(size), how)


def build_big(server: Server, dbname: str, keys: Path, size: int, seed: int) -> BigLog:
    """Build the big log (record_many, BUILD_BATCH per call) and its plain twin (COPY, same batches)."""
    schema, plain = f"big_{size}", f"bench_plain.events_{size}"
    key = keys / f"{schema}.key"
    url = server.url_for(dbname, schema)
    shape = shape_of(size)
    with server.connect(dbname, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute(f"DROP TABLE IF EXISTS {plain}")
        conn.execute(PLAIN_BIG.format(table=plain))
    for path in (key, key.with_name(key.name + ".checkpoint")):
        path.unlink(missing_ok=True)
    pool = make_events(5_000, seed)
    lib, copy_clock, made = Stopwatch(), Stopwatch(), Stopwatch()
    trail = graven.init(url, signing_key=key)
    conn = server.connect(dbname)
    dumps = orjson.dumps
    try:
        for first in range(0, size, BUILD_BATCH):
            last = min(first + BUILD_BATCH, size)
            with made:
                group = big_batch(pool, shape, first, last, seed)
            with lib:
                trail.record_many(group)
            with copy_clock:
                with conn.cursor() as cur, cur.copy(f"COPY {plain} FROM STDIN") as copy:
                    for n, event in enumerate(group, first):
                        target = event["targets"][0]
                        copy.write_row((n, target["type"], target["id"], event["actor"]["id"],
                                        event["occurred_at"], dumps(event).decode()))  # fmt: skip
                conn.commit()
            if last % max(size // 10, BUILD_BATCH) < BUILD_BATCH or last == size:
                rates = f"record_many {last / lib.wall:,.0f}/s, COPY {last / copy_clock.wall:,.0f}/s"
                say(f"    {last:>10,} entries: {rates}")
        with lib:
            trail.checkpoint()
        conn.autocommit = True
        with Stopwatch() as indexing:
            for statement in PLAIN_INDEXES.format(table=plain).strip().split(";"):
                conn.execute(statement)
        with Stopwatch() as vacuum:  # what autovacuum does within a minute or so of a bulk load
            conn.execute(sql.SQL("VACUUM ANALYZE {}.entries").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("VACUUM ANALYZE {}.entry_targets").format(sql.Identifier(schema)))
            conn.execute(f"VACUUM ANALYZE {plain}")
            # Write the load's dirty pages out now rather than during the timed queries (superusers only).
            with suppress(psycopg.errors.InsufficientPrivilege):
                conn.execute("CHECKPOINT")
    finally:
        conn.close()
        trail.close()
    how = (
        f"built in {lib.wall + copy_clock.wall + indexing.wall + made.wall + vacuum.wall:.0f} s: record_many "
        f"{lib.wall:.1f} s ({size / lib.wall:,.0f} entries/s, batches of {BUILD_BATCH:,}); the plain twin: "
        f"COPY {copy_clock.wall:.1f} s ({size / copy_clock.wall:,.0f} rows/s) + 2 indexes {indexing.wall:.1f} s; "
        f"generating the events {made.wall:.1f} s; VACUUM ANALYZE of both + CHECKPOINT {vacuum.wall:.1f} s"
    )
    return BigLog(url, dbname, schema, plain, key, shape, how)


@dataclass
class Questions:
    """The random questions asked of the big log (the same ones of graven and the plain table)."""

    targets: list[str]
    actors: list[tuple[str, datetime, datetime]]


def questions(shape: BigShape, count: int, seed: int) -> Questions:
    rng = random.Random(seed)
    window = min(WINDOW, SPAN)
    targets = [f"c-{rng.randrange(shape.targets):07d}" for _ in range(count)]
    actors = []
    for _ in range(count):
        since = START + timedelta(seconds=rng.uniform(0, (SPAN - window).total_seconds()))
        actors.append((f"u-{rng.randrange(shape.actors):05d}", since, since + window))
    return Questions(targets, actors)


def lib_history(trail: graven.Trail, target: str) -> int:
    return len(trail.history(("customer", target)))


def lib_actor(trail: graven.Trail, question: tuple[str, datetime, datetime]) -> int:
    actor, since, until = question
    return len(trail.query(actor=actor, since=since, until=until))


def plain_history(conn: psycopg.Connection[Any], table: str, target: str) -> int:
    rows = conn.execute(PLAIN_HISTORY.format(table), ("customer", target)).fetchall()
    return len([orjson.loads(body) for _, body in rows])


def plain_actor(conn: psycopg.Connection[Any], table: str, question: tuple[str, datetime, datetime]) -> int:
    rows = conn.execute(PLAIN_ACTOR.format(table), question).fetchall()
    return len([orjson.loads(body) for _, body in rows])


def query_timings(
    server: Server, big: BigLog, cold: int, warm: int, seed: int
) -> tuple[dict[str, Timings], dict[str, float]]:
    """Cold and warm latencies of the two questions, graven and plain taking turns."""
    asked = questions(big.shape, max(cold, warm), seed)
    out: dict[str, list[float]] = {}
    found: dict[str, list[int]] = {}

    def add(name: str, seconds: float, rows: int) -> None:
        out.setdefault(name, []).append(seconds)
        found.setdefault(name, []).append(rows)

    clock = time.perf_counter

    def lib_open() -> graven.Trail:
        return graven.open(big.url, signing_key=big.key, create=False)

    def plain_open() -> psycopg.Connection[Any]:
        conn = server.connect(big.dbname, autocommit=True)
        conn.execute("SELECT 1")  # the connection is made, as graven.open makes its reader
        return conn

    # Cold: the first call on a freshly opened trail (new connections, a new server backend with
    # empty caches of its own; the server's shared buffers and the OS page cache stay warm).
    for k in range(cold):
        target, actor = asked.targets[k], asked.actors[k]
        for kind, lib_call, plain_call, arg in (("history", lib_history, plain_history, target),
                                                ("actor", lib_actor, plain_actor, actor)):  # fmt: skip
            with lib_open() as trail:
                start = clock()
                rows = lib_call(trail, arg)  # type: ignore[operator]
                add(f"{kind} cold", clock() - start, rows)
            with plain_open() as conn:
                start = clock()
                rows = plain_call(conn, big.plain, arg)  # type: ignore[operator]
                add(f"plain {kind} cold", clock() - start, rows)

    # Warm: one trail and one connection, graven and plain taking turns every QUERY_BLOCK calls.
    with lib_open() as trail, plain_open() as conn:
        for kind, lib_call, plain_call, args in (("history", lib_history, plain_history, asked.targets),
                                                 ("actor", lib_actor, plain_actor, asked.actors)):  # fmt: skip
            for first in range(0, warm, QUERY_BLOCK):
                block = args[first : min(first + QUERY_BLOCK, warm)]
                for side in ("lib", "plain") if first // QUERY_BLOCK % 2 == 0 else ("plain", "lib"):
                    for arg in block:
                        start = clock()
                        if side == "lib":
                            rows = lib_call(trail, arg)  # type: ignore[operator]
                            add(f"{kind} warm", clock() - start, rows)
                        else:
                            rows = plain_call(conn, big.plain, arg)  # type: ignore[operator]
                            add(f"plain {kind} warm", clock() - start, rows)
    for kind in ("history", "actor"):
        for temp in ("cold", "warm"):
            # Each side asked the same questions in the same order: the answers must agree.
            ours, theirs = found[f"{kind} {temp}"], found[f"plain {kind} {temp}"]
            if ours != theirs:
                first_bad = next(i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b)
                raise SystemExit(f"{kind} question {first_bad} ({temp}): graven found {ours[first_bad]} "
                                 f"entries, the plain table {theirs[first_bad]}")  # fmt: skip
    timings = {name: Timings(values) for name, values in out.items()}
    return timings, {name: statistics.mean(rows) for name, rows in found.items()}


# --------------------------------------------------------------------------- profiles


def profile(server: Server, scratch: Scratch, sizes: Sizes, seed: int, top: int) -> None:
    """cProfile of record_many, integrate() and warm history(); EXPLAIN ANALYZE of the two questions."""
    events = make_events(sizes.entries, seed)
    trail = scratch.new_trail("profile")
    profiler = cProfile.Profile()
    with Stopwatch() as clock:
        profiler.enable()
        for group in batches(events, BATCH):
            trail.record_many(group)
        profiler.disable()
    print(f"== cProfile: record_many of {sizes.entries:,} events in batches of {BATCH:,} into PostgreSQL, "
          f"top {top} by tottime ({clock.wall:.2f} s wall under the profiler) ==")  # fmt: skip
    print_profile(profiler, top)
    verify_parts(trail, sizes.entries)
    trail.close()

    single = make_events(sizes.single, seed + 4)
    trail = scratch.new_trail("profile_one")
    for event in single[:20]:
        trail.record(event)  # connects and learns the head, as a running application has
    profiler = cProfile.Profile(time.process_time)
    with Stopwatch() as clock:
        profiler.enable()
        for event in single[20:]:
            trail.record(event)
        profiler.disable()
    print(f"== cProfile by client CPU time: {len(single) - 20:,} record() calls, one per commit, top {top} by "
          f"tottime ({clock.wall:.2f} s wall, {clock.cpu / (len(single) - 20) * 1e6:,.0f} us CPU per record "
          "under the profiler) ==")  # fmt: skip
    print_profile(profiler, top)
    trail.close()

    trail = scratch.new_trail(CAPTURE_SCHEMA)
    with scratch.connect() as conn:
        for side in BULK_SIDES:
            conn.execute(customers_sql(side.table, sizes.rows))
        conn.execute(AUDIT_TRIGGER)
        track(conn, CAPTURE_SCHEMA, "customers_graven", **TRACK_OPTIONS)
        conn.commit()
        trail.integrate()
        trigger_profile(conn, sizes.rows)
    profiler = cProfile.Profile()
    with Stopwatch() as clock:
        profiler.enable()
        moved = trail.integrate()
        profiler.disable()
    print(f"== cProfile: integrate() of {moved:,} captured UPDATE events, top {top} by tottime "
          f"({clock.wall:.2f} s wall under the profiler) ==")  # fmt: skip
    print_profile(profiler, top)
    trail.close()

    big = find_big(server, sizes.big) or build_big(server, scratch.dbname, scratch.keys, sizes.big, seed + 1)
    asked = questions(big.shape, sizes.queries, seed + 2)
    with graven.open(big.url, signing_key=big.key, create=False) as trail:
        for target in asked.targets[:20]:
            lib_history(trail, target)
        profiler = cProfile.Profile()
        with Stopwatch() as clock:
            profiler.enable()
            for target in asked.targets:
                lib_history(trail, target)
            profiler.disable()
    print(f"== cProfile: {len(asked.targets):,} warm history() calls on the {sizes.big:,}-entry log, top {top} "
          f"by tottime ({clock.wall:.2f} s wall under the profiler) ==")  # fmt: skip
    print_profile(profiler, top)

    from graven.store import Query
    from graven.store.postgres import query_sql

    actor, since, until = asked.actors[0]
    for label, query in (
        ("history", Query(target=("customer", asked.targets[0]), limit=10_000)),
        ("actor", Query(actor=actor, since=since.isoformat(), until=until.isoformat())),
    ):
        built = query_sql(query)
        assert built is not None
        with psycopg.connect(server.url_for(big.dbname), autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(big.schema)))
            plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + built[0], built[1]).fetchall()
        print(f"== EXPLAIN (ANALYZE, BUFFERS) of the {label} query graven issues ==")
        print(built[0])
        print("\n".join(row[0] for row in plan))
        print()


def verify_parts(trail: graven.Trail, entries: int) -> None:
    """verify() beside its two halves alone: the streamed scan (read, hash, check the tree) and the
    server's check of the copied columns and target rows (which verify() runs beside the scan)."""
    store = trail.store
    timings = []
    for name, part in (
        ("verify()", lambda: trail.verify().ok),
        ("  the scan alone (read, hash, tree)", lambda: _scan_only(store)),
        ("  the derived check alone (server)", lambda: store.derived_mismatch() is None),
    ):
        with Stopwatch() as clock:
            ok = part()
        timings.append(f"  {name:<38} {ms(clock.wall)} wall, {ms(clock.cpu)} client CPU, "
                       f"{per_second(entries / clock.wall)}{'' if ok else '  (NOT OK)'}")  # fmt: skip
    print(f"== verify() of the {entries:,}-entry log and its parts, each alone ==")
    print("\n".join(timings))
    print()


def _scan_only(store: Any) -> bool:
    """Every entry read and hashed and the tree checked against the tiles (no signatures)."""
    from graven.core import audit

    with store.scan() as scan:
        report = audit.verify_log(scan.entries(), scan.tiles(), [], [])
    return report.entries == store.size()


def trigger_profile(conn: psycopg.Connection[Any], rows: int) -> None:
    """The bulk UPDATE on each table, with PostgreSQL's per-function timing of the trigger functions."""
    print(f"== PostgreSQL function profile (track_functions = all): one bulk UPDATE of {rows:,} rows ==")
    print("   (the timing instrumentation itself adds a few us per function call)")
    stats = "SELECT schemaname || '.' || funcname, calls, total_time, self_time FROM pg_stat_xact_user_functions"
    for side in BULK_SIDES:
        conn.execute("SET LOCAL track_functions = 'all'")
        # The view keeps counts not yet flushed from earlier transactions: subtract them.
        before = {name: (calls, total, own) for name, calls, total, own in conn.execute(stats)}
        with Stopwatch() as clock:
            conn.execute(sql.SQL(BULK_UPDATE).format(sql.Identifier(side.table)))
        functions = []
        for name, calls, total, own in conn.execute(stats):
            was = before.get(name, (0, 0.0, 0.0))
            if calls > was[0]:
                functions.append((name, calls - was[0], total - was[1], own - was[2]))
        conn.commit()
        print(f"  {side.name} ({side.table}): {ms(clock.wall)}, {clock.wall / rows * 1e6:,.1f} us per row")
        for name, calls, total, own in sorted(functions, key=lambda f: -f[3]):
            print(f"    {name:<26} {calls:>7,} calls  total {total:>9,.1f} ms  self {own:>9,.1f} ms  "
                  f"({own / calls * 1000:,.1f} us per call)")  # fmt: skip
    print()


# --------------------------------------------------------------------------- main


@dataclass
class Sizes:
    entries: int
    single: int
    updates: int
    rows: int
    big: int
    queries: int
    cold: int
    repeat: int


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Graven on PostgreSQL beside plain COPY, plain triggers, plain SQL.")
    add = parser.add_argument
    add("--url", default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="the server (any database on it; a scratch database is created beside it)")  # fmt: skip
    add("--entries", type=int, help="entries for the record_many runs (20,000)")
    add("--single", type=int, help="record() calls per run, one commit each (2,000)")
    add("--updates", type=int, help="single-row UPDATEs per table and run, one transaction each (2,000)")
    add("--rows", type=int, help="rows of each customers table, all updated by the bulk UPDATE (10,000)")
    add("--big", type=int, help="size of the log for the history and actor queries (1,000,000)")
    add("--queries", type=int, help="warm calls per kind of query (1,000)")
    add("--cold", type=int, help="cold calls per kind, each on a freshly opened trail (21)")
    add("--repeat", type=int, default=3, help="runs per throughput figure; the median-ratio run is shown (3)")
    add("--keep", action="store_true",
        help=f"build the big log in the database {KEPT_DB} and keep it (reused whenever its size matches)")  # fmt: skip
    add("--quick", action="store_true", help="a fast smoke run with small sizes (CI)")
    add("--profile", action="store_true",
        help="print cProfile of record_many, integrate() and history() and EXPLAIN of the queries instead")  # fmt: skip
    add("--seed", type=int, default=7, help="seed of the generated events and questions (7)")
    args = parser.parse_args(argv)
    quick = Sizes(2_000, 200, 200, 1_000, 20_000, 200, 5, args.repeat)
    full = Sizes(20_000, 2_000, 2_000, 10_000, 1_000_000, 1_000, 21, args.repeat)
    default = quick if args.quick else full
    sizes = Sizes(**{
        name: default_value if getattr(args, name) is None else getattr(args, name)
        for name, default_value in vars(default).items()
    })  # fmt: skip
    if min(vars(sizes).values()) < 1:
        parser.error("sizes and counts must be positive")
    server = Server(args.url)
    try:
        description = server.describe()
    except psycopg.OperationalError as exc:
        raise SystemExit(f"cannot connect to {args.url}: {str(exc).strip()}\n(start the server, e.g. "
                         "`pg_ctlcluster --skip-systemctl-redirect 15 main start`)") from None  # fmt: skip
    if args.profile and args.big is None:
        sizes.big = min(sizes.big, 100_000)  # a kept log of that size is reused; build one with --keep
    with scratch_database(server) as scratch:
        if args.profile:
            profile(server, scratch, sizes, args.seed, 20)
        else:
            run(server, scratch, sizes, args.seed, keep=args.keep, description=description)
    return 0


def run(server: Server, scratch: Scratch, sizes: Sizes, seed: int, *, keep: bool, description: str) -> None:
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    repeat = sizes.repeat
    events = make_events(sizes.entries, seed)
    event_bytes = statistics.mean(len(orjson.dumps(e)) for e in events)

    say(f"1. recording: {sizes.entries:,} events in batches of {BATCH:,}, record_many beside COPY, {repeat} runs")
    lib_runs, copy_runs = record_runs(scratch, events, repeat)
    say("  verify() of each of those logs beside reading and hashing the plain table's rows")
    ver_runs, hash_runs = verify_runs(scratch, repeat)
    say(f"  and {sizes.single:,} events one per commit: record() beside a one-row INSERT, {repeat} runs")
    one_runs, insert_runs = single_runs(scratch, make_events(sizes.single, seed + 4), repeat)

    say(f"2. trigger capture: {sizes.updates:,} single-row UPDATEs per table and 1 bulk UPDATE of "
        f"{sizes.rows:,} rows, {repeat} runs")  # fmt: skip
    captured = capture_runs(scratch, sizes.rows, sizes.updates, repeat, seed + 3)
    say(f"2b. a request's durable write and its audit event: {sizes.single:,} requests per side, {repeat} runs")
    requests = request_runs(scratch, sizes.single, repeat, seed + 5)

    say(f"3. queries on a {sizes.big:,}-entry log")
    big = find_big(server, sizes.big)
    if big is None:
        if keep:
            if not server.database_exists(KEPT_DB):
                server.create_database(KEPT_DB)
            kept_keys().mkdir(parents=True, exist_ok=True)
            big = build_big(server, KEPT_DB, kept_keys(), sizes.big, seed + 1)
            big.how += f"; kept in {KEPT_DB} (drop it with DROP DATABASE {KEPT_DB})"
        else:
            big = build_big(server, scratch.dbname, scratch.keys, sizes.big, seed + 1)
    say(f"  {big.how}")
    say(f"  {sizes.cold} cold and {sizes.queries:,} warm calls per kind ...")
    timings, answers = query_timings(server, big, sizes.cold, sizes.queries, seed + 2)
    elapsed = time.perf_counter() - started

    libn, copyn = paired(lib_runs, copy_runs)
    lib1, plain1 = paired(one_runs, insert_runs)
    ver, hashed = paired(ver_runs, hash_runs)
    single = {name: min(values) / captured.updates for name, values in captured.single.items()}
    # Bulk UPDATE figures: both sides from the run whose ratio is the median (never each side's best).
    bulk_ours, bulk_plain0 = median_turn(captured.bulk["graven"], captured.bulk["untracked"])
    bulk_ours_a, bulk_audit = median_turn(captured.bulk["graven"], captured.bulk["audit trigger"])
    # The tracked bulk UPDATE's whole cost: the statement plus integrate() of its events, same run.
    tracked_runs = [b + i.wall for b, i in zip(captured.bulk["graven"], captured.integrate, strict=True)]
    bulk_total, bulk_plain = median_turn(tracked_runs, captured.bulk["untracked"])
    integ = min(captured.integrate, key=lambda r: r.wall)
    print("Graven on PostgreSQL: the library beside what an engineer would otherwise write, in this run")
    print(f"  {description}; Python {platform.python_version()}, psycopg {psycopg.__version__}, orjson "
          f"{orjson.__version__}, graven {graven.__version__}, {platform.system()} {platform.machine()}, "
          f"{cpu_count()} cores; load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at "
          "the end")  # fmt: skip

    def request_pair(ours: str, base: str) -> tuple[float, float]:
        """Seconds per request of two sides, from the run whose ratio is the median (same turns)."""
        turns = sorted(requests.runs, key=lambda run: run[ours] / run[base])
        middle = turns[(len(turns) - 1) // 2]
        return middle[ours] / requests.requests, middle[base] / requests.requests

    req_tx, req_plain = request_pair("in transaction", "plain")
    req_after, req_plain2 = request_pair("record() after", "plain")
    req_integ = min(requests.integrate, key=lambda r: r.wall)
    print(f"  events: {event_bytes:,.0f} bytes of JSON on average; throughput: of {repeat} runs, the one whose "
          f"ratio is the median (both sides from that run), the sides taking turns every batch; single-row "
          f"UPDATE times: the least of {repeat} runs, taking turns every {SINGLE_BLOCK}; bulk UPDATE: of {repeat} "
          "runs, the one whose ratio is the median; latencies: p50")  # fmt: skip
    print()
    u, r, b = captured.updates, captured.rows, sizes.big
    rows = [
        Row(f"record_many(), {BATCH:,} per commit ({sizes.entries:,})", per_second(libn.rate),
            per_second(copyn.rate), f"{libn.rate / copyn.rate:.0%}", ">= 40 % of COPY",
            verdict(libn.rate >= 0.40 * copyn.rate)),
        Row(f"record(), 1 per commit ({sizes.single:,})", per_second(lib1.rate), per_second(plain1.rate),
            f"{lib1.rate / plain1.rate:.0%}", ">= 50 % of INSERT", verdict(lib1.rate >= 0.50 * plain1.rate)),
        Row(f"verify() ({ver.count:,} entries)", per_second(ver.rate), per_second(hashed.rate),
            f"{ver.rate / hashed.rate:.0%}", ">= 200,000 /s", verdict(ver.rate >= 200_000)),
        Row(f"tracked single-row UPDATE, 1 per commit ({u:,})", ms(single["graven"]), ms(single["untracked"]),
            f"{single['graven'] / single['untracked']:.2f}x", "<= 2x untracked",
            verdict(single["graven"] <= 2 * single["untracked"])),
        Row("  the same, inside pg_context(actor=...)", ms(single["graven, context"]),
            ms(single["untracked, context"]), f"{single['graven, context'] / single['untracked, context']:.2f}x",
            "<= 2x untracked", verdict(single["graven, context"] <= 2 * single["untracked, context"])),
        Row("  beside the hand-written audit trigger", ms(single["graven"]), ms(single["audit trigger"]),
            f"{single['graven'] / single['audit trigger']:.2f}x", "(for reference)", ""),
        Row(f"tracked bulk UPDATE of all {r:,} rows", ms(bulk_ours), ms(bulk_plain0),
            f"{bulk_ours / bulk_plain0:.2f}x", "<= 2x untracked", verdict(bulk_ours <= 2 * bulk_plain0)),
        Row("  beside the hand-written audit trigger", ms(bulk_ours_a), ms(bulk_audit),
            f"{bulk_ours_a / bulk_audit:.2f}x", "(for reference)", ""),
        Row("  with integrate() of its events (median run)", ms(bulk_total), ms(bulk_plain),
            f"{bulk_total / bulk_plain:.2f}x", "<= 3x untracked", verdict(bulk_total <= 3 * bulk_plain)),
        Row(f"integrate() of captured events ({integ.count:,})", per_second(integ.rate), per_second(libn.rate),
            f"{integ.rate / libn.rate:.0%}", "(beside record_many)", ""),
        Row(f"request: UPDATE + event in its transaction ({requests.requests:,})", ms(req_tx), ms(req_plain),
            f"{req_tx / req_plain:.2f}x", "<= 2x plain commit", verdict(req_tx <= 2 * req_plain)),
        Row("  request: UPDATE, commit, then record()", ms(req_after), ms(req_plain2),
            f"{req_after / req_plain2:.2f}x", "(today's way, reference)", ""),
        Row(f"  integrate() of those events ({req_integ.count:,})", per_second(req_integ.rate),
            per_second(libn.rate), f"{req_integ.rate / libn.rate:.0%}", "(off the request path)", ""),
    ]  # fmt: skip
    if requests.orm:
        orm_tx, orm_plain = request_pair("orm same_database", "orm untracked")
        orm_ob, orm_plain2 = request_pair("orm outbox", "orm untracked")
        rows += [
            Row("ORM one-row UPDATE + commit, same_database=True", ms(orm_tx), ms(orm_plain),
                f"{orm_tx / orm_plain:.2f}x", "<= 2x untracked", verdict(orm_tx <= 2 * orm_plain)),
            Row("  the same, tracked through the app's outbox", ms(orm_ob), ms(orm_plain2),
                f"{orm_ob / orm_plain2:.2f}x", "(reference)", ""),
        ]  # fmt: skip
    for kind, label in (("history", 'history(("customer", id))'), ("actor", "query(actor=, since=, until=)")):
        for temp in ("cold", "warm"):
            ours, theirs = timings[f"{kind} {temp}"].median, timings[f"plain {kind} {temp}"].median
            rows.append(Row(f"{label} at {b:,}, {temp}, p50", ms(ours), ms(theirs), f"{ours / theirs:.1f}x",
                            "p50 < 5 ms", verdict(ours < 0.005)))  # fmt: skip
    print_table(rows)
    print()
    print("Baselines (same server, same run)")
    print("  record_many: orjson.dumps of the same events, COPY into one jsonb column of a table without")
    print(f"               indexes, {BATCH:,} rows per commit (synchronous_commit as the server has it)")
    print("  record():    orjson.dumps of the same kind of event, one-row INSERT into one jsonb column of a")
    print("               table without indexes, in autocommit (one statement, one commit per event)")
    print(f"  UPDATEs:     identical tables of {r:,} customers (id bigint pk, email, password_hash,")
    print("               credit_limit numeric, updated_at timestamptz), one without triggers and one with")
    print("               the hand-written audit trigger (AFTER INSERT/UPDATE/DELETE FOR EACH ROW: to_jsonb(OLD),")
    print("               to_jsonb(NEW), TG_OP, now() into audit_log with a bigserial key); graven tracks with")
    print(f"               {', '.join(f'{k}={v}' for k, v in TRACK_OPTIONS.items())}; single-row UPDATEs each")
    print("               in autocommit (one commit, one fsync) at the same random ids; 'context' rows wrap each")
    print("               UPDATE in pg_context(conn, actor=, ip=, reason=) on both sides (BEGIN, set_config,")
    print("               UPDATE, COMMIT); the bulk UPDATE is one statement, one commit")
    print(f"  requests:    a one-row UPDATE of a {ORDER_ROWS:,}-row table (id bigint pk, total bigint) and its")
    print("               COMMIT on a psycopg connection, at the same random ids on every side; 'in its")
    print("               transaction' adds graven.capture.pg.record(conn, trail, event) before the COMMIT (the")
    print("               SECURITY DEFINER capture_record); 'then record()' commits, then trail.record(event);")
    print("               ORM: session.get(), one attribute changed, session.commit() through SQLAlchemy")
    print("               (psycopg), untracked beside tracked; each ratio from the run whose ratio is the median")
    print("  queries:     a plain table of the same events (seq bigint pk, target_type, target_id, actor_id,")
    print("               occurred_at, body jsonb) with b-tree indexes on (target_type, target_id) and")
    print("               (actor_id, occurred_at); the same question in SQL through psycopg, bodies read as")
    print("               text and parsed with orjson, as graven does")
    print()
    print("Details")
    print(f"  record_many, every run, entries/s (client CPU us per entry, least of the runs): graven "
          f"{fmt_runs(lib_runs)} ({least_cpu(lib_runs):,.1f} us); COPY {fmt_runs(copy_runs)} "
          f"({least_cpu(copy_runs):,.1f} us)")  # fmt: skip
    print(f"  record(), every run, entries/s (client CPU us per entry): graven {fmt_runs(one_runs)} "
          f"({least_cpu(one_runs):,.1f} us); INSERT {fmt_runs(insert_runs)} "
          f"({least_cpu(insert_runs):,.1f} us)")  # fmt: skip
    print("  single-row UPDATE, mean per UPDATE in each run:")
    for name, values in captured.single.items():
        print(f"    {name:<19} {' / '.join(ms(v / u) for v in values)}")
    print(f"  bulk UPDATE of {r:,} rows, each run:")
    for name, values in captured.bulk.items():
        print(f"    {name:<19} {' / '.join(ms(v) for v in values)}  ({r / min(values):,.0f} rows/s at best)")
    print("  requests, mean per request in each run:")
    for side in requests.runs[0]:
        print(f"    {side:<19} {' / '.join(ms(run[side] / requests.requests) for run in requests.runs)}")
    print(f"  verify(), every run, entries/s: graven {fmt_runs(ver_runs)}; read+hash {fmt_runs(hash_runs)}")
    print(f"  integrate() of the bulk UPDATE's events, each run: {fmt_runs(captured.integrate)} entries/s "
          f"({least_cpu(captured.integrate):,.1f} us client CPU per entry)")  # fmt: skip
    print(f"  stored per change: graven's outbox event {captured.captured_bytes:,.0f} B (json, before "
          f"integration); the audit trigger's old_row + new_row {captured.audit_bytes:,.0f} B")  # fmt: skip
    print(f"  capture log: {captured.log_size:,} entries; verify(): {captured.verified}")
    print(f"  big log: {big.shape.size:,} entries over {big.shape.targets:,} customers and {big.shape.actors:,} "
          f"actors, occurred_at spread evenly over {SPAN.days} days; actor queries ask for a "
          f"{WINDOW.days}-day window (first page, 100 entries)")  # fmt: skip
    print(f"    {big.how}")
    print("  cold = first call on a freshly opened graven.open(...) trail / a new connection: a new server")
    print("  backend with empty catalogue and plan caches; shared buffers and the OS page cache stay warm;")
    print(f"  {sizes.cold} fresh opens per kind. warm = one trail, {sizes.queries:,} calls per kind.")
    for kind in ("history", "actor"):
        for temp in ("cold", "warm"):
            for who in ("", "plain "):
                t = timings[f"{who}{kind} {temp}"]
                label = f"{who or 'graven '}{kind} {temp}"
                print(f"    {label:<20} p50 {ms(t.median)}, p90 {ms(t.pct(90))}, p99 {ms(t.pct(99))}, "
                      f"max {ms(max(t.values))} (n={len(t.values):,}, "
                      f"{answers[f'{who}{kind} {temp}']:,.1f} entries per answer)")  # fmt: skip
    print(f"  total time {elapsed:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
