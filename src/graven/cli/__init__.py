"""The ``graven`` command: a thin skin over :class:`graven.Trail`, one library call per command.

Exit codes: 0 success; 1 damage found by ``verify`` (or a bundle that does not hold); 2 bad input
or configuration, reported as one line on stderr without a traceback.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from graven.cli import archive, backups, demo, entries, keys, pg, proofs, sourcing  # noqa: F401 (each registers its commands)
from graven.cli.base import EXIT_USAGE, cli, fail
from graven.cli.forward import forward_group, receive_group
from graven.cli.serve import keys_group, serve_command, users_group
from graven.cli.witness import witness_group
from graven.errors import GravenError

for _group in (witness_group, serve_command, keys_group, users_group, forward_group, receive_group):
    cli.add_command(_group)

__all__ = ["cli", "main"]


def main() -> NoReturn:
    """Entry point: run the CLI, turning every expected error into one line and an exit code."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        fail(f"graven: {exc.format_message()}")
        sys.exit(EXIT_USAGE)
    except click.exceptions.Abort:
        fail("graven: aborted")
        sys.exit(EXIT_USAGE)
    except GravenError as exc:
        fail(f"graven: {exc}")
        sys.exit(EXIT_USAGE)
    except BrokenPipeError:
        sys.exit(0)
    except OSError as exc:
        fail(f"graven: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        fail("graven: interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug of ours: still one line, never a traceback
        fail(f"graven: internal error ({type(exc).__name__}: {exc}); please report it")
        sys.exit(70)
    sys.exit(0)
