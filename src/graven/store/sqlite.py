"""The embedded SQLite store (standard ``sqlite3``, WAL, ``synchronous=FULL``).

Files: a log this store creates is 0600 from the start, and so are its ``-wal`` and ``-shm``.
Durability: a write transaction commits with ``synchronous=FULL`` in WAL mode, so a returned
commit survives power loss. Immutability: triggers refuse UPDATE and DELETE on every table that
holds log data; this stops accidents and the application's own mistakes, while the hashes and
signed checkpoints catch anyone who removes the triggers. Several processes may write one file:
``BEGIN IMMEDIATE`` takes SQLite's single write lock before the head is read. Inside that lock the
writer reads ``PRAGMA data_version``; only when it shows that no other connection committed since
this writer's own last commit does the writer use the head it knows (size, frontier, greatest id)
instead of reading it again, so indices stay gapless across connections and processes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from graven.core import merkle
from graven.core.merkle import Node
from graven.core.model import Prepared
from graven.core.streams import MARKER
from graven.errors import ConfigError, ImmutableError, IntegrityError, StoreError
from graven.private_files import create_private_file
from graven.store import (
    Head,
    Query,
    StoredCheckpoint,
    StreamQuery,
    sqlite_pruning,
    sqlite_streams,
    sqlite_structure,
    sqlite_tiles,
)
from graven.store.querying import Dialect, select_entries

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 60_000
CACHE_KIB = 64 * 1024
MMAP_BYTES = 256 * 1024 * 1024

_TABLES = ("entries", "entry_targets", "checkpoints", "graven_settings")  # tiles: see sqlite_tiles

SCHEMA = """
CREATE TABLE IF NOT EXISTS graven_settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- body is the entry's leaf: its RFC 8785 JSON. The other columns are copies kept for indexes;
-- verification checks them against body.
CREATE TABLE IF NOT EXISTS entries (
    idx         INTEGER PRIMARY KEY,
    body        TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    actor_id    TEXT,
    action      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    source      TEXT,
    tenant      TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS entries_event_id ON entries (event_id);
CREATE INDEX IF NOT EXISTS entries_actor ON entries (actor_id);
CREATE INDEX IF NOT EXISTS entries_action ON entries (action);
CREATE INDEX IF NOT EXISTS entries_occurred_at ON entries (occurred_at);
CREATE INDEX IF NOT EXISTS entries_not_success ON entries (outcome) WHERE outcome <> 'success';
CREATE TABLE IF NOT EXISTS entry_targets (
    type TEXT NOT NULL,
    id   TEXT NOT NULL,
    idx  INTEGER NOT NULL,
    PRIMARY KEY (type, id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY,
    note TEXT NOT NULL
);
"""


def _immutability_triggers() -> str:
    parts = []
    for table in _TABLES:
        for op in ("UPDATE", "DELETE"):
            if op == "DELETE" and table in sqlite_pruning.PRUNABLE:
                continue  # refused except below an archived boundary: see sqlite_pruning
            parts.append(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'graven: {table} is append-only; {op} is refused'); END;"
            )
    return "\n".join(parts)


class SQLiteStore:
    """A log in one SQLite file. Thread-safe: one write connection, one read connection per thread."""

    backend = "sqlite"

    def location(self) -> Path:
        return self.path

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._known: _Known | None = None  # the writer connection's view after its last commit
        if not create and not path.exists():
            hint = "" if path.parent.is_dir() else f" (folder {path.parent} does not exist)"
            raise ConfigError(f"no log at {path}{hint}; create one with `graven init`")
        if not path.parent.is_dir():
            raise ConfigError(f"{path}: folder {path.parent} does not exist")
        if create:
            try:  # 0600 before SQLite opens it: its -wal and -shm files copy the database's mode
                create_private_file(path)
            except OSError as exc:
                raise ConfigError(f"cannot create the log {path}: {exc.strerror}") from None
        else:
            self._upgrade()

    def _upgrade(self) -> None:
        """Bring a log written by an older Graven up to date in one write transaction: its tree
        (a ``tree`` table) becomes tiles, and it gets the archives table."""
        conn = self._connect()
        try:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "tree" in names or ("entries" in names and "archives" not in names):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    sqlite_tiles.migrate(conn, str(self.path))
                    sqlite_pruning.upgrade(conn)
                    conn.execute("COMMIT")
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
        except sqlite3.DatabaseError as exc:
            raise translate_error(exc, self.path) from exc
        finally:
            self._forget(conn)

    # --- connections -----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{self.path}: SQLite refused WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            # Indexes of a large log outgrow SQLite's 2 MB default page cache; reads scan via mmap.
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
        except sqlite3.DatabaseError as exc:
            raise translate_error(exc, self.path) from exc
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        conn = self._reader()
        try:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise translate_error(exc, self.path) from exc

    def close(self) -> None:
        """Close every connection this store opened."""
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._writer, self._known = None, None
        self._local = threading.local()

    # --- schema ----------------------------------------------------------------------------

    def initialize(self, settings: Mapping[str, str]) -> None:
        """Create tables, indexes and immutability triggers if absent; add missing settings."""
        conn = self._connect()
        try:
            conn.executescript(
                "BEGIN IMMEDIATE;" + SCHEMA + _immutability_triggers() + sqlite_streams.SCHEMA + "COMMIT;"
            )
            conn.execute("BEGIN IMMEDIATE")
            sqlite_tiles.migrate(conn, str(self.path))
            sqlite_tiles.create(conn)
            sqlite_pruning.upgrade(conn)
            stored = dict(conn.execute("SELECT key, value FROM graven_settings").fetchall())
            wanted = {"schema_version": str(SCHEMA_VERSION), **settings}
            conn.executemany(
                "INSERT INTO graven_settings (key, value) VALUES (?, ?)",
                [(k, v) for k, v in wanted.items() if k not in stored],
            )
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise translate_error(exc, self.path) from exc

    def settings(self) -> dict[str, str]:
        try:
            return dict(self._reader().execute("SELECT key, value FROM graven_settings").fetchall())
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                raise ConfigError(f"{self.path} is not a Graven log; create one with `graven init`") from exc
            raise translate_error(exc, self.path) from exc
        except sqlite3.DatabaseError as exc:
            raise translate_error(exc, self.path) from exc

    # --- writing ---------------------------------------------------------------------------

    def write(self) -> _Writing:
        """Take the file's write lock, yield a transaction, commit durably (or roll back)."""
        return _Writing(self)

    def _begin(self) -> _SQLiteWriteTx:
        """``BEGIN IMMEDIATE`` on the writer connection (made on first use); the caller holds the lock."""
        if self._writer is None:
            conn = self._connect()
            try:
                sqlite_streams.ensure_schema(conn)  # a log made before aggregate streams existed
            except sqlite3.DatabaseError as exc:
                raise translate_error(exc, self.path) from exc
            self._writer, self._known = conn, None  # data_version counts per connection
        conn = self._writer
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise translate_error(exc, self.path) from exc
        return _SQLiteWriteTx(conn, self._known)

    def _end(self, tx: _SQLiteWriteTx, exc: BaseException | None) -> None:
        """Commit ``tx`` (``exc`` None: durably, synchronous=FULL) or roll it back; the driver's
        errors come out translated, others propagate as they are."""
        if exc is None:
            try:
                tx.conn.execute("COMMIT")
            except BaseException as failed:
                self._abort(tx.conn, failed)
                raise
            self._known = tx.known
            return
        self._abort(tx.conn, exc)

    def _abort(self, conn: sqlite3.Connection, exc: BaseException) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.DatabaseError):
            raise translate_error(exc, self.path) from exc

    # --- reading ---------------------------------------------------------------------------

    def size(self) -> int:
        return _size(self._reader())

    def archived_below(self) -> int:
        return sqlite_pruning.archived_below(self._reader())

    def entry(self, index: int) -> bytes | None:
        row = self._reader().execute("SELECT body FROM entries WHERE idx = ?", (index,)).fetchone()
        return None if row is None else row[0].encode()

    @contextmanager
    def scan(self) -> Iterator[_SQLiteScan]:
        """One read snapshot over the whole log, on its own connection (for verification)."""
        conn = self._connect()
        conn.text_factory = bytes
        try:
            conn.execute("BEGIN")
            present = {row[0].decode() for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            missing = [t for t in ("entries", "entry_targets", "tiles", "checkpoints") if t not in present]
            if missing:
                raise IntegrityError(
                    f"the table{'s' if len(missing) > 1 else ''} {', '.join(missing)} of the log was dropped"
                )
            yield _SQLiteScan(conn)
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise translate_error(exc, self.path) from exc
        finally:
            self._forget(conn)

    def _forget(self, conn: sqlite3.Connection) -> None:
        with self._connections_lock:
            if conn in self._connections:
                self._connections.remove(conn)
        conn.close()

    def tree_hashes(self, nodes: Iterable[Node]) -> tuple[int, dict[Node, bytes]]:
        """The tree size and the requested subtree hashes, read in one snapshot."""
        with self._snapshot() as conn:
            current = _size(conn)
            return current, _tree_hashes(conn, nodes)

    def checkpoints(self) -> list[StoredCheckpoint]:
        rows = self._reader().execute("SELECT size, note FROM checkpoints ORDER BY size").fetchall()
        return [StoredCheckpoint(size, note) for size, note in rows]

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        return _latest_checkpoint(self._reader())

    def query(self, query: Query) -> list[tuple[int, bytes]]:
        sql, params = _query_sql(query)
        try:
            rows = self._reader().execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise translate_error(exc, self.path) from exc
        return [(idx, body.encode()) for idx, body in rows]

    def stream_entries(self, stream: tuple[str, str], query: StreamQuery) -> list[tuple[int, int, bytes]]:
        try:
            return sqlite_streams.select_stream(self._reader(), stream, query)
        except sqlite3.DatabaseError as exc:
            raise translate_error(exc, self.path) from exc

    def stream_entries_after(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        try:
            return sqlite_streams.select_after(self._reader(), after, limit)
        except sqlite3.DatabaseError as exc:
            raise translate_error(exc, self.path) from exc

    def structure_problems(self) -> list[str]:
        """See :mod:`graven.store.sqlite_structure` (the deep check)."""
        conn = self._connect()
        try:
            return sqlite_structure.problems(conn, sqlite_structure.reference(_new_log))
        except sqlite3.DatabaseError as exc:
            raise translate_error(exc, self.path) from exc
        finally:
            self._forget(conn)

    def derived_mismatch(self, parts: int | None = None) -> int | None:
        """The first index whose copied columns, target rows or stream rows disagree with its body.

        The entries are checked in ``parts`` ranges of indices at once (default: one per core this
        process may use, each of at least ``MIN_RANGE`` entries), each on its own connection and
        thread: SQLite runs them without the GIL, so beside the scan of ``verify()`` they use every
        core. Each range is read in a snapshot of its own: entries are only appended, so the target
        rows counted in the last range's snapshot are those of every range's entries. Where
        anything is off, the whole log is checked again in one snapshot to locate it."""
        if parts is not None and parts < 1:
            raise ValueError(f"parts must be at least 1, got {parts}")
        conns = [self._connect()]
        try:
            size = _size(conns[0])
            parts = min(check_parts(), max(1, size // MIN_RANGE)) if parts is None else parts
            conns += [self._connect() for _ in range(1, parts)]
            bounds = [size * k // parts for k in range(parts)] + [_MAX]
            found: list[tuple[int, list[int], list[int], int] | BaseException | None] = [None] * parts

            def check(k: int) -> None:
                try:
                    found[k] = _range_check(conns[k], bounds[k], bounds[k + 1], rows=k == parts - 1, locate=parts == 1)
                except BaseException as exc:  # raised below, in the caller's thread
                    found[k] = exc

            helpers = [threading.Thread(target=check, args=(k,)) for k in range(1, parts)]
            for helper in helpers:
                helper.start()
            check(0)
            for helper in helpers:
                helper.join()
            results: list[tuple[int, list[int], list[int], int]] = []
            for result in found:
                if isinstance(result, BaseException):
                    raise result
                assert result is not None
                results.append(result)
            off = sum(r[0] for r in results) != 0 or any(len(r[1]) > 0 for r in results)
            if parts > 1 and off:
                results = [_range_check(conns[0], 0, _MAX, rows=True, locate=True)]  # located in one snapshot
            bad = [i for r in results for i in r[1]]
            marked = [i for r in results for i in r[2]]
            streams = sqlite_streams.stream_mismatch(conns[0], marked, below=results[-1][3])
            return min((*bad, *([] if streams is None else [streams])), default=None)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "malformed JSON" in str(exc):
                return _first_malformed(conns[0])
            raise translate_error(exc, self.path) from exc
        finally:
            for conn in conns:
                self._forget(conn)


def check_parts() -> int:
    """Ranges checked at once by ``derived_mismatch``: one per core this process may run on."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, _MAX_PARTS))


_MAX_PARTS = 8
#: The fewest entries ``derived_mismatch`` gives a range of its own by default (below, the cost of
#: another connection and thread outweighs what it saves).
MIN_RANGE = 4096
_MAX = 2**63 - 1

_INSERT_ENTRY = "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_TARGET = "INSERT INTO entry_targets VALUES (?, ?, ?)"

# Copied columns and target rows against the entry's own JSON. Rows missing or copied wrongly
# would hide an entry from searches; extra rows (cheaply noticed by their count) would show it in
# a search it does not match, which reads also guard against by checking the entry itself.
#
# MUST be exact for every code point: a false alarm on an intact log is as wrong as a miss. One pass
# over the entries parses each body once (SQLite caches a parsed body for every JSON function of the
# statement) and names candidates; every candidate is judged exactly in Python. The copied columns
# are compared as JSON texts (equal texts are equal values; unequal ones are only candidates).
# SQLite's single-value JSON extraction (->>, json_each values) ends text at U+0000, so a target
# whose JSON holds \u0000 is never looked up by SQL: its entry is a candidate. The same pass names
# the entries whose metadata declares a stream (for sqlite_streams.stream_mismatch).
_COLUMNS_DIFFER = """
json_extract(e.body, '$.id', '$.occurred_at', '$.actor.id', '$.action', '$.outcome', '$.source', '$.tenant')
  IS NOT json_array(e.event_id, e.occurred_at, e.actor_id, e.action, e.outcome, e.source, e.tenant)
"""
_TARGET_UNSURE = """
CASE WHEN t.type IS NOT 'object' OR instr(t.value, '\\u0000') > 0 THEN 1
     ELSE NOT EXISTS (SELECT 1 FROM entry_targets x
                       WHERE x.type = t.value ->> 'type' AND x.id = t.value ->> 'id' AND x.idx = e.idx) END
"""
_STREAM_MARKED = f"json_type(e.body, '$.metadata.{MARKER}') IS NOT NULL"
# One row per target an entry names, or one row for an entry naming none (t.key is the target's
# position: the entry-wide checks run on its first row only). Targets that are not a list (no entry
# Graven writes) make the entry a candidate.
_ONE_PASS = f"""
SELECT count(t.key),
       group_concat(CASE WHEN coalesce(t.key, 0) = 0 AND ({_COLUMNS_DIFFER})
                           OR t.key IS NOT NULL AND ({_TARGET_UNSURE})
                           OR t.type IS NOT NULL AND typeof(t.key) <> 'integer' THEN e.idx END),
       group_concat(CASE WHEN coalesce(t.key, 0) = 0 AND {_STREAM_MARKED} THEN e.idx END)
  FROM entries e LEFT JOIN json_each(e.body -> '$.targets') t
 WHERE e.idx >= ? AND e.idx < ?
"""
_CANDIDATES = """
SELECT idx, body, event_id, occurred_at, actor_id, action, outcome, source, tenant FROM entries
 WHERE idx IN (SELECT value FROM json_each(?)) ORDER BY idx
"""
_TARGETS_EXTRA = """
SELECT min(x.idx) FROM entry_targets x
 WHERE x.idx >= ? AND x.idx < ? AND x.idx NOT IN (SELECT value FROM json_each(?))
   AND NOT EXISTS (SELECT 1 FROM entries e, json_each(e.body, '$.targets') t
                    WHERE e.idx = x.idx AND t.value ->> 'type' = x.type AND t.value ->> 'id' = x.id)
"""
_ODD_TARGETS = "SELECT idx, type, id FROM entry_targets WHERE idx IN (SELECT value FROM json_each(?))"
_HAS_TARGET = "SELECT 1 FROM entry_targets WHERE type = ? AND id = ? AND idx = ?"


def _indices(listed: str | None) -> list[int]:
    """The distinct indices of a ``group_concat`` of indices, in order."""
    return sorted({int(i) for i in listed.split(",")}) if listed else []


def _range_check(
    conn: sqlite3.Connection, lo: int, hi: int, *, rows: bool, locate: bool
) -> tuple[int, list[int], list[int], int]:
    """In one read transaction, for the entries ``lo <= idx < hi``: how many more targets their bodies
    list than there are target rows (rows counted only when ``rows``: every row of the log, for the
    range that ends the log), the entries found bad (when ``locate`` and anything is off, also those
    of target rows no body names), the entries whose metadata declares a stream, and the tree size."""
    conn.execute("BEGIN")
    try:
        named_count, listed, marked = conn.execute(_ONE_PASS, (lo, hi)).fetchone()
        unsure = _indices(listed)
        surplus, bad, odd = _judge(conn, unsure)
        surplus += named_count
        if rows:
            surplus -= conn.execute("SELECT count(*) FROM entry_targets").fetchone()[0]
        if locate and (surplus or bad):  # counts may balance a missing row with an extra one before it
            skip = orjson.dumps(unsure).decode()
            extra = conn.execute(_TARGETS_EXTRA, (lo, hi, skip)).fetchone()[0]  # slow, but only after tampering
            if extra is not None:
                bad.append(extra)
            bad += [idx for idx, kind, ident in conn.execute(_ODD_TARGETS, (skip,)) if (kind, ident) not in odd[idx]]
        return surplus, bad, _indices(marked), _size(conn)
    finally:
        conn.execute("COMMIT")


def _judge(conn: sqlite3.Connection, unsure: list[int]) -> tuple[int, list[int], dict[int, set[tuple[str, str]]]]:
    """The one pass's candidates judged exactly, in Python: how many more targets each names than
    SQL counted for it (summed), the bad ones, and the targets each names."""
    surplus = 0
    bad: list[int] = []
    odd: dict[int, set[tuple[str, str]]] = {}
    for idx, body, *columns in conn.execute(_CANDIDATES, (orjson.dumps(unsure).decode(),)).fetchall():
        named = _named_targets(body)
        odd[idx] = named or set()
        surplus += len(odd[idx]) - _listed_targets(body)  # SQL counted each listed target
        has = (conn.execute(_HAS_TARGET, (*t, idx)).fetchone() is not None for t in named or ())
        if named is None or _columns_of(body) != columns or not all(has):
            bad.append(idx)
    return surplus, bad, odd


def _columns_of(body: str) -> list[Any] | None:
    """What the copied columns must hold for this body (None when it is not an entry's JSON)."""
    try:
        doc = orjson.loads(body)
        actor = doc["actor"]
        return [doc["id"], doc["occurred_at"], actor.get("id"), doc["action"], doc["outcome"],
                doc.get("source"), doc.get("tenant")]  # fmt: skip
    except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError):
        return None


def _named_targets(body: str) -> set[tuple[str, str]] | None:
    """The (type, id) of every target the body names (None when it is not an entry's JSON)."""
    try:
        return {(t["type"], t["id"]) for t in orjson.loads(body)["targets"]}
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return None


def _listed_targets(body: str) -> int:
    """How many rows with a key SQL's json_each gives for the body's targets (a list's items, an
    object's members; 0 for anything else)."""
    try:
        targets = orjson.loads(body).get("targets")
    except (orjson.JSONDecodeError, AttributeError):
        return 0
    return len(targets) if isinstance(targets, list | dict) else 0


def _first_malformed(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT min(idx) FROM entries WHERE NOT json_valid(body)").fetchone()
    return None if row[0] is None else int(row[0])


class _SQLiteScan:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def size(self) -> int:
        return _size(self.conn)

    def entries(self) -> Iterator[tuple[int, bytes]]:
        return iter(self.conn.execute("SELECT idx, body FROM entries ORDER BY idx"))

    def tiles(self) -> Iterator[tuple[int, int, bytes]]:
        return sqlite_tiles.scan(self.conn)

    def checkpoints(self) -> list[StoredCheckpoint]:
        rows = self.conn.execute("SELECT size, note FROM checkpoints ORDER BY size").fetchall()
        return [StoredCheckpoint(int(size), note.decode()) for size, note in rows]


class _Writing:
    """``with store.write() as tx``: the write lock is held from enter to exit. (A class rather
    than a generator context manager: this runs once per commit.)"""

    __slots__ = ("_store", "_tx")

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self._tx: _SQLiteWriteTx | None = None

    def __enter__(self) -> _SQLiteWriteTx:
        store = self._store
        store._write_lock.acquire()
        try:
            self._tx = store._begin()
        except BaseException:
            store._write_lock.release()
            raise
        return self._tx

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        store, tx = self._store, self._tx
        self._tx = None
        try:
            assert tx is not None
            store._end(tx, exc)
        finally:
            store._write_lock.release()


@dataclass(frozen=True, slots=True)
class _Known:
    """What the writer connection knew of the log when its last transaction committed: its
    ``PRAGMA data_version`` then, the tree size and frontier hashes, and an upper bound of the
    stored event ids (pruning may remove the greatest; it never adds one).

    ``PRAGMA data_version`` changes exactly when another connection (of this process or another)
    commits, so while it is unchanged nothing but this connection wrote the file and the next
    transaction need not read the head again: only the size and the newest id it wrote itself.
    """

    version: int
    size: int
    frontier: dict[Node, bytes]
    newest: str | None


class _SQLiteWriteTx:
    def __init__(self, conn: sqlite3.Connection, known: _Known | None) -> None:
        self.conn = conn
        self.known = known  # after commit: what the store remembers (see _Known)
        self._read: _Known | None = None  # what head() found, for insert() to extend

    def size(self) -> int:
        return _size(self.conn)

    def tree_hashes(self, nodes: Iterable[Node]) -> dict[Node, bytes]:
        return _tree_hashes(self.conn, nodes)

    def existing_ids(self, ids: Sequence[str]) -> dict[str, int]:
        return self._existing(ids, self._newest())

    def _newest(self) -> str | None:
        newest: str | None = self.conn.execute("SELECT max(event_id) FROM entries").fetchone()[0]
        return newest

    def _existing(self, ids: Sequence[str], newest: str | None) -> dict[str, int]:
        # An id above the greatest stored one (BINARY order: UTF-8 bytes, which is code point order,
        # as Python compares text) cannot be stored yet. UUIDv7 ids grow with time, so most batches
        # are settled by this comparison instead of one index probe per id.
        if newest is None:
            return {}
        ids = [i for i in ids if i <= newest]
        found: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self.conn.execute(f"SELECT event_id, idx FROM entries WHERE event_id IN ({marks})", chunk))
        return found

    def entry_bodies(self, indices: Sequence[int]) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        for start in range(0, len(indices), 500):
            chunk = list(indices[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(f"SELECT idx, body FROM entries WHERE idx IN ({marks})", chunk)
            found.update((int(idx), body.encode()) for idx, body in rows)
        return found

    def insert(self, first: int, entries: Sequence[Prepared], rows: Sequence[bytes]) -> None:
        conn = self.conn
        entry_rows = []
        target_rows = []
        idx = first
        for item in entries:
            doc = item.doc
            entry_rows.append(
                (
                    idx, item.leaf.decode(), doc["id"], doc["occurred_at"], doc["actor"].get("id"),
                    doc["action"], doc["outcome"], doc.get("source"), doc.get("tenant"),
                )
            )  # fmt: skip
            for target in doc["targets"]:
                target_rows.append((target["type"], target["id"], idx))
            idx += 1
        if len(entry_rows) == 1:
            conn.execute(_INSERT_ENTRY, entry_rows[0])
        else:
            conn.executemany(_INSERT_ENTRY, entry_rows)
        if len(target_rows) == 1:
            conn.execute(_INSERT_TARGET, target_rows[0])
        elif target_rows:
            conn.executemany(_INSERT_TARGET, target_rows)
        sqlite_tiles.insert(conn, first, rows)
        sqlite_streams.insert_rows(conn, first, entries)
        read, self._read = self._read, None
        self.known = None
        if read is not None and read.size == first:
            try:
                frontier = merkle.frontier_after(first, read.frontier, rows)
            except KeyError:  # the head lacked hashes: the next writer reads them (and refuses)
                return
            top = max(row[2] for row in entry_rows)
            newest = top if read.newest is None or top > read.newest else read.newest
            self.known = _Known(read.version, first + len(rows), frontier, newest)

    def stream_versions(self, streams: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        return sqlite_streams.versions(self.conn, streams)

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        return _latest_checkpoint(self.conn)

    def archived_below(self) -> int:
        return sqlite_pruning.archived_below(self.conn)

    def mark_archived(self, below: int, name: str, digest: str) -> None:
        sqlite_pruning.mark(self.conn, below, name, digest)

    def prune(self, first: int, below: int, only: Sequence[int] | None = None) -> int:
        if only is None:
            return sqlite_pruning.prune_range(self.conn, first, below)
        return sqlite_pruning.prune(self.conn, [i for i in only if first <= i < below])

    def insert_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        self.conn.execute("INSERT INTO checkpoints (size, note) VALUES (?, ?)", (checkpoint.size, checkpoint.note))

    def take_captured(self, limit: int) -> list[Any]:
        return []  # SQLite has no trigger capture

    def head(self, ids: Sequence[str], captured: int) -> Head:
        version = int(self.conn.execute("PRAGMA data_version").fetchone()[0])
        known = self.known
        if known is not None and known.version == version:
            # Nobody else committed since this connection's last commit: the head is as it left it.
            read = known
        else:
            size = self.size()
            read = _Known(version, size, self.tree_hashes(merkle.frontier_nodes(size)), self._newest())
        self._read = read
        existing = self._existing(ids, read.newest)
        bodies = self.entry_bodies(sorted(set(existing.values()))) if existing else {}
        return Head(read.size, dict(read.frontier), existing, [], bodies)  # SQLite has no trigger capture


def _size(conn: sqlite3.Connection) -> int:
    try:
        return sqlite_tiles.size(conn)
    except sqlite3.DatabaseError as exc:
        raise translate_error(exc, None) from exc


def _tree_hashes(conn: sqlite3.Connection, nodes: Iterable[Node]) -> dict[Node, bytes]:
    return sqlite_tiles.tree_hashes(conn, nodes)


def _latest_checkpoint(conn: sqlite3.Connection) -> StoredCheckpoint | None:
    row = conn.execute("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
    return None if row is None else StoredCheckpoint(int(row[0]), row[1])


# SQLite's LIKE already folds ASCII case; times are compared in their stored text form.
_DIALECT = Dialect(mark="?", like="LIKE", time="?")


def _query_sql(q: Query) -> tuple[str, list[Any]]:
    return select_entries(q, _DIALECT)


def _new_log(path: Path) -> None:
    """A new, empty log at ``path`` (the deep check's reference)."""
    store = SQLiteStore(path, create=True)
    try:
        store.initialize({})
    finally:
        store.close()


def translate_error(exc: sqlite3.DatabaseError, path: Path | None) -> Exception:
    """Turn a driver error into one of the project's own, with what to do about it."""
    where = f"{path}: " if path else ""
    message = str(exc)
    if "is append-only" in message:
        return ImmutableError(message.removeprefix("graven: "))
    if isinstance(exc, sqlite3.OperationalError):
        if "database is locked" in message:
            return StoreError(f"{where}the log is locked by another writer for over {BUSY_TIMEOUT_MS // 1000}s")
        if "no such table" in message:
            return ConfigError(f"{where}not a Graven log (missing tables); create one with `graven init`")
        if "readonly" in message or "read-only" in message:
            return StoreError(f"{where}the log file is read-only")
        if "unable to open" in message:
            return ConfigError(f"{where}cannot open the log file (check the path and permissions)")
    if isinstance(exc, sqlite3.DatabaseError) and "file is not a database" in message:
        return ConfigError(f"{where}this file is not a SQLite database")
    return StoreError(f"{where}{message}")
