"""Rich renderings of entries for the terminal: a timeline table and one entry with its diff."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from rich.console import Group
from rich.table import Table
from rich.text import Text

from graven.core.model import Entry

OUTCOME_STYLES = {"success": "green", "denied": "bold red", "failure": "yellow"}


def actor_text(actor: dict[str, Any]) -> str:
    """``name (id)`` or whatever part of the actor is known."""
    ident = actor.get("id")
    name = actor.get("name")
    if name and ident:
        return f"{name} ({ident})"
    return str(name or ident or actor.get("type", "?"))


def targets_text(targets: Sequence[dict[str, Any]]) -> str:
    return ", ".join(f"{t['type']}:{t['id']}" for t in targets)


def value_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def changes_text(changes: Sequence[dict[str, Any]]) -> str:
    parts = []
    for change in changes:
        if change.get("redacted"):
            parts.append(f"{change['field']} (changed, value hidden)")
        else:
            parts.append(f"{change['field']}: {value_text(change.get('old'))} → {value_text(change.get('new'))}")
    return "; ".join(parts)


def entries_table(entries: Sequence[Entry]) -> Table:
    """A readable timeline of entries."""
    table = Table(show_lines=False, header_style="bold")
    for column in ("#", "occurred (UTC)", "actor", "from", "action", "target", "outcome", "changes"):
        table.add_column(column, overflow="fold", no_wrap=column in ("#", "occurred (UTC)", "action", "outcome"))
    for entry in entries:
        actor = entry.actor
        table.add_row(
            str(entry.index),
            entry.data["occurred_at"].replace("T", " ")[:19],
            actor_text(actor),
            actor.get("ip", ""),
            entry.action,
            targets_text(entry.targets),
            Text(entry.outcome, style=OUTCOME_STYLES.get(entry.outcome, "")),
            changes_text(entry.changes),
        )
    return table


def entry_detail(entry: Entry) -> Group:
    """One entry: who, what, when, where, why, outcome, context, and each change as a diff."""
    data = entry.data
    actor = entry.actor
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    facts.add_row("entry", f"#{entry.index}  id {entry.id}")
    facts.add_row("when", f"{data['occurred_at']} (recorded {data['recorded_at']})")
    facts.add_row("who", f"{actor_text(actor)} [{actor.get('type')}]")
    if actor.get("ip") or actor.get("user_agent"):
        facts.add_row("from", " · ".join(str(actor[k]) for k in ("ip", "user_agent", "session") if actor.get(k)))
    facts.add_row("action", entry.action)
    if entry.targets:
        facts.add_row("target", targets_text(entry.targets))
    facts.add_row("outcome", Text(entry.outcome, style=OUTCOME_STYLES.get(entry.outcome, "")))
    for key in ("reason", "source", "tenant"):
        if data.get(key):
            facts.add_row(key, str(data[key]))
    for key in ("context", "metadata"):
        if data.get(key):
            facts.add_row(key, ", ".join(f"{k}={value_text(v)}" for k, v in data[key].items()))
    parts: list[Any] = [facts]
    if entry.changes:
        diff = Text()
        for change in entry.changes:
            diff.append(f"  {change['field']}\n", style="bold")
            if change.get("redacted"):
                note = "changed (value redacted"
                note += f", fingerprint {change['fingerprint']})" if change.get("fingerprint") else ")"
                diff.append(f"    ~ {note}\n", style="magenta")
                continue
            if "old" in change:
                diff.append(f"    - {value_text(change['old'])}\n", style="red")
            if "new" in change:
                diff.append(f"    + {value_text(change['new'])}\n", style="green")
        parts += [Text("changes", style="bold"), diff]
    return Group(*parts)
