"""Field-level changes between two versions of an object, in the ``changes`` shape of an entry.

:func:`snapshot` turns an object (mapping, dataclass, pydantic-style model, SQLAlchemy mapped
instance, plain object) into a plain JSON-able dict; :func:`diff` compares two snapshots and
returns ``{"field", "old", "new"}`` items; :func:`apply_changes` replays them.

Paths: nested mappings become dotted paths (``"address.city"``). Inside one segment a literal
``\\`` is written ``\\\\`` and a literal ``.`` is written ``\\.``, so ``{"a.b": {"c": 1}}`` gives
the path ``a\\.b.c``; :func:`join_path` and :func:`split_path` convert both ways, exactly.

Guarantees:

- Pure: no I/O, inputs are never mutated. A SQLAlchemy instance contributes only its *loaded*
  column values (never triggers a lazy load), and only if ``sqlalchemy`` is already imported.
- ``diff(x, x) == []`` and ``apply_changes(snapshot(a), diff(a, b)) == snapshot(b)`` (``b`` not
  None), with the same-value rule of JSON: ``1 == 1.0`` but ``True != 1``.
- Only changed fields are returned, sorted by path segments. Mappings present on both sides
  are compared key by key; anything else (lists, scalars, a mapping on one side only) is
  compared as one whole value. ``old`` is absent for a created field, ``new`` for a removed one.
- :func:`snapshot` MUST NOT silently drop data it cannot represent deeper than ``MAX_DEPTH``
  (cycles included): it raises ``ValueError`` naming the path.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import math
import sys
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import orjson

from graven.core.model import MAX_DEPTH, MAX_SAFE_INTEGER

__all__ = ["apply_changes", "diff", "join_path", "snapshot", "split_path"]


# --- paths -------------------------------------------------------------------------------------


def join_path(parts: Iterable[str]) -> str:
    """Join raw key names into one dotted path, escaping ``\\`` and ``.`` inside each name."""
    return ".".join(p.replace("\\", "\\\\").replace(".", "\\.") for p in parts)


def split_path(path: str) -> list[str]:
    """The raw key names of a dotted path (the inverse of :func:`join_path`)."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(path)
    for ch in chars:
        if ch == "\\":
            current.append(next(chars, "\\"))
        elif ch == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


# --- snapshots ---------------------------------------------------------------------------------


def snapshot(obj: Any) -> dict[str, Any]:
    """A plain JSON-able dict of an object's fields (see the module docstring for the sources)."""
    fields = _fields(obj)
    if fields is None:
        raise TypeError(f"cannot snapshot a {type(obj).__name__}: it has no fields")
    return {str(k): _value(v, 1, (str(k),)) for k, v in fields.items()}


def _fields(obj: Any) -> Mapping[Any, Any] | None:
    """The raw field mapping of an object, or None for a leaf value."""
    if isinstance(obj, Mapping):
        return obj
    if isinstance(obj, type):
        return None
    state = _sqlalchemy_state(obj)
    if state is not None:
        loaded = state.dict
        return {a.key: loaded[a.key] for a in state.mapper.column_attrs if a.key in loaded}
    if dataclasses.is_dataclass(obj):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        dumped = dump(mode="json")
        if not isinstance(dumped, Mapping):
            raise TypeError(f"{type(obj).__name__}.model_dump() did not return a mapping")
        return dumped
    attrs = getattr(obj, "__dict__", None)
    if isinstance(attrs, Mapping):
        return {k: v for k, v in attrs.items() if not str(k).startswith("_")}
    return None


def _sqlalchemy_state(obj: Any) -> Any:
    """SQLAlchemy's InstanceState for a mapped instance; None if not mapped or not imported."""
    if "sqlalchemy" not in sys.modules:  # a mapped instance implies sqlalchemy is imported
        return None
    try:
        inspect = importlib.import_module("sqlalchemy").inspect
        state = inspect(obj, raiseerr=False)
    except Exception:  # any failure means "not a mapped instance"
        return None
    if state is None or not hasattr(state, "mapper") or not hasattr(state, "dict"):
        return None
    return state


def _value(value: Any, depth: int, path: tuple[str, ...]) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Enum):
        return _value(value.value, depth, path)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value) if abs(value) <= MAX_SAFE_INTEGER else str(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if depth >= MAX_DEPTH:
        raise ValueError(f"{join_path(path)}: nests deeper than {MAX_DEPTH} levels (or refers to itself)")
    if isinstance(value, set | frozenset):
        return _sorted([_value(v, depth + 1, path) for v in value])
    if isinstance(value, list | tuple):
        return [_value(v, depth + 1, (*path, str(i))) for i, v in enumerate(value)]
    fields = _fields(value)
    if fields is None:
        return str(value)
    return {str(k): _value(v, depth + 1, (*path, str(k))) for k, v in fields.items()}


def _decimal(value: Decimal) -> int | float | str:
    """An int or float when that is exactly the same number, else the decimal text."""
    if not value.is_finite():
        return str(value)
    if value == value.to_integral_value() and abs(value) <= MAX_SAFE_INTEGER:
        return int(value)
    as_float = float(value)
    return as_float if math.isfinite(as_float) and Decimal(as_float) == value else str(value)


def _sorted(items: list[Any]) -> list[Any]:
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=lambda v: orjson.dumps(v, option=orjson.OPT_SORT_KEYS))


# --- diff --------------------------------------------------------------------------------------

_MISSING: Any = object()


def diff(before: Any, after: Any, *, prefix: str = "") -> list[dict[str, Any]]:
    """The changed fields from ``before`` to ``after`` (None: created / deleted), sorted by path.

    ``prefix`` (an already-escaped dotted path) is put in front of every field path.
    """
    old = {} if before is None else snapshot(before)
    new = {} if after is None else snapshot(after)
    found: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    _compare(old, new, (), found)
    found.sort(key=lambda item: item[0])
    out = []
    for parts, change in found:
        path = join_path(parts)
        out.append({"field": f"{prefix}.{path}" if prefix else path, **change})
    return out


def _compare(old: Mapping[str, Any], new: Mapping[str, Any], path: tuple[str, ...], out: list[Any]) -> None:
    for key in old.keys() | new.keys():
        a, b = old.get(key, _MISSING), new.get(key, _MISSING)
        here = (*path, key)
        if isinstance(a, dict) and isinstance(b, dict):
            _compare(a, b, here, out)
        elif a is _MISSING:
            out.append((here, {"new": b}))
        elif b is _MISSING:
            out.append((here, {"old": a}))
        elif not _same(a, b):
            out.append((here, {"old": a, "new": b}))


def _same(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value (1 == 1.0), but booleans are not numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and bool(a == b)


def apply_changes(before: Any, changes: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A new snapshot: ``before`` (None for empty) with ``changes`` (unprefixed paths) applied.

    Raises ValueError for a redacted change (its value is gone) or a path through a non-object.
    """
    out: dict[str, Any] = {} if before is None else copy.deepcopy(snapshot(before))
    for change in changes:
        field = str(change["field"])
        if change.get("redacted"):
            raise ValueError(f"{field}: a redacted change cannot be applied")
        *parents, last = split_path(field)
        node = out
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"{field}: {part!r} is not an object")
            node = child
        if "new" in change:
            node[last] = copy.deepcopy(change["new"])
        else:
            node.pop(last, None)
    return out
