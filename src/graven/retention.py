"""Retention rules: how long archived entries stay in the live log (see :mod:`graven.archive`).

A rule (an action, a prefix such as ``session.*``, or ``*``; optionally one tenant; an age) is
recorded as a ``log.retention.set`` entry, the latest per pattern and tenant in force. A run prunes
the bodies of archived entries whose age has passed, and is itself recorded (``log.retention.run``).
A run MUST refuse, changing nothing, when a rule would prune an entry that is not archived yet; the
log's own entries (``log.*``) are never pruned.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from graven.errors import ConfigError
from graven.store import Query, Store

if TYPE_CHECKING:
    from graven.trail import Trail

RETENTION_SET_ACTION = "log.retention.set"
RETENTION_RUN_ACTION = "log.retention.run"
_PAGE = 10_000
_SYSTEM = {"type": "system", "id": "graven"}

_AGE = re.compile(r"^([1-9][0-9]{0,5})([dhw])$")
_UNITS = {"h": 3600, "d": 86_400, "w": 7 * 86_400}


@dataclass(frozen=True, slots=True)
class Rule:
    """Entries whose action matches ``pattern`` (and of ``tenant``, when set) are kept ``keep`` long
    after they occurred; ``keep`` None keeps them for ever (a rule that cancels an earlier one)."""

    pattern: str
    tenant: str | None
    keep: timedelta | None

    def describe(self) -> str:
        age = "for ever" if self.keep is None else f"{self.keep.days}d" if self.keep.days else str(self.keep)
        return f"{self.pattern!r}" + (f" of tenant {self.tenant!r}" if self.tenant else "") + f" kept {age}"


def parse_age(text: str) -> timedelta | None:
    """``90d``, ``12h``, ``4w`` or ``forever``; anything else is refused naming the rule."""
    if text == "forever":
        return None
    match = _AGE.match(text)
    if match is None:
        raise ConfigError(f"retention age must be like 90d, 12h, 4w or forever (1 to 999999 units), got {text!r}")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


_PATTERN = re.compile(r"^([a-z0-9_-]+(\.[a-z0-9_-]+)*)(\.\*)?$|^\*$")


def set_retention(trail: Trail, pattern: str, keep: str, *, tenant: str | None = None, actor: Any = None) -> int:
    """Record a retention rule as a ``log.retention.set`` entry (the latest per pattern and tenant wins)."""
    if not _PATTERN.match(pattern) or pattern.startswith("log."):
        raise ConfigError(
            "retention pattern must be an action (user.login), a prefix (session.*) or *, and not log.*; "
            f"got {pattern!r}"
        )
    age = parse_age(keep)
    metadata = {"pattern": pattern, "tenant": tenant, "keep_seconds": None if age is None else int(age.total_seconds())}
    return trail.record({
        "action": RETENTION_SET_ACTION, "actor": actor or _SYSTEM, "source": "cli", "metadata": metadata,
        "targets": [{"type": "log", "id": trail.origin}],
    })  # fmt: skip


def retention_rules(trail: Trail) -> list[Rule]:
    """The rules in force: the latest ``log.retention.set`` entry per pattern and tenant."""
    rules: dict[tuple[str, str | None], Rule] = {}
    for entry in _all(trail.store, Query(action=RETENTION_SET_ACTION)):
        meta = orjson.loads(entry[1]).get("metadata", {})
        seconds = meta.get("keep_seconds")
        key = (str(meta.get("pattern")), meta.get("tenant"))
        rules[key] = Rule(key[0], key[1], None if seconds is None else timedelta(seconds=int(seconds)))
    return [rule for rule in rules.values() if rule.keep is not None]


@dataclass(frozen=True, slots=True)
class RetentionRun:
    pruned: int
    entry: int | None  # the log.retention.run entry (None when nothing was due)
    rules: list[Rule]


def run_retention(trail: Trail, *, now: datetime | None = None, actor: Any = None) -> RetentionRun:
    """Prune the bodies of archived entries whose rule's time is up; refused, nothing changed, when a
    rule would prune an entry that is not archived yet."""
    store = trail.store
    rules = retention_rules(trail)
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    archived = store.archived_below()
    due: set[int] = set()
    for rule in rules:
        assert rule.keep is not None
        until = (moment - rule.keep).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        query = Query(action=None if rule.pattern == "*" else rule.pattern, tenant=rule.tenant, until=until)
        found = [i for i, body in _all(store, query) if not orjson.loads(body)["action"].startswith("log.")]
        late = [i for i in found if i >= archived]
        if late:
            raise ConfigError(
                f"retention rule {rule.describe()} would prune {len(late)} entries not archived yet (the first at "
                f"index {min(late)}); archive them first: graven archive --below {max(late) + 1} --keep --to DIR"
            )
        due.update(found)
    if not due:
        return RetentionRun(0, None, rules)
    ordered = sorted(due)
    entry = trail.record({
        "action": RETENTION_RUN_ACTION, "actor": actor or _SYSTEM, "source": "cli",
        "targets": [{"type": "log", "id": trail.origin}],
        "metadata": {"rules": [r.describe() for r in rules], "entries": len(ordered), "first": ordered[0],
                     "last": ordered[-1]},
    })  # fmt: skip
    with store.write() as tx:
        pruned = tx.prune(0, archived, ordered)
    return RetentionRun(pruned, entry, rules)


def _all(store: Store, query: Query) -> Iterator[tuple[int, bytes]]:
    after: int | None = None
    while True:
        page = store.query(replace(query, after=after, limit=_PAGE))
        yield from page
        if len(page) < _PAGE:
            return
        after = page[-1][0]


__all__ = ["Rule", "parse_age", "retention_rules", "run_retention", "set_retention"]
