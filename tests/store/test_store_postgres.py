"""The PostgreSQL backend: the Store contract, plus roles, immutability, migrations, errors, sequencing
across processes and tampering, against a real server.

The server comes from GRAVEN_TEST_PG (default postgresql://postgres@127.0.0.1:5432/postgres) and needs
a superuser. A fresh database is created for the session and dropped at the end; each test works in
a schema of its own. Without a server the tests are skipped, except on CI, where they fail.
"""

from __future__ import annotations

import gc
import multiprocessing
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from graven.capture import pg as capture
from graven.core import audit, canonical, merkle
from graven.core.model import Prepared, prepare
from graven.core.note import Signer
from graven.errors import ConfigError, GravenError, ImmutableError, StoreError
from graven.keys import create_signing_key
from graven.sequencer import Sequencer
from graven.store import Query, Store, StoredCheckpoint
from graven.store.postgres import (
    PostgresStore,
    column_value,
    grant,
    lock_key,
    parse_url,
    query_sql,
    redact,
    translate_error,
)
from graven.store.postgres_schema import LATEST, LOG_TABLES
from graven.testing.store_contract import T0, StoreContract, make_event
from graven.trail import Trail
from tests.pgserver import Server, with_url
from tests.writers import run_writers

ORIGIN = "test.example/log"


def raw_execute(store: PostgresStore, statement: str, *, url: str | None = None) -> None:
    """Run SQL behind the library's back (as the URL's role, default the owner), in the log's schema."""
    target = parse_url(url) if url else store.target
    try:
        with psycopg.connect(target.conninfo, autocommit=True) as conn:
            conn.execute("SELECT set_config('search_path', %s, false)", (store.schema,))
            conn.execute(statement.encode())
    except psycopg.Error as exc:
        raise translate_error(exc, target) from exc


class TestPostgresStore(StoreContract):
    """The shared contract, each test in a fresh schema of the session database."""

    @pytest.fixture(autouse=True)
    def _server(self, pg: Server) -> None:
        self.pg = pg

    def make_store(self) -> Store:
        return PostgresStore(self.pg.schema_url(), create=True)

    def raw_execute(self, store: Store, sql: str) -> None:
        assert isinstance(store, PostgresStore)
        raw_execute(store, sql)


# --- helpers ---------------------------------------------------------------------------------------


def prepared(n: int, **overrides: Any) -> Prepared:
    return prepare(make_event(n, **overrides), now=T0, new_id=lambda: f"gen-{n}")


def legacy_prepared(n: int, **overrides: Any) -> Prepared:
    """An entry as versions before the identifier rules accepted it (U+0000 in an id, say)."""
    doc = {**prepared(n).doc, **overrides}
    leaf = canonical.encode_reference(doc)
    return Prepared(doc, leaf, merkle.leaf_hash(leaf))


@pytest.fixture
def store(pg: Server) -> Iterator[PostgresStore]:
    store = PostgresStore(pg.schema_url(), create=True)
    store.initialize({"origin": ORIGIN})
    yield store
    store.close()


@pytest.fixture
def signer() -> Signer:
    return Signer.generate(ORIGIN)


def sequencer(store: Store, signer: Signer | None) -> Sequencer:
    return Sequencer(store, ORIGIN, signer, checkpoint_interval=0)


def fill(store: Store, signer: Signer, n: int, start: int = 0) -> list[int]:
    return sequencer(store, signer).append([prepared(i) for i in range(start, start + n)])


def verify(store: Store, signer: Signer) -> audit.Report:
    with store.scan() as scan:
        return audit.verify_log(
            scan.entries(), scan.tiles(), [(c.size, c.note) for c in scan.checkpoints()], [signer.verifier()]
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- URLs ------------------------------------------------------------------------------------------


class TestURLs:
    """URLs name a database and a schema; Graven's own parameter never reaches libpq."""

    def test_schema_sources(self) -> None:
        """?schema= wins, then options=-c search_path=..., then the default ``graven``."""
        assert "graven" == parse_url("postgresql://h/db").schema
        target = parse_url("postgresql://u@h:6543/db?schema=audit&sslmode=disable")
        assert ("audit", "h", "6543", "db", "u") == (
            target.schema,
            target.host,
            target.port,
            target.dbname,
            target.user,
        )
        assert "schema" not in target.conninfo
        assert "sslmode=disable" in target.conninfo
        assert "trail" == parse_url("postgresql://h/db?options=-c%20search_path%3Dtrail").schema

    def test_password_is_never_shown(self) -> None:
        """The URL a store reports has its password masked."""
        target = parse_url("postgresql://bob:hunter2@h/db?schema=s")
        assert "postgresql://bob:***@h/db?schema=s" == target.display
        assert "hunter2" not in repr(target)
        assert "password=***" in redact("postgresql://h/db?password=hunter2")

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("postgresql://bob:hunter2@[::1/db", "malformed PostgreSQL URL"),
            ("postgresql://bob:hunter2@h/db?nonsense=1", "malformed PostgreSQL URL"),
            ("postgresql://bob:hunter2@h/db?schema=no-dashes", "plain identifier"),
            ("postgresql://bob:hunter2@127.0.0.1:notaport/db", "malformed PostgreSQL URL"),
        ],
    )
    def test_malformed(self, url: str, message: str) -> None:
        """A malformed URL is a ConfigError naming the URL without its password."""
        with pytest.raises(ConfigError, match=message) as info:
            PostgresStore(url)
        assert "hunter2" not in str(info.value)
        assert "bob:***@" in str(info.value)


# --- errors ----------------------------------------------------------------------------------------


class TestErrors:
    """Driver errors become Graven's, saying what went wrong and what to check."""

    def test_connection_refused(self) -> None:
        port = free_port()
        with pytest.raises(ConfigError, match=rf"127\.0\.0\.1:{port}: connection refused; check that the server"):
            PostgresStore(f"postgresql://postgres@127.0.0.1:{port}/db")

    def test_unknown_user(self, pg: Server) -> None:
        with pytest.raises(ConfigError, match=r"authentication failed for user graven_nobody .*does not exist"):
            PostgresStore(with_url(pg.url, user="graven_nobody"))

    def test_bad_password(self) -> None:
        """(The test server trusts everyone, so the server's refusal is replayed.)"""
        exc = psycopg.OperationalError(
            'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
            'FATAL:  password authentication failed for user "bob"'
        )
        error = translate_error(exc, parse_url("postgresql://bob:hunter2@10.0.0.5/app"))
        assert isinstance(error, ConfigError)
        assert str(error).startswith("authentication failed for user bob at 10.0.0.5:5432/app")
        assert "hunter2" not in str(error)

    def test_missing_database(self, pg: Server) -> None:
        with pytest.raises(ConfigError, match="database graven_nowhere does not exist"):
            PostgresStore(with_url(pg.url, db="graven_nowhere"))

    def test_missing_schema(self, pg: Server) -> None:
        """Opening (not creating) a log whose schema is absent says how to create one."""
        url = pg.schema_url("absent")
        schema = parse_url(url).schema
        with pytest.raises(ConfigError, match=f"no log in schema {schema} at .*; create one with `graven --db"):
            PostgresStore(url)

    def test_schema_without_log(self, pg: Server) -> None:
        """A schema that exists but holds no log is not a log."""
        url = pg.schema_url("empty")
        pg.db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(parse_url(url).schema)))
        with pytest.raises(ConfigError, match="no log in schema"):
            PostgresStore(url).settings()

    def test_foreign_schema_is_not_taken_over(self, pg: Server) -> None:
        """Initialising in a schema that has someone else's ``entries`` refuses, naming the clash."""
        url = pg.schema_url("app")
        schema = sql.Identifier(parse_url(url).schema)
        pg.db.execute(sql.SQL("CREATE SCHEMA {0}; CREATE TABLE {0}.entries (x int)").format(schema))
        with pytest.raises(ConfigError, match="not a Graven log"):
            PostgresStore(url, create=True).initialize({"origin": ORIGIN})

    def test_duplicate_checkpoint(self, store: PostgresStore, signer: Signer) -> None:
        fill(store, signer, 1)
        with pytest.raises(StoreError, match="checkpoint of that size is already stored"), store.write() as tx:
            tx.insert_checkpoint(StoredCheckpoint(1, "forged\n"))

    def test_insufficient_privilege_names_the_grant(self, pg: Server, store: PostgresStore) -> None:
        role = pg.login_role("reader")
        grant(store.target.conninfo + f"?schema={store.schema}", role, "reader")
        reader = PostgresStore(with_url(pg.url, user=role, schema=store.schema))
        with pytest.raises(StoreError, match=f"permission denied for role {role}.*`graven pg grant {role} --writer`"):
            sequencer(reader, None).append([prepared(0)])
        reader.close()

    def test_lock_timeout(self, store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> None:
        """A writer that cannot get the log head in time says so."""
        monkeypatch.setattr("graven.store.postgres.LOCK_TIMEOUT_S", 1)  # the wait
        monkeypatch.setattr("graven.store.pg_connection.LOCK_TIMEOUT_S", 1)  # the message
        with psycopg.connect(store.target.conninfo, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (lock_key(store.schema, "head"),))
            with pytest.raises(StoreError, match="locked by another writer for over 1s"), store.write():
                pass


# --- immutability ----------------------------------------------------------------------------------


class TestImmutability:
    """The engine refuses changes to log data, even from the owner (a superuser here)."""

    @pytest.mark.parametrize("table", LOG_TABLES)
    def test_truncate_refused(self, store: PostgresStore, signer: Signer, table: str) -> None:
        fill(store, signer, 2)
        with pytest.raises(ImmutableError, match=f"{table} is append-only; TRUNCATE is refused"):
            raw_execute(store, f"TRUNCATE {table}")
        assert 2 == store.size()

    def test_settings_cannot_change(self, store: PostgresStore) -> None:
        with pytest.raises(ImmutableError, match="settings is append-only; UPDATE is refused"):
            raw_execute(store, "UPDATE settings SET value = 'evil.example/log' WHERE key = 'origin'")
        assert ORIGIN == store.settings()["origin"]


# --- roles -----------------------------------------------------------------------------------------


class TestRoles:
    """grant() makes writers that can only append and readers that can only read."""

    @pytest.fixture
    def roles(self, pg: Server, store: PostgresStore) -> tuple[str, str]:
        writer, reader = pg.login_role("writer"), pg.login_role("reader")
        owner_url = with_url(pg.url, schema=store.schema)
        grant(owner_url, writer, "writer")
        grant(owner_url, writer, "writer")  # idempotent
        grant(owner_url, reader, "reader")
        return writer, reader

    def test_writer_records_but_cannot_change(
        self, pg: Server, store: PostgresStore, roles: tuple[str, str], tmp_path: Path
    ) -> None:
        writer, _ = roles
        url = with_url(pg.url, user=writer, schema=store.schema)
        key = create_signing_key(tmp_path / "k", ORIGIN)
        as_writer = PostgresStore(url)
        as_writer.initialize({"origin": ORIGIN})  # up to date: needs no DDL and no new settings
        with Trail(as_writer, signer=key) as trail:
            assert [0, 1, 2] == trail.record_many(make_event(n) for n in range(3))
            assert 3 == trail.record(make_event(3))
            trail.checkpoint()
        assert [4, 5] == sequencer(PostgresStore(url), key).append([prepared(4), prepared(5)])
        for statement in ("DELETE FROM entries", "UPDATE tiles SET hashes = hashes", "TRUNCATE checkpoints"):
            with pytest.raises(StoreError, match="permission denied"):
                raw_execute(store, statement, url=url)
        with pytest.raises(StoreError, match="permission denied for schema"):
            raw_execute(store, "CREATE TABLE sneaky (x int)", url=url)
        with pytest.raises(StoreError, match="permission denied for table settings"):
            raw_execute(store, "INSERT INTO settings VALUES ('origin2', 'x')", url=url)
        with pytest.raises(ImmutableError, match="append-only"):
            raw_execute(store, "DELETE FROM entries")  # and the owner is stopped by the trigger
        assert 6 == store.size()
        assert verify(store, key).ok

    def test_reader_reads_but_cannot_insert(self, pg: Server, store: PostgresStore, roles: tuple[str, str]) -> None:
        _, reader = roles
        signer = Signer.generate(ORIGIN)
        fill(store, signer, 3)
        url = with_url(pg.url, user=reader, schema=store.schema)
        as_reader = PostgresStore(url)
        assert 3 == as_reader.size()
        assert [0, 1, 2] == [i for i, _ in as_reader.query(Query())]
        assert verify(as_reader, signer).ok
        assert None is as_reader.derived_mismatch()
        with psycopg.connect(parse_url(url).conninfo) as conn:
            view = sql.SQL("SELECT count(*) FROM {}.entries_view").format(sql.Identifier(store.schema))
            assert (3,) == conn.execute(view).fetchone()
        with pytest.raises(StoreError, match="permission denied"):
            raw_execute(store, "INSERT INTO checkpoints VALUES (99, 'x')", url=url)
        with pytest.raises(StoreError, match="permission denied"):
            raw_execute(store, "SELECT pg_advisory_xact_lock(1); INSERT INTO tiles VALUES (0, 9, 1, '')", url=url)
        as_reader.close()

    def test_writer_cannot_create_a_log(self, pg: Server, roles: tuple[str, str]) -> None:
        """Creating a log needs the right to create a schema; the message says who can."""
        writer, _ = roles
        url = with_url(pg.schema_url("new"), user=writer)
        with pytest.raises(StoreError, match=f"role {writer} may not create the log in schema new_"):
            PostgresStore(url, create=True).initialize({"origin": ORIGIN})

    def test_grant_creates_missing_role_without_login(self, pg: Server, store: PostgresStore) -> None:
        role = f"graven_test_nologin_{secrets.token_hex(4)}"
        pg.roles.append(role)
        grant(with_url(pg.url, schema=store.schema), role, "reader")
        row = pg.admin.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        assert (False,) == row

    def test_grant_checks_its_arguments(self, pg: Server, store: PostgresStore) -> None:
        with pytest.raises(ConfigError, match="unknown role kind"):
            grant(with_url(pg.url, schema=store.schema), "x", "admin")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="no log in schema"):
            grant(pg.schema_url("absent"), "x", "reader")


# --- migrations ------------------------------------------------------------------------------------


class TestMigrations:
    """initialize() applies each migration once, however often and however concurrently it runs."""

    def migrations(self, store: PostgresStore) -> list[int]:
        with psycopg.connect(store.target.conninfo) as conn:
            rows = conn.execute(
                sql.SQL("SELECT version FROM {}.schema_migrations ORDER BY version").format(
                    sql.Identifier(store.schema)
                )
            ).fetchall()
        return [r[0] for r in rows]

    def test_twice(self, store: PostgresStore) -> None:
        store.initialize({"origin": "other"})
        assert list(range(1, LATEST + 1)) == self.migrations(store)
        assert ORIGIN == store.settings()["origin"]

    def test_concurrent_initialisers(self, pg: Server) -> None:
        url = pg.schema_url("race")
        stores = [PostgresStore(url, create=True) for _ in range(4)]
        barrier = threading.Barrier(len(stores))
        errors: list[BaseException] = []

        def run(store: PostgresStore) -> None:
            barrier.wait()
            try:
                store.initialize({"origin": ORIGIN})
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [] == errors
        assert list(range(1, LATEST + 1)) == self.migrations(stores[0])
        assert {"origin": ORIGIN, "schema_version": "1"} == stores[0].settings()
        for s in stores:
            s.close()


# --- sequencing ------------------------------------------------------------------------------------


def _die_mid_batch(url: str, ready: Any) -> None:
    store = PostgresStore(url)
    items = [prepared(n) for n in range(3)]
    appended = merkle.append(0, [], [item.leaf_hash for item in items])
    with store.write() as tx:
        tx.insert(0, items, appended.rows)
        ready.put("inserted")
        time.sleep(120)  # killed here


class TestSequencing:
    """The write transaction locks the head, commits durably and leaves nothing when it dies."""

    def test_writer_session(self, store: PostgresStore) -> None:
        with store.write() as tx:
            settings = tx.conn.execute(
                "SELECT current_setting('synchronous_commit'), current_setting('transaction_isolation'), "
                "current_setting('lock_timeout'), current_setting('search_path')"
            ).fetchone()
            held = tx.conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
            ).fetchone()
        assert ("on", "read committed", "1min", f'"{store.schema}"') == settings
        assert (1,) == held

    def test_killed_writer_leaves_nothing(self, pg: Server, store: PostgresStore, signer: Signer) -> None:
        """A process killed mid-batch (its connection drops) leaves no rows and releases the head."""
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Queue()
        proc = ctx.Process(target=_die_mid_batch, args=(with_url(pg.url, schema=store.schema), ready))
        proc.start()
        assert "inserted" == ready.get(timeout=60)
        proc.kill()
        proc.join(timeout=10)
        assert 0 == store.size()
        assert [0, 1] == fill(store, signer, 2)  # waits for the server to notice, then appends at 0
        assert verify(store, signer).ok

    def test_dropped_connection_rolls_back_and_recovers(self, pg: Server, store: PostgresStore, signer: Signer) -> None:
        """A connection lost mid-transaction rolls it back; the next write reconnects."""
        item = prepared(0)
        appended = merkle.append(0, [], [item.leaf_hash])

        def write_and_lose_connection() -> None:
            with store.write() as tx:
                tx.insert(0, [item], appended.rows)
                pg.admin.execute("SELECT pg_terminate_backend(%s)", (tx.conn.info.backend_pid,))
                tx.insert_checkpoint(StoredCheckpoint(1, "x\n"))

        with pytest.raises(StoreError, match="lost the connection to PostgreSQL"):
            write_and_lose_connection()
        assert 0 == store.size()
        assert [0, 1, 2] == fill(store, signer, 3)
        assert verify(store, signer).ok

    def test_idle_writer_connection_is_replaced(self, pg: Server, store: PostgresStore, signer: Signer) -> None:
        """A writer connection the server closed while idle is replaced before anything is written."""
        fill(store, signer, 1)
        assert store._writer is not None
        pg.admin.execute("SELECT pg_terminate_backend(%s)", (store._writer.info.backend_pid,))
        time.sleep(0.1)
        assert [1, 2] == fill(store, signer, 2, start=1)

    def test_readers_reconnect(self, pg: Server, store: PostgresStore, signer: Signer) -> None:
        """A reader whose idle connection the server closed reconnects once, transparently."""
        fill(store, signer, 2)
        pid = store._reader().info.backend_pid
        pg.admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        time.sleep(0.1)
        assert 2 == store.size()


# --- reading at scale --------------------------------------------------------------------------------


class TestReading:
    """Indexes serve the common questions; scans stream; the view and awkward names work."""

    @pytest.fixture(scope="class")
    @staticmethod
    def big(pg: Server) -> Iterator[PostgresStore]:
        """50,000 synthetic rows (planner statistics need volume; the bodies do not matter here)."""
        store = PostgresStore(pg.schema_url("big"), create=True)
        store.initialize({"origin": ORIGIN})
        raw_execute(
            store,
            """
            INSERT INTO entries (idx, body, event_id, occurred_at, actor_id, action, outcome, source, tenant)
            SELECT i, '{}', 'e-' || i, timestamptz '2026-01-01Z' + i * interval '1 minute', 'u-' || i % 500,
                   'a' || i % 20 || '.x', CASE WHEN i % 100 = 0 THEN 'denied' ELSE 'success' END, 'web',
                   CASE WHEN i % 3 = 0 THEN 't-' || i % 300 END
              FROM generate_series(0, 49999) i;
            INSERT INTO entry_targets SELECT 'customer', 'c-' || i % 5000, i FROM generate_series(0, 49999) i;
            ANALYZE entries; ANALYZE entry_targets;
        """,
        )
        yield store
        store.close()

    @pytest.mark.parametrize(
        ("query", "index"),
        [
            (Query(target=("customer", "c-42")), "entry_targets_pkey"),
            (Query(actor="u-7", since="2026-01-02T00:00:00.000000Z", until="2026-01-09T00:00:00.000000Z"),
             "entries_actor_time"),
            (Query(outcome="denied", newest_first=True), "entries_not_success"),
            (Query(tenant="t-3", after=20_000), "entries_tenant"),
            (Query(target_type="customer"), "entry_targets_entry"),
            (Query(newest_first=True, before=30_000), "entries_pkey"),
        ],
    )  # fmt: skip
    def test_indexes_serve_queries(self, big: PostgresStore, query: Query, index: str) -> None:
        """History of one row, an actor's deeds in a period, failures, a tenant's log: index scans."""
        built = query_sql(query)
        assert built is not None
        with psycopg.connect(big.target.conninfo, autocommit=True) as conn:
            conn.execute("SELECT set_config('search_path', %s, false)", (big.schema,))
            plan = "\n".join(r[0] for r in conn.execute(("EXPLAIN " + built[0]).encode(), built[1]))
        assert index in plan
        assert "Seq Scan" not in plan

    def test_scan_streams_through_server_cursors(self, store: PostgresStore, signer: Signer) -> None:
        fill(store, signer, 5)
        with store.scan() as scan:
            entries = scan.entries()
            assert 0 == next(entries)[0]
            cursors = scan.conn.execute("SELECT count(*) FROM pg_cursors").fetchone()
            isolation = scan.conn.execute("SELECT current_setting('transaction_isolation')").fetchone()
            assert [1, 2, 3, 4] == [i for i, _ in entries]
        assert (1,) == cursors
        assert ("repeatable read",) == isolation

    def test_scan_reports_dropped_tables(self, store: PostgresStore, signer: Signer) -> None:
        fill(store, signer, 2)
        raw_execute(store, "DROP TABLE tiles")
        with pytest.raises(GravenError, match=r"tiles of the log in schema .* was dropped"), store.scan():
            pass

    def test_view(self, store: PostgresStore, signer: Signer) -> None:
        sequencer(store, signer).append([prepared(4, reason="ticket 7")])
        with psycopg.connect(store.target.conninfo) as conn:
            row = conn.execute(sql.SQL("SELECT * FROM {}.entries_view").format(sql.Identifier(store.schema))).fetchone()
            columns = [d.name for d in conn.execute(
                sql.SQL("SELECT * FROM {}.entries_view LIMIT 0").format(sql.Identifier(store.schema))
            ).description or []]  # fmt: skip
        assert [
            "index", "occurred_at", "recorded_at", "actor_type", "actor_id", "action", "target_type", "target_id",
            "outcome", "source", "reason", "changes", "body",
        ] == columns  # fmt: skip
        assert row is not None
        assert 0 == row[0]
        assert T0.replace(minute=8) == row[1]
        assert ("user", "u-1", "session.login", "customer", "c-0", "success", "web", "ticket 7") == row[3:11]
        assert "email" == row[11][0]["field"]
        assert "evt-00000004" == row[12]["id"]

    def test_awkward_names(self, store: PostgresStore, signer: Signer) -> None:
        """Names holding U+0000 (which PostgreSQL text cannot; identifiers now refuse it, but older entries
        may hold it) or U+FFFE are stored, found and checked."""
        odd = [
            legacy_prepared(0, id="e\x00", actor={"type": "user", "id": "a\x00b"}, tenant="t\x00",
                     targets=[{"type": "doc", "id": "d\x00\\0"}]),
            prepared(1, id="\ufffee", actor={"type": "user", "id": "a\ufffd"},
                     targets=[{"type": "doc", "id": "d\\0"}, {"type": "doc", "id": "\ufffe"}]),
            prepared(2, reason="nul \x00 in a reason", actor={"type": "user", "id": "a\\u0000"}),
        ]  # fmt: skip
        seq = sequencer(store, signer)
        assert [0, 1, 2] == seq.append(odd)
        assert [0, 1, 2] == seq.append(odd)  # known ids are recognised
        assert [0] == [i for i, _ in store.query(Query(actor="a\x00b"))]
        assert [1] == [i for i, _ in store.query(Query(actor="a\ufffd"))]
        assert [2] == [i for i, _ in store.query(Query(actor="a\\u0000"))]
        assert [0] == [i for i, _ in store.query(Query(tenant="t\x00"))]
        assert [0] == [i for i, _ in store.query(Query(target=("doc", "d\x00\\0")))]
        assert [1] == [i for i, _ in store.query(Query(target=("doc", "\ufffe")))]
        assert [] == [i for i, _ in store.query(Query(text="\x00"))]
        assert odd[2].leaf == store.entry(2)
        assert None is store.derived_mismatch()
        assert verify(store, signer).ok
        assert "\ufffe\ufffe\\\\0" == column_value("\ufffe\\0")
        with psycopg.connect(store.target.conninfo) as conn:
            reasons = conn.execute(
                sql.SQL("SELECT actor_id, reason FROM {}.entries_view ORDER BY index").format(
                    sql.Identifier(store.schema)
                )
            ).fetchall()
        assert ("a\\u0000", "nul \ufffd in a reason") == reasons[2]


# --- trigger capture ------------------------------------------------------------------------------


def captured_count(pg: Server, store: PostgresStore) -> int:
    query = sql.SQL("SELECT count(*) FROM {}.captured").format(sql.Identifier(store.schema))
    row = pg.db.execute(query).fetchone()
    return -1 if row is None else int(row[0])


class TestCapture:
    """The write transaction moves captured events into the log and out of the outbox, exactly once."""

    def add_captured(self, pg: Server, store: PostgresStore, *actions: str) -> None:
        for action in actions:
            event = make_event(0, id=f"cap-{action}", action=action)
            pg.db.execute(
                sql.SQL("INSERT INTO {}.captured (event) VALUES (%s)").format(sql.Identifier(store.schema)),
                (Jsonb(event),),
            )

    def test_take_oldest_first_in_the_transaction(self, pg: Server, store: PostgresStore) -> None:
        self.add_captured(pg, store, "a.one", "a.two", "a.three")

        def take_then_fail() -> None:
            with store.write() as tx:
                assert ["a.one", "a.two"] == [e["action"] for e in tx.take_captured(2)]
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            take_then_fail()
        assert 3 == captured_count(pg, store)  # rolled back: nothing was claimed
        with store.write() as tx:
            assert ["a.one", "a.two"] == [e["action"] for e in tx.take_captured(2)]
        with store.write() as tx:
            assert ["a.three"] == [e["action"] for e in tx.take_captured(2)]
            assert [] == tx.take_captured(2)
        assert 0 == captured_count(pg, store)

    @pytest.mark.parametrize("enabled_before", [True, False])
    def test_integrate_pauses_the_collector(self, pg: Server, store: PostgresStore, enabled_before: bool) -> None:
        """integrate_captured prepares a batch with the cyclic collector paused (its many fresh dicts
        would set off full collections) and leaves it as it found it, also when preparing fails."""
        self.add_captured(pg, store, "a.one", "a.two")
        seen: list[bool] = []

        def prepared(events: list[Any]) -> list[Prepared]:
            seen.append(gc.isenabled())
            return [prepare(e, now=T0, new_id=lambda: "unused") for e in events]

        def failing(events: list[Any]) -> list[Prepared]:
            raise RuntimeError("boom")

        if not enabled_before:
            gc.disable()
        try:
            assert 2 == Sequencer(store, ORIGIN, prepare_captured=prepared).integrate_captured()
            assert [False] == seen
            assert enabled_before == gc.isenabled()
            self.add_captured(pg, store, "a.three")
            with pytest.raises(RuntimeError):
                Sequencer(store, ORIGIN, prepare_captured=failing).integrate_captured()
            assert enabled_before == gc.isenabled()
        finally:
            gc.enable()

    def test_tracked_table_changes_enter_the_log(self, pg: Server, store: PostgresStore, signer: Signer) -> None:
        """Changes to a tracked table (committed ones only) become entries; a writer role can move them."""
        table = f"accounts_{secrets.token_hex(3)}"
        pg.db.execute(
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, email text, pw text)").format(sql.Identifier(table))
        )
        with pg.db.transaction():
            capture.track(pg.db, store.schema, table, redact=["pw"])
        with capture.context(pg.db, actor="user:u-1", reason="ticket 9"):
            pg.db.execute(
                sql.SQL("INSERT INTO {} VALUES (1, 'a@x', 's1'), (2, 'b@x', 's2')").format(sql.Identifier(table))
            )
        with pg.db.transaction():
            pg.db.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
            raise psycopg.Rollback()  # leaves no captured event
        pg.db.execute(sql.SQL("UPDATE {} SET pw = 's3' WHERE id = 2").format(sql.Identifier(table)))
        assert 4 == captured_count(pg, store)  # audit.track, two inserts, one update

        writer = pg.login_role("writer")
        grant(with_url(pg.url, schema=store.schema), writer, "writer")
        as_writer = PostgresStore(with_url(pg.url, user=writer, schema=store.schema))
        seq = Sequencer(
            as_writer, ORIGIN, signer, checkpoint_interval=0,
            prepare_captured=lambda events: [prepare(e, now=T0, new_id=lambda: "unused") for e in events],
        )  # fmt: skip
        assert 4 == seq.integrate_captured()
        assert 0 == captured_count(pg, store)
        assert 0 == seq.integrate_captured()
        actions = [orjson.loads(body)["action"] for _, body in store.query(Query())]
        assert ["audit.track", f"{table}.insert", f"{table}.insert", f"{table}.update"] == actions
        update = orjson.loads(store.query(Query(action=f"{table}.update"))[0][1])
        assert [{"field": "pw", "redacted": True}] == update["changes"]
        assert {"type": "system", "id": "postgres"} == {k: update["actor"][k] for k in ("type", "id")}
        inserted = store.query(Query(actor="u-1"))
        assert 2 == len(inserted)
        assert "ticket 9" == orjson.loads(inserted[0][1])["reason"]
        assert verify(store, signer).ok
        assert None is store.derived_mismatch()
        as_writer.close()


# --- tampering -------------------------------------------------------------------------------------


def tamper(store: PostgresStore, statement: str) -> None:
    """As a superuser with the triggers switched off for the session."""
    raw_execute(store, "SET session_replication_role = replica; " + statement)


class TestTamper:
    """Someone who switches the triggers off is caught by verification."""

    @pytest.fixture
    def filled(self, store: PostgresStore, signer: Signer) -> PostgresStore:
        seq = sequencer(store, signer)
        for start in range(0, 12, 4):
            seq.append([prepared(n) for n in range(start, start + 4)])
        return store

    def test_modified_body(self, filled: PostgresStore, signer: Signer) -> None:
        tamper(filled, "UPDATE entries SET body = replace(body, 'a4@', 'z4@') WHERE idx = 4")
        report = verify(filled, signer)
        assert (4, "modified") == (report.first_bad_index, report.kind)

    def test_deleted_entry(self, filled: PostgresStore, signer: Signer) -> None:
        tamper(filled, "DELETE FROM entries WHERE idx = 6")
        report = verify(filled, signer)
        assert (6, "missing") == (report.first_bad_index, report.kind)

    def test_triggers_disabled_per_table(self, filled: PostgresStore, signer: Signer) -> None:
        raw_execute(filled, "ALTER TABLE entries DISABLE TRIGGER USER")
        raw_execute(filled, "UPDATE entries SET body = replace(body, 'u-1', 'u-2') WHERE idx = 7")
        report = verify(filled, signer)
        assert (7, "modified") == (report.first_bad_index, report.kind)
        assert 7 == filled.derived_mismatch()  # the body no longer names the actor in actor_id

    @pytest.mark.parametrize(
        ("statement", "index"),
        [
            ("UPDATE entries SET actor_id = 'u-9' WHERE idx = 5", 5),
            ("UPDATE entries SET occurred_at = occurred_at + interval '1 day' WHERE idx = 3", 3),
            ("DELETE FROM entry_targets WHERE idx = 8", 8),
            ("INSERT INTO entry_targets VALUES ('customer', 'c-3', 2)", 2),
            ("INSERT INTO entry_targets VALUES ('customer', 'c-3', 99)", 99),
            ("UPDATE entries SET body = 'not json' WHERE idx = 9", 9),
            ("UPDATE entries SET body = '{\"targets\": 5}' WHERE idx = 10", 10),
        ],
    )
    def test_derived_columns(self, filled: PostgresStore, statement: str, index: int) -> None:
        """Copied columns and target rows that disagree with the body are found, even in broken bodies."""
        tamper(filled, statement)
        assert index == filled.derived_mismatch()


# --- many processes ----------------------------------------------------------------------------------

PROCESSES = 8
PER_PROCESS = 2000


@pytest.mark.slow
def test_eight_processes_one_log(pg: Server, tmp_path: Path) -> None:
    """8 processes x 2,000 events give 16,000 gapless entries, each exactly once, that verify."""
    url = pg.schema_url("procs")
    key = create_signing_key(tmp_path / "signing.key", ORIGIN)
    store = PostgresStore(url, create=True)
    store.initialize({"origin": ORIGIN, "verifier_key": key.verifier().to_text()})
    indices = run_writers(url, str(tmp_path / "signing.key"), PROCESSES, PER_PROCESS, timeout=300)
    assert list(range(PROCESSES * PER_PROCESS)) == indices
    assert PROCESSES * PER_PROCESS == store.size()
    ids = {e for _, e in store.query(Query(limit=PROCESSES * PER_PROCESS))}
    assert PROCESSES * PER_PROCESS == len(ids)
    report = verify(store, key)
    assert report.ok, report.message
    assert report.checkpoints >= 2
    assert None is store.derived_mismatch()
    store.close()
