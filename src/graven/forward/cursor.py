"""Durable cursors and dead letters, kept in the log's own database beside (never inside) the
append-only tables.

A cursor says how many entries a sink has acknowledged (``position``: the next index to send) and
the size of the last signed checkpoint it was sent (``proof_size``). :meth:`Cursors.advance`
MUST move the cursor and store the batch's dead letters in one committed transaction, and only
after the sink acknowledged the batch: a crash before it re-sends the batch, never skips it.

A cursor MUST never run ahead of what was acknowledged; it may lag behind. So its commits skip the
flush to disk (SQLite ``synchronous = NORMAL`` in WAL mode, PostgreSQL ``synchronous_commit = off``):
a killed process loses no committed cursor, and a power failure or a database crash can only lose
the newest cursor moves, which re-sends batches already delivered and never loses one.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from graven.errors import GravenError, StoreError
from graven.store import Store

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS forward_cursors (
        sink         TEXT PRIMARY KEY,
        position     BIGINT NOT NULL,
        proof_size   BIGINT NOT NULL,
        delivered_at TEXT,
        last_error   TEXT,
        error_at     TEXT,
        dead         BIGINT NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS forward_dead_letters (
        sink     TEXT NOT NULL,
        idx      BIGINT NOT NULL,
        entry_id TEXT NOT NULL,
        reason   TEXT NOT NULL,
        at       TEXT NOT NULL,
        PRIMARY KEY (sink, idx)
    )""",
]


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where one sink stands."""

    sink: str
    position: int = 0
    proof_size: int = 0
    delivered_at: str | None = None
    last_error: str | None = None
    error_at: str | None = None
    dead: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An entry a receiver refused for good, with the receiver's reason."""

    sink: str
    index: int
    entry_id: str
    reason: str
    at: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Cursors:
    """Cursors of every sink of one log (SQLite or PostgreSQL). Thread-safe."""

    def __init__(self, store: Store) -> None:
        self._lock = threading.Lock()
        self._conn: Any
        path = getattr(store, "path", None)
        if path is not None:
            self._pg = False
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
            self._conn.execute("PRAGMA busy_timeout = 60000")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._mark = "?"
        else:
            from graven.store.pg_connection import connect

            self._pg = True
            self._target = store.target  # type: ignore[attr-defined]
            self._conn = connect(self._target)
            self._conn.execute("SET synchronous_commit TO OFF")
            self._mark = "%s"
        with self._tx() as cur:
            for statement in SCHEMA:
                cur.execute(statement)

    @contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[Any]:
        """A transaction (a write one takes SQLite's write lock first); a read is one statement."""
        with self._lock:
            try:
                if not write:
                    yield self._conn.cursor() if self._pg else self._conn
                elif self._pg:
                    with self._conn.transaction():
                        yield self._conn.cursor()
                else:
                    self._conn.execute("BEGIN IMMEDIATE")
                    try:
                        yield self._conn
                    except BaseException:
                        self._conn.execute("ROLLBACK")
                        raise
                    self._conn.execute("COMMIT")
            except GravenError:
                raise
            except Exception as exc:
                if isinstance(exc, sqlite3.Error) or type(exc).__module__.startswith("psycopg"):
                    raise StoreError(f"forwarder cursors: {exc}") from exc
                raise

    def _sql(self, text: str) -> str:
        return text.replace("?", self._mark)

    def get(self, sink: str) -> Cursor:
        """The sink's cursor (at 0 when it never delivered anything)."""
        with self._tx(write=False) as cur:
            row = cur.execute(
                self._sql("SELECT position, proof_size, delivered_at, last_error, error_at, dead "
                          "FROM forward_cursors WHERE sink = ?"), (sink,)
            ).fetchone()  # fmt: skip
        return Cursor(sink) if row is None else Cursor(sink, *row)

    def all(self) -> list[Cursor]:
        with self._tx(write=False) as cur:
            rows = cur.execute(
                "SELECT sink, position, proof_size, delivered_at, last_error, error_at, dead "
                "FROM forward_cursors ORDER BY sink"
            ).fetchall()
        return [Cursor(*row) for row in rows]

    def advance(self, sink: str, position: int, proof_size: int, dead: Sequence[tuple[int, str, str]] = ()) -> None:
        """Record an acknowledged batch: the new position, the proof sent and its dead letters.

        The cursor never moves backwards: a position below the stored one is an error.
        """
        now = _now()
        with self._tx() as cur:
            row = cur.execute(self._sql("SELECT position FROM forward_cursors WHERE sink = ?"), (sink,)).fetchone()
            if row is not None and row[0] > position:
                raise StoreError(f"forwarder {sink}: cursor at {row[0]} cannot move back to {position}")
            for index, entry_id, reason in dead:
                cur.execute(
                    self._sql("INSERT INTO forward_dead_letters (sink, idx, entry_id, reason, at) "
                              "VALUES (?, ?, ?, ?, ?) "
                              "ON CONFLICT (sink, idx) DO NOTHING"),
                    (sink, index, entry_id, reason[:2000], now),
                )  # fmt: skip
            cur.execute(
                self._sql(
                    "INSERT INTO forward_cursors (sink, position, proof_size, delivered_at, dead) "
                    "VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (sink) DO UPDATE SET position = excluded.position, "
                    "proof_size = excluded.proof_size, delivered_at = excluded.delivered_at, last_error = NULL, "
                    "error_at = NULL, dead = forward_cursors.dead + excluded.dead"
                ),
                (sink, position, proof_size, now, len(dead)),
            )

    def fail(self, sink: str, error: str) -> None:
        """Note the last error of a sink (the cursor does not move)."""
        with self._tx() as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO forward_cursors (sink, position, proof_size, last_error, error_at) "
                    "VALUES (?, 0, 0, ?, ?) ON CONFLICT (sink) DO UPDATE SET last_error = excluded.last_error, "
                    "error_at = excluded.error_at"
                ),
                (sink, error[:2000], _now()),
            )

    def dead_letters(self, sink: str, limit: int = 100) -> list[DeadLetter]:
        with self._tx(write=False) as cur:
            rows = cur.execute(
                self._sql("SELECT sink, idx, entry_id, reason, at FROM forward_dead_letters WHERE sink = ? "
                          "ORDER BY idx LIMIT ?"), (sink, limit)
            ).fetchall()  # fmt: skip
        return [DeadLetter(*row) for row in rows]

    def reset(self, sink: str) -> None:
        """Forget a removed sink's cursor (its dead letters stay on record)."""
        with self._tx() as cur:
            cur.execute(self._sql("DELETE FROM forward_cursors WHERE sink = ?"), (sink,))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
