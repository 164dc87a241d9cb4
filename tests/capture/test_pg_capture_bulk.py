"""Big UPDATEs are captured by a statement built for the table; its events equal the general form's."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from graven.capture import pg as capture
from tests.pgserver import Server

COLUMNS = """
    id bigint PRIMARY KEY, email text, "Mixed Case" text, credit numeric(12, 2), flags jsonb, raw json,
    tags text[], seen timestamptz, active boolean, password_hash text, updated_at timestamptz DEFAULT now()
"""
ROWS = """
INSERT INTO {} (id, email, "Mixed Case", credit, flags, raw, tags, seen, active, password_hash)
SELECT g, 'user' || g || '@example.com', CASE WHEN g % 3 = 0 THEN NULL ELSE 'm' || g END, g * 1.5,
       jsonb_build_object('vip', g % 2 = 0), '{{"a": 1}}'::json, ARRAY['t' || g], '2026-01-01T00:00:00Z',
       CASE WHEN g % 4 = 0 THEN NULL ELSE g % 2 = 0 END, 'h' || g
  FROM generate_series(1, 60) AS g
"""
STATEMENTS = [
    "UPDATE {} SET credit = credit * 2",  # one column, every row
    "UPDATE {} SET updated_at = now()",  # only an excluded column: no events
    "UPDATE {} SET password_hash = password_hash || 'x', email = upper(email) WHERE id % 2 = 0",
    'UPDATE {} SET "Mixed Case" = NULL, active = NOT active WHERE id > 10',  # to NULL, NULL stays NULL
    "UPDATE {} SET flags = flags || '{{\"tier\": 2}}', tags = tags || ARRAY['more'], raw = '[1, 2]'",
    "UPDATE {} SET credit = credit",  # nothing changes
    "UPDATE {} SET id = id + 1000 WHERE id <= 40",  # keys change: old image and new image
    "ALTER TABLE {} ADD COLUMN note text",
    "UPDATE {} SET note = 'n' || id, seen = seen + interval '1 day'",
    "ALTER TABLE {} DROP COLUMN tags",
    "UPDATE {} SET email = email || '.org' WHERE id > 1000",
    r'ALTER TABLE {} ADD COLUMN "q""uote\back ü" text',  # a name JSON must escape
    r"""UPDATE {} SET "q""uote\back ü" = E'tab\t "x" \\ ü\n' || id WHERE id > 1020""",
]


@pytest.fixture
def schema(pg: Server) -> Iterator[str]:
    name = f"bulk_{secrets.token_hex(4)}"
    pg.db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield name
    pg.db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def captured_after(pg: Server, schema: str, table: str, bulk_rows: int, statements: list[str]) -> list[Any]:
    """The events the statements leave in the outbox, with what differs between runs taken out."""
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("SELECT set_config('graven.capture_bulk_rows', %s, false)", (str(bulk_rows),))
        for statement in statements:
            conn.execute(sql.SQL(statement).format(sql.Identifier(table)))
        rows = conn.execute(
            sql.SQL("SELECT event FROM {}.captured WHERE event ->> 'action' LIKE %s ORDER BY seq").format(
                sql.Identifier(schema)
            ),
            (f"{table}.%",),
        ).fetchall()
    events = []
    for (event,) in rows:
        for varying in ("id", "occurred_at"):
            event.pop(varying)
        event["context"].pop("txid")
        event["action"] = event["action"].removeprefix(table)
        event["targets"][0]["type"] = "t"
        events.append(event)
    # Sorted by content: key order within a change is not part of it (jsonb and JSON text differ).
    return sorted(events, key=lambda e: (e["action"], e["targets"][0]["id"], json.dumps(e["changes"], sort_keys=True)))


def two_tables(pg: Server, schema: str, pk: str = "", columns: str = COLUMNS) -> tuple[str, str]:
    names = (f"small_{secrets.token_hex(3)}", f"big_{secrets.token_hex(3)}")
    conn = pg.db
    for name in names:
        conn.execute(sql.SQL("CREATE TABLE {} (" + columns + pk + ")").format(sql.Identifier(name)))
        conn.execute(sql.SQL(ROWS).format(sql.Identifier(name)))
        capture.track(conn, schema, name, exclude=["updated_at"], redact=["password_hash"])
    return names


class TestBulkUpdateCapture:
    """The built statement (for big UPDATEs) and the general form give the very same events."""

    def test_same_events_as_the_general_form(self, pg: Server, schema: str) -> None:
        """Every kind of change, NULLs, jsonb/json/arrays, quoted names, key changes and DDL alike."""
        small, big = two_tables(pg, schema)
        general = captured_after(pg, schema, small, 1_000_000, STATEMENTS)
        built = captured_after(pg, schema, big, 1, STATEMENTS)
        assert len(general) > 300
        assert general == built
        redacted = [c for e in built for c in e["changes"] if c["field"] == "password_hash"]
        assert redacted
        assert all({"field": "password_hash", "redacted": True} == c for c in redacted)
        moved = [e for e in built if e["targets"][0]["id"] == "1001"]
        assert any("new" in c and "old" not in c for e in moved for c in e["changes"])

    def test_composite_key(self, pg: Server, schema: str) -> None:
        """A two-column key is written as the general form writes it ("a,b")."""
        columns = COLUMNS.replace("id bigint PRIMARY KEY", "id bigint, region text DEFAULT 'eu'")
        small, big = two_tables(pg, schema, ", PRIMARY KEY (region, id)", columns)
        statements = ["UPDATE {} SET credit = credit + 1", "UPDATE {} SET region = 'us' WHERE id < 5"]
        general = captured_after(pg, schema, small, 1_000_000, statements)
        built = captured_after(pg, schema, big, 1, statements)
        assert general == built
        assert {"eu,1", "us,1"} <= {e["targets"][0]["id"] for e in built}

    def test_threshold_setting(self, pg: Server, schema: str) -> None:
        """graven.capture_bulk_rows picks the path; an UPDATE of fewer rows uses the general form."""
        small, _ = two_tables(pg, schema)
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("SELECT set_config('graven.capture_bulk_rows', '1', false)")
            conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN x int").format(sql.Identifier(small)))
            # The built statement reads pg_attribute: a broken builder would fail this UPDATE.
            conn.execute(sql.SQL("UPDATE {} SET x = 1 WHERE id = 1").format(sql.Identifier(small)))
        events = captured_after(pg, schema, small, 1_000_000, [])
        assert [{"field": "x", "old": None, "new": 1}] in [e["changes"] for e in events]

    @pytest.mark.parametrize("setting", ["0", "-5", "many", "99999999999"])
    def test_malformed_threshold_never_fails_the_update(self, pg: Server, schema: str, setting: str) -> None:
        """A malformed or out-of-range graven.capture_bulk_rows still captures (the default applies)."""
        small, _ = two_tables(pg, schema)
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("SELECT set_config('graven.capture_bulk_rows', %s, false)", (setting,))
            conn.execute(sql.SQL("UPDATE {} SET credit = 7 WHERE id <= 3").format(sql.Identifier(small)))
        events = captured_after(pg, schema, small, 1_000_000, [])
        assert 3 == sum(1 for e in events if e["action"] == ".update")

    def test_built_statement_computes_each_value_once(self, pg: Server, schema: str) -> None:
        """The built statement's subqueries stay fenced: each column's jsonb is computed once per row
        and the changes array once (pulled up, the planner repeated them in every CASE branch and in
        both the filter and the output, which cost about 40 % of a bulk UPDATE)."""
        small, _ = two_tables(pg, schema)
        with psycopg.connect(pg.url) as conn:
            built = conn.execute(
                sql.SQL(
                    "SELECT {}.capture_update_sql(%s::regclass, '{{updated_at}}', '{{password_hash}}', '{{id}}')"
                ).format(sql.Identifier(schema)),
                (small,),
            ).fetchone()
            assert built is not None
            # Stand-ins for the trigger's transition tables, so the statement can be planned here.
            for name in ("graven_old_rows", "graven_new_rows"):
                conn.execute(sql.SQL("CREATE TEMP TABLE {} AS SELECT * FROM {}").format(
                    sql.Identifier(name), sql.Identifier(small)))  # fmt: skip
            plan = "\n".join(
                row[0]
                for row in conn.execute("EXPLAIN (VERBOSE, COSTS OFF) " + built[0].replace("$1", "'{\"k\": '::text"))
            )
            conn.rollback()
        assert plan.count("array_to_string") == 1, plan  # pulled up: in the filter and in the output
        outputs = [line.strip() for line in plan.splitlines() if line.strip().startswith("Output:")]
        # Each image's scan yields the jsonb of the columns compared as jsonb (pulled up, it yields
        # the raw columns); text, numbers and times are compared as they are, the key is text.
        for image in ("r", "r_1"):
            assert any(f", to_jsonb({image}.flags), " in line for line in outputs), plan
            assert any(f"({image}.id)::text, {image}.id, {image}.email, " in line for line in outputs), plan

    def test_text_compared_bytewise_whatever_the_collation(self, pg: Server, schema: str) -> None:
        """A change the column's collation calls equal (case only, here) is still a change, as in
        the general form, which compares jsonb values."""
        collation = f"ci_{secrets.token_hex(3)}"
        pg.db.execute(
            sql.SQL("CREATE COLLATION {} (provider = icu, locale = 'und-u-ks-level2', deterministic = false)").format(
                sql.Identifier(collation)
            )
        )
        columns = COLUMNS.replace("email text", f'email text COLLATE "{collation}"')
        small, big = two_tables(pg, schema, columns=columns)
        statements = ["UPDATE {} SET email = upper(email) WHERE id <= 10"]
        general = captured_after(pg, schema, small, 1_000_000, statements)
        built = captured_after(pg, schema, big, 1, statements)
        assert 10 == len(built)
        assert general == built
        assert {"field": "email", "old": "user3@example.com", "new": "USER3@EXAMPLE.COM"} in [
            c for e in built for c in e["changes"]
        ]
        pg.db.execute(sql.SQL("DROP TABLE {}, {}").format(sql.Identifier(small), sql.Identifier(big)))
        pg.db.execute(sql.SQL("DROP COLLATION {}").format(sql.Identifier(collation)))
