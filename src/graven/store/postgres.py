"""The PostgreSQL store (psycopg 3): one log per schema, many writers, engine-enforced append-only.

Sequencing: ``write()`` opens a READ COMMITTED transaction and takes ``pg_advisory_xact_lock`` on a
key derived from the schema (the lock on the log head) before anything is read, so every statement
after it sees the previous writer's commit; indices stay gapless across connections and processes.
Commits run with ``synchronous_commit = on``. A writer whose connection drops mid-batch leaves
nothing: the server rolls its transaction back and releases the lock.

Immutability: BEFORE UPDATE OR DELETE row triggers and BEFORE TRUNCATE statement triggers refuse
every change to log data, even for the owner; roles made with :func:`grant` cannot change or remove
anything in the first place. The hashes and signed checkpoints catch anyone who disables both.

Threads: one writer connection behind a lock, one autocommit reader connection per live thread, and
each ``scan()`` or ``derived_mismatch()`` on its own REPEATABLE READ connection, reading rows
through server-side cursors.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, quote, urlencode

import orjson
import psycopg
from psycopg import errors as pgerrors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from graven.core import merkle
from graven.core.merkle import Node
from graven.core.model import Prepared
from graven.errors import ConfigError, GravenError, ImmutableError, IntegrityError, StoreError
from graven.store import Query, Scan, Store, StoredCheckpoint, WriteTx
from graven.store.postgres_schema import (
    BOOTSTRAP,
    IMMUTABLE_SQLSTATE,
    MIGRATIONS,
    OUTBOX,
    READABLE,
    WRITABLE,
)
from graven.store.querying import Dialect, select_entries

SCHEMA_VERSION = 1  # the log format, as SQLiteStore records it; the DDL's version is in schema_migrations
DEFAULT_SCHEMA = "graven"
LOCK_TIMEOUT_S = 60
CONNECT_TIMEOUT_S = 10
SCAN_BATCH = 5_000

Conn = psycopg.Connection[TupleRow]
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_SEARCH_PATH_OPTION = re.compile(r"-c\s*search_path\s*=\s*([^\s,]+)")
_CHECKED_TABLES = ("entries", "entry_targets", "tree", "checkpoints")

# --- URLs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PgTarget:
    """Where a log lives: libpq connection string (Graven's own parameters removed) and schema."""

    conninfo: str = field(repr=False)
    schema: str
    display: str
    host: str
    port: str
    dbname: str
    user: str

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}/{self.dbname}"


def redact(url: str) -> str:
    """The URL with its password (in the authority or as a parameter) replaced by ``***``."""
    url = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*:)[^@/?#]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url)


def parse_url(url: str) -> PgTarget:
    """Split a ``postgresql://`` URL into libpq's connection string and the log's schema.

    The schema comes from ``?schema=name``, else from ``options=-c search_path=name``, else it is
    ``graven``. Malformed URLs raise ConfigError naming the URL without its password.
    """
    shown = redact(url)
    base, _, query = url.partition("?")
    params = parse_qsl(query, keep_blank_values=True)
    schema = next((v for k, v in params if k == "schema"), None)
    rest = [(k, v) for k, v in params if k != "schema"]
    conninfo = base + ("?" + urlencode(rest, quote_via=quote) if rest else "")
    try:
        info = conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        detail = str(exc).strip()
        raise ConfigError(f"malformed PostgreSQL URL {shown}: {_hide(detail, url)}") from None
    if schema is None:
        match = _SEARCH_PATH_OPTION.search(str(info.get("options") or ""))
        schema = match.group(1).strip('"') if match else DEFAULT_SCHEMA
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(
            f"malformed PostgreSQL URL {shown}: schema {schema!r} must be a plain identifier "
            "(letters, digits and _, not starting with a digit, at most 63 characters)"
        )
    host = str(info.get("host") or os.environ.get("PGHOST") or "localhost")
    user = str(info.get("user") or os.environ.get("PGUSER") or _os_user())
    return PgTarget(
        conninfo=conninfo, schema=schema, display=shown, host=host,
        port=str(info.get("port") or os.environ.get("PGPORT") or "5432"),
        dbname=str(info.get("dbname") or os.environ.get("PGDATABASE") or user), user=user,
    )  # fmt: skip


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in the environment; libpq would fail the same way
        return "?"


def _hide(text: str, url: str) -> str:
    password = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*:([^@/?#]*)@", url)
    if password and password.group(1):
        text = text.replace(password.group(1), "***")
    return redact(text)


def lock_key(schema: str, purpose: str) -> int:
    """A stable 64-bit advisory lock key for one purpose on one schema (locks are per database)."""
    digest = hashlib.sha256(f"graven:{purpose}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# --- values kept in text columns -------------------------------------------------------------------

_MARK = "\ufffe"


def column_value(value: str | None) -> str | None:
    """How a name is kept in an indexed text column (PostgreSQL text cannot hold U+0000).

    Names without U+0000 are kept as they are; the rest are escaped behind a U+FFFE mark (as is
    any name that starts with the mark), so the mapping stays one-to-one.
    """
    if value is None or ("\x00" not in value and not value.startswith(_MARK)):
        return value
    return _MARK + value.replace("\\", "\\\\").replace("\x00", "\\0")


# --- the store ------------------------------------------------------------------------------------


class PostgresStore:
    """A log in one schema of a PostgreSQL database. Thread-safe; many processes may write it."""

    def __init__(self, url: str, *, create: bool = False) -> None:
        self.target = parse_url(url)
        self.url = self.target.display
        self.schema = self.target.schema
        self._head_key = lock_key(self.schema, "head")
        self._write_lock = threading.Lock()
        self._writer: Conn | None = None
        self._readers: dict[int, Conn] = {}
        self._scans: set[Conn] = set()
        self._connections_lock = threading.Lock()
        if not create and not self._schema_exists():
            self.close()
            raise ConfigError(self._no_log())

    def _no_log(self) -> str:
        return f"no log in schema {self.schema} at {self.target.where}; create one with `graven --db '{self.url}' init`"

    def translate(self, exc: Exception) -> GravenError:
        return translate_error(exc, self.target)

    # --- connections -----------------------------------------------------------------------

    def _connect(self, *, read_only: bool = False) -> Conn:
        conn = connect(self.target)
        try:
            if read_only:
                conn.execute("SELECT set_config('default_transaction_read_only', 'on', false)")
                conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                conn.read_only = True
            else:
                conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
                conn.read_only = False
        except psycopg.Error as exc:
            conn.close()
            raise self.translate(exc) from exc
        return conn

    def _reader(self) -> Conn:
        ident = threading.get_ident()
        conn = self._readers.get(ident)
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        threading.current_thread()  # registers threads started outside `threading`, so they count as alive
        conn = self._connect(read_only=True)
        with self._connections_lock:
            # Threads come and go (web servers): close the connections of threads that have ended.
            alive = {t.ident for t in threading.enumerate()}
            for other in [i for i in self._readers if i not in alive or i == ident]:
                self._readers.pop(other).close()
            self._readers[ident] = conn
        return conn

    def _read(self, sql_text: str | sql.Composed, params: Sequence[Any] = ()) -> list[TupleRow]:
        """One statement on this thread's reader (one snapshot), retried once on a dropped connection."""
        for attempt in (1, 2):
            conn = self._reader()
            try:
                return conn.execute(sql_text, params).fetchall()
            except psycopg.OperationalError as exc:
                if attempt == 1 and conn.broken:
                    continue  # the server restarted or closed an idle session: reconnect once
                raise self.translate(exc) from exc
            except psycopg.Error as exc:
                raise self.translate(exc) from exc
        raise AssertionError("unreachable")

    @contextmanager
    def _own_connection(self) -> Iterator[Conn]:
        conn = self._connect(read_only=True)
        with self._connections_lock:
            self._scans.add(conn)
        try:
            yield conn
        finally:
            with self._connections_lock:
                self._scans.discard(conn)
            conn.close()

    def close(self) -> None:
        """Close every connection this store opened (it reconnects if used again)."""
        with self._connections_lock:
            conns = [*self._readers.values(), *self._scans]
            self._readers.clear()
            self._scans.clear()
        with self._write_lock:
            if self._writer is not None:
                conns.append(self._writer)
                self._writer = None
        for conn in conns:
            conn.close()

    def _schema_exists(self) -> bool:
        rows = self._read("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,))
        return bool(rows)

    # --- schema ----------------------------------------------------------------------------

    def initialize(self, settings: Mapping[str, str]) -> None:
        """Create the schema (migrations, once each, under an advisory lock) and add missing settings."""
        conn = self._connect()
        try:
            # Held until the connection closes: one initialiser at a time per schema.
            conn.execute("SELECT pg_advisory_lock(%s)", (lock_key(self.schema, "migrate"),))
            migrate(conn, self.schema)
            with conn.transaction():
                stored = {row[0] for row in conn.execute("SELECT key FROM settings")}
                wanted = {"schema_version": str(SCHEMA_VERSION), **settings}
                missing = [(k, v) for k, v in wanted.items() if k not in stored]
                if missing:
                    with conn.cursor() as cur:
                        cur.executemany("INSERT INTO settings (key, value) VALUES (%s, %s)", missing)
        except pgerrors.InsufficientPrivilege as exc:
            raise StoreError(
                f"role {self.target.user} may not create the log in schema {self.schema} at {self.target.where} "
                f"({exc.diag.message_primary}); run `graven init` as the database owner, or "
                f"GRANT CREATE ON DATABASE {self.target.dbname} TO {self.target.user}"
            ) from exc
        except psycopg.Error as exc:
            raise self.translate(exc) from exc
        finally:
            conn.close()

    def settings(self) -> dict[str, str]:
        # A missing schema or table is translated to ConfigError("no log in schema ...").
        return {str(k): str(v) for k, v in self._read("SELECT key, value FROM settings")}

    # --- writing ---------------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[_PgWriteTx]:
        """Lock the log head, yield a transaction, commit durably (or roll back)."""
        with self._write_lock:
            conn = self._begin_write()
            try:
                yield _PgWriteTx(conn)
            except BaseException as exc:
                _rollback(conn)
                if isinstance(exc, psycopg.Error):
                    raise self.translate(exc) from exc
                raise
            try:
                conn.execute("COMMIT")
            except psycopg.OperationalError as exc:
                if not conn.broken:
                    raise self.translate(exc) from exc
                # The server may have committed before the connection went: nobody can say here.
                raise StoreError(
                    f"lost the connection to PostgreSQL at {self.target.host}:{self.target.port} while committing; "
                    "the batch may or may not be stored. Recording the same events again is safe: "
                    "an event id already in the log keeps its index"
                ) from exc
            except psycopg.Error as exc:
                raise self.translate(exc) from exc

    def _begin_write(self) -> Conn:
        """BEGIN and take the head lock (one round trip); a writer connection found dead is replaced once.

        READ COMMITTED matters: each statement after the lock sees the previous writer's commit
        (REPEATABLE READ would keep the snapshot taken before the lock was granted).
        """
        begin = (
            f"BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE; SELECT pg_advisory_xact_lock({int(self._head_key)})"
        ).encode()
        for attempt in (1, 2):
            conn = self._writer_connection()
            try:
                conn.execute(begin)
                return conn
            except psycopg.Error as exc:
                _rollback(conn)
                if attempt == 1 and isinstance(exc, psycopg.OperationalError) and conn.broken:
                    continue  # the server closed the idle connection; nothing was written yet
                raise self.translate(exc) from exc
        raise AssertionError("unreachable")

    def _writer_connection(self) -> Conn:
        conn = self._writer
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if conn is not None:
            conn.close()
        self._writer = None
        conn = self._connect()
        try:
            conn.execute(
                "SELECT set_config('synchronous_commit', 'on', false), set_config('lock_timeout', %s, false)",
                (f"{LOCK_TIMEOUT_S}s",),
            )
        except psycopg.Error as exc:
            conn.close()
            raise self.translate(exc) from exc
        self._writer = conn
        return conn

    # --- reading ---------------------------------------------------------------------------

    def size(self) -> int:
        return _size_of(self._read("SELECT max(idx) FROM tree"))

    def entry(self, index: int) -> bytes | None:
        rows = self._read("SELECT body FROM entries WHERE idx = %s", (index,))
        return str(rows[0][0]).encode() if rows else None

    @contextmanager
    def scan(self) -> Iterator[_PgScan]:
        """One REPEATABLE READ snapshot over the whole log, streamed through server-side cursors."""
        with self._own_connection() as conn:
            try:
                with conn.transaction():
                    present = {
                        row[0]
                        for row in conn.execute(
                            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
                            (self.schema,),
                        )
                    }
                    missing = [t for t in _CHECKED_TABLES if t not in present]
                    if missing:
                        raise IntegrityError(
                            f"the table{'s' if len(missing) > 1 else ''} {', '.join(missing)} of the log "
                            f"in schema {self.schema} {'were' if len(missing) > 1 else 'was'} dropped"
                        )
                    scan = _PgScan(conn)
                    try:
                        yield scan
                    finally:
                        scan.close()
            except psycopg.Error as exc:
                raise self.translate(exc) from exc

    def tree_hashes(self, nodes: Iterable[Node]) -> tuple[int, dict[Node, bytes]]:
        """The tree size and the requested subtree hashes, read in one statement (one snapshot)."""
        wanted = _rows_wanted(nodes)
        rows = self._read(
            "SELECT s.m, t.idx, t.hashes FROM (SELECT max(idx) AS m FROM tree) s "
            "LEFT JOIN tree t ON t.idx = ANY(%s::bigint[])",
            (list(wanted),),
        )
        size = _size_of(rows[:1])
        return size, _pick_hashes(wanted, [(idx, blob) for _, idx, blob in rows if idx is not None])

    def checkpoints(self) -> list[StoredCheckpoint]:
        rows = self._read("SELECT size, note FROM checkpoints ORDER BY size")
        return [StoredCheckpoint(int(size), str(note)) for size, note in rows]

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        rows = self._read("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
        return StoredCheckpoint(int(rows[0][0]), str(rows[0][1])) if rows else None

    def query(self, query: Query) -> list[tuple[int, bytes]]:
        built = query_sql(query)
        if built is None:
            return []
        return [(int(idx), str(body).encode()) for idx, body in self._read(*built)]

    def derived_mismatch(self) -> int | None:
        """The first index whose copied columns or target rows disagree with its body (jsonb)."""
        with self._own_connection() as conn:
            try:
                try:
                    with conn.transaction():
                        return _derived_mismatch(conn)
                except psycopg.DataError:
                    # A body that is not JSON, or not shaped like an entry: only tampering does this.
                    # Compare every row in Python instead (slow, but only after the damage is done).
                    with conn.transaction():
                        return _slow_mismatch(conn, None)
            except psycopg.Error as exc:
                raise self.translate(exc) from exc


# --- connecting and migrating ----------------------------------------------------------------------


def connect(target: PgTarget) -> Conn:
    """An autocommit connection with ``search_path`` set to the log's schema and UTF-8 checked."""
    kwargs: dict[str, Any] = {"autocommit": True, "client_encoding": "UTF8"}
    info = conninfo_to_dict(target.conninfo)
    if "connect_timeout" not in info and "PGCONNECT_TIMEOUT" not in os.environ:
        kwargs["connect_timeout"] = CONNECT_TIMEOUT_S
    if "application_name" not in info and "PGAPPNAME" not in os.environ:
        kwargs["application_name"] = "graven"
    try:
        conn = psycopg.connect(target.conninfo, **kwargs)
    except psycopg.Error as exc:
        raise translate_error(exc, target) from exc
    try:
        encoding = conn.info.parameter_status("server_encoding")
        if encoding not in ("UTF8", None):
            raise ConfigError(
                f"database {target.dbname} at {target.host}:{target.port} uses encoding "
                f"{encoding}; Graven needs a UTF8 database (CREATE DATABASE ... ENCODING 'UTF8')"
            )
        conn.execute(
            "SELECT set_config('search_path', %s, false)",
            (sql.Identifier(target.schema).as_string(conn),),
        )
    except psycopg.Error as exc:
        conn.close()
        raise translate_error(exc, target) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def migrate(conn: Conn, schema: str) -> list[int]:
    """Apply the migrations ``schema`` lacks, each in its own transaction; returns those applied.

    The caller holds the schema's migration advisory lock. Nothing is created that exists already,
    so a role without CREATE privileges can "initialise" a log that is up to date.
    """
    ident = sql.Identifier(schema)
    search_path = ident.as_string(conn)
    with conn.transaction():
        if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        if conn.execute("SELECT to_regclass(%s)", (f"{search_path}.schema_migrations",)).fetchone() == (None,):
            conn.execute(sql.SQL("SET LOCAL search_path = {}").format(ident))
            conn.execute(BOOTSTRAP)
    applied = {row[0] for row in conn.execute(sql.SQL("SELECT version FROM {}.schema_migrations").format(ident))}
    done = []
    for migration in MIGRATIONS:
        if migration.version in applied:
            continue
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL search_path = {}").format(ident))
                conn.execute(migration.sql)
                conn.execute(
                    "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                    (migration.version, migration.description),
                )
        except (pgerrors.DuplicateTable, pgerrors.DuplicateFunction, pgerrors.DuplicateObject) as exc:
            raise ConfigError(
                f"schema {schema} already holds objects that are not a Graven log "
                f"({exc.diag.message_primary}); choose another schema with ?schema=NAME"
            ) from exc
        done.append(migration.version)
    return done


# --- roles -----------------------------------------------------------------------------------------


def grant(target: str | Conn, role: str, kind: Literal["writer", "reader"], *, schema: str | None = None) -> None:
    """Give ``role`` exactly what a writer or a reader of the log needs, creating it if missing.

    writer: USAGE on the schema, SELECT and INSERT on the log tables, SELECT on settings, the
    migration record and the view, and SELECT and DELETE on the capture outbox (which it empties
    into the log); reader: USAGE and SELECT on the log only. UPDATE, DELETE, TRUNCATE, REFERENCES
    and TRIGGER are revoked from the role on every log table, and it gets no DDL rights.
    A missing role is created NOLOGIN (give it LOGIN and a password yourself). Run as the schema's
    owner or a superuser. ``target`` is a URL (its ``?schema=`` is used) or an open connection.
    """
    if kind not in ("writer", "reader"):
        raise ConfigError(f"unknown role kind {kind!r}: use writer or reader")
    if not role or len(role) > 63:
        raise ConfigError(f"role name {role!r} must be 1 to 63 characters")
    if isinstance(target, str):
        where = parse_url(target)
        conn = connect(where)
        owned = True
        schema = schema or where.schema
    else:
        where, conn, owned = None, target, False
        schema = schema or DEFAULT_SCHEMA
    try:
        _grant(conn, schema, role, kind)
    except psycopg.Error as exc:
        raise translate_error(exc, where) from exc
    finally:
        if owned:
            conn.close()


def _grant(conn: Conn, schema: str, role: str, kind: str) -> None:
    who = sql.Identifier(role)
    ident = sql.Identifier(schema)
    with conn.transaction():
        if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None:
            raise ConfigError(f"no log in schema {schema}; create one with `graven init` before granting roles")
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(who))

        def tables(names: Sequence[str]) -> sql.Composed:
            return sql.SQL(", ").join(sql.Identifier(schema, n) for n in names)

        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ident, who))
        conn.execute(sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(ident, who))
        conn.execute(
            sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {} FROM {}").format(
                tables(READABLE[:-1]), who
            )
        )
        conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(tables(READABLE), who))
        if kind == "writer":
            conn.execute(sql.SQL("GRANT INSERT ON {} TO {}").format(tables(WRITABLE), who))
            # The capture outbox is emptied as its events enter the log: the one DELETE a writer has.
            conn.execute(sql.SQL("GRANT SELECT, DELETE ON {} TO {}").format(tables([OUTBOX]), who))
            conn.execute(
                sql.SQL("REVOKE INSERT, UPDATE, TRUNCATE, REFERENCES, TRIGGER ON {} FROM {}").format(
                    tables([OUTBOX]), who
                )
            )
        else:
            conn.execute(sql.SQL("REVOKE INSERT ON {} FROM {}").format(tables(READABLE[:-1]), who))
            conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(tables([OUTBOX]), who))
        database = conn.execute("SELECT current_database()").fetchall()[0][0]
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(str(database)), who))
        # Sequencing needs pg_advisory_xact_lock, which PUBLIC may run unless a DBA revoked it.
        row = conn.execute(
            "SELECT has_function_privilege(%s, 'pg_catalog.pg_advisory_xact_lock(bigint)', 'EXECUTE')", (role,)
        ).fetchone()
        if kind == "writer" and row is not None and not row[0]:
            raise ConfigError(
                f"role {role} may not run pg_advisory_xact_lock(bigint), which writers need; as a superuser "
                f"run GRANT EXECUTE ON FUNCTION pg_catalog.pg_advisory_xact_lock(bigint) TO {role}"
            )


# --- transactions and scans ------------------------------------------------------------------------


class _PgWriteTx:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    def size(self) -> int:
        return _size_of(self.conn.execute("SELECT max(idx) FROM tree").fetchall())

    def tree_hashes(self, nodes: Iterable[Node]) -> dict[Node, bytes]:
        wanted = _rows_wanted(nodes)
        if not wanted:
            return {}
        rows = self.conn.execute(
            "SELECT idx, hashes FROM tree WHERE idx = ANY(%s::bigint[])", (list(wanted),)
        ).fetchall()
        return _pick_hashes(wanted, rows)

    def existing_ids(self, ids: Sequence[str]) -> dict[str, int]:
        if not ids:
            return {}
        stored = {column_value(i): i for i in ids}
        rows = self.conn.execute("SELECT event_id, idx FROM entries WHERE event_id = ANY(%b::text[])", (list(stored),))
        return {stored[event_id]: int(idx) for event_id, idx in rows}

    def insert(self, first: int, entries: Sequence[Prepared], rows: Sequence[bytes]) -> None:
        idx: list[int] = []
        body: list[str] = []
        occurred: list[str] = []
        action: list[str] = []
        outcome: list[str] = []
        event_id: list[str | None] = []
        actor: list[str | None] = []
        source: list[str | None] = []
        tenant: list[str | None] = []
        t_type: list[str | None] = []
        t_id: list[str | None] = []
        t_idx: list[int] = []
        for offset, item in enumerate(entries):
            doc = item.doc
            n = first + offset
            idx.append(n)
            body.append(item.leaf.decode())
            event_id.append(column_value(doc["id"]))
            occurred.append(doc["occurred_at"])
            actor.append(column_value(doc["actor"].get("id")))
            action.append(doc["action"])
            outcome.append(doc["outcome"])
            source.append(column_value(doc.get("source")))
            tenant.append(column_value(doc.get("tenant")))
            for target in doc["targets"]:
                t_type.append(column_value(target["type"]))
                t_id.append(column_value(target["id"]))
                t_idx.append(n)
        # One statement, one round trip, for the whole batch; arrays go in binary (%b): the text
        # form would escape every quote of every body.
        self.conn.execute(
            """
            WITH e AS (
                INSERT INTO entries (idx, body, event_id, occurred_at, actor_id, action, outcome, source, tenant)
                SELECT * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::timestamptz[], %b::text[],
                                     %b::text[], %b::text[], %b::text[], %b::text[])
            ), x AS (
                INSERT INTO entry_targets (type, id, idx)
                SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[])
            )
            INSERT INTO tree (idx, hashes) SELECT * FROM unnest(%b::bigint[], %b::bytea[])
            """,
            (
                idx, body, event_id, occurred, actor, action, outcome, source, tenant,
                t_type, t_id, t_idx,
                [first + offset for offset in range(len(rows))], list(rows),
            ),
        )  # fmt: skip

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        row = self.conn.execute("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return None if row is None else StoredCheckpoint(int(row[0]), str(row[1]))

    def insert_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        self.conn.execute("INSERT INTO checkpoints (size, note) VALUES (%s, %s)", (checkpoint.size, checkpoint.note))

    def take_captured(self, limit: int) -> list[Any]:
        """Up to ``limit`` captured events, oldest first, deleted from the outbox in this transaction.

        Only Graven writers delete from the outbox and they hold the head lock, so no two claim a row.
        """
        rows = self.conn.execute(
            "WITH taken AS (DELETE FROM captured WHERE seq IN (SELECT seq FROM captured ORDER BY seq LIMIT %s) "
            "RETURNING seq, event) SELECT event::text FROM taken ORDER BY seq",
            (limit,),
        ).fetchall()
        return [orjson.loads(row[0]) for row in rows]  # orjson: far faster than the driver's json


class _PgScan:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self._cursors: list[psycopg.ServerCursor[TupleRow]] = []

    def _stream(self, query: str) -> Iterator[tuple[int, bytes]]:
        cur = self.conn.cursor(name=f"graven_scan_{len(self._cursors)}", binary=True)
        cur.itersize = SCAN_BATCH
        self._cursors.append(cur)
        cur.execute(query)
        for idx, data in cur:
            yield int(idx), bytes(data)
        cur.close()

    def close(self) -> None:
        for cur in self._cursors:
            if not cur.closed and not self.conn.broken:
                cur.close()
        self._cursors.clear()

    def size(self) -> int:
        return _size_of(self.conn.execute("SELECT max(idx) FROM tree").fetchall())

    def entries(self) -> Iterator[tuple[int, bytes]]:
        # convert_to hands over the stored UTF-8 bytes as they are (binary bytea: no hex, no decoding).
        return self._stream("SELECT idx, convert_to(body, 'UTF8') FROM entries ORDER BY idx")

    def tree_rows(self) -> Iterator[tuple[int, bytes]]:
        return self._stream("SELECT idx, hashes FROM tree ORDER BY idx")

    def checkpoints(self) -> list[StoredCheckpoint]:
        rows = self.conn.execute("SELECT size, note FROM checkpoints ORDER BY size").fetchall()
        return [StoredCheckpoint(int(size), str(note)) for size, note in rows]


if TYPE_CHECKING:  # the backend keeps to the storage protocols (mypy checks this)

    def _conforms(store: PostgresStore, tx: _PgWriteTx, scan: _PgScan) -> tuple[Store, WriteTx, Scan]:
        return store, tx, scan


def _rollback(conn: Conn) -> None:
    """End a failed transaction; a dead connection has none left to end."""
    if conn.closed or conn.broken or conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        return
    try:
        conn.execute("ROLLBACK")
    except psycopg.Error:
        conn.close()  # the next write reconnects


def _size_of(rows: Sequence[TupleRow]) -> int:
    return 0 if not rows or rows[0][0] is None else int(rows[0][0]) + 1


def _rows_wanted(nodes: Iterable[Node]) -> dict[int, list[tuple[Node, int]]]:
    wanted: dict[int, list[tuple[Node, int]]] = {}
    for node in nodes:
        row, offset = merkle.node_row(node)
        wanted.setdefault(row, []).append((node, offset))
    return wanted


def _pick_hashes(wanted: dict[int, list[tuple[Node, int]]], rows: Iterable[TupleRow]) -> dict[Node, bytes]:
    out: dict[Node, bytes] = {}
    for idx, blob in rows:
        for node, offset in wanted.get(int(idx), ()):
            chunk = bytes(blob[offset : offset + merkle.HASH_SIZE])
            if len(chunk) == merkle.HASH_SIZE:
                out[node] = chunk
    return out


# --- queries ---------------------------------------------------------------------------------------


def query_sql(q: Query) -> tuple[str, list[Any]] | None:
    """The SELECT for a query and its parameters; None when nothing can match (a U+0000 in a filter)."""
    plain = (q.action, q.outcome, q.since, q.until, q.text)
    if any(v is not None and "\x00" in v for v in plain):
        return None  # these columns and the stored JSON never hold a raw U+0000
    # body is COLLATE "C": ILIKE folds ASCII letters only, like SQLite's LIKE.
    return select_entries(q, Dialect(mark="%s", like="ILIKE", time="%s::timestamptz", name=column_value))


# --- derived columns -------------------------------------------------------------------------------

# One pass over the entries parses each body once (OFFSET 0 keeps the subquery from being inlined,
# which would parse it once per use). Bodies holding \u0000 (jsonb refuses it) or U+FFFE (escaped
# names) are left to Python, which knows how names are kept in columns.
_DERIVED = r"""
SELECT min(s.idx) FILTER (WHERE s.doc IS NOT NULL AND (
           s.doc ->> 'id' IS DISTINCT FROM s.event_id
        OR (s.doc ->> 'occurred_at')::timestamptz IS DISTINCT FROM s.occurred_at
        OR s.doc -> 'actor' ->> 'id' IS DISTINCT FROM s.actor_id
        OR s.doc ->> 'action' IS DISTINCT FROM s.action
        OR s.doc ->> 'outcome' IS DISTINCT FROM s.outcome
        OR s.doc ->> 'source' IS DISTINCT FROM s.source
        OR s.doc ->> 'tenant' IS DISTINCT FROM s.tenant)),
       min(s.idx) FILTER (WHERE EXISTS (
           SELECT 1 FROM jsonb_array_elements(s.doc -> 'targets') t
            WHERE NOT EXISTS (SELECT 1 FROM entry_targets x
                               WHERE x.type = t ->> 'type' AND x.id = t ->> 'id' AND x.idx = s.idx))),
       coalesce(sum(jsonb_array_length(s.doc -> 'targets')), 0),
       coalesce(array_agg(s.idx) FILTER (WHERE s.doc IS NULL), '{}')
  FROM (SELECT e.*, CASE WHEN strpos(e.body, '\u0000') = 0 AND strpos(e.body, U&'\FFFE') = 0
                         THEN e.body::jsonb END AS doc
          FROM entries e OFFSET 0) s
"""
_TARGETS_EXTRA = """
SELECT min(x.idx) FROM entry_targets x
 WHERE x.idx <> ALL(%s::bigint[])
   AND NOT EXISTS (SELECT 1 FROM entries e, jsonb_array_elements(body_jsonb(e.body) -> 'targets') t
                    WHERE e.idx = x.idx AND t ->> 'type' = x.type AND t ->> 'id' = x.id)
"""


def _derived_mismatch(conn: Conn) -> int | None:
    row = conn.execute(_DERIVED).fetchone()
    assert row is not None
    columns, missing, named, odd = row
    bad = [i for i in (columns, missing) if i is not None]
    odd = list(odd)
    if odd:
        slow = _slow_mismatch(conn, odd)
        if slow is not None:
            bad.append(slow)
        named += _count(conn, "SELECT count(*) FROM entry_targets WHERE idx = ANY(%s::bigint[])", odd)
    if named != _count(conn, "SELECT count(*) FROM entry_targets"):
        extra = conn.execute(_TARGETS_EXTRA, (odd,)).fetchone()  # slow, but only after tampering
        if extra is not None and extra[0] is not None:
            bad.append(extra[0])
    return min(bad) if bad else None


def _count(conn: Conn, query: str, *params: Any) -> int:
    row = conn.execute(query, params).fetchone()
    return 0 if row is None else int(row[0])


def _slow_mismatch(conn: Conn, only: list[int] | None) -> int | None:
    """Compare columns and target rows with each body in Python (all rows, or the ``only`` ones)."""
    where = "" if only is None else " WHERE idx = ANY(%s::bigint[])"
    params = () if only is None else (only,)
    entries = conn.cursor(name="graven_derived_entries")
    targets = conn.cursor(name="graven_derived_targets")
    entries.itersize = targets.itersize = SCAN_BATCH
    entries.execute(
        "SELECT idx, body, event_id, occurred_at, actor_id, action, outcome, source, tenant FROM entries"
        + where + " ORDER BY idx", params,
    )  # fmt: skip
    targets.execute("SELECT idx, type, id FROM entry_targets" + where + " ORDER BY idx", params)
    target_rows = iter(targets)
    pending = next(target_rows, None)
    first: int | None = None
    for idx, body, *columns in entries:
        stored: set[tuple[str, str]] = set()
        while pending is not None and pending[0] <= idx:
            if pending[0] < idx:  # a target row for an entry that does not exist
                first = pending[0] if first is None else min(first, pending[0])
            else:
                stored.add((pending[1], pending[2]))
            pending = next(target_rows, None)
        if first is not None and first <= idx:
            break
        if _row_disagrees(str(body), columns, stored):
            first = idx
            break
    if first is None and pending is not None:
        first = pending[0]
    entries.close()
    targets.close()
    return None if first is None else int(first)


def _row_disagrees(body: str, columns: list[Any], targets: set[tuple[str, str]]) -> bool:
    try:
        doc = orjson.loads(body)
        actor = doc.get("actor")
        expected = [
            column_value(doc.get("id")),
            datetime.fromisoformat(doc.get("occurred_at")),
            column_value(actor.get("id")),
            doc.get("action"),
            doc.get("outcome"),
            column_value(doc.get("source")),
            column_value(doc.get("tenant")),
        ]
        named = {(column_value(t["type"]), column_value(t["id"])) for t in doc.get("targets")}
    except (orjson.JSONDecodeError, AttributeError, TypeError, KeyError, ValueError):
        return True
    return expected != columns or named != targets


# --- errors ----------------------------------------------------------------------------------------


def translate_error(exc: Exception, target: PgTarget | None = None) -> GravenError:
    """Turn a driver error into one of the project's own, with what to do about it."""
    if isinstance(exc, GravenError):
        return exc
    at = f"{target.host}:{target.port}" if target else "the server"
    db = f"{at}/{target.dbname}" if target else "the database"
    user = target.user if target else "the connecting role"
    diag = getattr(exc, "diag", None)
    primary = (diag.message_primary if diag is not None else None) or str(exc).strip()
    message = str(exc)
    state = getattr(exc, "sqlstate", None)
    if state == IMMUTABLE_SQLSTATE or "is append-only" in message:
        return ImmutableError(primary.removeprefix("graven: "))
    if isinstance(exc, pgerrors.InsufficientPrivilege):
        return StoreError(
            f"permission denied for role {user} at {db}: {primary}; a Graven writer needs "
            f"`graven pg grant {user} --writer` (a reader `--reader`), run by the log's owner"
        )
    if isinstance(exc, pgerrors.UniqueViolation):
        table = diag.table_name if diag is not None else None
        if table == "checkpoints":
            return StoreError(f"a checkpoint of that size is already stored at {db}: {primary}")
        return StoreError(f"{db}: refusing to store a row twice ({primary}); is another writer bypassing the lock?")
    if isinstance(exc, pgerrors.UndefinedTable | pgerrors.InvalidSchemaName):
        schema = target.schema if target else DEFAULT_SCHEMA
        return ConfigError(
            f"no log in schema {schema} at {db} ({primary}); create one with "
            f"`graven --db '{target.display if target else 'URL'}' init`"
        )
    if isinstance(exc, pgerrors.LockNotAvailable):
        return StoreError(f"{db}: the log is locked by another writer for over {LOCK_TIMEOUT_S}s")
    if isinstance(exc, pgerrors.ReadOnlySqlTransaction):
        return StoreError(f"{db} is read-only (a standby?): connect to the primary to write ({primary})")
    if isinstance(exc, psycopg.OperationalError) and state is None:
        return _connection_error(message, target, at, db, user)
    if isinstance(exc, pgerrors.AdminShutdown | pgerrors.CrashShutdown | pgerrors.CannotConnectNow):
        return StoreError(f"lost the connection to PostgreSQL at {at} ({primary}); the transaction was rolled back")
    if isinstance(exc, pgerrors.QueryCanceled):
        return StoreError(f"{db}: the statement was cancelled ({primary}); check statement_timeout")
    return StoreError(f"{db}: {primary}")


def _connection_error(message: str, target: PgTarget | None, at: str, db: str, user: str) -> GravenError:
    lowered = message.lower()
    shown = target.display if target else "the URL"
    if "connection refused" in lowered:
        return ConfigError(
            f"cannot connect to PostgreSQL at {at}: connection refused; check that the server is running and "
            "listens on that host and port (listen_addresses, port, firewall)"
        )
    if "password authentication failed" in lowered or ("role" in lowered and "does not exist" in lowered):
        reason = _fatal(message) or "authentication failed"
        return ConfigError(
            f"authentication failed for user {user} at {db} ({reason}); check the user and password in "
            "the URL (or PGPASSWORD, ~/.pgpass) and pg_hba.conf"
        )
    if "no pg_hba.conf entry" in lowered or "no password supplied" in lowered or "authentication" in lowered:
        return ConfigError(
            f"authentication failed for user {user} at {db} ({_fatal(message) or 'refused'}); check the user and "
            "password in the URL (or PGPASSWORD, ~/.pgpass) and pg_hba.conf"
        )
    if "database" in lowered and "does not exist" in lowered:
        return ConfigError(
            f"database {target.dbname if target else ''} does not exist at {at}; create it or fix {shown}"
        )
    if "invalid" in lowered and ("connection option" in lowered or "value" in lowered):
        detail = _hide(message.split("\n")[0].removeprefix("connection failed: "), target.conninfo if target else "")
        return ConfigError(f"malformed PostgreSQL URL {shown}: {detail}")
    if "timeout expired" in lowered or "could not translate host name" in lowered or "no route" in lowered:
        return ConfigError(
            f"cannot connect to PostgreSQL at {at}: {_first_line(message)}; check the host name, network and firewall"
        )
    if "server closed the connection" in lowered or "terminating connection" in lowered or "consuming input" in lowered:
        return StoreError(f"lost the connection to PostgreSQL at {at}; the transaction was rolled back")
    return StoreError(f"PostgreSQL at {at}: {_first_line(message)}")


def _fatal(message: str) -> str | None:
    match = re.search(r"FATAL:\s+(.*)", message)
    return match.group(1).strip() if match else None


def _first_line(message: str) -> str:
    return message.strip().split("\n")[0].removeprefix("connection failed: ")
