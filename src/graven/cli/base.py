"""The ``graven`` command group, its shared options and its two consoles (stdout, stderr).

Every command module under :mod:`graven.cli` registers itself on :data:`cli`; the commands stay thin,
one library call each.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from graven.cli.options import log_options
from graven.keys import DEFAULT_DB, DEFAULT_KEY
from graven.opening import open_trail
from graven.render import literal
from graven.store.logs import path_for, select_log
from graven.trail import Trail
from graven.witnessing.client import witness_prefix

EXIT_DAMAGE = 1
EXIT_USAGE = 2

# Piped output is not squeezed into 80 columns: tables stay readable in files and CI logs.
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 140
out = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Options:
    def __init__(
        self,
        db: str | None,
        signing_key: str | None,
        fingerprint_key: str | None = None,
        subject_keys: str | None = None,
        witnesses: tuple[str, ...] = (),
        log: str | None = None,
    ) -> None:
        self.db = db
        self.log = log
        self.signing_key = signing_key
        self.fingerprint_key = fingerprint_key
        self.subject_keys = subject_keys
        self.witnesses = witnesses

    def log_url(self) -> str:
        """The selected log's store URL (``--db`` with ``--log`` or ``?log=`` applied)."""
        return select_log(str(self.db or os.environ.get("GRAVEN_DB") or DEFAULT_DB), self.log)[0]

    def key_path(self) -> Path:
        """The selected log's signing key file (see :mod:`graven.store.logs`)."""
        log = select_log(str(self.db or os.environ.get("GRAVEN_DB") or DEFAULT_DB), self.log)[1]
        return path_for(Path(self.signing_key or DEFAULT_KEY), log)

    def open(self, *, create: bool = False, subject_keys: str | Path | None = None) -> Trail:
        return open_trail(
            self.db, signing_key=self.signing_key, create=create, fingerprint_key=self.fingerprint_key,
            subject_keys=subject_keys or self.subject_keys, witnesses=self.witnesses or None, log=self.log,
        )  # fmt: skip


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--db",
    envvar="GRAVEN_DB",
    metavar="URL",
    help="The log: a path, sqlite:///path or postgresql://...[?schema=NAME] (default .graven/trail.db).",
)
@click.option(
    "--log",
    envvar="GRAVEN_LOG",
    metavar="NAME",
    help="One of several independent logs in the database (e.g. a tenant); default the database's own log.",
)
@click.option(
    "--signing-key",
    envvar="GRAVEN_SIGNING_KEY",
    metavar="FILE",
    help="The log's signing key file (default .graven/signing.key).",
)
@click.option(
    "--fingerprint-key",
    envvar="GRAVEN_FINGERPRINT_KEY",
    metavar="FILE",
    help="A secret file (16+ bytes, kept outside the database) keying fingerprints of redacted values.",
)
@click.option(
    "--subject-keys",
    envvar="GRAVEN_SUBJECT_KEYS",
    metavar="FILE",
    help="The key store of personal data, apart from the log (default subject-keys.db beside the signing key).",
)
@click.option(
    "--witness",
    "witnesses",
    multiple=True,
    metavar="URL",
    help="Push each new checkpoint to this tlog-witness (repeatable; default $GRAVEN_WITNESSES, comma separated).",
)
@click.version_option(package_name="graven")
@click.pass_context
def cli(
    ctx: click.Context,
    db: str | None,
    log: str | None,
    signing_key: str | None,
    fingerprint_key: str | None,
    subject_keys: str | None,
    witnesses: tuple[str, ...],
) -> None:
    """Graven: a tamper-evident audit trail you can query, prove and verify."""
    witness_urls = tuple(witness_prefix(u, "--witness") for u in witnesses)
    ctx.obj = Options(db, signing_key, fingerprint_key, subject_keys, witness_urls, log or None)


def pass_options(function: Any) -> Any:
    """Hand the command the chosen log, accepting --db and --signing-key after the command too."""
    return log_options(click.make_pass_decorator(Options)(function))


def fail(line: str) -> None:
    """One error line on stderr, printed literally (it may quote values from the log or the user)."""
    err.print(literal(line))
