"""``graven init``, ``record``, ``log``, ``show`` and ``forget``: writing and reading entries."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import orjson

from graven import render
from graven.cli.base import Options, cli, err, out, pass_options
from graven.context import actor_of, scope
from graven.core import jsonlines
from graven.core.model import Entry, load_json
from graven.errors import ValidationError
from graven.keys import DEFAULT_KEY
from graven.opening import init, subject_keys_path
from graven.render import literal
from graven.subject_keys import check_subject
from graven.trail import MAX_INDEX, MAX_PAGE, Trail


@cli.command("init")
@pass_options
def init_command(options: Options) -> None:
    """Create the log and its signing key (key file apart from the database, mode 0600)."""
    trail = init(options.db, signing_key=options.signing_key)
    with trail:
        out.print(literal(f"log       {trail.store.url}"))
        out.print(literal(f"origin    {trail.origin}"))
        out.print(literal(f"verifier  {trail.verifier_key}"))


# --- record -----------------------------------------------------------------------------------


@cli.command("record")
@click.argument("stdin", required=False, metavar="[-]")
@click.option("--action", help="Dotted noun.verb, e.g. user.password.change.")
@click.option("--actor", help="Who: an id, or TYPE:ID (default $GRAVEN_ACTOR).")
@click.option("--actor-name", help="The actor's display name.")
@click.option("--ip", help="The actor's IP address.")
@click.option("--user-agent", help="The actor's user agent.")
@click.option("--target", "targets", multiple=True, metavar="TYPE:ID", help="What it was done to (repeatable).")
@click.option("--outcome", type=click.Choice(["success", "denied", "failure"]), default="success", show_default=True)
@click.option("--reason", help="Why: a ticket, a justification, the denied permission.")
@click.option(
    "--change", "changes", multiple=True, nargs=3, metavar="FIELD OLD NEW", help="A field change (repeatable)."
)
@click.option(
    "--redacted", multiple=True, metavar="FIELD", help="A secret field that changed; its values are not stored."
)
@click.option("--source", default="cli", show_default=True, help="How: web, api, cli, job, db, ...")
@click.option("--tenant", help="The tenant this entry belongs to.")
@click.option(
    "--context",
    "context_items",
    multiple=True,
    metavar="KEY=VALUE",
    help="Context such as request_id=... (repeatable).",
)
@click.option("--metadata", help="Free-form JSON object.")
@click.option("--id", "event_id", help="Event id (idempotency key; default a new UUIDv7).")
@click.option("--occurred-at", help="When it happened (ISO 8601 with timezone; default now).")
@pass_options
def record_command(options: Options, /, stdin: str | None, **flags: Any) -> None:
    """Record one event from flags, or JSON / JSON Lines from stdin with `graven record -`.

    Prints the index assigned to each event. A batch from stdin is recorded entirely or not at all.
    """
    if stdin is not None:
        if stdin != "-":
            raise click.UsageError(f"unexpected argument {stdin!r}; use - to read events from stdin")
        events = _read_events(sys.stdin.buffer.read())
        with options.open() as trail:
            for index in trail.record_many(events):
                out.print(index)
        return
    if not flags["action"]:
        raise click.UsageError("--action is required (or pass - to read JSON events from stdin)")
    event = _event_from_flags(flags)
    with options.open() as trail:
        out.print(trail.record(event))


def _event_from_flags(flags: dict[str, Any]) -> dict[str, Any]:
    actor_text = flags["actor"] or os.environ.get("GRAVEN_ACTOR")
    if not actor_text:
        raise click.UsageError("--actor is required (or set GRAVEN_ACTOR)")
    actor = actor_of(actor_text) or {}
    for key in ("actor_name", "ip", "user_agent"):
        if flags[key]:
            actor[key.removeprefix("actor_")] = flags[key]
    event: dict[str, Any] = {
        "action": flags["action"],
        "actor": actor,
        "outcome": flags["outcome"],
        "source": flags["source"],
    }
    targets = []
    for text in flags["targets"]:
        kind, sep, ident = text.partition(":")
        if not sep or not kind or not ident:
            raise ValidationError("--target", "must be TYPE:ID, such as customer:c-1042", text)
        targets.append({"type": kind, "id": ident})
    event["targets"] = targets
    changes: list[dict[str, Any]] = [{"field": f, "old": o, "new": n} for f, o, n in flags["changes"]]
    changes += [{"field": f, "redacted": True} for f in flags["redacted"]]
    event["changes"] = changes
    for key in ("reason", "tenant", "occurred_at"):
        if flags[key]:
            event[key] = flags[key]
    if flags["event_id"]:
        event["id"] = flags["event_id"]
    if flags["context_items"]:
        context = {}
        for item in flags["context_items"]:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValidationError("--context", "must be KEY=VALUE", item)
            context[key] = value
        event["context"] = context
    if flags["metadata"]:
        try:
            event["metadata"] = load_json(flags["metadata"])
        except orjson.JSONDecodeError as exc:
            raise ValidationError("--metadata", "must be a JSON object", f"invalid JSON ({exc})") from None
    return event


def _read_events(data: bytes) -> list[Any]:
    text = data.strip()
    if not text:
        raise ValidationError("stdin", "must hold a JSON object, a JSON array or JSON Lines", "nothing")
    try:
        value = load_json(text)
    except orjson.JSONDecodeError:
        value = None
        events = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                events.append(load_json(line))
            except orjson.JSONDecodeError as exc:
                raise ValidationError(
                    f"stdin line {number}", "must be one JSON object per line", f"invalid JSON ({exc})"
                ) from None
        return events
    return value if isinstance(value, list) else [value]


# --- reading ----------------------------------------------------------------------------------


def _filters(function: Any) -> Any:
    options = [
        click.option("--actor", help="Actor id."),
        click.option("--action", help="Action, exact, or a prefix like user.*"),
        click.option("--target", metavar="TYPE:ID", help="Everything done to one target."),
        click.option("--outcome", type=click.Choice(["success", "denied", "failure"])),
        click.option("--source", help="web, api, cli, job, db, ..."),
        click.option("--tenant"),
        click.option("--since", metavar="TIME", help="Occurred at or after (ISO 8601)."),
        click.option("--until", metavar="TIME", help="Occurred before (ISO 8601)."),
        click.option("--text", help="Free text anywhere in the entry (ASCII case-insensitive)."),
        click.option(
            "--after", type=click.IntRange(-1, MAX_INDEX), metavar="INDEX", help="Cursor: entries after this index."
        ),
        click.option(
            "--before", type=click.IntRange(0, MAX_INDEX), metavar="INDEX", help="Cursor: entries before this index."
        ),
        click.option(
            "--limit",
            type=click.IntRange(1),
            help="At most this many entries (default: all for --json, 50 for the table).",
        ),
        click.option("--newest-first", is_flag=True, help="Newest entries first."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@cli.command("log")
@_filters
@click.option("--json", "as_json", is_flag=True, help="JSON Lines: each entry's stored fields plus index.")
@pass_options
def log_command(options: Options, /, as_json: bool, limit: int | None, **filters: Any) -> None:
    """List entries matching the filters, as a table or as JSON Lines."""
    with options.open() as trail:
        if as_json:
            for entry in _iterate(trail, filters, limit):
                sys.stdout.buffer.write(jsonlines.line(entry.to_json()))
            return
        entries = list(_iterate(trail, filters, limit or 50))
        if not entries:
            err.print("no entries match")
            return
        out.print(render.entries_table(entries))


def _iterate(trail: Trail, filters: dict[str, Any], limit: int | None) -> Iterator[Entry]:
    remaining = limit
    cursor_key = "before" if filters.get("newest_first") else "after"
    while remaining is None or remaining > 0:
        page = trail.query(**filters, limit=min(remaining or MAX_PAGE, MAX_PAGE))
        yield from page.entries
        if remaining is not None:
            remaining -= len(page.entries)
        if page.next_cursor is None:
            return
        filters = {**filters, cursor_key: page.next_cursor}


@cli.command("show")
@click.argument("index", type=click.IntRange(0, MAX_INDEX))
@click.option("--json", "as_json", is_flag=True, help="The entry as JSON.")
@pass_options
def show_command(options: Options, index: int, as_json: bool) -> None:
    """Print one entry, its context and its field changes as a diff."""
    with options.open() as trail:
        entry = trail.get(index)
    if as_json:
        sys.stdout.buffer.write(jsonlines.dumps(entry.to_json(), indent=True) + b"\n")
        return
    out.print(render.entry_detail(entry))


# --- forgetting -------------------------------------------------------------------------------


@cli.command("forget")
@click.argument("subject", metavar="TYPE:ID")
@click.option("--reason", help="Why: the erasure request, its ticket.")
@click.option("--actor", help="Who forgets: an id, or TYPE:ID (default $GRAVEN_ACTOR).")
@pass_options
def forget_command(options: Options, subject: str, reason: str | None, actor: str | None) -> None:
    """Erase a data subject's personal values by destroying its keys; the forgetting is recorded.

    Entries are not changed: their sealed values read as [erased] from now on and `graven verify`
    still passes.
    """
    who = actor or os.environ.get("GRAVEN_ACTOR")
    if not who:
        raise click.UsageError("--actor is required (or set GRAVEN_ACTOR)")
    check_subject(subject)
    keys = options.subject_keys or subject_keys_path(Path(options.signing_key or DEFAULT_KEY))
    with options.open(subject_keys=keys) as trail, scope(actor=actor_of(who), source="cli"):
        index = trail.forget(subject, reason=reason)
        destroyed = trail.get(index).get("metadata", {}).get("keys_destroyed", 0)
    held = f"{destroyed} key{'s' if destroyed != 1 else ''} destroyed" if destroyed else "it had no key"
    out.print(literal(f"forgot {subject} ({held}); its sealed values now read as [erased]; recorded as entry {index}"))
