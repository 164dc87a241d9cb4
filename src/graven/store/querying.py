"""The one SELECT behind every search, written once for every SQL backend.

Backends differ only in their placeholder, their case-insensitive LIKE, how a stored-form time
compares with the ``occurred_at`` column, and how a name is kept in a column; a :class:`Dialect`
says which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from graven.core.model import nfc
from graven.store import Query


def _same(value: str | None) -> str | None:
    return value


@dataclass(frozen=True, slots=True)
class Dialect:
    mark: str  # the placeholder: ? or %s
    like: str  # LIKE that folds ASCII case
    time: str  # a placeholder compared with occurred_at
    name: Callable[[str | None], str | None] = _same  # a name as the column keeps it


def _nfc(value: str | None) -> str | None:
    """Identifiers are stored in Unicode NFC; a filter is compared in that form too."""
    return None if value is None else nfc(value)


def select_entries(q: Query, d: Dialect) -> tuple[str, list[Any]]:
    """``SELECT idx, body FROM entries`` matching every filter of ``q``, and its parameters.

    The identifier filters (actor, target, target_type, tenant) are normalised to NFC first, as
    the entries' identifiers were when recorded."""
    m = d.mark
    if q.target is not None:
        q = replace(q, target=(_nfc(q.target[0]) or "", _nfc(q.target[1]) or ""))
    q = replace(q, actor=_nfc(q.actor), target_type=_nfc(q.target_type), tenant=_nfc(q.tenant))
    where: list[str] = []
    params: list[Any] = []
    simple = (
        (f"actor_id = {m}", d.name(q.actor)),
        (f"idx IN (SELECT idx FROM entry_targets WHERE type = {m})", d.name(q.target_type)),
        (f"outcome = {m}", q.outcome),
        (f"source = {m}", d.name(q.source)),
        (f"tenant = {m}", d.name(q.tenant)),
        (f"occurred_at >= {d.time}", q.since),
        (f"occurred_at < {d.time}", q.until),
        (f"idx > {m}", q.after),
        (f"idx < {m}", q.before),
    )
    for clause, value in simple:
        if value is not None:
            where.append(clause)
            params.append(value)
    if q.action is not None:
        if q.action.endswith(".*"):
            prefix = q.action[:-1]
            where.append(f"action >= {m} AND action < {m}")
            params += [prefix, prefix + "\U0010ffff"]
        else:
            where.append(f"action = {m}")
            params.append(q.action)
    if q.target is not None:
        where.append(f"idx IN (SELECT idx FROM entry_targets WHERE type = {m} AND id = {m})")
        params += [d.name(q.target[0]), d.name(q.target[1])]
    if q.text:
        where.append(f"body {d.like} {m} ESCAPE '\\'")
        escaped = q.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params.append(f"%{escaped}%")
    text = "SELECT idx, body FROM entries"
    if where:
        text += " WHERE " + " AND ".join(where)
    text += f" ORDER BY idx {'DESC' if q.newest_first else 'ASC'} LIMIT {m}"
    params.append(q.limit)
    return text, params
