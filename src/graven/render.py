"""Rich renderings of entries for the terminal: a timeline table and one entry with its diff.

Everything that comes from an entry, a user, a key or the store is attacker-controlled text (a
sign-in attempt records the user name typed). It MUST reach the terminal only through
:func:`literal` / :func:`visible`: as a :class:`~rich.text.Text`, so Rich never reads it as markup
(``[/]``, ``[link=...]``, ``[blink]``) or emoji codes, and with every control character (C0 with
ESC, DEL, C1), bidirectional control and invisible format character shown as an escape such as
``\\x1b`` or ``\\u202e``, so it cannot move the cursor, start an ANSI or OSC 8 sequence or reorder
what is shown. Plain strings handed to Rich here are the program's own words only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import orjson
from rich.console import Group
from rich.table import Table
from rich.text import Text

from graven.core.model import Entry

OUTCOME_STYLES = {"success": "green", "denied": "bold red", "failure": "yellow"}

# C0 (with TAB, LF, CR and ESC), DEL, C1, the Arabic letter mark, zero-width and direction marks,
# line and paragraph separators, bidi embeddings/overrides/isolates, word joiner and friends, BOM.
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


def visible(value: Any) -> str:
    """``value`` as text with every control or invisible formatting character written as an escape."""
    return _HIDDEN.sub(_escape, value if isinstance(value, str) else str(value))


def literal(value: Any, style: str = "") -> Text:
    """``value`` as Rich text that is printed exactly as :func:`visible` spells it (no markup, no emoji)."""
    return Text(visible(value), style=style)


def actor_text(actor: dict[str, Any]) -> str:
    """``name (id)`` or whatever part of the actor is known (raw: pass it through :func:`visible`)."""
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
            literal(entry.index),
            literal(entry.data["occurred_at"].replace("T", " ")[:19]),
            literal(actor_text(actor)),
            literal(actor.get("ip", "")),
            literal(entry.action),
            literal(targets_text(entry.targets)),
            literal(entry.outcome, OUTCOME_STYLES.get(entry.outcome, "")),
            literal(changes_text(entry.changes)),
        )
    return table


def entry_detail(entry: Entry) -> Group:
    """One entry: who, what, when, where, why, outcome, context, and each change as a diff."""
    data = entry.data
    actor = entry.actor
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    facts.add_row("entry", literal(f"#{entry.index}  id {entry.id}"))
    facts.add_row("when", literal(f"{data['occurred_at']} (recorded {data['recorded_at']})"))
    facts.add_row("who", literal(f"{actor_text(actor)} [{actor.get('type')}]"))
    if actor.get("ip") or actor.get("user_agent"):
        where = " · ".join(str(actor[k]) for k in ("ip", "user_agent", "session") if actor.get(k))
        facts.add_row("from", literal(where))
    facts.add_row("action", literal(entry.action))
    if entry.targets:
        facts.add_row("target", literal(targets_text(entry.targets)))
    facts.add_row("outcome", literal(entry.outcome, OUTCOME_STYLES.get(entry.outcome, "")))
    for key in ("reason", "source", "tenant"):
        if data.get(key):
            facts.add_row(key, literal(data[key]))
    for key in ("context", "metadata"):
        if data.get(key):
            facts.add_row(key, literal(", ".join(f"{k}={value_text(v)}" for k, v in data[key].items())))
    parts: list[Any] = [facts]
    if entry.changes:
        diff = Text()
        for change in entry.changes:
            diff.append(f"  {visible(change['field'])}\n", style="bold")
            if change.get("redacted"):
                note = "changed (value redacted"
                note += f", fingerprint {visible(change['fingerprint'])})" if change.get("fingerprint") else ")"
                diff.append(f"    ~ {note}\n", style="magenta")
                continue
            if "old" in change:
                diff.append(f"    - {visible(value_text(change['old']))}\n", style="red")
            if "new" in change:
                diff.append(f"    + {visible(value_text(change['new']))}\n", style="green")
        parts += [Text("changes", style="bold"), diff]
    return Group(*parts)
