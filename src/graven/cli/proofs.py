"""``graven verify``, ``prove``, ``key`` and ``checkpoint``: checking the log and proving entries."""

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
from graven.errors import ValidationError
from graven.keys import DEFAULT_DB, DEFAULT_KEY, load_verifier
from graven.private_files import log_files, warnings_for
from graven.render import literal
from graven.store import sqlite_path
from graven.trail import MAX_INDEX
from graven.witnessing.client import witness_evidence
from graven.witnessing.keys import load_cosigner_verifier

# --- proving and verifying --------------------------------------------------------------------


@cli.command("verify")
@click.option("--json", "as_json", is_flag=True, help='Print {"ok", "first_bad_index", "kind", "message", ...}.')
@click.option("--key", metavar="KEY", help="Trust only this verifier key (its text form, or a file holding it).")
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
@pass_options
def verify_command(
    options: Options,
    as_json: bool,
    key: str | None,
    bundle: Path | None,
    witness_keys: tuple[str, ...],
    witness_urls: tuple[str, ...],
    archives: tuple[Path, ...],
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
        verifier = load_verifier(key)
        try:
            data = orjson.loads(bundle.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ValidationError("--bundle", "must be a readable JSON proof bundle", f"{bundle} ({exc})") from None
        check = verify_bundle(data, [verifier])
        if as_json:
            sys.stdout.buffer.write(jsonlines.line({"ok": check.ok, "index": check.index, "message": check.message}))
        else:
            (out if check.ok else err).print(literal(("OK: " if check.ok else "FAILED: ") + check.message))
        sys.exit(0 if check.ok else EXIT_DAMAGE)
    if archives and key is not None and not _log_here(options):
        _verify_archives_offline(archives, key, as_json)
    cosigners = [load_cosigner_verifier(k) for k in witness_keys]
    with options.open() as trail:
        seen = witness_evidence(trail, keys=cosigners, urls=witness_urls, log_key=load_verifier(key) if key else None)
        if as_json or not err.is_terminal:
            report = trail.verify(key=key, witnessed=seen, archives=archives)
        else:
            columns = (TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=err, transient=True) as bar:
                task = bar.add_task("verify", total=trail.size)
                report = trail.verify(
                    key=key, witnessed=seen, archives=archives, progress=lambda done: bar.update(task, completed=done)
                )
        warning = trail.kept_warning()
    if not as_json and warning:
        err.print(Text("warning: ") + literal(warning))
    store_path = getattr(trail.store, "path", None)  # a SQLite log; PostgreSQL has no files here
    key_path = Path(options.signing_key or DEFAULT_KEY) if store_path is not None else None
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
@click.argument("index", type=click.IntRange(0, MAX_INDEX))
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the bundle here (default stdout)."
)
@pass_options
def prove_command(options: Options, index: int, output: Path | None) -> None:
    """Write an offline proof bundle: the entry, its inclusion proof and a signed checkpoint."""
    with options.open() as trail:
        data = jsonlines.dumps(trail.prove(index), indent=True) + b"\n"
    if output is None:
        sys.stdout.buffer.write(data)
    else:
        output.write_bytes(data)
        err.print(literal(f"wrote {output}"))


@cli.command("key")
@pass_options
def key_command(options: Options) -> None:
    """Print the log's verifier key (public; give it to whoever checks the log)."""
    with options.open() as trail:
        out.print(literal(trail.verifier_key))


@cli.command("checkpoint")
@pass_options
def checkpoint_command(options: Options) -> None:
    """Print the latest signed checkpoint (signing a new one first if the tree grew)."""
    with options.open() as trail:
        note = trail.checkpoint() if trail.signer is not None else trail.latest_checkpoint()
    if note is None:
        raise click.ClickException("the log has no signed checkpoint yet")
    sys.stdout.write(note)
