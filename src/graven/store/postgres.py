"""The PostgreSQL store (psycopg 3): one log per schema, many writers, engine-enforced append-only.

Sequencing: ``write()`` opens a READ COMMITTED transaction and takes ``pg_advisory_xact_lock`` on a
key derived from the schema (the lock on the log head) before anything is read, so every statement
after it sees the previous writer's commit; indices stay gapless across connections and processes.
A write that guesses the head (the size this store object last committed) sends the lock and a
guarded INSERT in one simple query, one transaction: the INSERT, a statement after the lock, reads
the size again and writes nothing unless it is the guessed one (see ``_GUESSED_HEAD``).
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

import functools
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import orjson
import psycopg
from psycopg import errors as pgerrors
from psycopg import sql
from psycopg.rows import TupleRow

from graven.core import merkle
from graven.core.merkle import Node
from graven.core.model import Prepared
from graven.errors import ConfigError, GravenError, IntegrityError, StoreError
from graven.store import (
    FrontierMemo,
    Head,
    HeadMoved,
    Query,
    Scan,
    Store,
    StoredCheckpoint,
    StreamQuery,
    WriteTx,
    pg_streams,
    pg_structure,
    pg_tiles,
)
from graven.store.pg_connection import (
    DEFAULT_SCHEMA,
    LOCK_TIMEOUT_S,
    Conn,
    PgTarget,
    connect,
    lock_key,
    parse_url,
    redact,
    translate_error,
)
from graven.store.pg_derived import SCAN_BATCH, column_value, derived_mismatch, slow_mismatch
from graven.store.postgres_schema import (
    BOOTSTRAP,
    COMPACTED,
    LATEST,
    MIGRATIONS,
    OUTBOX,
    READABLE,
    WRITABLE,
)
from graven.store.querying import Dialect, select_entries

SCHEMA_VERSION = 1  # the log format, as SQLiteStore records it; the DDL's version is in schema_migrations

_CHECKED_TABLES = ("entries", "entry_targets", "tiles", "checkpoints")
PIPELINE = psycopg.Pipeline.is_supported()  # libpq 14+; older ones send the deferred writes one by one

# What a writer reads under the head lock, as (kind, number, hashes, text) rows: n = the size;
# t = a row of a tile holding frontier hashes (its width, hashes and "level/idx"), left out when the
# size is the one whose frontier the writer remembers (the second parameter); e = an id already
# stored, its index and its stored bytes (a repeat is compared with them); c = a captured event
# taken from the outbox (deleted in this transaction) and its sequence number.
_HEAD_SQL = f"""
WITH s AS (SELECT {pg_tiles.SIZE} AS n),
taken AS (DELETE FROM captured WHERE seq IN (SELECT seq FROM captured ORDER BY seq LIMIT %s) RETURNING seq, event)
SELECT 'n', s.n, NULL::bytea, NULL::text FROM s
UNION ALL
SELECT 't', t.width, t.hashes, t.level || '/' || t.idx FROM tiles t, s
 WHERE s.n <> %s AND (t.level, t.idx) IN ({pg_tiles.FRONTIER_TILES})
UNION ALL
SELECT 'e', e.idx, convert_to(e.body, 'UTF8'), e.event_id FROM entries e WHERE e.event_id = ANY(%b::text[])
UNION ALL
SELECT 'c', taken.seq, NULL, taken.event::text FROM taken
"""

# A write that guesses the head (``_PgWriteTx.head``: the size this store last committed, its frontier
# remembered, no id stored yet, nothing captured) sends the lock and a statement of this shape (a
# server-side prepared statement, EXECUTEd) in one simple query: two statements in one message are
# one transaction, committed when the message ends: one round trip. The guess is checked under the
# lock by the statement itself (READ COMMITTED: its snapshot is taken after the lock was granted, so
# it sees every commit made before): when the size is not the one guessed, or captured events wait
# in the outbox, it writes nothing and counts no row. A stored id fails the INSERT on the unique
# index, which rolls the transaction back whole. It reads no entries, so its cached generic plan
# cannot scan them (see ``head``).
_GUESSED_HEAD = f"""
WITH ok AS (
    SELECT 1 FROM (SELECT {pg_tiles.SIZE} AS n) s WHERE s.n = %s AND (%s OR NOT EXISTS (SELECT 1 FROM captured))
), e AS (
    INSERT INTO entries (idx, body, event_id, occurred_at, actor_id, action, outcome, source, tenant)
    SELECT v.* FROM ok, (VALUES {{entries}}) v
){{targets}}, t AS (
    INSERT INTO tiles (level, idx, width, hashes) SELECT v.* FROM ok, (VALUES {{tiles}}) v
)
SELECT count(*) FROM ok
"""
_GUESSED_TARGETS = """, x AS (
    INSERT INTO entry_targets (type, id, idx) SELECT v.* FROM ok, (VALUES {}) v
)"""
_ENTRY_VALUES = "(%s::bigint, %s::text, %s::text, %s::timestamptz, %s::text, %s::text, %s::text, %s::text, %s::text)"
_TARGET_VALUES = "(%s::text, %s::text, %s::bigint)"
_TILE_VALUES = "(%s::int, %s::bigint, %s::int, %b::bytea)"


@functools.lru_cache(maxsize=256)
def _guessed_sql(entries: int, targets: int, tiles: int) -> tuple[str, str, str]:
    """The guarded write of ``entries`` entries with ``targets`` target rows adding ``tiles`` tile
    rows, as a prepared statement: its name, its PREPARE and its EXECUTE (with ``%s`` placeholders,
    bound on the client)."""
    name = f"graven_guessed_{entries}_{targets}_{tiles}"
    text = _GUESSED_HEAD.format(
        entries=", ".join([_ENTRY_VALUES] * entries),
        targets=_GUESSED_TARGETS.format(", ".join([_TARGET_VALUES] * targets)) if targets else "",
        tiles=", ".join([_TILE_VALUES] * tiles),
    )
    parts = re.split("%[sb]", text)
    numbered = "".join(part + (f"${i + 1}" if i < len(parts) - 1 else "") for i, part in enumerate(parts))
    execute = f"EXECUTE {name}({', '.join(['%s'] * (len(parts) - 1))})"
    return name, f"PREPARE {name} AS {numbered}", execute


_ARCHIVED_BELOW = "SELECT coalesce(max(below), 0) FROM archives"

# Batches of at least COPY_FROM entries go by binary COPY (a round trip of its own, but about a
# quarter less client CPU per entry and a third more entries/s than the unnest INSERT); smaller ones
# ride with the COMMIT in one INSERT.
COPY_FROM = 64
_COPY_ENTRIES = (
    "COPY entries (idx, body, event_id, occurred_at, actor_id, action, outcome, source, tenant) "
    "FROM STDIN (FORMAT BINARY)"
)
_ENTRY_TYPES = ["int8", "text", "text", "timestamptz", "text", "text", "text", "text", "text"]
_COPY_TARGETS = "COPY entry_targets (type, id, idx) FROM STDIN (FORMAT BINARY)"
_ONE_ENTRY = """
WITH e AS (
    INSERT INTO entries (idx, body, event_id, occurred_at, actor_id, action, outcome, source, tenant)
    VALUES (%s, %s, %s, %s::timestamptz, %s, %s, %s, %s, %s)
), x AS (
    INSERT INTO entry_targets (type, id, idx) SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[])
)
"""

# --- the store ------------------------------------------------------------------------------------


class PostgresStore:
    """A log in one schema of a PostgreSQL database. Thread-safe; many processes may write it."""

    backend = "postgresql"

    def location(self) -> PgTarget:
        return self.target

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
        self._frontier = FrontierMemo()
        # Guessing the head (see write): the threads whose next write must read it (their write
        # raised HeadMoved and runs again), and after guesses that cost a round trip for nothing
        # (another writer committed), how many writes read the head before the next guess.
        self._read_next: set[int] = set()
        self._prepared: tuple[Conn | None, set[str]] = (None, set())  # the writer's guessed-write statements
        self._skip = 0
        self._backoff = 1
        if not create and not self._schema_exists():
            self.close()
            raise ConfigError(self._no_log())
        if not create:
            self._upgrade()

    def _upgrade(self) -> None:
        """Apply the migrations a log made by an older Graven lacks (such as its tree as tiles)."""
        try:
            rows = self._read("SELECT max(version) FROM schema_migrations")
        except ConfigError:
            return  # not a log (yet): reads say so
        if rows and rows[0][0] is not None and int(rows[0][0]) >= LATEST:
            return
        conn = self._connect()
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (lock_key(self.schema, "migrate"),))
            migrate(conn, self.schema)
        except pgerrors.InsufficientPrivilege as exc:
            raise StoreError(
                f"the log in schema {self.schema} at {self.target.where} was made by an older Graven and must "
                f"be upgraded (its tree stored as tiles), which role {self.target.user} may not do "
                f"({exc.diag.message_primary}); run `graven --db URL init` once as the schema's owner"
            ) from exc
        except psycopg.Error as exc:
            raise self.translate(exc) from exc
        finally:
            conn.close()

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
        """Lock the log head, yield a transaction, commit durably (or roll back).

        Round trips per write: BEGIN with the lock, ``tx.head`` (everything read before writing),
        then the INSERT and COMMIT pipelined together. A write of fewer than ``COPY_FROM`` entries
        by the store that made the last commit it knows of guesses the head instead (see
        ``_PgWriteTx.head``): the lock and the guarded INSERT go in one simple query, one round
        trip, and a wrong guess writes nothing and raises :class:`HeadMoved` (the next write reads).
        The commit MUST have returned before this context exits normally (``synchronous_commit = on``).
        """
        with self._write_lock:
            tx = _PgWriteTx(self._begin_write, self._guessing(), self._frontier, self._head_key)
            try:
                yield tx
            except BaseException as exc:
                if isinstance(exc, HeadMoved):
                    self._moved(tx)
                if tx.begun is not None:
                    _rollback(tx.begun)
                if isinstance(exc, psycopg.Error):
                    raise self.translate(exc) from exc
                raise
            try:
                tx.commit()
            except HeadMoved:
                self._moved(tx)
                raise
            except psycopg.OperationalError as exc:
                conn = tx.begun
                if conn is None or not conn.broken:
                    if conn is not None:
                        _rollback(conn)
                    raise self.translate(exc) from exc
                # The server may have committed before the connection went: nobody can say here.
                raise StoreError(
                    f"lost the connection to PostgreSQL at {self.target.host}:{self.target.port} while committing; "
                    "the batch may or may not be stored. Recording the same events again is safe: "
                    "an event id already in the log keeps its index"
                ) from exc
            except psycopg.Error as exc:
                if tx.begun is not None:
                    _rollback(tx.begun)  # a deferred statement failed: COMMIT was never run
                raise self.translate(exc) from exc
            if tx.guessed is not None:
                self._backoff = 1
            if tx.grown is not None:
                self._frontier.put(*tx.grown)

    def _guessing(self) -> Callable[[], tuple[Conn, set[str]]] | None:
        """The writer connection when this write may guess the head (see ``_PgWriteTx.head``); None
        when it must read it: right after this thread's write raised HeadMoved (it is that write run
        again), or while backing off after guesses another writer's commits made wrong."""
        if not PIPELINE:
            return None  # a guess needs no pipeline, but a libpq without one keeps the long way it was tested with
        ident = threading.get_ident()
        again = ident in self._read_next
        self._read_next.discard(ident)
        if self._skip > 0:
            self._skip -= 1
            return None
        return None if again else self._guess_connection

    def _guess_connection(self) -> tuple[Conn, set[str]]:
        """The writer connection and the names of the guessed-write statements prepared on it."""
        conn = self._writer_connection()
        if self._prepared[0] is not conn:
            self._prepared = (conn, set())
        return conn, self._prepared[1]

    def _moved(self, tx: _PgWriteTx) -> None:
        """A guessed write raised HeadMoved: this thread's next write reads the head. A guess sent
        for nothing makes that many writes read it (counting the one run again), twice as many after
        each such miss in a row (up to 64), so writers that keep committing in turn stop paying for
        guesses; a guess that holds starts the count over."""
        self._read_next.add(threading.get_ident())
        if tx.sent:
            self._skip = self._backoff
            self._backoff = min(2 * self._backoff, 64)

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
            # A guessed write runs without BEGIN (see _PgWriteTx.head): it must be READ COMMITTED too.
            conn.execute(
                "SELECT set_config('synchronous_commit', 'on', false), set_config('lock_timeout', %s, false), "
                "set_config('default_transaction_isolation', 'read committed', false)",
                (f"{LOCK_TIMEOUT_S}s",),
            )
        except psycopg.Error as exc:
            conn.close()
            raise self.translate(exc) from exc
        self._writer = conn
        return conn

    # --- reading ---------------------------------------------------------------------------

    def size(self) -> int:
        return int(self._read(f"SELECT {pg_tiles.SIZE}")[0][0])

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
        wanted = list(nodes)
        query, params = pg_tiles.tiles_query(merkle.tiles_for(wanted))
        rows = self._read(f"SELECT s.n, t.* FROM (SELECT {pg_tiles.SIZE} AS n) s LEFT JOIN ({query}) t ON true", params)
        size = int(rows[0][0])
        return size, pg_tiles.node_hashes(wanted, [row[1:] for row in rows if row[1] is not None])

    def checkpoints(self) -> list[StoredCheckpoint]:
        rows = self._read("SELECT size, note FROM checkpoints ORDER BY size")
        return [StoredCheckpoint(int(size), str(note)) for size, note in rows]

    def archived_below(self) -> int:
        return int(self._read(_ARCHIVED_BELOW)[0][0])

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        rows = self._read("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
        return StoredCheckpoint(int(rows[0][0]), str(rows[0][1])) if rows else None

    def query(self, query: Query) -> list[tuple[int, bytes]]:
        built = query_sql(query)
        if built is None:
            return []
        return [(int(idx), str(body).encode()) for idx, body in self._read(*built)]

    def stream_entries(self, stream: tuple[str, str], query: StreamQuery) -> list[tuple[int, int, bytes]]:
        rows = self._read(*pg_streams.select_stream(query, stream))
        return [(int(version), int(idx), str(body).encode()) for version, idx, body in rows]

    def stream_entries_after(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        return [(int(idx), str(body).encode()) for idx, body in self._read(pg_streams.SELECT_AFTER, (after, limit))]

    def structure_problems(self) -> list[str]:
        """See :mod:`graven.store.pg_structure` (the deep check); needs the log owner's rights."""
        conn = connect(self.target)
        try:
            return pg_structure.problems(conn, self.schema, migrate)
        except psycopg.Error as exc:
            raise self.translate(exc) from exc
        finally:
            conn.close()

    def derived_mismatch(self) -> int | None:
        """The first index whose copied columns, target rows or stream rows disagree with its body."""
        found = [i for i in (self._columns_mismatch(), self._stream_mismatch()) if i is not None]
        return min(found) if found else None

    def _stream_mismatch(self) -> int | None:
        with self._own_connection() as conn:
            try:
                with conn.transaction():
                    return pg_streams.stream_mismatch(conn)
            except psycopg.Error as exc:
                raise self.translate(exc) from exc

    def _columns_mismatch(self) -> int | None:
        """The first index whose copied columns or target rows disagree with its body (jsonb)."""
        with self._own_connection() as conn:
            try:
                try:
                    with conn.transaction():
                        return derived_mismatch(conn)
                except psycopg.DataError:
                    # A body that is not JSON, or not shaped like an entry: only tampering does this.
                    # Compare every row in Python instead (slow, but only after the damage is done).
                    with conn.transaction():
                        return slow_mismatch(conn, None)
            except psycopg.Error as exc:
                raise self.translate(exc) from exc


# --- connecting and migrating ----------------------------------------------------------------------


def migrate(conn: Conn, schema: str, *, upto: int = LATEST) -> list[int]:
    """Apply the migrations ``schema`` lacks up to version ``upto``, each in its own transaction;
    returns those applied.

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
        if migration.version in applied or migration.version > upto:
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
            # Completing a tile removes its partial rows (the triggers allow nothing else).
            conn.execute(sql.SQL("GRANT DELETE ON {} TO {}").format(tables([COMPACTED]), who))
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
    """Reads run at once; writes are deferred and sent in one pipeline with the next statement or
    with COMMIT, so a batch's INSERT and its COMMIT cost one round trip. A failed deferred write
    therefore surfaces at that next statement or at commit, and the transaction is rolled back."""

    def __init__(
        self,
        begin: Callable[[], Conn],
        guess: Callable[[], tuple[Conn, set[str]]] | None,
        memo: FrontierMemo,
        lock_key: int,
    ) -> None:
        self._lock_key = lock_key
        self._begin = begin  # BEGIN and take the head lock: the transaction starts at the first need
        self._guess = guess  # the writer connection, when head() may guess (see head)
        self.begun: Conn | None = None
        self.memo = memo
        self.read: tuple[int, dict[Node, bytes]] | None = None  # the size and frontier head() read
        self.grown: tuple[int, dict[Node, bytes]] | None = None  # ... and after insert(), to remember
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self.guessed: tuple[int, bool] | None = None  # the size head() guessed; whether it took captured events
        self.sent = False  # the guessed write went to the server
        self._guarded: tuple[tuple[str, str, str], list[Any]] | None = None  # the guarded write of a guessed head

    @property
    def conn(self) -> Conn:
        """The connection of this transaction, begun (BEGIN and the head lock) at first use.

        A transaction whose head was guessed cannot begin late (what it decided rests on the
        guess): it raises :class:`HeadMoved`, nothing written, and the write runs again reading."""
        if self.begun is None:
            if self.guessed is not None:
                raise HeadMoved("this write guessed the log head and needs a read; it is run again reading the head")
            self.begun = self._begin()
        return self.begun

    def _execute(
        self, query: str, params: Sequence[Any] = (), *, prepare: bool | None = None
    ) -> psycopg.Cursor[TupleRow]:
        """Run ``query`` after the deferred writes, all in one round trip where libpq can pipeline."""
        if not self._pending:
            return self.conn.execute(query, params, prepare=prepare)
        if not PIPELINE:
            self._send_pending()
            return self.conn.execute(query, params, prepare=prepare)
        with self.conn.pipeline():
            self._send_pending()
            return self.conn.execute(query, params, prepare=prepare)  # results are read when the pipeline ends

    def _send_pending(self) -> None:
        pending, self._pending = self._pending, []
        for query, params in pending:
            self.conn.execute(query, params)

    def commit(self) -> None:
        """Send the deferred writes and COMMIT together; returns once the commit is durable."""
        if self.guessed is not None:
            self._commit_guessed()
            return
        if not self._pending or not PIPELINE:
            self._send_pending()
            self.conn.execute("COMMIT")
            return
        with self.conn.pipeline():
            self._send_pending()
            self.conn.execute("COMMIT")

    def _commit_guessed(self) -> None:
        """Take the head lock and write under the guess in one simple query (the PREPARE of its
        statement too, the first time on this connection): one round trip, one transaction, committed
        when the query ends. Raises :class:`HeadMoved` when the guess was wrong, an id was stored
        already, or the connection failed: nothing is known written, and the write runs again reading
        the head (a batch the server did commit before the connection went is then found by its ids,
        each keeping its index)."""
        guessed = self.guessed
        if guessed is None or self._guarded is None or self._pending or self._guess is None:
            raise HeadMoved("a write that guessed the log head wrote nothing new; it is run again reading the head")
        (name, prepare, execute), params = self._guarded
        conn, prepared = self._guess()
        query = f"SELECT pg_advisory_xact_lock({int(self._lock_key)}); {execute}"
        if name not in prepared:
            # A PREPARE stays even when the rest of its message fails: count it as made from now on.
            query = f"{prepare}; {query}"
            prepared.add(name)
        self.sent = True
        try:
            cur = psycopg.ClientCursor(conn)
            cur.execute(query, params)
            while cur.nextset():
                pass  # the EXECUTE's row count comes last
            row = cur.fetchone()
        except pgerrors.UniqueViolation as exc:
            raise HeadMoved("an event id of this write is stored already; it is run again reading the head") from exc
        except pgerrors.InvalidSqlStatementName as exc:
            prepared.discard(name)  # deallocated behind our back (DISCARD ALL, a pooler): prepared anew next time
            raise HeadMoved("the prepared statement of a guessed write was gone; it is run again") from exc
        except psycopg.OperationalError as exc:
            if not conn.broken:
                raise
            raise HeadMoved("the connection failed during a write that guessed the head; it is run again") from exc
        if row is None or row[0] != 1:
            raise HeadMoved(f"the log no longer has the {guessed[0]} entries this write guessed; it is run again")

    def size(self) -> int:
        return int(self._execute(f"SELECT {pg_tiles.SIZE}").fetchall()[0][0])

    def tree_hashes(self, nodes: Iterable[Node]) -> dict[Node, bytes]:
        wanted = list(nodes)
        if not wanted:
            return {}
        query, params = pg_tiles.tiles_query(merkle.tiles_for(wanted))
        rows = self._execute(query, params, prepare=False).fetchall()  # as in head(): no stale plan
        return pg_tiles.node_hashes(wanted, rows)

    def existing_ids(self, ids: Sequence[str]) -> dict[str, int]:
        if not ids:
            return {}
        stored = {column_value(i): i for i in ids}
        rows = self._execute(
            "SELECT event_id, idx FROM entries WHERE event_id = ANY(%b::text[])", (list(stored),), prepare=False
        )
        return {stored[event_id]: int(idx) for event_id, idx in rows}

    def entry_bodies(self, indices: Sequence[int]) -> dict[int, bytes]:
        if not indices:
            return {}
        rows = self._execute(
            "SELECT idx, body FROM entries WHERE idx = ANY(%s::bigint[])", (list(indices),), prepare=False
        ).fetchall()
        return {int(idx): str(body).encode() for idx, body in rows}

    def head(self, ids: Sequence[str], captured: int) -> Head:
        """Size, frontier hashes, existing ids and the outbox claim in one statement (one round trip).

        The frontier comes from the memo when the size is the one it knows, else from the tiles that
        hold it; the sequencer checks that every hash it needs came back.
        """
        known = self.memo.size()
        if self.begun is None and self._guess is not None and 0 < len(ids) < COPY_FROM:
            remembered = self.memo.get(known)
            if remembered is not None:
                # Guessed: the size this store last committed, nothing stored under these ids, no
                # captured event waiting. commit() checks it under the lock (see _GUESSED_HEAD).
                self.guessed = (known, captured > 0)
                self.read = (known, remembered)
                return Head(known, dict(remembered), {}, [], {})
        stored = {column_value(i): i for i in ids}
        # Planned afresh each time (not a server-side prepared statement): a generic plan made while
        # the log was small scans all of entries for the ids, and stays until the next ANALYZE.
        rows = self._execute(_HEAD_SQL, (captured, known, list(stored)), prepare=False).fetchall()
        size = 0
        tree: list[tuple[int, int, int, bytes]] = []
        existing: dict[str, int] = {}
        bodies: dict[int, bytes] = {}
        taken: list[tuple[int, str]] = []
        for kind, number, blob, text in rows:
            if kind == "n":
                size = int(number)
            elif kind == "t":
                level, idx = text.split("/")
                tree.append((int(level), int(idx), int(number), blob))
            elif kind == "e":
                existing[stored[text]] = int(number)
                bodies[int(number)] = bytes(blob)
            else:
                taken.append((int(number), text))
        remembered = self.memo.get(size) if size == known else None
        frontier = remembered if remembered is not None else pg_tiles.node_hashes(merkle.frontier_nodes(size), tree)
        self.read = (size, frontier)
        frontier = dict(frontier)
        taken.sort()
        return Head(size, frontier, existing, [orjson.loads(event) for _, event in taken], bodies)

    def insert(self, first: int, entries: Sequence[Prepared], rows: Sequence[bytes]) -> None:
        if self.guessed is not None:
            self._insert_guessed(first, entries, rows)
        elif len(entries) >= COPY_FROM:
            self._copy(first, entries)
            added, completions = pg_tiles.writes(first, rows)
            self._pending += [(pg_tiles.ADD, added), *completions]
        else:
            self._insert(first, entries, rows)
        streams = pg_streams.insert_params(first, entries)
        if streams is not None:
            self._pending.append((pg_streams.INSERT, streams))
        if self.read is not None and self.read[0] == first:
            self.grown = FrontierMemo.grown(first, self.read[1], rows)
        self.read = None

    def _insert_guessed(self, first: int, entries: Sequence[Prepared], rows: Sequence[bytes]) -> None:
        """Build the guarded write (see _GUESSED_HEAD); completing a tile or writing stream rows
        needs statements of their own, so such a write runs again reading the head."""
        assert self.guessed is not None
        if self._guarded is not None or first != self.guessed[0]:
            raise HeadMoved(f"an insert at {first} after a guessed head of {self.guessed[0]}; it is run again reading")
        added, completions = pg_tiles.writes(first, rows)
        if completions:
            raise HeadMoved("this write completes a tile; it is run again reading the head")
        if pg_streams.insert_params(first, entries) is not None:
            raise HeadMoved("this write adds stream rows; it is run again reading the head")
        params: list[Any] = [first, not self.guessed[1]]
        targets: list[Any] = []
        for offset, item in enumerate(entries):
            doc = item.doc
            n = first + offset
            params += (
                n, item.leaf.decode(), column_value(doc["id"]), doc["occurred_at"],
                column_value(doc["actor"].get("id")), doc["action"], doc["outcome"],
                column_value(doc.get("source")), column_value(doc.get("tenant")),
            )  # fmt: skip
            for target in doc["targets"]:
                targets += (column_value(target["type"]), column_value(target["id"]), n)
        params += targets
        for row in zip(*added, strict=True):
            params += row
        self._guarded = (_guessed_sql(len(entries), len(targets) // 3, len(added[0])), params)

    def _copy(self, first: int, entries: Sequence[Prepared]) -> None:
        """Send a large batch's entries and target rows by binary COPY, now (one round trip each)."""
        self._send_pending()
        targets: list[tuple[str | None, str | None, int]] = []
        with self.conn.cursor() as cur:
            with cur.copy(_COPY_ENTRIES) as copy:
                copy.set_types(_ENTRY_TYPES)
                for offset, item in enumerate(entries):
                    doc = item.doc
                    n = first + offset
                    copy.write_row((
                        n, item.leaf.decode(), column_value(doc["id"]), datetime.fromisoformat(doc["occurred_at"]),
                        column_value(doc["actor"].get("id")), doc["action"], doc["outcome"],
                        column_value(doc.get("source")), column_value(doc.get("tenant")),
                    ))  # fmt: skip
                    targets += [(column_value(t["type"]), column_value(t["id"]), n) for t in doc["targets"]]
            if targets:
                with cur.copy(_COPY_TARGETS) as copy:
                    copy.set_types(["text", "text", "int8"])
                    for row in targets:
                        copy.write_row(row)

    def _insert(self, first: int, entries: Sequence[Prepared], rows: Sequence[bytes]) -> None:
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
        # One statement for the whole batch, sent with the COMMIT; arrays go in binary (%b): the
        # text form would escape every quote of every body. Completing a tile adds two more. One
        # entry alone goes as plain values: dumping nine one-element arrays cost more client CPU.
        added, completions = pg_tiles.writes(first, rows)
        if len(entries) == 1:
            self._pending.append((
                _ONE_ENTRY + pg_tiles.ADD,
                (idx[0], body[0], event_id[0], occurred[0], actor[0], action[0], outcome[0], source[0], tenant[0],
                 t_type, t_id, t_idx, *added),
            ))  # fmt: skip
            self._pending += completions
            return
        self._pending.append((
            """
            WITH e AS (
                INSERT INTO entries (idx, body, event_id, occurred_at, actor_id, action, outcome, source, tenant)
                SELECT * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::timestamptz[], %b::text[],
                                     %b::text[], %b::text[], %b::text[], %b::text[])
            ), x AS (
                INSERT INTO entry_targets (type, id, idx)
                SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[])
            )
            """ + pg_tiles.ADD,
            (idx, body, event_id, occurred, actor, action, outcome, source, tenant, t_type, t_id, t_idx, *added),
        ))  # fmt: skip
        self._pending += completions

    def stream_versions(self, streams: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        named, params = pg_streams.versions_params(streams)
        rows = self._execute(pg_streams.VERSIONS, params, prepare=False).fetchall()
        return {named[(kind, ident)]: int(version) for kind, ident, version in rows}

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        row = self._execute("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return None if row is None else StoredCheckpoint(int(row[0]), str(row[1]))

    def archived_below(self) -> int:
        return int(self._execute(_ARCHIVED_BELOW).fetchall()[0][0])

    def mark_archived(self, below: int, name: str, digest: str) -> None:
        self._execute("INSERT INTO archives (below, name, digest) VALUES (%s, %s, %s)", (below, name, digest))

    def prune(self, first: int, below: int, only: Sequence[int] | None = None) -> int:
        if only is None:
            self._execute("DELETE FROM entry_targets WHERE idx >= %s AND idx < %s", (first, below))
            return self._execute("DELETE FROM entries WHERE idx >= %s AND idx < %s", (first, below)).rowcount
        chosen = [i for i in only if first <= i < below]
        self._execute("DELETE FROM entry_targets WHERE idx = ANY(%s::bigint[])", (chosen,))
        return self._execute("DELETE FROM entries WHERE idx = ANY(%s::bigint[])", (chosen,)).rowcount

    def insert_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        if self.guessed is not None:
            raise HeadMoved("this write signs a checkpoint; it is run again reading the head")
        self._pending.append(
            ("INSERT INTO checkpoints (size, note) VALUES (%s, %s)", (checkpoint.size, checkpoint.note))
        )

    def take_captured(self, limit: int) -> list[Any]:
        """Up to ``limit`` captured events, oldest first, deleted from the outbox in this transaction.

        Only Graven writers delete from the outbox and they hold the head lock, so no two claim a row.
        """
        rows = self._execute(
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
        return int(self.conn.execute(f"SELECT {pg_tiles.SIZE}").fetchall()[0][0])

    def entries(self) -> Iterator[tuple[int, bytes]]:
        # convert_to hands over the stored UTF-8 bytes as they are (binary bytea: no hex, no decoding).
        return self._stream("SELECT idx, convert_to(body, 'UTF8') FROM entries ORDER BY idx")

    def tiles(self) -> Iterator[tuple[int, int, bytes]]:
        return pg_tiles.scan(self.conn, SCAN_BATCH)

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


# --- queries ---------------------------------------------------------------------------------------


def query_sql(q: Query) -> tuple[str, list[Any]] | None:
    """The SELECT for a query and its parameters; None when nothing can match (a U+0000 in a filter)."""
    plain = (q.action, q.outcome, q.since, q.until, q.text)
    if any(v is not None and "\x00" in v for v in plain):
        return None  # these columns and the stored JSON never hold a raw U+0000
    # body is COLLATE "C": ILIKE folds ASCII letters only, like SQLite's LIKE.
    return select_entries(q, Dialect(mark="%s", like="ILIKE", time="%s::timestamptz", name=column_value))


__all__ = [
    "PgTarget",
    "PostgresStore",
    "column_value",
    "connect",
    "grant",
    "lock_key",
    "migrate",
    "parse_url",
    "query_sql",
    "redact",
    "translate_error",
]
