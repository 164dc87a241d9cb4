"""The PostgreSQL server the tests use: GRAVEN_TEST_PG, a fresh database per session, dropped after."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from graven.store.pg_connection import redact

PG_URL = os.environ.get("GRAVEN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def with_url(base: str, *, db: str | None = None, user: str | None = None, schema: str | None = None) -> str:
    """``base`` with another database, user or ``?schema=``."""
    parts = urlsplit(base)
    netloc = parts.netloc if user is None else f"{user}@{parts.netloc.rpartition('@')[2]}"
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema" or schema is None]
    if schema is not None:
        query.append(("schema", schema))
    return urlunsplit((parts.scheme, netloc, f"/{db}" if db else parts.path, urlencode(query), ""))


@dataclass
class Server:
    """The session's database on the test server, with helpers that clean up after themselves."""

    admin: psycopg.Connection[Any]  # to the server's maintenance database
    db: psycopg.Connection[Any]  # to the session database
    url: str
    roles: list[str] = field(default_factory=list)

    def schema_url(self, prefix: str = "t") -> str:
        return with_url(self.url, schema=f"{prefix}_{secrets.token_hex(5)}")

    def login_role(self, kind: str) -> str:
        """A new LOGIN role (trust auth lets the tests connect as it); dropped at the end."""
        name = f"graven_test_{kind}_{secrets.token_hex(4)}"
        self.admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        self.roles.append(name)
        return name


def server_session() -> Iterator[Server]:
    """A fresh database on the test server for the whole session; skipped without a server, failed on CI."""
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        reason = f"no PostgreSQL server at {redact(PG_URL)} (set GRAVEN_TEST_PG): {str(exc).strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"graven_test_{secrets.token_hex(6)}"
    admin.execute(sql.SQL("CREATE DATABASE {} ENCODING 'UTF8' TEMPLATE template0").format(sql.Identifier(name)))
    url = with_url(PG_URL, db=name)
    server = Server(admin, psycopg.connect(url, autocommit=True), url)
    try:
        yield server
    finally:
        server.db.close()
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        for role in server.roles:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.close()
