"""The outbox holds events as json (store migration 6); a log made before keeps capturing into its
jsonb outbox until it is opened by its owner, which converts the waiting events in place."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

import graven
from graven.capture import pg as capture
from graven.store.postgres import migrate, parse_url
from tests.pgserver import Server


def outbox_type(conn: psycopg.Connection[Any], schema: str) -> str:
    row = conn.execute(
        "SELECT atttypid::regtype::text FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'event'",
        (sql.Identifier(schema, "captured").as_string(conn),),
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_a_jsonb_outbox_keeps_capturing_and_is_converted_on_open(pg: Server, tmp_path: Path) -> None:
    url, key = pg.schema_url("outbox"), tmp_path / "signing.key"
    schema = parse_url(url).schema
    table = f"accounts_{secrets.token_hex(3)}"
    with psycopg.connect(parse_url(url).conninfo, autocommit=True) as conn:
        migrate(conn, schema, upto=5)  # the schema an earlier release made
        assert "jsonb" == outbox_type(conn, schema)
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, email text, pw text)").format(sql.Identifier(table)))
        conn.execute(
            sql.SQL("INSERT INTO {} SELECT g, 'u' || g || '@x', 's' FROM generate_series(1, 40) g").format(
                sql.Identifier(table)
            )
        )
        with conn.transaction():
            capture.track(conn, schema, table, redact=["pw"])
        assert "jsonb" == outbox_type(conn, schema)  # tracking does not change an existing outbox
        conn.execute("SELECT set_config('graven.capture_bulk_rows', '2', false)")
        # A big UPDATE (the statement built as JSON text) and a small one (jsonb events), both
        # written into the jsonb outbox.
        conn.execute(sql.SQL("UPDATE {} SET email = upper(email), pw = 't'").format(sql.Identifier(table)))
        conn.execute(sql.SQL("UPDATE {} SET email = 'one@x' WHERE id = 1").format(sql.Identifier(table)))
        waiting = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "captured")))
        assert (42,) == waiting.fetchone()  # audit.track, 40 rows, 1 row
    with graven.init(url, signing_key=key) as trail:  # the owner opens it: migration 6 runs
        with psycopg.connect(parse_url(url).conninfo) as conn:
            assert "json" == outbox_type(conn, schema)
        assert 42 == trail.integrate()
        updates = list(trail.query(action=f"{table}.update", limit=100).entries)
        assert 41 == len(updates)
        seventh = [e.changes for e in updates if e.targets[0]["id"] == "7"]
        assert [[{"field": "email", "old": "u7@x", "new": "U7@X"}, {"field": "pw", "redacted": True}]] == seventh
        assert [{"field": "email", "old": "U1@X", "new": "one@x"}] == updates[-1].changes
        assert all(e.actor["type"] == "system" for e in updates)
        assert trail.verify().ok
