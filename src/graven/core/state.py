"""A target's state at a moment, rebuilt from the changes its entries recorded. Pure: no I/O.

Whatever captured a change (``action()``, SQLAlchemy, PostgreSQL triggers, an aggregate), it was
recorded as ``changes: [{field, old, new}]`` on an entry whose first target is the changed thing.
Replaying those entries in index order gives each field's value then:

- ``{field, new}`` sets the field (``old`` alone, without ``new``, removes it);
- ``{field, redacted: true}`` marks it changed but hidden: its value was never stored;
- a change whose sealed value's key was destroyed (``erased: true``, value ``"[erased]"``) marks
  it erased: the subject was forgotten; a value still sealed (entries read as stored, as in a
  proof bundle) is ``sealed``: present, but only its subject's key opens it.

An entry whose action ends in ``.delete`` or ``.deleted`` marks the target deleted (its fields as the
changes leave them); a later change revives it. Changes of an entry count for its first target only;
entries that change nothing (reads, sign-ins) are not part of the state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from graven.core.model import parse_time
from graven.core.shredding import is_sealed

Status = Literal["set", "redacted", "erased", "sealed"]
_DELETE_VERBS = ("delete", "deleted")


@dataclass(frozen=True, slots=True)
class FieldState:
    """One field: its value (None unless ``status`` is ``set``), how it stands, and the entry that
    last changed it."""

    value: Any
    status: Status
    index: int
    occurred_at: str

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "index": self.index, "occurred_at": self.occurred_at}
        if self.status == "set":
            out["value"] = self.value
        return out


@dataclass
class TargetState:
    """A target's fields as of a moment or an index, and the entries the answer rests on."""

    target: tuple[str, str]
    as_of: str | None = None
    at_index: int | None = None
    fields: dict[str, FieldState] = field(default_factory=dict)
    deleted: bool = False
    indices: list[int] = field(default_factory=list)

    @property
    def exists(self) -> bool:
        """Whether any entry changed the target (by then) and it is not deleted."""
        return bool(self.indices) and not self.deleted

    def values(self) -> dict[str, Any]:
        """Field -> value, with redacted fields as ``"[redacted]"`` and erased ones as ``"[erased]"``."""
        return {k: f.value if f.status == "set" else f"[{f.status}]" for k, f in sorted(self.fields.items())}

    def to_json(self) -> dict[str, Any]:
        return {
            "target": {"type": self.target[0], "id": self.target[1]},
            "as_of": self.as_of,
            "at_index": self.at_index,
            "exists": self.exists,
            "deleted": self.deleted,
            "fields": {k: f.to_json() for k, f in sorted(self.fields.items())},
            "entries": list(self.indices),
        }


def replay(
    target: tuple[str, str],
    entries: Iterable[tuple[int, Mapping[str, Any]]],
    *,
    as_of: str | None = None,
    at_index: int | None = None,
) -> TargetState:
    """Replay ``(index, entry document)`` pairs, in index order, into the target's state.

    Entries whose first target is not ``target``, that occurred after ``as_of`` (a stored-form UTC
    time) or that come after ``at_index`` are skipped, so callers may pass more than needed.
    """
    state = TargetState(target, as_of, at_index)
    fields: dict[str, tuple[Any, Status, int, str]] = {}  # tuples while replaying: cheap to make
    last = -1
    for index, doc in entries:
        if index <= last:
            raise ValueError(f"entries must come in index order (got {index} after {last})")
        last = index
        if at_index is not None and index > at_index:
            break
        occurred = doc.get("occurred_at")
        if as_of is not None and (type(occurred) is not str or occurred > as_of):
            continue
        targets = doc.get("targets")
        first = targets[0] if type(targets) is list and targets and type(targets[0]) is dict else {}
        if first.get("id") != target[1] or first.get("type") != target[0]:
            continue
        action = doc.get("action")
        deletes = type(action) is str and action.rsplit(".", 1)[-1] in _DELETE_VERBS
        changes = doc.get("changes")
        if not changes and not deletes:
            continue  # changes nothing (a read, a sign-in): not part of the state
        state.indices.append(index)
        _apply(fields, index, str(occurred), changes if type(changes) is list else [])
        state.deleted = deletes
    state.fields = {name: FieldState(*item) for name, item in fields.items()}
    return state


def _apply(fields: dict[str, tuple[Any, Status, int, str]], index: int, occurred: str, changes: list[Any]) -> None:
    for change in changes:
        if type(change) is not dict:
            continue
        name = change.get("field")
        if type(name) is not str:
            continue
        if change.get("redacted") is True:
            fields[name] = (None, "redacted", index, occurred)
        elif change.get("erased") is True:
            fields[name] = (None, "erased", index, occurred)
        elif "new" in change:
            new = change["new"]
            fields[name] = (None, "sealed", index, occurred) if is_sealed(new) else (new, "set", index, occurred)
        else:
            fields.pop(name, None)


def as_of_time(value: Any, name: str = "as_of") -> str:
    """A moment in stored form; ISO text without an offset is read as UTC (``2026-12-03T14:06``)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            return parse_time(value, name)  # raises, naming the field and what was given
        return parse_time(moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC), name)
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return parse_time(value, name)


def just_after(moment: str) -> str | None:
    """The stored-form moment one microsecond after ``moment`` (None past the last one): a query's
    exclusive ``until`` that keeps exactly what occurred at or before ``moment``."""
    then = datetime.strptime(moment, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    if then >= datetime.max.replace(tzinfo=UTC) - timedelta(microseconds=1):
        return None
    return (then + timedelta(microseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


__all__ = ["FieldState", "TargetState", "as_of_time", "just_after", "replay"]
