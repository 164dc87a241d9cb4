"""``graven demo``: the web demo, or the story told in the terminal."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from graven.cli.base import cli, out


@cli.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".graven/demo"),
    show_default=True,
    help="Where the demo log and key go (recreated each run).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="The address the web demo listens on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Its port (0: any free port)."
)
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="Another host name the demo may be reached by (checked against Host). Repeatable.")  # fmt: skip
@click.option("--story", is_flag=True, help="Tell the locked-out-customer story in the terminal instead.")
def demo_command(directory: Path, host: str, port: int, allowed_hosts: tuple[str, ...], story: bool) -> None:
    """Start the web demo (try it, investigate, how it works) on an embedded SQLite log and print its URL."""
    if story:
        from graven import demo

        sys.exit(demo.run(directory, out))
    from graven.web.serve import serve_demo

    serve_demo(directory, host, port, click.echo, allowed_hosts)
