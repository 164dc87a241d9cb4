"""``graven serve``, ``graven keys ...`` and ``graven users ...``: thin skins over the server package.

They read the CLI's global ``--db``, ``--signing-key`` and ``--fingerprint-key`` (also accepted
after the command). The server secret (``--server-secret``, ``GRAVEN_SERVER_SECRET``; default
``server.secret`` beside the signing key) is created on first use, mode 0600.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import orjson

from graven.cli.options import log_options
from graven.context import actor_of
from graven.core import jsonlines
from graven.keys import DEFAULT_KEY
from graven.render import visible
from graven.server import credentials
from graven.server.accounts import ROLES, open_accounts
from graven.server.accounts.service import Accounts, By, key_json, user_json
from graven.trail import Trail
from graven.witnessing.client import witness_prefix, witnesses_from_env


def _root() -> Any:
    """The CLI's options object (db, signing_key, fingerprint_key, open())."""
    return click.get_current_context().find_root().obj


def _log_options(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--server-secret", envvar="GRAVEN_SERVER_SECRET", metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        help="The server secret keying API keys and sessions (default: server.secret beside the signing key).",
    )(log_options(function))  # fmt: skip


def _secret(path: Path | None) -> bytes:
    if path is None:
        signing = _root().signing_key or os.environ.get("GRAVEN_SIGNING_KEY") or DEFAULT_KEY
        path = credentials.default_secret_path(signing)
    return credentials.load_secret(path)


@contextmanager
def _accounts(secret_path: Path | None) -> Iterator[Accounts]:
    trail: Trail = _root().open()
    with trail:
        store = open_accounts(trail.store)
        try:
            yield Accounts(trail, store, _secret(secret_path))
        finally:
            store.close()


def _by() -> By:
    """Who runs the command: $GRAVEN_ACTOR, else the operating-system user."""
    named = actor_of(os.environ.get("GRAVEN_ACTOR") or None)
    return By(named or {"type": "user", "id": getpass.getuser()}, "cli")


def _say(line: str, *, err: bool = False) -> None:
    """Print one line of text that may hold names from the store, with control characters made visible."""
    click.echo(visible(line), err=err)


def _emit_json(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        sys.stdout.buffer.write(jsonlines.line(row))


# --- serve ------------------------------------------------------------------------------------


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--max-body", type=click.IntRange(1024), default=16 * 1024 * 1024, show_default=True,
              help="Largest request body, in bytes (413 beyond).")  # fmt: skip
@click.option("--max-batch", type=click.IntRange(1, 10_000), default=1000, show_default=True,
              help="Most events in one ingest request.")  # fmt: skip
@click.option("--auth-failures", type=click.IntRange(1), default=10, show_default=True,
              help="Failed authentications allowed per key, user and IP in a window (then 429).")  # fmt: skip
@click.option("--auth-window", type=click.FloatRange(1), default=300.0, show_default=True,
              help="The window, in seconds.")  # fmt: skip
@click.option("--session-hours", type=click.FloatRange(0.01, 720), default=8.0, show_default=True,
              help="How long a sign-in lasts.")  # fmt: skip
@click.option("--trusted-proxy", "proxies", multiple=True, metavar="CIDR",
              help="A proxy whose X-Forwarded-For/-Proto is believed (repeatable).")  # fmt: skip
@click.option("--access-log/--no-access-log", default=False, help="Log every request (uvicorn's access log).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes (failure counters are per worker).")  # fmt: skip
@click.option("--witness", "witnesses", multiple=True, metavar="URL",
              help="Push each new checkpoint to this tlog-witness (repeatable; adds to the global --witness "
                   "and $GRAVEN_WITNESSES).")  # fmt: skip
@click.option("--forward", "forwards", multiple=True, metavar="NAME",
              help="Also run this forwarder of graven.toml in the serving process (repeatable).")  # fmt: skip
@_log_options
def serve_command(host: str, port: int, max_body: int, max_batch: int, auth_failures: int, auth_window: float,
                  session_hours: float, proxies: tuple[str, ...], access_log: bool, workers: int,
                  witnesses: tuple[str, ...], server_secret: Path | None,
                  forwards: tuple[str, ...] = ()) -> None:  # fmt: skip
    """Serve the log over HTTP: the web UI at / (sign in at /login), and the API at /api/v1.

    The API ingests, queries, proves, exports, tails and verifies. Each worker process opens the log
    itself; several may write it at once (indices stay gapless), and each pushes the checkpoints it
    signs to every witness.
    """
    try:
        import uvicorn

        from graven.server.app import SETTINGS_ENV
        from graven.server.supervision import SUPERVISOR_ENV
    except ImportError as exc:
        raise click.ClickException(
            f"graven serve needs the server extra ({exc.name} is missing): pip install 'graven[server]'"
        ) from None
    root = _root()
    urls = dict.fromkeys([*root.witnesses, *(witness_prefix(u, "--witness") for u in witnesses)])
    if urls and not root.witnesses:
        urls = dict.fromkeys([*witnesses_from_env(), *urls])  # --witness here adds to $GRAVEN_WITNESSES
    root.witnesses = tuple(urls)
    secret_path = server_secret or credentials.default_secret_path(
        root.signing_key or os.environ.get("GRAVEN_SIGNING_KEY") or DEFAULT_KEY
    )
    credentials.load_secret(secret_path)  # made now if absent, so workers never race to create it
    trail: Trail = root.open()  # fails here, as one line, when the log or its key is wrong
    url = trail.store.url
    trail.close()
    settings = {"secret_path": str(secret_path.resolve()), "max_body": max_body, "max_batch": max_batch,
                "auth_failure_limit": auth_failures, "auth_failure_window": auth_window,
                "session_seconds": session_hours * 3600, "trusted_proxies": list(proxies)}  # fmt: skip
    for name, value in (("GRAVEN_DB", root.db), ("GRAVEN_SIGNING_KEY", root.signing_key),
                        ("GRAVEN_FINGERPRINT_KEY", root.fingerprint_key),
                        ("GRAVEN_SUBJECT_KEYS", root.subject_keys)):  # fmt: skip
        if value:
            os.environ[name] = str(value)
    if root.witnesses:
        os.environ["GRAVEN_WITNESSES"] = " ".join(root.witnesses)  # each worker's trail pushes to them
    os.environ[SETTINGS_ENV] = orjson.dumps(settings).decode()
    if workers > 1:
        os.environ[SUPERVISOR_ENV] = str(os.getpid())  # the workers watch this process and end with it
    else:
        os.environ.pop(SUPERVISOR_ENV, None)
    from graven.forward.runner import start_named

    background = start_named(root.open, forwards)  # each sink checked before serving; None without --forward
    pushing = f", pushing checkpoints to {', '.join(root.witnesses)}" if root.witnesses else ""
    _say(f"graven: serving {url} at http://{host}:{port}/api/v1 (web UI at http://{host}:{port}/) with "
               f"{workers} worker{'s' if workers > 1 else ''}{pushing}"
               f"{', forwarding to ' + ', '.join(forwards) if forwards else ''} (Ctrl-C stops)", err=True)  # fmt: skip
    try:
        uvicorn.run("graven.server.app:app_from_environment", factory=True, host=host, port=port, workers=workers,
                    log_level="warning", access_log=access_log, proxy_headers=bool(proxies),
                    forwarded_allow_ips=",".join(proxies) or None)  # fmt: skip
    finally:
        if background is not None:
            background.stop()


# --- keys -------------------------------------------------------------------------------------


@click.group("keys")
def keys_group() -> None:
    """API keys for services and scripts (sent as `Authorization: Bearer <key>`)."""


@keys_group.command("create")
@click.option("--name", required=True, help="What uses the key, e.g. billing-service.")
@click.option("--role", type=click.Choice(ROLES), required=True, help="writer, reader, auditor or admin.")
@_log_options
def keys_create(name: str, role: str, server_secret: Path | None) -> None:
    """Create a key and print it once (only a keyed hash of it is stored)."""
    with _accounts(server_secret) as accounts:
        key, text = accounts.create_key(name, role, by=_by())
    _say(f"created API key {key.id} ({key.name}, {key.role}); it is shown only this once:", err=True)
    click.echo(text)


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per key.")
@_log_options
def keys_list(as_json: bool, server_secret: Path | None) -> None:
    """List keys: id, name, role, when created and by whom, when revoked."""
    with _accounts(server_secret) as accounts:
        keys = accounts.keys()
    if as_json:
        _emit_json([key_json(k) for k in keys])
        return
    if not keys:
        _say("no API keys", err=True)
    for k in keys:
        state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
        _say(f"{k.id}  {k.name:<24} {k.role:<8} created {k.created_at} by {k.created_by or '?'}  {state}")


@keys_group.command("revoke")
@click.argument("key")
@_log_options
def keys_revoke(key: str, server_secret: Path | None) -> None:
    """Revoke the active key with this NAME or ID; it stops working at once."""
    with _accounts(server_secret) as accounts:
        revoked = accounts.revoke_key(key, by=_by())
    _say(f"revoked API key {revoked.id} ({revoked.name})")


# --- users ------------------------------------------------------------------------------------


def _password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@click.group("users")
def users_group() -> None:
    """People who sign in to the web UI and API with a password."""


@users_group.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="writer, reader, auditor or admin.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@_log_options
def users_add(name: str, role: str, password_stdin: bool, server_secret: Path | None) -> None:
    """Add a user; the password comes from a prompt (or stdin) and is stored as an scrypt hash."""
    password = _password(password_stdin)
    with _accounts(server_secret) as accounts:
        user = accounts.add_user(name, role, password, by=_by())
    _say(f"added user {user.name} ({user.role})")


@users_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per user.")
@_log_options
def users_list(as_json: bool, server_secret: Path | None) -> None:
    """List users: name, role, when created and by whom, when disabled."""
    with _accounts(server_secret) as accounts:
        users = accounts.users()
    if as_json:
        _emit_json([user_json(u) for u in users])
        return
    if not users:
        _say("no users", err=True)
    for u in users:
        state = f"disabled {u.disabled_at}" if u.disabled_at else "active"
        _say(f"{u.name:<24} {u.role:<8} created {u.created_at} by {u.created_by or '?'}  {state}")


@users_group.command("disable")
@click.argument("name")
@_log_options
def users_disable(name: str, server_secret: Path | None) -> None:
    """Disable a user and end their sessions (the name stays taken)."""
    with _accounts(server_secret) as accounts:
        accounts.disable_user(name, by=_by())
    _say(f"disabled user {name}")


@users_group.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@_log_options
def users_passwd(name: str, password_stdin: bool, server_secret: Path | None) -> None:
    """Set a user's password (ends their sessions)."""
    password = _password(password_stdin)
    with _accounts(server_secret) as accounts:
        accounts.set_password(name, password, by=_by())
    _say(f"password of {name} changed")
