"""``graven witness``: make a witness key, run a witness, push this log's checkpoint to one.

Each command calls one library function; errors are one line (exit 2), and a witness refusing the
log's checkpoint as a rewritten or truncated history exits 1, as damage found by verify does.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import click

from graven.cli.options import log_options
from graven.errors import ConfigError
from graven.render import visible
from graven.witnessing.client import DEFAULT_TIMEOUT, WitnessRefused, push_checkpoint
from graven.witnessing.keys import (
    create_cosigner_key,
    load_cosigner_key,
    load_cosigner_verifier,
    load_log_trust,
)
from graven.witnessing.service import EvidenceLimits, WitnessService, WitnessState

if TYPE_CHECKING:
    from graven.trail import Trail

DEFAULT_PORT = 7380
EXIT_DAMAGE = 1


class _Opens(Protocol):
    """The global options object of the ``graven`` command (it opens the chosen log)."""

    def open(self, *, create: bool = False) -> Trail: ...


@click.group("witness")
def witness_group() -> None:
    """Witnesses (c2sp.org/tlog-witness): run one, or push this log's checkpoints to one."""


@witness_group.command("key")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the new secret key here (mode 0600; never overwritten).")  # fmt: skip
@click.option("--name", help="The witness's name, a schema-less URL such as witness.example.com/w1.")
def key_command(out_path: Path, name: str | None) -> None:
    """Generate a witness cosigner key; print its public verifier key (give it to log verifiers)."""
    key = create_cosigner_key(out_path, name or f"witness.local/{secrets.token_hex(4)}")
    click.echo(key.verifier().to_text())


@witness_group.command("serve")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The witness's secret key file (from `graven witness key`).")  # fmt: skip
@click.option("--state", "state_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory of the newest cosigned checkpoint per log (keep it; never reset it).")  # fmt: skip
@click.option(
    "--log",
    "logs",
    multiple=True,
    required=True,
    metavar="VKEY",
    help="A log's verifier key (`graven key`), a file holding it, or its key history file (`graven key history`); "
    "its name is the origin. Repeatable.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True, help="Port.")
@click.option("--evidence-files", type=click.IntRange(0), default=EvidenceLimits.max_files, show_default=True,
              help="Most files of refused-checkpoint evidence kept in STATE/evidence in all.")  # fmt: skip
@click.option("--evidence-bytes", type=click.IntRange(0), default=EvidenceLimits.max_bytes, show_default=True,
              help="Most bytes of evidence kept in all.")  # fmt: skip
@click.option("--evidence-per-client", type=click.IntRange(0), default=EvidenceLimits.client_files,
              show_default=True, help="Most evidence files one client address adds per hour.")  # fmt: skip
def serve_command(key_path: Path, state_dir: Path, logs: tuple[str, ...], host: str, port: int, evidence_files: int,
                  evidence_bytes: int, evidence_per_client: int) -> None:  # fmt: skip
    """Serve POST /add-checkpoint (and GET /checkpoint, GET /logs) until interrupted.

    A refusal of a checkpoint the log signed (a fork, a bad proof, a rollback) is kept as evidence
    in STATE/evidence, within the --evidence-* limits; beyond them it is logged, not stored.
    """
    try:
        import uvicorn

        from graven.witnessing.app import create_app
    except ImportError as exc:
        raise ConfigError(
            f"`graven witness serve` needs Starlette and uvicorn ({exc}): pip install 'graven[witness]'"
        ) from None
    limits = EvidenceLimits(client_files=evidence_per_client, max_files=evidence_files, max_bytes=evidence_bytes)
    service = WitnessService(
        load_cosigner_key(key_path),
        [load_log_trust(v) for v in logs],
        WitnessState(state_dir),
        evidence=limits,
    )
    origins = ", ".join(sorted(service.logs))
    click.echo(visible(f"witness {service.verifier_key} for {origins} on http://{host}:{port}"), err=True)
    uvicorn.run(create_app(service), host=host, port=port, log_level="info")


@witness_group.command("push")
@click.argument("url")
@click.option("--witness-key", "witness_keys", multiple=True, metavar="VKEY",
              help="Accept only cosignatures by this witness key (text or file); repeatable.")  # fmt: skip
@click.option("--timeout", type=click.FloatRange(0.1, 600), default=DEFAULT_TIMEOUT, show_default=True,
              help="Seconds to wait for the witness.")  # fmt: skip
@log_options
@click.pass_obj
def push_command(options: _Opens, url: str, witness_keys: tuple[str, ...], timeout: float) -> None:
    """Push the log's current checkpoint to the witness at URL; print its cosignature line(s).

    The cosigned checkpoint is kept beside the signing key (signing.key.cosigned). Exits 1 when
    the witness refuses the checkpoint as a rewritten or truncated history, 2 on other errors.
    """
    keys = [load_cosigner_verifier(k) for k in witness_keys]
    with options.open() as trail:
        if trail.signer is not None:
            trail.checkpoint()
        try:
            result = push_checkpoint(trail, url, keys=keys, timeout=timeout)
        except WitnessRefused as exc:
            click.echo(visible(f"graven: {exc}"), err=True)
            sys.exit(EXIT_DAMAGE)
    sys.stdout.write("".join(visible(line) + "\n" for line in result.lines.split("\n") if line))
    state = "cosigned" if result.fresh else "already cosigned"
    click.echo(visible(f"{state}: {result.checkpoint.origin} at size {result.size} by {result.url}"), err=True)
