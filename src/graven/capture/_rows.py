"""Row changes as entry changes, for SQLAlchemy capture: pure, no database, no SQLAlchemy import.

A row is a mapping of attribute keys to values, or an ORM ``InstanceState`` (duck-typed: ``dict``,
``attrs[key].history``, ``identity``). Values become JSON the way :func:`graven.core.diff.diff`
makes them (decimals, datetimes, UUIDs, nested JSON as dotted paths). A redacted column appears as
``{"field", "redacted": true}``, never with a value: on create when it has one, on update when it
changed, on delete always. Changes are sorted by field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from graven.core.diff import diff


@dataclass(frozen=True, slots=True)
class Model:
    """How one mapped class is recorded."""

    noun: str
    action: str  # the action without its verb
    keys: tuple[str, ...]  # column attributes recorded (excluded ones removed)
    redacted: frozenset[str]
    pk: tuple[str, ...]  # attribute keys of the primary key, in key order
    excluded: frozenset[str]
    links: tuple[str, ...] = ()  # many-to-many collections recorded (SQLAlchemy ``secondary=``)


def loaded(state: Any, model: Model) -> dict[str, Any]:
    """The primary key and recorded columns an ORM object has loaded (nothing is loaded here)."""
    loaded = state.dict
    return {k: loaded[k] for k in (*model.pk, *model.keys) if k in loaded}


def created(new: Mapping[str, Any], model: Model) -> list[dict[str, Any]]:
    """A new row: every recorded column's value as ``new``."""
    shown = {k: v for k, v in new.items() if k in model.keys and k not in model.redacted}
    secret = [{"field": k, "redacted": True} for k in model.keys if k in model.redacted and new.get(k) is not None]
    return _sorted(diff(None, shown) + secret)


def deleted(old: Mapping[str, Any], model: Model) -> list[dict[str, Any]]:
    """A removed row: every recorded column's value as ``old``."""
    shown = {k: v for k, v in old.items() if k in model.keys and k not in model.redacted}
    secret = [{"field": k, "redacted": True} for k in model.keys if k in model.redacted]
    return _sorted(diff(shown, None) + secret)


def changed(old: Mapping[str, Any], new: Mapping[str, Any], model: Model) -> list[dict[str, Any]]:
    """The recorded columns that differ between two versions of a row, old and new."""
    before = {k: old.get(k) for k in model.keys if k not in model.redacted}
    after = {k: new.get(k) for k in model.keys if k not in model.redacted}
    secret = [{"field": k, "redacted": True} for k in model.keys if k in model.redacted and _differs(old, new, k)]
    return _sorted(diff(before, after) + secret)


def updated(state: Any, model: Model) -> list[dict[str, Any]]:
    """Changed columns of a flushed object, from its attribute history (old only where known)."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for key in model.keys:
        history = state.attrs[key].history
        if history.has_changes():
            after[key] = history.added[0] if history.added else None
            if history.deleted:
                before[key] = history.deleted[0]
            # else: the old value was never loaded, so the change shows the new value only
    secret = [{"field": k, "redacted": True} for k in model.redacted if k in after and _differs(before, after, k)]
    shown = diff(
        {k: v for k, v in before.items() if k not in model.redacted},
        {k: v for k, v in after.items() if k not in model.redacted},
    )
    return _sorted(shown + secret)


def _differs(before: Mapping[str, Any], after: Mapping[str, Any], key: str) -> bool:
    return key not in before or bool(diff({"v": before[key]}, {"v": after.get(key)}))


def _sorted(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(changes, key=lambda c: str(c["field"]))


def primary_key(state: Any, model: Model, verb: str) -> str:
    """The row's primary key as text: as loaded after an insert, else the identity it was loaded by."""
    if verb != "create" and state.identity is not None:
        return key_text(state.identity)
    return key_text([state.dict.get(k) for k in model.pk])


def key_text(values: Sequence[Any]) -> str:
    """A primary key as a target id: its values joined by commas."""
    return ",".join("" if v is None else str(v) for v in values)


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def noun(cls: type) -> str:
    """``PurchaseOrder`` -> ``purchase_order``."""
    return _CAMEL.sub("_", cls.__name__).lower()
