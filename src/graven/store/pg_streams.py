"""The PostgreSQL store's aggregate-stream index (``stream_versions``, migration 3): its SQL.

Derived data, as in :mod:`graven.store.sqlite_streams`: one row per entry that declares a stream
position (:func:`graven.core.streams.stream_of`), inserted in the same transaction as the entry,
append-only, and checked against the entries by :func:`stream_mismatch`. Names are kept in columns
as :func:`graven.store.pg_derived.column_value` keeps them (U+0000 escaped).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from graven.core.model import Prepared
from graven.core.streams import MARKER_TEXT, StreamPosition, first_gap, stream_of
from graven.store import StreamQuery
from graven.store.pg_connection import Conn
from graven.store.pg_derived import SCAN_BATCH, column_value

INSERT = """
INSERT INTO stream_versions (type, id, version, idx)
SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::bigint[])
"""

VERSIONS = """
SELECT s.type, s.id, max(s.version) FROM stream_versions s
  JOIN unnest(%b::text[], %b::text[]) AS w(type, id) ON s.type = w.type AND s.id = w.id
 GROUP BY s.type, s.id
"""


def insert_params(first: int, entries: Sequence[Prepared]) -> tuple[Any, ...] | None:
    """The parameters of :data:`INSERT` for the entries of a batch that belong to a stream (None: none do)."""
    kinds: list[str | None] = []
    idents: list[str | None] = []
    versions: list[int] = []
    indices: list[int] = []
    for offset, item in enumerate(entries):
        pos = stream_of(item.doc)
        if pos is not None:
            kinds.append(column_value(pos.type))
            idents.append(column_value(pos.id))
            versions.append(pos.version)
            indices.append(first + offset)
    return (kinds, idents, versions, indices) if indices else None


ColumnNames = dict[tuple[str | None, str | None], tuple[str, str]]


def versions_params(streams: Sequence[tuple[str, str]]) -> tuple[ColumnNames, Any]:
    """How each stream is named in columns, and the parameters of :data:`VERSIONS`."""
    named = {(column_value(k), column_value(i)): (k, i) for k, i in streams}
    return named, ([k for k, _ in named], [i for _, i in named])


def select_stream(q: StreamQuery, stream: tuple[str, str]) -> tuple[str, list[Any]]:
    sql = (
        "SELECT s.version, s.idx, e.body FROM stream_versions s JOIN entries e ON e.idx = s.idx "
        "WHERE s.type = %s AND s.id = %s AND s.version > %s"
    )
    params: list[Any] = [column_value(stream[0]), column_value(stream[1]), q.after]
    if q.upto is not None:
        sql += " AND s.version <= %s"
        params.append(q.upto)
    sql += " ORDER BY s.version" + (" DESC" if q.newest_first else "")
    if q.limit is not None:
        sql += " LIMIT %s"
        params.append(q.limit)
    return sql, params


SELECT_AFTER = (
    "SELECT s.idx, e.body FROM stream_versions s JOIN entries e ON e.idx = s.idx "
    "WHERE s.idx > %s ORDER BY s.idx LIMIT %s"
)


def stream_mismatch(conn: Conn) -> int | None:
    """The first index whose stream row disagrees with its entry, or whose version breaks its
    stream's gapless run from 1; None when the index is exact. Runs in the caller's snapshot."""
    declared: dict[int, StreamPosition] = {}
    cur = conn.cursor(name="graven_stream_entries")
    cur.itersize = SCAN_BATCH
    cur.execute("SELECT idx, body FROM entries WHERE strpos(body, %s) > 0 ORDER BY idx", (MARKER_TEXT,))
    for idx, body in cur:
        try:
            doc = orjson.loads(str(body))
        except orjson.JSONDecodeError:
            continue  # reported by the scan itself
        pos = stream_of(doc) if isinstance(doc, dict) else None
        if pos is not None:
            declared[int(idx)] = StreamPosition(column_value(pos.type) or "", column_value(pos.id) or "", pos.version)
    cur.close()
    stored = {
        int(idx): StreamPosition(str(kind), str(ident), int(version))
        for kind, ident, version, idx in conn.execute("SELECT type, id, version, idx FROM stream_versions")
    }
    below = int(conn.execute("SELECT coalesce(max(below), 0) FROM archives").fetchall()[0][0])
    gone = [i for i in stored if i < below and i not in declared]  # bodies pruned after archiving?
    if gone:
        kept = {int(i) for (i,) in conn.execute("SELECT idx FROM entries WHERE idx = ANY(%s::bigint[])", (gone,))}
        declared.update({i: stored[i] for i in gone if i not in kept})  # their archive holds the entry
    bad = [i for i in declared.keys() | stored.keys() if declared.get(i) != stored.get(i)]
    gap = first_gap(sorted(declared.items()))
    if gap is not None:
        bad.append(gap)
    return min(bad) if bad else None
