"""The SQLite store's aggregate-stream index: ``stream_versions (type, id, version) -> idx``.

Derived data: each row is a copy of what an entry's own ``metadata.sourcing`` declares
(:func:`graven.core.streams.stream_of`), written by ``insert`` in the same transaction as the entry,
refused UPDATE and DELETE like the log tables, and checked against the entries by
:func:`stream_mismatch` (run by ``graven verify``). The primary key on (type, id, version) means a
stream can never hold two entries at one version, whatever a writer does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import orjson

from graven.core.model import Prepared
from graven.core.streams import MARKER_TEXT, StreamPosition, first_gap, stream_of
from graven.store import StreamQuery

SCHEMA = """
CREATE TABLE IF NOT EXISTS stream_versions (
    type    TEXT NOT NULL,
    id      TEXT NOT NULL,
    version INTEGER NOT NULL,
    idx     INTEGER NOT NULL,
    PRIMARY KEY (type, id, version)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS stream_versions_idx ON stream_versions (idx);
CREATE TRIGGER IF NOT EXISTS stream_versions_no_update BEFORE UPDATE ON stream_versions
BEGIN SELECT RAISE(ABORT, 'graven: stream_versions is append-only; UPDATE is refused'); END;
CREATE TRIGGER IF NOT EXISTS stream_versions_no_delete BEFORE DELETE ON stream_versions
BEGIN SELECT RAISE(ABORT, 'graven: stream_versions is append-only; DELETE is refused'); END;
"""


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the table in a log made before it existed (idempotent; run on the writer connection)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'stream_versions'").fetchone() is None:
        conn.executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;")


def insert_rows(conn: sqlite3.Connection, first: int, entries: Sequence[Prepared]) -> None:
    """The index rows of the entries that belong to a stream (none for plain entries)."""
    rows = []
    for offset, item in enumerate(entries):
        doc = item.doc
        pos = stream_of(doc) if "metadata" in doc else None  # (most entries: no call)
        if pos is not None:
            rows.append((pos.type, pos.id, pos.version, first + offset))
    if rows:
        conn.executemany("INSERT INTO stream_versions (type, id, version, idx) VALUES (?, ?, ?, ?)", rows)


def versions(conn: sqlite3.Connection, streams: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    for kind, ident in streams:
        row = conn.execute("SELECT max(version) FROM stream_versions WHERE type = ? AND id = ?", (kind, ident))
        top = row.fetchone()[0]
        if top is not None:
            found[(kind, ident)] = int(top)
    return found


def select_stream(conn: sqlite3.Connection, stream: tuple[str, str], q: StreamQuery) -> list[tuple[int, int, bytes]]:
    sql = (
        "SELECT s.version, s.idx, e.body FROM stream_versions s JOIN entries e ON e.idx = s.idx "
        "WHERE s.type = ? AND s.id = ? AND s.version > ?"
    )
    params: list[object] = [stream[0], stream[1], q.after]
    if q.upto is not None:
        sql += " AND s.version <= ?"
        params.append(q.upto)
    sql += " ORDER BY s.version" + (" DESC" if q.newest_first else "")
    if q.limit is not None:
        sql += " LIMIT ?"
        params.append(q.limit)
    try:
        rows = conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table: stream_versions" in str(exc):
            return []  # a log no stream was ever written to
        raise
    return [(int(v), int(i), body.encode()) for v, i, body in rows]


def select_after(conn: sqlite3.Connection, after: int, limit: int) -> list[tuple[int, bytes]]:
    try:
        rows = conn.execute(
            "SELECT s.idx, e.body FROM stream_versions s JOIN entries e ON e.idx = s.idx "
            "WHERE s.idx > ? ORDER BY s.idx LIMIT ?",
            (after, limit),
        ).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table: stream_versions" in str(exc):
            return []
        raise
    return [(int(i), body.encode()) for i, body in rows]


_MAX = 2**63 - 1


def stream_mismatch(
    conn: sqlite3.Connection, marked: Sequence[int] | None = None, *, below: int | None = None
) -> int | None:
    """The first index whose stream row disagrees with its entry (missing, extra, different) or
    whose version breaks its stream's gapless run from 1; None when the index is exact.

    ``marked``: the indices of every entry whose metadata has a ``sourcing`` member, when the
    caller's own pass over the entries found them (otherwise the entries are searched here);
    ``below``: the tree size that pass saw (stream rows of entries appended since are not judged)."""
    declared: dict[int, StreamPosition] = {}
    bad: list[int] = []
    if marked is None:
        candidates = conn.execute(f"SELECT idx, body FROM entries WHERE instr(body, '{MARKER_TEXT}') > 0")
    else:
        listed = orjson.dumps(list(marked)).decode()
        candidates = conn.execute(
            "SELECT idx, body FROM entries WHERE idx IN (SELECT value FROM json_each(?))", (listed,)
        )
    for idx, body in candidates:
        body_text = body.decode() if isinstance(body, bytes) else body
        try:
            doc = orjson.loads(body_text)
        except orjson.JSONDecodeError:
            continue  # an entry that is not JSON is reported by the scan itself
        pos = stream_of(doc) if isinstance(doc, dict) else None
        if pos is not None:
            declared[int(idx)] = pos
    has_table = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'stream_versions'").fetchone() is not None
    stored: dict[int, StreamPosition] = {}
    if has_table:
        limit = _MAX if below is None else below
        rows = conn.execute("SELECT type, id, version, idx FROM stream_versions WHERE idx < ?", (limit,))
        for kind, ident, version, idx in rows:
            kind = kind.decode() if isinstance(kind, bytes) else kind
            ident = ident.decode() if isinstance(ident, bytes) else ident
            stored[int(idx)] = StreamPosition(kind, ident, int(version))
    has_archives = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'archives'").fetchone() is not None
    archived = int(conn.execute("SELECT coalesce(max(below), 0) FROM archives").fetchone()[0]) if has_archives else 0
    gone = [i for i in stored if i < archived and i not in declared]  # bodies pruned after archiving?
    if gone:
        kept = {int(i) for (i,) in conn.execute("SELECT idx FROM entries WHERE idx < ?", (archived,))}
        declared.update({i: stored[i] for i in gone if i not in kept})  # their archive holds the entry
    bad += [i for i in declared.keys() | stored.keys() if declared.get(i) != stored.get(i)]
    gap = first_gap(sorted(declared.items()))
    if gap is not None:
        bad.append(gap)
    return min(bad) if bad else None
