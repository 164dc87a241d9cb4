"""Several independent logs in one database: a log name maps to a namespace the stores already have.

A log is selected with ``log="tenant-a"`` or ``?log=tenant-a`` on the URL. Each log is a store of
its own, so it has its own tree, origin, checkpoints, signing key, accounts and subject keys, and
one log's proofs can never reveal another's entries:

- PostgreSQL: the schema ``<schema>_log_<name>`` (``-`` written ``_``) beside the log's base schema
  (``?schema=``, default ``graven``) in the same database;
- SQLite: the file ``<stem>.<name><suffix>`` beside the database file (``trail.db`` ->
  ``trail.tenant-a.db``), so a tenant can be copied, exported or removed as one file.

Files kept beside the signing key follow the same rule: ``signing.key`` -> ``signing.tenant-a.key``
(and so its kept checkpoint, key history and ``subject-keys.tenant-a.db``).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from graven.errors import ValidationError
from graven.store.pg_connection import DEFAULT_SCHEMA

LOG_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
_RULE = "must be 1 to 40 lowercase letters, digits or '-', starting with a letter or digit"


def check_log(name: object) -> str:
    """A valid log name, or a :class:`ValidationError` naming the field ``log``."""
    if not isinstance(name, str) or LOG_NAME.fullmatch(name) is None:
        raise ValidationError("log", _RULE, name)
    return name


def logs_from_text(text: str) -> list[str]:
    """Log names from ``a,b`` (each checked; repeats dropped, order kept)."""
    return list(dict.fromkeys(check_log(name.strip()) for name in text.split(",") if name.strip()))


def split_log(url: str) -> tuple[str, str | None]:
    """The URL without its ``log`` parameter, and that parameter (checked; None when absent)."""
    if "?" not in url:
        return url, None
    base, _, query = url.partition("?")
    params = parse_qsl(query, keep_blank_values=True)
    logs = [v for k, v in params if k == "log"]
    if not logs:
        return url, None
    if len(logs) > 1:
        raise ValidationError("log", "must be given once in the URL", ", ".join(logs))
    rest = [(k, v) for k, v in params if k != "log"]
    return (f"{base}?{urlencode(rest)}" if rest else base), check_log(logs[0])


def select_log(url: str, log: str | None) -> tuple[str, str | None]:
    """The store URL of the log selected by ``log`` or ``?log=`` (the two MUST agree), and its name."""
    base, named = split_log(url)
    if log is not None:
        check_log(log)
        if named is not None and named != log:
            raise ValidationError("log", f"is {log!r} but the URL selects ?log={named}", log)
        named = log
    if named is None:
        return base, None
    if base.startswith(("postgresql://", "postgres://")):
        return _pg_url(base, named), named
    return str(path_for(_sqlite_file(base), named)), named


def path_for(path: Path, log: str | None) -> Path:
    """``path`` with the log's name before its suffix (``signing.key`` -> ``signing.tenant-a.key``)."""
    if log is None:
        return path
    return path.with_name(f"{path.stem}.{log}{path.suffix}" if path.suffix else f"{path.name}.{log}")


def _sqlite_file(url: str) -> Path:
    from graven.store import sqlite_path

    return sqlite_path(url)


def _pg_url(url: str, log: str) -> str:
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    base = next((v for k, v in params if k == "schema"), DEFAULT_SCHEMA)
    schema = f"{base}_log_{log.replace('-', '_')}"
    if len(schema) > 63:
        raise ValidationError("log", f"with the schema {base!r} makes a schema name over 63 characters", log)
    query = [(k, v) for k, v in params if k != "schema"] + [("schema", schema)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


__all__ = ["LOG_NAME", "check_log", "logs_from_text", "path_for", "select_log", "split_log"]
