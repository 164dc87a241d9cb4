"""``graven archive`` and ``graven retention``: sealed ranges written out, bodies pruned, proofs kept."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from graven import archive as archiving
from graven import retention
from graven.cli.base import Options, cli, err, out, pass_options
from graven.core.model import parse_time
from graven.render import literal


@cli.command("archive")
@click.option("--below", type=click.IntRange(1), metavar="INDEX", help="Archive the entries below this index.")
@click.option("--before", metavar="TIME", help="Archive the entries recorded before this time (ISO 8601).")
@click.option(
    "--to", "dest", required=True, type=click.Path(file_okay=False, path_type=Path),
    help="The archive folder to write (new or empty).",
)  # fmt: skip
@click.option("--keep", is_flag=True, help="Write the archive but keep the bodies (retention rules prune later).")
@pass_options
def archive_command(options: Options, below: int | None, before: str | None, dest: Path, keep: bool) -> None:
    """Write the sealed entries (covered by a signed checkpoint) to an archive folder, then prune
    their bodies from the live log. Proofs of kept entries, consistency proofs and `graven verify`
    stay valid; the archive checks offline with `graven verify --archive DIR --key KEY`."""
    moment = None if before is None else datetime.fromisoformat(parse_time(before, "--before").replace("Z", "+00:00"))
    with options.open() as trail:
        done = archiving.archive(trail, dest, below=below, before=moment, prune=not keep)
    pruned = f", pruned {done.pruned} bodies" if not keep else " (bodies kept)"
    out.print(
        literal(
            f"archived entries {done.first}..{done.below - 1} to {done.path} (checkpoint of size "
            f"{done.checkpoint_size}){pruned}; recorded as entry {done.entry}"
        )
    )


@cli.group("retention")
def retention_group() -> None:
    """Retention rules: how long entries stay in the live log once archived."""


@retention_group.command("set")
@click.argument("pattern")
@click.argument("age")
@click.option("--tenant", help="Only entries of this tenant.")
@pass_options
def retention_set(options: Options, pattern: str, age: str, tenant: str | None) -> None:
    """Keep entries whose action matches PATTERN (user.login, session.*, *) for AGE (90d, 12h, 4w,
    forever) after they occurred. The rule is recorded as an entry; the latest per pattern wins."""
    with options.open() as trail:
        index = retention.set_retention(trail, pattern, age, tenant=tenant)
    out.print(
        literal(f"retention of {pattern!r}{f' (tenant {tenant!r})' if tenant else ''} set to {age}; entry {index}")
    )


@retention_group.command("list")
@pass_options
def retention_list(options: Options) -> None:
    """Print the retention rules in force."""
    with options.open() as trail:
        rules = retention.retention_rules(trail)
    for rule in rules:
        out.print(literal(rule.describe()))
    if not rules:
        err.print("no retention rules: every entry is kept")


@retention_group.command("run")
@pass_options
def retention_run(options: Options) -> None:
    """Prune the bodies of archived entries whose time is up. Refused, nothing changed, when a rule
    would prune entries that are not archived yet. Each run is recorded as an entry."""
    with options.open() as trail:
        done = retention.run_retention(trail)
    if done.entry is None:
        out.print("nothing to prune")
    else:
        out.print(literal(f"pruned {done.pruned} archived entries; recorded as entry {done.entry}"))
