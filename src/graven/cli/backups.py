"""``graven backup`` and ``restore``."""

from __future__ import annotations

import os
from pathlib import Path

import click

from graven.cli.base import Options, cli, out, pass_options
from graven.context import actor_of
from graven.keys import DEFAULT_KEY

# --- backup and restore -----------------------------------------------------------------------


@cli.command("backup")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@pass_options
def backup_command(options: Options, dest: Path) -> None:
    """Write an online, consistent copy of the log to the new folder DEST.

    Writers go on meanwhile. DEST gets the database copy (SQLite: one file; PostgreSQL: every log
    table copied from one snapshot), the checkpoint kept beside the signing key and manifest.json
    (size, root, origin, created_at).
    """
    import base64

    from graven.backup import backup

    with options.open() as trail:
        manifest = backup(trail, dest)
    root = base64.b64encode(manifest.root).decode()
    out.print(f"backed up {manifest.size} entries of {manifest.origin} to {dest} (root {root})")


@cli.command("restore")
@click.argument("folder", metavar="BACKUP", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--accept-loss",
    is_flag=True,
    help="Restore a backup older than the kept checkpoint: the lost entries are recorded and a new lineage starts.",
)
@click.option("--reason", help="Why: the incident, its ticket (recorded in the log.restore entry).")
@click.option("--actor", help="Who restores: an id, or TYPE:ID (default $GRAVEN_ACTOR, else system:graven).")
@pass_options
def restore_command(options: Options, folder: Path, accept_loss: bool, reason: str | None, actor: str | None) -> None:
    """Put the backup in BACKUP in place of the log; stop the log's writers first.

    The backup must verify and agree with the checkpoint kept beside the signing key. One older than
    that checkpoint (or smaller than the live log) is refused unless --accept-loss, which records the
    lost range as a log.restore entry and starts a new checkpoint lineage that `graven verify`
    follows. A PostgreSQL backup is restored into a schema that does not exist yet.
    """
    from graven.backup import restore
    from graven.keys import DEFAULT_DB

    who = actor or os.environ.get("GRAVEN_ACTOR")
    done = restore(
        options.db or DEFAULT_DB, folder, Path(options.signing_key or DEFAULT_KEY), accept_loss=accept_loss,
        reason=reason, actor=actor_of(who) if who else None,
    )  # fmt: skip
    if done.lost_to > done.lost_from:
        out.print(
            f"restored {done.size} entries; entries {done.lost_from}..{done.lost_to - 1} are lost, as entry "
            f"{done.entry} records"
            + (f"; lineage {done.lineage + 1} starts (the old one is archived beside the key)" if done.lineage else "")
        )
    else:
        out.print(f"restored {done.size} entries; recorded as entry {done.entry}")
