"""PostgreSQL trigger capture: every row change of a tracked table becomes an audit event.

``track(conn, schema, table)`` installs AFTER INSERT/UPDATE/DELETE row triggers and an AFTER
TRUNCATE statement trigger. In the same transaction as the change they write one event per row
(bulk statements and raw SQL included) into ``<schema>.captured``: the table, the primary key,
the operation and, for an update, only the columns that changed with old and new values; redacted
columns are marked changed without values; excluded columns are ignored. The actor and context
come from the transaction-local setting ``graven.context`` (see :func:`context`), so they work
behind poolers in transaction mode; with none set, the database role is recorded as a ``system``
actor. The sequencer later moves captured events into the Merkle log in one transaction with
their removal from ``captured`` (see :func:`claim`), so each captured change becomes exactly one
entry.

MUST: a captured event is written in the transaction of the change it describes (a rollback
leaves no trace; a commit leaves the event). MUST NOT: store the value of a redacted column.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from graven.errors import ConfigError

CONTEXT_SETTING = "graven.context"


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


def install_sql(schema: str) -> sql.Composed:
    """The outbox table and the trigger functions, created if absent (idempotent)."""
    return sql.SQL(
        """
CREATE TABLE IF NOT EXISTS {schema}.captured (
    seq        bigserial PRIMARY KEY,
    event      jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- Targets name a table as it is usually written: bare in the public schema, qualified elsewhere.
CREATE OR REPLACE FUNCTION {schema}.table_label(table_schema text, table_name text)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT CASE WHEN table_schema = 'public' THEN table_name ELSE table_schema || '.' || table_name END
$fn$;
-- Runs as the log's owner, so application roles need no rights on the capture table.
CREATE OR REPLACE FUNCTION {schema}.capture_event(action text, table_name text, target_id text, changes jsonb)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    ctx jsonb := coalesce(nullif(current_setting('graven.context', true), ''), '{{}}')::jsonb;
    actor jsonb := ctx -> 'actor';
    event jsonb;
BEGIN
    IF actor IS NULL OR jsonb_typeof(actor) <> 'object' THEN
        actor := jsonb_build_object('type', 'system', 'id', session_user::text,
                                    'name', 'database role ' || session_user::text);
    END IF;
    event := jsonb_build_object(
        'id', gen_random_uuid()::text,
        'occurred_at', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'actor', actor,
        'action', action,
        'targets', jsonb_build_array(jsonb_build_object('type', table_name, 'id', target_id)),
        'changes', changes,
        'source', coalesce(ctx ->> 'source', 'db'),
        'context', coalesce(ctx -> 'context', '{{}}'::jsonb)
                   || jsonb_build_object('txid', txid_current()::text)
    );
    IF ctx ? 'reason' THEN event := event || jsonb_build_object('reason', ctx -> 'reason'); END IF;
    IF ctx ? 'tenant' THEN event := event || jsonb_build_object('tenant', ctx -> 'tenant'); END IF;
    INSERT INTO {schema}.captured (event) VALUES (event);
END
$fn$;
-- The trigger functions run as the log's owner (the application's roles need no rights in the
-- log's schema); the actor without a context is the role that connected (session_user).
CREATE OR REPLACE FUNCTION {schema}.capture_row() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    excluded text[] := TG_ARGV[0]::text[];
    redacted text[] := TG_ARGV[1]::text[];
    pk text[] := TG_ARGV[2]::text[];
    old_row jsonb := CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN to_jsonb(OLD) END;
    new_row jsonb := CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN to_jsonb(NEW) END;
    key_row jsonb := coalesce(new_row, old_row);
    changes jsonb := '[]'::jsonb;
    col text;
    target_id text;
BEGIN
    SELECT string_agg(key_row ->> c, ',' ORDER BY ord) INTO target_id FROM unnest(pk) WITH ORDINALITY AS u(c, ord);
    FOR col IN SELECT k FROM jsonb_object_keys(key_row) AS k ORDER BY k LOOP
        CONTINUE WHEN col = ANY(excluded);
        CONTINUE WHEN TG_OP = 'UPDATE' AND (old_row -> col) IS NOT DISTINCT FROM (new_row -> col);
        IF col = ANY(redacted) THEN
            changes := changes || jsonb_build_array(jsonb_build_object('field', col, 'redacted', true));
        ELSIF TG_OP = 'INSERT' THEN
            changes := changes || jsonb_build_array(jsonb_build_object('field', col, 'new', new_row -> col));
        ELSIF TG_OP = 'DELETE' THEN
            changes := changes || jsonb_build_array(jsonb_build_object('field', col, 'old', old_row -> col));
        ELSE
            changes := changes || jsonb_build_array(
                jsonb_build_object('field', col, 'old', old_row -> col, 'new', new_row -> col));
        END IF;
    END LOOP;
    IF TG_OP = 'UPDATE' AND changes = '[]'::jsonb THEN
        RETURN NULL;  -- nothing tracked changed
    END IF;
    PERFORM {schema}.capture_event(TG_TABLE_NAME || '.' || lower(TG_OP),
                                   {schema}.table_label(TG_TABLE_SCHEMA, TG_TABLE_NAME), target_id, changes);
    RETURN NULL;
END
$fn$;
CREATE OR REPLACE FUNCTION {schema}.capture_truncate() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    PERFORM {schema}.capture_event(TG_TABLE_NAME || '.truncate',
                                   {schema}.table_label(TG_TABLE_SCHEMA, TG_TABLE_NAME), '*', '[]'::jsonb);
    RETURN NULL;
END
$fn$;
REVOKE ALL ON FUNCTION {schema}.capture_event(text, text, text, jsonb) FROM PUBLIC;
"""
    ).format(schema=_ident(schema))


@dataclass(frozen=True, slots=True)
class Tracked:
    """What a track call installed."""

    table: str
    primary_key: tuple[str, ...]
    excluded: tuple[str, ...]
    redacted: tuple[str, ...]


def _trigger_names(table: str) -> tuple[str, str]:
    base = "graven_capture_" + table.replace(".", "_")
    return base[:55] + "_row", base[:55] + "_truncate"


def table_info(conn: psycopg.Connection[Any], table: str) -> tuple[str, list[str], list[str]]:
    """The table's qualified name, its columns and its primary key columns (in key order)."""
    row = conn.execute("SELECT to_regclass(%s)::oid, to_regclass(%s)::text", (table, table)).fetchone()
    if row is None or row[0] is None:
        raise ConfigError(f"no table {table!r} in this database (check the name and the search_path)")
    oid, _ = row
    qualified = conn.execute(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relkind FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s",
        (oid,),
    ).fetchone()
    assert qualified is not None
    if qualified[1] not in ("r", "p"):
        raise ConfigError(f"{table} is not a table (triggers can only track tables)")
    columns = [
        r[0]
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (oid,),
        )
    ]
    pk = [
        r[0]
        for r in conn.execute(
            "SELECT a.attname FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.ord",
            (oid,),
        )
    ]
    return str(qualified[0]), columns, pk


def track(
    conn: psycopg.Connection[Any],
    schema: str,
    table: str,
    *,
    exclude: Sequence[str] = (),
    redact: Sequence[str] = (),
) -> Tracked:
    """Install capture triggers on ``table`` (replacing earlier ones) in the caller's transaction."""
    qualified, columns, pk = table_info(conn, table)
    if not pk:
        raise ConfigError(f"{qualified} has no primary key; add one so each change can name its row")
    for option, names in (("--exclude", exclude), ("--redact", redact)):
        unknown = [c for c in names if c not in columns]
        if unknown:
            raise ConfigError(f"{option}: {qualified} has no column {unknown[0]!r} (columns: {', '.join(columns)})")
    overlap = set(exclude) & set(redact)
    if overlap:
        raise ConfigError(f"column {sorted(overlap)[0]!r} cannot be both excluded and redacted")
    conn.execute(install_sql(schema))
    row_trigger, truncate_trigger = _trigger_names(qualified)
    target = sql.SQL(qualified)
    args = [sql.Literal("{" + ",".join(json.dumps(c) for c in names) + "}") for names in (exclude, redact, pk)]
    conn.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(_ident(row_trigger), target))
    conn.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(_ident(truncate_trigger), target))
    conn.execute(
        sql.SQL(
            "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} "
            "FOR EACH ROW EXECUTE FUNCTION {}.capture_row({}, {}, {})"
        ).format(_ident(row_trigger), target, _ident(schema), *args)
    )
    conn.execute(
        sql.SQL(
            "CREATE TRIGGER {} AFTER TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}.capture_truncate()"
        ).format(_ident(truncate_trigger), target, _ident(schema))
    )
    changes = [
        {"field": "primary_key", "new": pk},
        {"field": "excluded", "new": list(exclude)},
        {"field": "redacted", "new": list(redact)},
    ]
    _record(conn, schema, "audit.track", qualified, changes)
    return Tracked(qualified, tuple(pk), tuple(exclude), tuple(redact))


def untrack(conn: psycopg.Connection[Any], schema: str, table: str) -> str:
    """Remove the capture triggers from ``table`` (recording that); returns its qualified name."""
    qualified, _, _ = table_info(conn, table)
    conn.execute(install_sql(schema))
    for trigger in _trigger_names(qualified):
        conn.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(_ident(trigger), sql.SQL(qualified)))
    _record(conn, schema, "audit.untrack", qualified, [])
    return qualified


def _record(conn: psycopg.Connection[Any], schema: str, action: str, table: str, changes: list[dict[str, Any]]) -> None:
    conn.execute(
        sql.SQL("SELECT {}.capture_event(%s, 'table', %s, %s::jsonb)").format(_ident(schema)),
        (action, table, json.dumps(changes)),
    )


def tracked_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """Tables that currently carry Graven's capture triggers."""
    rows = conn.execute(
        "SELECT DISTINCT tgrelid::regclass::text FROM pg_trigger WHERE tgname LIKE 'graven_capture_%%_row' ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


@contextmanager
def context(
    conn: psycopg.Connection[Any],
    *,
    actor: str | dict[str, Any] | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    reason: str | None = None,
    source: str | None = None,
    tenant: str | None = None,
    **context_fields: Any,
) -> Iterator[None]:
    """Who and why for the changes the block makes through ``conn``, transaction-locally.

    Uses ``set_config(..., true)``, so it holds until the end of the current transaction and is
    safe behind connection poolers in transaction mode. Outside an explicit transaction the block
    runs in one.
    """
    actor_obj: dict[str, Any] | None
    if isinstance(actor, str):
        kind, sep, ident = actor.partition(":")
        actor_obj = (
            {"type": kind, "id": ident}
            if sep and kind in ("user", "service", "system")
            else {"type": "user", "id": actor}
        )
    else:
        actor_obj = dict(actor) if actor is not None else None
    if actor_obj is not None:
        for key, value in (("ip", ip), ("user_agent", user_agent)):
            if value is not None:
                actor_obj[key] = value
    payload: dict[str, Any] = {"context": {k: v for k, v in context_fields.items() if v is not None}}
    if actor_obj is not None:
        payload["actor"] = actor_obj
    for key, text in (("reason", reason), ("source", source), ("tenant", tenant)):
        if text is not None:
            payload[key] = text
    with conn.transaction():
        conn.execute("SELECT set_config(%s, %s, true)", (CONTEXT_SETTING, json.dumps(payload)))
        yield
