"""``manage.py graven_drain``: record what a crashed process left in the outbox (exactly once)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from graven.django import tracking
from graven.django.management import GravenCommand


class Command(GravenCommand):
    help = "Record every tracked change waiting in the outbox and delete its row."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", help="Only this database alias (default: every one with an outbox).")

    def handle(self, *args: Any, **options: Any) -> None:
        moved = tracking.drain(options["database"])
        self.stdout.write(f"recorded {moved} waiting change{'s' if moved != 1 else ''}")
