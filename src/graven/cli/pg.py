"""``graven pg``: PostgreSQL roles, trigger capture and integration."""

from __future__ import annotations

from typing import Any

import click

from graven.cli.base import Options, cli, out, pass_options
from graven.render import literal

# --- PostgreSQL -------------------------------------------------------------------------------


@cli.group("pg")
def pg_group() -> None:
    """PostgreSQL logs: roles, and trigger capture of application tables."""


def _pg_target(options: Options) -> Any:
    from graven.store.pg_connection import parse_url

    if not options.db or not options.db.startswith(("postgresql://", "postgres://")):
        raise click.UsageError("this command needs --db postgresql://... (or GRAVEN_DB) naming the log")
    return parse_url(options.log_url())


@pg_group.command("grant")
@click.argument("role")
@click.option("--writer", "kind", flag_value="writer", help="May append entries and read them; nothing else.")
@click.option("--reader", "kind", flag_value="reader", help="May read entries; nothing else.")
@pass_options
def pg_grant_command(options: Options, role: str, kind: str | None) -> None:
    """Give ROLE exactly the rights a writer or a reader of the log needs (run as the log's owner)."""
    from graven.store.postgres import grant

    if kind is None:
        raise click.UsageError("choose --writer or --reader")
    target = _pg_target(options)
    options.open().close()  # the log must exist (opening checks it)
    grant(options.log_url(), role, "writer" if kind == "writer" else "reader", schema=target.schema)
    out.print(literal(f"{role}: {kind} of the log in schema {target.schema}"))


@pg_group.command("grant-record")
@click.argument("role")
@click.option("--revoke", is_flag=True, help="Take the right back.")
@pass_options
def pg_grant_record_command(options: Options, role: str, revoke: bool) -> None:
    """Let ROLE record events into the log from its own transactions (run as the log's owner).

    ROLE gets EXECUTE on the log's capture_record function (and USAGE on its schema), nothing
    else: events written through it (graven.capture.pg.record, or SQLAlchemy tracking with
    same_database=True) commit with the application's transaction and enter the log at its next
    write, `graven pg integrate --follow` or trail.integrate(). Installs the function if the log
    predates it.
    """
    import psycopg

    from graven.capture import pg
    from graven.store.pg_connection import connect, translate_error

    target = _pg_target(options)
    options.open().close()  # the log must exist (opening checks it)
    conn = connect(target)
    try:
        with conn.transaction():
            pg.grant_record(conn, target.schema, role, revoke=revoke)
    except psycopg.Error as exc:
        raise translate_error(exc, target) from exc
    finally:
        conn.close()
    if revoke:
        out.print(literal(f"{role}: may no longer record events into the log in schema {target.schema}"))
    else:
        out.print(literal(f"{role}: may record events in its own transactions into the log in schema {target.schema}"))


def _columns(text: str | None) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()] if text else []


def _capture_change(options: Options, change: Any) -> Any:
    """Run ``change(conn, schema)`` in one transaction on the log's database, then integrate it."""
    import psycopg

    from graven.store.pg_connection import connect, translate_error

    target = _pg_target(options)
    with options.open() as trail:
        conn = connect(target)
        conn.execute("SET search_path TO DEFAULT")  # table names resolve as the application writes them
        try:
            with conn.transaction():
                result = change(conn, target.schema)
        except psycopg.Error as exc:
            raise translate_error(exc, target) from exc
        finally:
            conn.close()
        trail.integrate()
    return result


@pg_group.command("track")
@click.argument("table")
@click.option("--exclude", metavar="COL,...", help="Columns whose changes are not recorded at all.")
@click.option("--redact", metavar="COL,...", help="Columns recorded as changed, never with their values.")
@pass_options
def pg_track_command(options: Options, table: str, exclude: str | None, redact: str | None) -> None:
    """Record every INSERT, UPDATE, DELETE and TRUNCATE of TABLE, in the same transaction."""
    from graven.capture import pg

    tracked = _capture_change(
        options, lambda conn, schema: pg.track(conn, schema, table, exclude=_columns(exclude), redact=_columns(redact))
    )
    key = ",".join(tracked.primary_key)
    out.print(
        literal(
            f"tracking {tracked.table} (key {key}; excluded: {', '.join(tracked.excluded) or 'none'}; "
            f"redacted: {', '.join(tracked.redacted) or 'none'})"
        )
    )


@pg_group.command("untrack")
@click.argument("table")
@pass_options
def pg_untrack_command(options: Options, table: str) -> None:
    """Stop recording changes of TABLE (the untracking itself is recorded)."""
    from graven.capture import pg

    name = _capture_change(options, lambda conn, schema: pg.untrack(conn, schema, table))
    out.print(literal(f"no longer tracking {name}"))


@pg_group.command("integrate")
@click.option("--follow", is_flag=True, help="Keep integrating as changes are captured (Ctrl-C stops).")
@click.option(
    "--interval",
    type=click.FloatRange(0.05, 3600),
    default=1.0,
    show_default=True,
    help="Seconds between polls with --follow.",
)
@pass_options
def pg_integrate_command(options: Options, follow: bool, interval: float) -> None:
    """Move captured changes and events recorded in application transactions into the Merkle log.

    Any recording to the log does this too.
    """
    import time

    _pg_target(options)
    with options.open() as trail:
        while True:
            moved = trail.integrate()
            if moved or not follow:
                out.print(f"integrated {moved} captured change{'s' if moved != 1 else ''}; log size {trail.size}")
            if not follow:
                return
            time.sleep(interval)
