"""Shared pieces of the ``graven_*`` management commands: the trail from the settings, errors as one line."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from rich.console import Console

from graven.errors import GravenError


class GravenCommand(BaseCommand):
    """A command whose Graven errors end it with one line (``CommandError``) and exit status 1 or 2."""

    def execute(self, *args: Any, **options: Any) -> str | None:
        try:
            return super().execute(*args, **options)
        except GravenError as exc:
            raise CommandError(str(exc), returncode=2) from None

    def rich(self, renderable: Any, *, error: bool = False) -> None:
        """Print a rich renderable (a table, an entry) on the command's output."""
        buffer = io.StringIO()
        Console(file=buffer, width=160, color_system=None, force_terminal=False).print(renderable)
        write: Callable[..., None] = (self.stderr if error else self.stdout).write
        write(buffer.getvalue(), ending="")
