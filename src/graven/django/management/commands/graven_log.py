"""``manage.py graven_log``: ``graven log`` (entries matching filters, as a table or JSON Lines)."""

from __future__ import annotations

from typing import Any

import orjson
from django.core.management.base import CommandParser

from graven import render
from graven.django import conf
from graven.django.management import GravenCommand
from graven.trail import MAX_PAGE

FILTERS = ("actor", "action", "target", "outcome", "source", "tenant", "since", "until", "text")


class Command(GravenCommand):
    help = "List entries matching the filters, newest last (or first with --newest-first)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--actor", help="Actor id.")
        parser.add_argument("--action", help="Action, exact, or a prefix like user.*")
        parser.add_argument("--target", metavar="TYPE:ID", help="Everything done to one target.")
        parser.add_argument("--outcome", choices=["success", "denied", "failure"])
        parser.add_argument("--source")
        parser.add_argument("--tenant")
        parser.add_argument("--since", metavar="TIME", help="Occurred at or after (ISO 8601).")
        parser.add_argument("--until", metavar="TIME", help="Occurred before (ISO 8601).")
        parser.add_argument("--text", help="Free text anywhere in the entry.")
        parser.add_argument("--limit", type=int, help="At most this many entries (default: all for --json, 50).")
        parser.add_argument("--newest-first", action="store_true")
        parser.add_argument("--json", action="store_true", help="JSON Lines: each entry's stored fields plus index.")

    def handle(self, *args: Any, **options: Any) -> None:
        trail = conf.trail()
        filters = {k: options[k] for k in FILTERS if options.get(k) is not None}
        limit = options["limit"] or (None if options["json"] else 50)
        newest = options["newest_first"]
        entries: list[Any] = []
        cursor: int | None = None
        while limit is None or len(entries) < limit:
            query: dict[str, Any] = {**filters, "newest_first": newest}
            if cursor is not None:
                query["before" if newest else "after"] = cursor
            page = trail.query(**query, limit=min(MAX_PAGE, (limit or MAX_PAGE) - len(entries)))
            entries.extend(page.entries)
            cursor = page.next_cursor
            if cursor is None:
                break
        if options["json"]:
            for entry in entries:
                self.stdout.write(orjson.dumps(entry.to_json()).decode())
        elif entries:
            self.rich(render.entries_table(entries))
        else:
            self.stderr.write("no entries match")
