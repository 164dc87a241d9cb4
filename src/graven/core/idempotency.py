"""Whether a repeated event id names the same event: the comparison idempotency rests on. Pure.

An id names one event. A repeat (a client's retry) MUST count as the same event when it differs
only in what the log adds: ``recorded_at`` always; ``occurred_at`` when the repeat left it to the log
(it then equals the repeat's own ``recorded_at``); and ``context.ingested_by``, which the HTTP
service sets from the credential that sent it. Any other difference makes it another event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

ADDED_BY_THE_SERVICE = "ingested_by"


def differing_fields(first: Mapping[str, Any], repeat: Mapping[str, Any]) -> list[str]:
    """The top-level fields in which ``repeat`` differs from ``first`` (both as stored), sorted.

    Values are compared by their JSON encoding, so ``1`` and ``true`` (equal in Python) differ.
    """
    names = sorted((first.keys() | repeat.keys()) - {"recorded_at"})
    defaulted = repeat.get("occurred_at") == repeat.get("recorded_at")
    out = []
    for name in names:
        if name == "occurred_at" and defaulted:
            continue
        a, b = first.get(name), repeat.get(name)
        if name == "context":
            a, b = _as_sent(a), _as_sent(b)
        if _encoded(a) != _encoded(b):
            out.append(name)
    return out


def _as_sent(context: Any) -> Any:
    """A context without what the service added (empty counts as absent)."""
    if not isinstance(context, Mapping):
        return context
    rest = {k: v for k, v in context.items() if k != ADDED_BY_THE_SERVICE}
    return rest or None


def _encoded(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
