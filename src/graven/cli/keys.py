"""``graven key``: print the verifier key (the default), its history, rotate it, revoke an old one."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from graven.cli.base import Options, cli, err, out, pass_options
from graven.core import jsonlines
from graven.core.key_history import KeyHistory
from graven.core.note import Verifier
from graven.keys import DEFAULT_KEY
from graven.render import literal
from graven.rotation import DEFAULT_OVERLAP, MAX_OVERLAP, revoke_key, rotate_key
from graven.store.logs import path_for


@cli.group("key", invoke_without_command=True)
@pass_options
@click.pass_context
def key_group(ctx: click.Context, options: Options) -> None:
    """Print the log's verifier key (public; give it to whoever checks the log); manage its keys."""
    if ctx.invoked_subcommand is None:
        _show(options)


@key_group.command("show")
@pass_options
def show_command(options: Options) -> None:
    """Print the log's current verifier key (what `graven key` prints)."""
    _show(options)


def _show(options: Options) -> None:
    with options.open() as trail:
        out.print(literal(trail.verifier_key))


@key_group.command("history")
@pass_options
def history_command(options: Options) -> None:
    """Print the key history (every key and the tree sizes it vouches for): give it to verifiers
    and witnesses after a rotation (`graven verify --key FILE`, `graven witness serve --log FILE`)."""
    with options.open() as trail:
        history = trail.key_history or KeyHistory.single(Verifier.from_text(trail.verifier_key))
    sys.stdout.write(history.to_text())


@key_group.command("rotate")
@click.option("--overlap", type=click.IntRange(1, MAX_OVERLAP), default=DEFAULT_OVERLAP, show_default=True,
              help="Tree sizes after the rotation during which checkpoints carry both keys' signatures.")  # fmt: skip
@click.option("--reason", help="Why (recorded in the key.rotate entry).")
@click.option("--json", "as_json", is_flag=True, help="Print the rotation as JSON.")
@pass_options
def rotate_command(options: Options, overlap: int, reason: str | None, as_json: bool) -> None:
    """Create a new signing key and hand the log over to it (recorded as a key.rotate entry).

    The old key moves beside the new one (KEY.<key id>) and co-signs checkpoints for --overlap
    more tree sizes; KEY.history lists both keys with the sizes each vouches for.
    """
    rotation = rotate_key(options.db, signing_key=options.signing_key, overlap=overlap, reason=reason, log=options.log)
    if as_json:
        sys.stdout.buffer.write(jsonlines.line(rotation.to_json()))
        return
    key = path_for(Path(options.signing_key or DEFAULT_KEY), options.log)
    out.print(literal(rotation.new_key))
    err.print(
        literal(
            f"rotated at entry {rotation.index}: the new key signs from tree size {rotation.start}, the old one "
            f"co-signs below {rotation.until}; give verifiers and witnesses {key}.history"
        )
    )


@key_group.command("revoke")
@click.argument("key")
@click.option("--from", "start", type=click.IntRange(0), required=True, metavar="SIZE",
              help="The first tree size whose checkpoints signed by this key are no longer trusted.")  # fmt: skip
@click.option("--reason", help="Why (recorded in the key.revoke entry).")
@pass_options
def revoke_command(options: Options, key: str, start: int, reason: str | None) -> None:
    """Stop trusting a previous key (its key id or verifier key) from a tree size on.

    Checkpoints it signed from that size are reported by `graven verify`, not trusted. The key the
    log signs with now cannot be revoked: rotate first.
    """
    index = revoke_key(key, options.db, signing_key=options.signing_key, start=start, reason=reason, log=options.log)
    err.print(literal(f"revoked {key} from tree size {start} (entry {index})"))
