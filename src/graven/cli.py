"""The ``graven`` command: a thin skin over :class:`graven.Trail`, one library call per command.

Exit codes: 0 success; 1 damage found by ``verify`` (or a bundle that does not hold); 2 bad input
or configuration, reported as one line on stderr without a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from graven import render
from graven.capture.context import actor_of, scope
from graven.cli_options import log_options
from graven.core import jsonlines
from graven.core.bundle import verify_bundle
from graven.core.model import Entry, load_json
from graven.errors import GravenError, ValidationError
from graven.keys import DEFAULT_KEY, load_verifier
from graven.opening import init, open_trail, subject_keys_path
from graven.private_files import log_files, warnings_for
from graven.render import literal
from graven.subject_keys import check_subject
from graven.trail import MAX_INDEX, MAX_PAGE, Trail
from graven.witnessing.cli import witness_group
from graven.witnessing.client import witness_evidence, witness_prefix
from graven.witnessing.keys import load_cosigner_verifier

EXIT_DAMAGE = 1
EXIT_USAGE = 2

# Piped output is not squeezed into 80 columns: tables stay readable in files and CI logs.
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 140
out = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class _Options:
    def __init__(
        self,
        db: str | None,
        signing_key: str | None,
        fingerprint_key: str | None = None,
        subject_keys: str | None = None,
        witnesses: tuple[str, ...] = (),
    ) -> None:
        self.db = db
        self.signing_key = signing_key
        self.fingerprint_key = fingerprint_key
        self.subject_keys = subject_keys
        self.witnesses = witnesses

    def open(self, *, create: bool = False, subject_keys: str | Path | None = None) -> Trail:
        return open_trail(
            self.db, signing_key=self.signing_key, create=create, fingerprint_key=self.fingerprint_key,
            subject_keys=subject_keys or self.subject_keys, witnesses=self.witnesses or None,
        )  # fmt: skip


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--db",
    envvar="GRAVEN_DB",
    metavar="URL",
    help="The log: a path, sqlite:///path or postgresql://...[?schema=NAME] (default .graven/trail.db).",
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
    signing_key: str | None,
    fingerprint_key: str | None,
    subject_keys: str | None,
    witnesses: tuple[str, ...],
) -> None:
    """Graven: a tamper-evident audit trail you can query, prove and verify."""
    witness_urls = tuple(witness_prefix(u, "--witness") for u in witnesses)
    ctx.obj = _Options(db, signing_key, fingerprint_key, subject_keys, witness_urls)


def pass_options(function: Any) -> Any:
    """Hand the command the chosen log, accepting --db and --signing-key after the command too."""
    return log_options(click.make_pass_decorator(_Options)(function))


@cli.command("init")
@pass_options
def init_command(options: _Options) -> None:
    """Create the log and its signing key (key file apart from the database, mode 0600)."""
    trail = init(options.db, signing_key=options.signing_key)
    with trail:
        out.print(literal(f"log       {trail.store.url}"))
        out.print(literal(f"origin    {trail.origin}"))
        out.print(literal(f"verifier  {trail.verifier_key}"))


# --- record -----------------------------------------------------------------------------------


@cli.command("record")
@click.argument("stdin", required=False, metavar="[-]")
@click.option("--action", help="Dotted noun.verb, e.g. user.password.change.")
@click.option("--actor", help="Who: an id, or TYPE:ID (default $GRAVEN_ACTOR).")
@click.option("--actor-name", help="The actor's display name.")
@click.option("--ip", help="The actor's IP address.")
@click.option("--user-agent", help="The actor's user agent.")
@click.option("--target", "targets", multiple=True, metavar="TYPE:ID", help="What it was done to (repeatable).")
@click.option("--outcome", type=click.Choice(["success", "denied", "failure"]), default="success", show_default=True)
@click.option("--reason", help="Why: a ticket, a justification, the denied permission.")
@click.option(
    "--change", "changes", multiple=True, nargs=3, metavar="FIELD OLD NEW", help="A field change (repeatable)."
)
@click.option(
    "--redacted", multiple=True, metavar="FIELD", help="A secret field that changed; its values are not stored."
)
@click.option("--source", default="cli", show_default=True, help="How: web, api, cli, job, db, ...")
@click.option("--tenant", help="The tenant this entry belongs to.")
@click.option(
    "--context",
    "context_items",
    multiple=True,
    metavar="KEY=VALUE",
    help="Context such as request_id=... (repeatable).",
)
@click.option("--metadata", help="Free-form JSON object.")
@click.option("--id", "event_id", help="Event id (idempotency key; default a new UUIDv7).")
@click.option("--occurred-at", help="When it happened (ISO 8601 with timezone; default now).")
@pass_options
def record_command(options: _Options, /, stdin: str | None, **flags: Any) -> None:
    """Record one event from flags, or JSON / JSON Lines from stdin with `graven record -`.

    Prints the index assigned to each event. A batch from stdin is recorded entirely or not at all.
    """
    if stdin is not None:
        if stdin != "-":
            raise click.UsageError(f"unexpected argument {stdin!r}; use - to read events from stdin")
        events = _read_events(sys.stdin.buffer.read())
        with options.open() as trail:
            for index in trail.record_many(events):
                out.print(index)
        return
    if not flags["action"]:
        raise click.UsageError("--action is required (or pass - to read JSON events from stdin)")
    event = _event_from_flags(flags)
    with options.open() as trail:
        out.print(trail.record(event))


def _event_from_flags(flags: dict[str, Any]) -> dict[str, Any]:
    actor_text = flags["actor"] or os.environ.get("GRAVEN_ACTOR")
    if not actor_text:
        raise click.UsageError("--actor is required (or set GRAVEN_ACTOR)")
    actor = actor_of(actor_text) or {}
    for key in ("actor_name", "ip", "user_agent"):
        if flags[key]:
            actor[key.removeprefix("actor_")] = flags[key]
    event: dict[str, Any] = {
        "action": flags["action"],
        "actor": actor,
        "outcome": flags["outcome"],
        "source": flags["source"],
    }
    targets = []
    for text in flags["targets"]:
        kind, sep, ident = text.partition(":")
        if not sep or not kind or not ident:
            raise ValidationError("--target", "must be TYPE:ID, such as customer:c-1042", text)
        targets.append({"type": kind, "id": ident})
    event["targets"] = targets
    changes: list[dict[str, Any]] = [{"field": f, "old": o, "new": n} for f, o, n in flags["changes"]]
    changes += [{"field": f, "redacted": True} for f in flags["redacted"]]
    event["changes"] = changes
    for key in ("reason", "tenant", "occurred_at"):
        if flags[key]:
            event[key] = flags[key]
    if flags["event_id"]:
        event["id"] = flags["event_id"]
    if flags["context_items"]:
        context = {}
        for item in flags["context_items"]:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValidationError("--context", "must be KEY=VALUE", item)
            context[key] = value
        event["context"] = context
    if flags["metadata"]:
        try:
            event["metadata"] = load_json(flags["metadata"])
        except orjson.JSONDecodeError as exc:
            raise ValidationError("--metadata", "must be a JSON object", f"invalid JSON ({exc})") from None
    return event


def _read_events(data: bytes) -> list[Any]:
    text = data.strip()
    if not text:
        raise ValidationError("stdin", "must hold a JSON object, a JSON array or JSON Lines", "nothing")
    try:
        value = load_json(text)
    except orjson.JSONDecodeError:
        value = None
        events = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                events.append(load_json(line))
            except orjson.JSONDecodeError as exc:
                raise ValidationError(
                    f"stdin line {number}", "must be one JSON object per line", f"invalid JSON ({exc})"
                ) from None
        return events
    return value if isinstance(value, list) else [value]


# --- reading ----------------------------------------------------------------------------------


def _filters(function: Any) -> Any:
    options = [
        click.option("--actor", help="Actor id."),
        click.option("--action", help="Action, exact, or a prefix like user.*"),
        click.option("--target", metavar="TYPE:ID", help="Everything done to one target."),
        click.option("--outcome", type=click.Choice(["success", "denied", "failure"])),
        click.option("--source", help="web, api, cli, job, db, ..."),
        click.option("--tenant"),
        click.option("--since", metavar="TIME", help="Occurred at or after (ISO 8601)."),
        click.option("--until", metavar="TIME", help="Occurred before (ISO 8601)."),
        click.option("--text", help="Free text anywhere in the entry (ASCII case-insensitive)."),
        click.option(
            "--after", type=click.IntRange(-1, MAX_INDEX), metavar="INDEX", help="Cursor: entries after this index."
        ),
        click.option(
            "--before", type=click.IntRange(0, MAX_INDEX), metavar="INDEX", help="Cursor: entries before this index."
        ),
        click.option(
            "--limit",
            type=click.IntRange(1),
            help="At most this many entries (default: all for --json, 50 for the table).",
        ),
        click.option("--newest-first", is_flag=True, help="Newest entries first."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@cli.command("log")
@_filters
@click.option("--json", "as_json", is_flag=True, help="JSON Lines: each entry's stored fields plus index.")
@pass_options
def log_command(options: _Options, /, as_json: bool, limit: int | None, **filters: Any) -> None:
    """List entries matching the filters, as a table or as JSON Lines."""
    with options.open() as trail:
        if as_json:
            for entry in _iterate(trail, filters, limit):
                sys.stdout.buffer.write(jsonlines.line(entry.to_json()))
            return
        entries = list(_iterate(trail, filters, limit or 50))
        if not entries:
            err.print("no entries match")
            return
        out.print(render.entries_table(entries))


def _iterate(trail: Trail, filters: dict[str, Any], limit: int | None) -> Iterator[Entry]:
    remaining = limit
    cursor_key = "before" if filters.get("newest_first") else "after"
    while remaining is None or remaining > 0:
        page = trail.query(**filters, limit=min(remaining or MAX_PAGE, MAX_PAGE))
        yield from page.entries
        if remaining is not None:
            remaining -= len(page.entries)
        if page.next_cursor is None:
            return
        filters = {**filters, cursor_key: page.next_cursor}


@cli.command("show")
@click.argument("index", type=click.IntRange(0, MAX_INDEX))
@click.option("--json", "as_json", is_flag=True, help="The entry as JSON.")
@pass_options
def show_command(options: _Options, index: int, as_json: bool) -> None:
    """Print one entry, its context and its field changes as a diff."""
    with options.open() as trail:
        entry = trail.get(index)
    if as_json:
        sys.stdout.buffer.write(jsonlines.dumps(entry.to_json(), indent=True) + b"\n")
        return
    out.print(render.entry_detail(entry))


# --- forgetting -------------------------------------------------------------------------------


@cli.command("forget")
@click.argument("subject", metavar="TYPE:ID")
@click.option("--reason", help="Why: the erasure request, its ticket.")
@click.option("--actor", help="Who forgets: an id, or TYPE:ID (default $GRAVEN_ACTOR).")
@pass_options
def forget_command(options: _Options, subject: str, reason: str | None, actor: str | None) -> None:
    """Erase a data subject's personal values by destroying its keys; the forgetting is recorded.

    Entries are not changed: their sealed values read as [erased] from now on and `graven verify`
    still passes.
    """
    who = actor or os.environ.get("GRAVEN_ACTOR")
    if not who:
        raise click.UsageError("--actor is required (or set GRAVEN_ACTOR)")
    check_subject(subject)
    keys = options.subject_keys or subject_keys_path(Path(options.signing_key or DEFAULT_KEY))
    with options.open(subject_keys=keys) as trail, scope(actor=actor_of(who), source="cli"):
        index = trail.forget(subject, reason=reason)
        destroyed = trail.get(index).get("metadata", {}).get("keys_destroyed", 0)
    held = f"{destroyed} key{'s' if destroyed != 1 else ''} destroyed" if destroyed else "it had no key"
    out.print(literal(f"forgot {subject} ({held}); its sealed values now read as [erased]; recorded as entry {index}"))


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
@pass_options
def verify_command(
    options: _Options,
    as_json: bool,
    key: str | None,
    bundle: Path | None,
    witness_keys: tuple[str, ...],
    witness_urls: tuple[str, ...],
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
    cosigners = [load_cosigner_verifier(k) for k in witness_keys]
    with options.open() as trail:
        seen = witness_evidence(trail, keys=cosigners, urls=witness_urls, log_key=load_verifier(key) if key else None)
        if as_json or not err.is_terminal:
            report = trail.verify(key=key, witnessed=seen)
        else:
            columns = (TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=err, transient=True) as bar:
                task = bar.add_task("verify", total=trail.size)
                report = trail.verify(key=key, witnessed=seen, progress=lambda done: bar.update(task, completed=done))
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


@cli.command("prove")
@click.argument("index", type=click.IntRange(0, MAX_INDEX))
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the bundle here (default stdout)."
)
@pass_options
def prove_command(options: _Options, index: int, output: Path | None) -> None:
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
def key_command(options: _Options) -> None:
    """Print the log's verifier key (public; give it to whoever checks the log)."""
    with options.open() as trail:
        out.print(literal(trail.verifier_key))


@cli.command("checkpoint")
@pass_options
def checkpoint_command(options: _Options) -> None:
    """Print the latest signed checkpoint (signing a new one first if the tree grew)."""
    with options.open() as trail:
        note = trail.checkpoint() if trail.signer is not None else trail.latest_checkpoint()
    if note is None:
        raise click.ClickException("the log has no signed checkpoint yet")
    sys.stdout.write(note)


# --- backup and restore -----------------------------------------------------------------------


@cli.command("backup")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@pass_options
def backup_command(options: _Options, dest: Path) -> None:
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
def restore_command(
    options: _Options, folder: Path, accept_loss: bool, reason: str | None, actor: str | None
) -> None:
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


# --- PostgreSQL -------------------------------------------------------------------------------


@cli.group("pg")
def pg_group() -> None:
    """PostgreSQL logs: roles, and trigger capture of application tables."""


def _pg_target(options: _Options) -> Any:
    from graven.store.pg_connection import parse_url

    if not options.db or not options.db.startswith(("postgresql://", "postgres://")):
        raise click.UsageError("this command needs --db postgresql://... (or GRAVEN_DB) naming the log")
    return parse_url(options.db)


@pg_group.command("grant")
@click.argument("role")
@click.option("--writer", "kind", flag_value="writer", help="May append entries and read them; nothing else.")
@click.option("--reader", "kind", flag_value="reader", help="May read entries; nothing else.")
@pass_options
def pg_grant_command(options: _Options, role: str, kind: str | None) -> None:
    """Give ROLE exactly the rights a writer or a reader of the log needs (run as the log's owner)."""
    from graven.store.postgres import grant

    if kind is None:
        raise click.UsageError("choose --writer or --reader")
    target = _pg_target(options)
    options.open().close()  # the log must exist (opening checks it)
    grant(str(options.db), role, "writer" if kind == "writer" else "reader", schema=target.schema)
    out.print(literal(f"{role}: {kind} of the log in schema {target.schema}"))


def _columns(text: str | None) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()] if text else []


def _capture_change(options: _Options, change: Any) -> Any:
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
def pg_track_command(options: _Options, table: str, exclude: str | None, redact: str | None) -> None:
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
def pg_untrack_command(options: _Options, table: str) -> None:
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
def pg_integrate_command(options: _Options, follow: bool, interval: float) -> None:
    """Move changes captured by triggers into the Merkle log (any recording does this too)."""
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


cli.add_command(witness_group)


from graven.server.commands import keys_group, serve_command, users_group  # noqa: E402 (needs cli above)

cli.add_command(serve_command)
cli.add_command(keys_group)
cli.add_command(users_group)

from graven.forward.cli import forward_group, receive_group  # noqa: E402 (needs cli above)

cli.add_command(forward_group)
cli.add_command(receive_group)


def _fail(line: str) -> None:
    """One error line on stderr, printed literally (it may quote values from the log or the user)."""
    err.print(literal(line))


def main() -> NoReturn:
    """Entry point: run the CLI, turning every expected error into one line and an exit code."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        _fail(f"graven: {exc.format_message()}")
        sys.exit(EXIT_USAGE)
    except click.exceptions.Abort:
        _fail("graven: aborted")
        sys.exit(EXIT_USAGE)
    except GravenError as exc:
        _fail(f"graven: {exc}")
        sys.exit(EXIT_USAGE)
    except BrokenPipeError:
        sys.exit(0)
    except OSError as exc:
        _fail(f"graven: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        _fail("graven: interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug of ours: still one line, never a traceback
        _fail(f"graven: internal error ({type(exc).__name__}: {exc}); please report it")
        sys.exit(70)
    sys.exit(0)
