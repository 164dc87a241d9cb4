"""The check that the query columns and target rows copied beside each entry still agree with it.

Only the entry bodies are covered by the Merkle tree; the copies serve queries. Someone who edits a
copy (to hide an entry from a search, say) is found here, and the first entry that disagrees is named.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from graven.store.pg_connection import Conn

SCAN_BATCH = 5_000
_MARK = "\ufffe"


def column_value(value: str | None) -> str | None:
    """How a name is kept in an indexed text column (PostgreSQL text cannot hold U+0000).

    Names without U+0000 are kept as they are; the rest are escaped behind a U+FFFE mark (as is
    any name that starts with the mark), so the mapping stays one-to-one.
    """
    if value is None or ("\x00" not in value and not value.startswith(_MARK)):
        return value
    return _MARK + value.replace("\\", "\\\\").replace("\x00", "\\0")


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


def derived_mismatch(conn: Conn) -> int | None:
    row = conn.execute(_DERIVED).fetchone()
    assert row is not None
    columns, missing, named, odd = row
    bad = [i for i in (columns, missing) if i is not None]
    odd = list(odd)
    if odd:
        slow = slow_mismatch(conn, odd)
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


def slow_mismatch(conn: Conn, only: list[int] | None) -> int | None:
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
