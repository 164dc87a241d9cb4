"""Reaching a PostgreSQL log: URLs, connections, and driver errors turned into the project's own.

A URL's password never appears in a message: :func:`redact` hides it wherever it was written.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from graven.errors import ConfigError, GravenError, ImmutableError, StoreError
from graven.store.postgres_schema import IMMUTABLE_SQLSTATE

DEFAULT_SCHEMA = "graven"
LOCK_TIMEOUT_S = 60
CONNECT_TIMEOUT_S = 10

Conn = psycopg.Connection[TupleRow]
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_SEARCH_PATH_OPTION = re.compile(r"-c\s*search_path\s*=\s*([^\s,]+)")

# --- URLs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PgTarget:
    """Where a log lives: libpq connection string (Graven's own parameters removed) and schema."""

    conninfo: str = field(repr=False)
    schema: str
    display: str
    host: str
    port: str
    dbname: str
    user: str

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}/{self.dbname}"


def redact(url: str) -> str:
    """The URL with its password (in the authority or as a parameter) replaced by ``***``."""
    url = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*:)[^@/?#]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url)


def parse_url(url: str) -> PgTarget:
    """Split a ``postgresql://`` URL into libpq's connection string and the log's schema.

    The schema comes from ``?schema=name``, else from ``options=-c search_path=name``, else it is
    ``graven``. Malformed URLs raise ConfigError naming the URL without its password.
    """
    shown = redact(url)
    base, _, query = url.partition("?")
    params = parse_qsl(query, keep_blank_values=True)
    schema = next((v for k, v in params if k == "schema"), None)
    rest = [(k, v) for k, v in params if k != "schema"]
    conninfo = base + ("?" + urlencode(rest, quote_via=quote) if rest else "")
    try:
        info = conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        detail = str(exc).strip()
        raise ConfigError(f"malformed PostgreSQL URL {shown}: {_hide(detail, url)}") from None
    if schema is None:
        match = _SEARCH_PATH_OPTION.search(str(info.get("options") or ""))
        schema = match.group(1).strip('"') if match else DEFAULT_SCHEMA
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(
            f"malformed PostgreSQL URL {shown}: schema {schema!r} must be a plain identifier "
            "(letters, digits and _, not starting with a digit, at most 63 characters)"
        )
    host = str(info.get("host") or os.environ.get("PGHOST") or "localhost")
    user = str(info.get("user") or os.environ.get("PGUSER") or _os_user())
    return PgTarget(
        conninfo=conninfo, schema=schema, display=shown, host=host,
        port=str(info.get("port") or os.environ.get("PGPORT") or "5432"),
        dbname=str(info.get("dbname") or os.environ.get("PGDATABASE") or user), user=user,
    )  # fmt: skip


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in the environment; libpq would fail the same way
        return "?"


def _hide(text: str, url: str) -> str:
    password = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*:([^@/?#]*)@", url)
    if password and password.group(1):
        text = text.replace(password.group(1), "***")
    return redact(text)


def lock_key(schema: str, purpose: str) -> int:
    """A stable 64-bit advisory lock key for one purpose on one schema (locks are per database)."""
    digest = hashlib.sha256(f"graven:{purpose}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# --- connecting -----------------------------------------------------------------------------------


def connect(target: PgTarget) -> Conn:
    """An autocommit connection with ``search_path`` set to the log's schema and UTF-8 checked."""
    kwargs: dict[str, Any] = {"autocommit": True, "client_encoding": "UTF8"}
    info = conninfo_to_dict(target.conninfo)
    if "connect_timeout" not in info and "PGCONNECT_TIMEOUT" not in os.environ:
        kwargs["connect_timeout"] = CONNECT_TIMEOUT_S
    if "application_name" not in info and "PGAPPNAME" not in os.environ:
        kwargs["application_name"] = "graven"
    try:
        conn = psycopg.connect(target.conninfo, **kwargs)
    except psycopg.Error as exc:
        raise translate_error(exc, target) from exc
    try:
        encoding = conn.info.parameter_status("server_encoding")
        if encoding not in ("UTF8", None):
            raise ConfigError(
                f"database {target.dbname} at {target.host}:{target.port} uses encoding "
                f"{encoding}; Graven needs a UTF8 database (CREATE DATABASE ... ENCODING 'UTF8')"
            )
        conn.execute(
            "SELECT set_config('search_path', %s, false)",
            (sql.Identifier(target.schema).as_string(conn),),
        )
    except psycopg.Error as exc:
        conn.close()
        raise translate_error(exc, target) from exc
    except BaseException:
        conn.close()
        raise
    return conn


# --- errors ----------------------------------------------------------------------------------------


def translate_error(exc: Exception, target: PgTarget | None = None) -> GravenError:
    """Turn a driver error into one of the project's own, with what to do about it."""
    if isinstance(exc, GravenError):
        return exc
    at = f"{target.host}:{target.port}" if target else "the server"
    db = f"{at}/{target.dbname}" if target else "the database"
    user = target.user if target else "the connecting role"
    diag = getattr(exc, "diag", None)
    primary = (diag.message_primary if diag is not None else None) or str(exc).strip()
    message = str(exc)
    state = getattr(exc, "sqlstate", None)
    if state == IMMUTABLE_SQLSTATE or "is append-only" in message:
        return ImmutableError(primary.removeprefix("graven: "))
    if isinstance(exc, pgerrors.InsufficientPrivilege):
        return StoreError(
            f"permission denied for role {user} at {db}: {primary}; a Graven writer needs "
            f"`graven pg grant {user} --writer` (a reader `--reader`), run by the log's owner"
        )
    if isinstance(exc, pgerrors.UniqueViolation):
        table = diag.table_name if diag is not None else None
        if table == "checkpoints":
            return StoreError(f"a checkpoint of that size is already stored at {db}: {primary}")
        return StoreError(f"{db}: refusing to store a row twice ({primary}); is another writer bypassing the lock?")
    if isinstance(exc, pgerrors.UndefinedTable | pgerrors.InvalidSchemaName):
        schema = target.schema if target else DEFAULT_SCHEMA
        return ConfigError(
            f"no log in schema {schema} at {db} ({primary}); create one with "
            f"`graven --db '{target.display if target else 'URL'}' init`"
        )
    if isinstance(exc, pgerrors.LockNotAvailable):
        return StoreError(f"{db}: the log is locked by another writer for over {LOCK_TIMEOUT_S}s")
    if isinstance(exc, pgerrors.ReadOnlySqlTransaction):
        return StoreError(f"{db} is read-only (a standby?): connect to the primary to write ({primary})")
    if isinstance(exc, psycopg.OperationalError) and state is None:
        return _connection_error(message, target, at, db, user)
    if isinstance(exc, pgerrors.AdminShutdown | pgerrors.CrashShutdown | pgerrors.CannotConnectNow):
        return StoreError(f"lost the connection to PostgreSQL at {at} ({primary}); the transaction was rolled back")
    if isinstance(exc, pgerrors.QueryCanceled):
        return StoreError(f"{db}: the statement was cancelled ({primary}); check statement_timeout")
    return StoreError(f"{db}: {primary}")


def _connection_error(message: str, target: PgTarget | None, at: str, db: str, user: str) -> GravenError:
    lowered = message.lower()
    shown = target.display if target else "the URL"
    if "connection refused" in lowered:
        return ConfigError(
            f"cannot connect to PostgreSQL at {at}: connection refused; check that the server is running and "
            "listens on that host and port (listen_addresses, port, firewall)"
        )
    if "password authentication failed" in lowered or ("role" in lowered and "does not exist" in lowered):
        reason = _fatal(message) or "authentication failed"
        return ConfigError(
            f"authentication failed for user {user} at {db} ({reason}); check the user and password in "
            "the URL (or PGPASSWORD, ~/.pgpass) and pg_hba.conf"
        )
    if "no pg_hba.conf entry" in lowered or "no password supplied" in lowered or "authentication" in lowered:
        return ConfigError(
            f"authentication failed for user {user} at {db} ({_fatal(message) or 'refused'}); check the user and "
            "password in the URL (or PGPASSWORD, ~/.pgpass) and pg_hba.conf"
        )
    if "database" in lowered and "does not exist" in lowered:
        return ConfigError(
            f"database {target.dbname if target else ''} does not exist at {at}; create it or fix {shown}"
        )
    if "invalid" in lowered and ("connection option" in lowered or "value" in lowered):
        detail = _hide(message.split("\n")[0].removeprefix("connection failed: "), target.conninfo if target else "")
        return ConfigError(f"malformed PostgreSQL URL {shown}: {detail}")
    if "timeout expired" in lowered or "could not translate host name" in lowered or "no route" in lowered:
        return ConfigError(
            f"cannot connect to PostgreSQL at {at}: {_first_line(message)}; check the host name, network and firewall"
        )
    if "server closed the connection" in lowered or "terminating connection" in lowered or "consuming input" in lowered:
        return StoreError(f"lost the connection to PostgreSQL at {at}; the transaction was rolled back")
    return StoreError(f"PostgreSQL at {at}: {_first_line(message)}")


def _fatal(message: str) -> str | None:
    match = re.search(r"FATAL:\s+(.*)", message)
    return match.group(1).strip() if match else None


def _first_line(message: str) -> str:
    return message.strip().split("\n")[0].removeprefix("connection failed: ")
