"""Options every command that opens a log accepts after its own name, as well as before it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def set_root_option(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Store a late ``--db`` / ``--signing-key`` on the root command's options object."""
    if value is not None:
        setattr(ctx.find_root().obj, str(param.name), value)


def log_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Accept ``--db``, ``--signing-key`` and ``--log`` after the command too (``graven verify --db URL``)."""
    for name, meta, text in (
        ("--signing-key", "FILE", "The log's signing key file."),
        ("--log", "NAME", "One of several logs in the database (as the global --log)."),
        ("--db", "URL", "The log (as the global --db)."),
    ):
        function = click.option(name, metavar=meta, expose_value=False, callback=set_root_option, help=text)(function)
    return function
