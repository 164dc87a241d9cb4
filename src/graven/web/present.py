"""How entries read on a page: short texts for actors, targets, changes and times (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from markupsafe import Markup, escape

OUTCOME_LABELS = {"success": "Success", "denied": "Denied", "failure": "Failure"}
HIDDEN = "value hidden"


def when(value: str | None) -> str:
    """``2026-11-25 14:05:31 UTC`` from a stored timestamp."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(value: str | None, now: datetime) -> str:
    """How long before ``now`` a stored timestamp is, in words: ``3 min ago``, ``2 days ago``."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None or now.tzinfo is None:
        return when(value)
    seconds = (now - moment).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 45:
        return "just now"
    for size, unit in ((86400 * 365, "year"), (86400 * 30, "month"), (86400, "day"), (3600, "h"), (60, "min")):
        if seconds >= size * (0.75 if size >= 3600 else 1):
            count = max(1, round(seconds / size))
            label = unit if unit in ("h", "min") or count == 1 else unit + "s"
            return f"in {count} {label}" if future else f"{count} {label} ago"
    return "just now"


def dotted(name: str | None) -> Markup:
    """A dotted name that may wrap only after its dots (``session.login``), never inside a word."""
    return Markup(str(escape(name or "")).replace(".", ".<wbr>"))  # noqa: S704 (escaped first)


def actor_label(value: Mapping[str, Any] | None) -> str:
    """The actor's name, else its id, else its type: the short form shown in lists."""
    if not value:
        return "unknown"
    return str(value.get("name") or value.get("id") or value.get("type") or "unknown")


def actor(value: Mapping[str, Any] | None) -> str:
    """``Dana Reyes (u-17)``, or whatever part of the actor is known."""
    if not value:
        return "unknown"
    ident, name = value.get("id"), value.get("name")
    if name and ident and name != ident:
        return f"{name} ({ident})"
    return str(name or ident or value.get("type", "unknown"))


def browser(user_agent: str | None) -> str:
    """The browser and system a user agent names, in a few words (``Firefox on Windows``)."""
    if not user_agent:
        return ""
    ua = user_agent
    name = next((b for b in ("Edg", "Firefox", "Chrome", "Safari", "curl", "python-requests") if b in ua), "")
    name = {"Edg": "Edge"}.get(name, name)
    system = next(
        (label for key, label in (("Windows", "Windows"), ("Mac OS X", "macOS"), ("Android", "Android"),
                                  ("iPhone", "iOS"), ("Linux", "Linux")) if key in ua), ""
    )  # fmt: skip
    if name and system:
        return f"{name} on {system}"
    return name or system or ua[:40]


def target(value: Mapping[str, Any]) -> str:
    return f"{value.get('type')}:{value.get('id')}"


def target_label(value: Mapping[str, Any]) -> str:
    name = value.get("name")
    return f"{name} ({target(value)})" if name and name != value.get("id") else target(value)


def targets(values: Sequence[Mapping[str, Any]] | None) -> str:
    return ", ".join(target(t) for t in values or [])


def value(item: Any) -> str:
    """A field value as text: strings as they are, everything else as JSON."""
    if item is None:
        return "(none)"
    return item if isinstance(item, str) else orjson.dumps(item).decode()


def change(item: Mapping[str, Any]) -> str:
    """``email: a@x → b@y``, or ``password: changed (value hidden)``."""
    if item.get("redacted"):
        return f"{item.get('field')}: changed ({HIDDEN})"
    return f"{item.get('field')}: {value(item.get('old'))} → {value(item.get('new'))}"


def changes(items: Sequence[Mapping[str, Any]] | None) -> str:
    return "; ".join(change(c) for c in items or [])


def recorded(entries: Sequence[Any]) -> str:
    """What an attempt recorded, in a sentence per entry: ``Entry #12: denied, file.delete (why).``"""
    said = []
    for entry in entries:
        who = "automatic" if (entry.actor or {}).get("type") == "system" else OUTCOME_LABELS[entry.outcome].lower()
        why = f": {entry.data['reason']}" if entry.data.get("reason") else ""
        on = f" on {', '.join(target_label(t) for t in entry.targets)}" if entry.targets else ""
        said.append(f"Entry #{entry.index}: {who}, {entry.action}{on}{why}.")
    return " ".join(said)


def pretty(data: Any) -> str:
    """Indented JSON for a page."""
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()


FILTERS = {
    "when": when,
    "ago": ago,
    "dotted": dotted,
    "actor_label": actor_label,
    "actor": actor,
    "browser": browser,
    "target": target,
    "target_label": target_label,
    "targets": targets,
    "value": value,
    "change": change,
    "changes": changes,
    "pretty": pretty,
}
