"""``graven state`` and ``graven projections``: a target's state at a moment, projections' progress."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from graven.cli.base import Options, cli, out, pass_options
from graven.core import jsonlines
from graven.core.state import TargetState
from graven.errors import ConfigError
from graven.render import literal
from graven.sourcing import AppDB
from graven.sourcing.projections import projection_status
from graven.trail import MAX_INDEX


@cli.command("state")
@click.argument("target", metavar="TYPE:ID")
@click.option("--as-of", help="The moment (ISO 8601; without an offset it is UTC). Default: now.")
@click.option("--at-index", type=click.IntRange(0, MAX_INDEX), help="Replay entries up to this index only.")
@click.option("--json", "as_json", is_flag=True, help="The state as JSON (fields with status and entry).")
@pass_options
def state_command(options: Options, target: str, as_of: str | None, at_index: int | None, as_json: bool) -> None:
    """Print a target's fields as of a moment, replayed from the changes its entries recorded.

    Redacted fields show as [redacted] (changed, value never stored); forgotten ones as [erased].
    Prove the answer offline with `graven prove --state TYPE:ID --as-of T`.
    """
    with options.open() as trail:
        state = trail.state(target, as_of=as_of, at_index=at_index)
    if as_json:
        sys.stdout.buffer.write(jsonlines.dumps(state.to_json(), indent=True) + b"\n")
        return
    for line in state_lines(state):
        out.print(literal(line))


def state_lines(state: TargetState) -> list[str]:
    """The state as lines of text: a heading, then one line per field."""
    name = f"{state.target[0]}:{state.target[1]}"
    when = f" as of {state.as_of}" if state.as_of else ""
    upto = f" up to entry {state.at_index}" if state.at_index is not None else ""
    if not state.indices:
        return [f"{name}{when}{upto}: no recorded changes"]
    how = "deleted" if state.deleted else f"{len(state.indices)} entries replayed, last {state.indices[-1]}"
    lines = [f"{name}{when}{upto} ({how})"]
    width = max((len(k) for k in state.fields), default=0)
    for key, value in state.values().items():
        shown = value if isinstance(value, str) else jsonlines.dumps(value).decode()
        lines.append(f"  {key.ljust(width)}  {shown}  (entry {state.fields[key].index})")
    return lines


@cli.group("projections")
def projections_group() -> None:
    """Projections (read models fed from the log) and their progress."""


@projections_group.command("status")
@click.option(
    "--app-db", envvar="GRAVEN_APP_DB", required=True, metavar="URL",
    help="The application database holding the projections (a SQLite path or postgresql://...[?schema=]).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON object per projection.")
@pass_options
def projections_status(options: Options, app_db: str, as_json: bool) -> None:
    """Show each projection's position (last applied entry), its lag behind the log, and its last failure."""
    if not app_db.startswith(("postgresql://", "postgres://")) and not Path(app_db.removeprefix("sqlite:///")).exists():
        raise ConfigError(f"--app-db: no application database at {app_db}")
    with options.open() as trail:
        size = trail.size
    db = AppDB(app_db)
    try:
        rows = projection_status(db, size)
    finally:
        db.close()
    if as_json:
        for row in rows:
            sys.stdout.buffer.write(jsonlines.line(row.to_json()))
        return
    if not rows:
        out.print(literal(f"no projections in {db.url}"))
    for row in rows:
        failed = f"  FAILED {row.error}" if row.error else ""
        out.print(literal(f"{row.name}  position {row.position}  lag {row.lag}  updated {row.updated_at}{failed}"))
