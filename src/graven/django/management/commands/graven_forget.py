"""``manage.py graven_forget TYPE:ID``: ``graven forget`` (destroy a data subject's keys; recorded)."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import CommandError, CommandParser

from graven.context import actor_of, scope
from graven.django import conf
from graven.django.management import GravenCommand
from graven.subject_keys import check_subject


class Command(GravenCommand):
    help = "Erase a data subject's personal values by destroying its keys; the forgetting is recorded."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("subject", metavar="TYPE:ID")
        parser.add_argument("--reason", help="Why: the erasure request, its ticket.")
        parser.add_argument("--actor", help="Who forgets: an id, or TYPE:ID (default $GRAVEN_ACTOR).")

    def handle(self, *args: Any, **options: Any) -> None:
        who = options["actor"] or os.environ.get("GRAVEN_ACTOR")
        if not who:
            raise CommandError("--actor is required (or set GRAVEN_ACTOR)", returncode=2)
        subject = options["subject"]
        check_subject(subject)
        trail = conf.trail(with_subject_keys=True)
        with scope(actor=actor_of(who), source="cli"):
            index = trail.forget(subject, reason=options["reason"])
        destroyed = trail.get(index).get("metadata", {}).get("keys_destroyed", 0)
        held = f"{destroyed} key{'s' if destroyed != 1 else ''} destroyed" if destroyed else "it had no key"
        self.stdout.write(
            f"forgot {subject} ({held}); its sealed values now read as [erased]; recorded as entry {index}"
        )
