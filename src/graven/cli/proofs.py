"""``graven verify``, ``prove`` and ``checkpoint``: checking the log and proving entries."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

import click
import orjson
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from graven.archive import archive_folders, verify_archive
from graven.cli.base import EXIT_DAMAGE, Options, cli, err, out, pass_options
from graven.core import jsonlines
from graven.core.bundle import verify_bundle
from graven.core.key_history import trusted_verifiers
from graven.errors import ValidationError
from graven.keys import DEFAULT_DB, load_trust, load_verifier
from graven.private_files import log_files, warnings_for
from graven.render import literal
from graven.store import sqlite_path
from graven.trail import MAX_INDEX
from graven.witnessing.client import witness_evidence
from graven.witnessing.keys import load_cosigner_verifier

# --- proving and verifying --------------------------------------------------------------------


@cli.command("verify")
@click.option("--json", "as_json", is_flag=True, help='Print {"ok", "first_bad_index", "kind", "message", ...}.')
@click.option("--key", metavar="KEY",
              help="Trust only this verifier key (text, or a file holding it) or key history file.")  # fmt: skip
@click.option(
    "--bundle",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Check an offline proof bundle instead of the log (needs --key).",
)
@click.option("--witness-key", "witness_keys", multiple=True, metavar="VKEY",
              help="A witness's public key (text or file) that must have cosigned. Repeatable.")  # fmt: skip
@click.option("--witness", "witness_urls", multiple=True, metavar="URL",
              help="Also hold the log against the newest checkpoint this witness cosigned. Repeatable.")  # fmt: skip
@click.option("--archive", "archives", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="Also check this archive (or a folder of archives); with --key and no log: offline. "
                   "Repeatable.")  # fmt: skip
@click.option("--deep", is_flag=True,
              help="Also check the storage around the entries: indexes and append-only triggers as a new log "
                   "has them, and the engine's own index checks (reads every index).")  # fmt: skip
@pass_options
def verify_command(
    options: Options,
    as_json: bool,
    key: str | None,
    bundle: Path | None,
    witness_keys: tuple[str, ...],
    witness_urls: tuple[str, ...],
    archives: tuple[Path, ...],
    deep: bool,
) -> None:
    """Check every entry, the Merkle tree, every signed checkpoint and the witnessed ones.

    Witnessed checkpoints are those kept beside the signing key (cosigned ones included) and,
    with --witness, the newest one each witness cosigned. Exits 0 when the log is intact, 1 when
    damage is found, 2 on bad input. A kept checkpoint that is missing or behind the newest signed
    one is reported as a warning (the exit code stays 0 when the log verifies).
    """
    if bundle is not None:
        if key is None:
            raise click.UsageError("--bundle needs --key (the log's verifier key) to check the signature")
        trust = load_trust(key)
        try:
            data = orjson.loads(bundle.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ValidationError("--bundle", "must be a readable JSON proof bundle", f"{bundle} ({exc})") from None
        check = verify_bundle(data, trust)
        if as_json:
            sys.stdout.buffer.write(jsonlines.line({"ok": check.ok, "index": check.index, "message": check.message}))
        else:
            (out if check.ok else err).print(literal(("OK: " if check.ok else "FAILED: ") + check.message))
        sys.exit(0 if check.ok else EXIT_DAMAGE)
    if archives and key is not None and not _log_here(options):
        _verify_archives_offline(archives, key, as_json)
    cosigners = [load_cosigner_verifier(k) for k in witness_keys]
    with options.open() as trail:
        trusted = load_trust(key) if key else None
        log_key = None if trusted is None else trusted_verifiers(trusted)[-1]
        seen = witness_evidence(trail, keys=cosigners, urls=witness_urls, log_key=log_key)
        if as_json or not err.is_terminal:
            report = trail.verify(key=trusted, witnessed=seen, archives=archives, deep=deep)
        else:
            columns = (TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=err, transient=True) as bar:
                task = bar.add_task("verify", total=trail.size)
                report = trail.verify(
                    key=trusted,
                    witnessed=seen,
                    archives=archives,
                    progress=lambda done: bar.update(task, completed=done),
                    deep=deep,
                )
        warning = trail.kept_warning()
    if not as_json and warning:
        err.print(Text("warning: ") + literal(warning))
    store_path = getattr(trail.store, "path", None)  # a SQLite log; PostgreSQL has no files here
    key_path = options.key_path() if store_path is not None else None
    for line in warnings_for(log_files(store_path, key_path)):
        err.print(literal(line))
    if as_json:
        sys.stdout.buffer.write(jsonlines.line({**report.to_json(), "warnings": [warning] if warning else []}))
    elif report.ok:
        out.print(Text("OK  ", style="bold green") + literal(report.message))
    else:
        err.print(
            Text("TAMPERED  ", style="bold red")
            + literal(f"first bad index {report.first_bad_index} ({report.kind}): {report.message}")
        )
    sys.exit(0 if report.ok else EXIT_DAMAGE)


def _log_here(options: Options) -> bool:
    """Whether the log the options name is there to open (a PostgreSQL URL is taken to be)."""
    url = str(options.db or os.environ.get("GRAVEN_DB") or DEFAULT_DB)
    if "://" in url and not url.startswith("sqlite://"):
        return True
    return sqlite_path(url).exists()


def _verify_archives_offline(paths: tuple[Path, ...], key: str, as_json: bool) -> NoReturn:
    """Check archives alone, with the log's public key (no database needed); exits."""
    verifier = load_verifier(key)
    checks = [verify_archive(folder, [verifier]) for path in paths for folder in archive_folders(path)]
    ok = all(c.ok for c in checks)
    if as_json:
        sys.stdout.buffer.write(jsonlines.line({
            "ok": ok, "archives": [{"ok": c.ok, "first": c.first, "below": c.below, "message": c.message}
                                   for c in checks],
        }))  # fmt: skip
    for check in checks if not as_json else ():
        (out if check.ok else err).print(literal(("OK  " if check.ok else "TAMPERED  ") + check.message))
    sys.exit(0 if ok else EXIT_DAMAGE)


@cli.command("prove")
@click.argument("index", type=click.IntRange(0, MAX_INDEX), required=False)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the bundle here (default stdout)."
)
@click.option("--state", "target", metavar="TYPE:ID", help="Prove this target's state instead of one entry.")
@click.option("--as-of", help="With --state: the moment (ISO 8601; UTC without an offset).")
@click.option("--at-index", type=click.IntRange(0, MAX_INDEX), help="With --state: replay up to this entry.")
@pass_options
def prove_command(
    options: Options, index: int | None, output: Path | None, target: str | None, as_of: str | None,
    at_index: int | None,
) -> None:  # fmt: skip
    """Write an offline proof bundle: the entry, its inclusion proof and a signed checkpoint.

    With --state TYPE:ID: the target's state as of a moment, and every entry it replays with its
    inclusion proof in one signed checkpoint (`graven verify --bundle` checks it).
    """
    if (index is None) == (target is None):
        raise click.UsageError("give an entry INDEX or --state TYPE:ID (one of them)")
    if target is None and (as_of is not None or at_index is not None):
        raise click.UsageError("--as-of and --at-index go with --state")
    with options.open() as trail:
        bundle = trail.prove(index) if index is not None else trail.prove_state(target or "", as_of=as_of,
                                                                                  at_index=at_index)  # fmt: skip
        data = jsonlines.dumps(bundle, indent=True) + b"\n"
    if output is None:
        sys.stdout.buffer.write(data)
    else:
        output.write_bytes(data)
        err.print(literal(f"wrote {output}"))


@cli.command("checkpoint")
@pass_options
def checkpoint_command(options: Options) -> None:
    """Print the latest signed checkpoint (signing a new one first if the tree grew)."""
    with options.open() as trail:
        note = trail.checkpoint() if trail.signer is not None else trail.latest_checkpoint()
    if note is None:
        raise click.ClickException("the log has no signed checkpoint yet")
    sys.stdout.write(note)
