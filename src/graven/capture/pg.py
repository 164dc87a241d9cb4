"""PostgreSQL trigger capture: every row change of a tracked table becomes an audit event.

``track(conn, schema, table)`` installs AFTER INSERT, UPDATE and DELETE statement triggers with
transition tables and an AFTER TRUNCATE trigger. In the same transaction as the change they write one event per row
(bulk statements and raw SQL included) into ``<schema>.captured``: the table, the primary key,
the operation and, for an update, only the columns that changed with old and new values; redacted
columns are marked changed without values; excluded columns are ignored. The actor and context
come from the transaction-local setting ``graven.context`` (see :func:`context`), so they work
behind poolers in transaction mode; with none set, the database role is recorded as a ``system``
actor. The sequencer later moves captured events into the Merkle log in one transaction with
their removal from ``captured`` (see :func:`claim`), so each captured change becomes exactly one
entry.

Events the application states itself (not row changes) can take the same road: :func:`record`
makes the event exactly as ``trail.record()`` would and writes it into ``captured`` through the
SECURITY DEFINER function ``capture_record`` in the application's own transaction, so the
application's commit is the only commit. EXECUTE on it is revoked from PUBLIC and given to a role
by :func:`grant_record` (``graven pg grant-record ROLE``); that role gets no right on any table.

MUST: a captured event is written in the transaction of the change it describes (a rollback
leaves no trace; a commit leaves the event). MUST NOT: store the value of a redacted column.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
from psycopg import sql

from graven.capture.outbox import jsonb_problem
from graven.context import actor_of
from graven.errors import ConfigError

if TYPE_CHECKING:
    from graven.trail import Trail

CONTEXT_SETTING = "graven.context"

log = logging.getLogger(__name__)


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


def install_sql(schema: str) -> sql.Composed:
    """The outbox table and the trigger functions, created or replaced (idempotent)."""
    return sql.SQL(
        """
-- The event is json (text), not jsonb: the sequencer parses it anyway, and a big UPDATE writes it
-- as text without a jsonb round trip. A log made by an earlier release has jsonb here until store
-- migration 6 converts it; every insert below works with either (json and jsonb cast on assignment).
CREATE TABLE IF NOT EXISTS {schema}.captured (
    seq        bigserial PRIMARY KEY,
    event      json NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- What every event of the current statement shares: when, actor, source, context, reason, tenant.
-- Runs as the log's owner (SECURITY DEFINER), so application roles need no rights in this schema;
-- without a context the actor is the role that connected (session_user).
CREATE OR REPLACE FUNCTION {schema}.capture_base() RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    ctx jsonb := coalesce(nullif(current_setting('graven.context', true), ''), '{{}}')::jsonb;
    actor jsonb := ctx -> 'actor';
    base jsonb;
BEGIN
    IF actor IS NULL OR jsonb_typeof(actor) <> 'object' THEN
        actor := jsonb_build_object('type', 'system', 'id', session_user::text,
                                    'name', 'database role ' || session_user::text);
    END IF;
    base := jsonb_build_object(
        'occurred_at', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'actor', actor,
        'source', coalesce(ctx ->> 'source', 'db'),
        'context', coalesce(ctx -> 'context', '{{}}'::jsonb) || jsonb_build_object('txid', txid_current()::text)
    );
    IF ctx ? 'reason' THEN base := base || jsonb_build_object('reason', ctx -> 'reason'); END IF;
    IF ctx ? 'tenant' THEN base := base || jsonb_build_object('tenant', ctx -> 'tenant'); END IF;
    RETURN base;
END
$fn$;
CREATE OR REPLACE FUNCTION {schema}.capture_key(r jsonb, pk text[]) RETURNS text LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE WHEN cardinality(pk) = 1 THEN r ->> pk[1]
                ELSE (SELECT string_agg(r ->> c, ',' ORDER BY ord) FROM unnest(pk) WITH ORDINALITY AS u(c, ord)) END
$fn$;
-- One INSERT per statement: every row of a bulk statement becomes one event, set-based.
CREATE OR REPLACE FUNCTION {schema}.capture_statement() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    excluded text[] := TG_ARGV[0]::text[];
    redacted text[] := TG_ARGV[1]::text[];
    pk text[] := TG_ARGV[2]::text[];
    label text := CASE WHEN TG_TABLE_SCHEMA = 'public' THEN TG_TABLE_NAME
                       ELSE TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME END;
    action text := TG_TABLE_NAME || '.' || lower(TG_OP);
    base jsonb := {schema}.capture_base();
    -- From this many rows an UPDATE takes the built statement; a malformed setting counts as unset.
    bulk_text text := current_setting('graven.capture_bulk_rows', true);
    bulk_rows int := CASE WHEN bulk_text ~ '^[0-9]{{1,9}}$' THEN greatest(bulk_text::int, 1) ELSE 32 END;
BEGIN
    -- The changed fields are computed inline (a LATERAL subquery), not by a function call per row.
    IF TG_OP = 'INSERT' THEN
        INSERT INTO {schema}.captured (event)
        SELECT {schema}.capture_event(base, action, label, {schema}.capture_key(n, pk), c.changes)
          FROM (SELECT to_jsonb(r) AS n FROM graven_new_rows r) AS b
          CROSS JOIN LATERAL (
              SELECT coalesce(jsonb_agg(CASE WHEN k = ANY(redacted)
                                             THEN jsonb_build_object('field', k, 'redacted', true)
                                             ELSE jsonb_build_object('field', k, 'new', b.n -> k) END ORDER BY k),
                              '[]'::jsonb) AS changes
                FROM jsonb_object_keys(b.n) AS k WHERE NOT k = ANY(excluded)) AS c;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO {schema}.captured (event)
        SELECT {schema}.capture_event(base, action, label, {schema}.capture_key(o, pk), c.changes)
          FROM (SELECT to_jsonb(r) AS o FROM graven_old_rows r) AS a
          CROSS JOIN LATERAL (
              SELECT coalesce(jsonb_agg(CASE WHEN k = ANY(redacted)
                                             THEN jsonb_build_object('field', k, 'redacted', true)
                                             ELSE jsonb_build_object('field', k, 'old', a.o -> k) END ORDER BY k),
                              '[]'::jsonb) AS changes
                FROM jsonb_object_keys(a.o) AS k WHERE NOT k = ANY(excluded)) AS c;
    ELSIF EXISTS (SELECT 1 FROM graven_new_rows OFFSET bulk_rows - 1) THEN
        -- A big UPDATE: one statement written for this table's columns (no subquery per row),
        -- giving exactly the events of the general form below.
        -- What every event of the statement starts with, as JSON text: base, action and the target
        -- type, up to the target id (base is a non-empty object, so its last character is its brace).
        EXECUTE {schema}.capture_update_sql(TG_RELID, excluded, redacted, pk)
          USING left(base::text, -1) || ', "action": ' || to_json(action)::text
                || ', "targets": [{{"type": ' || to_json(label)::text || ', "id": ';
    ELSE
        -- Old and new images pair up by primary key; a row whose key changed shows as its old
        -- image (all fields old) and its new image (all fields new).
        INSERT INTO {schema}.captured (event)
        SELECT {schema}.capture_event(base, action, label, coalesce(b.key, a.key), c.changes)
          FROM (SELECT x.o, {schema}.capture_key(x.o, pk) AS key
                  FROM (SELECT to_jsonb(r) AS o FROM graven_old_rows r) AS x) AS a
          FULL JOIN (SELECT y.n, {schema}.capture_key(y.n, pk) AS key
                       FROM (SELECT to_jsonb(r) AS n FROM graven_new_rows r) AS y) AS b ON a.key = b.key
          CROSS JOIN LATERAL (
              SELECT coalesce(jsonb_agg(
                         CASE WHEN k = ANY(redacted) THEN jsonb_build_object('field', k, 'redacted', true)
                              WHEN a.o IS NULL THEN jsonb_build_object('field', k, 'new', b.n -> k)
                              WHEN b.n IS NULL THEN jsonb_build_object('field', k, 'old', a.o -> k)
                              ELSE jsonb_build_object('field', k, 'old', a.o -> k, 'new', b.n -> k) END ORDER BY k),
                         '[]'::jsonb) AS changes
                FROM jsonb_object_keys(coalesce(b.n, a.o)) AS k
               WHERE NOT k = ANY(excluded)
                 AND (a.o IS NULL OR b.n IS NULL OR (a.o -> k) IS DISTINCT FROM (b.n -> k))) AS c
         WHERE c.changes <> '[]'::jsonb;
    END IF;
    RETURN NULL;
END
$fn$;
-- The UPDATE capture of capture_statement as one statement naming the table's columns: rows pair
-- up by primary key text, and each column that is not excluded (in name order) adds a change when
-- its value differs (as jsonb would), so a bulk UPDATE costs a few expressions per row instead of a
-- subquery. Built afresh for each big statement, so added and dropped columns are always seen. The
-- OFFSET 0 fences keep the planner from pulling the subqueries up (it would evaluate each column's
-- value again in every CASE branch). Each event is written as JSON text: ``$1``, the statement's
-- shared start (see capture_statement), then the target id, a fresh id and the changes, each change
-- the text of the object capture_statement's general form builds (no jsonb is built per row).
CREATE OR REPLACE FUNCTION {schema}.capture_update_sql(rel oid, excluded text[], redacted text[], pk text[])
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    WITH typed AS (
        -- raw: a type whose equality holds exactly when the jsonb values are equal (text compared
        -- bytewise, COLLATE "C"): compared as it is, and turned into jsonb only once it changed.
        SELECT a.attname, a.atttypid,
               a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'bool'::regtype, 'uuid'::regtype,
                              'numeric'::regtype, 'date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype,
                              'text'::regtype, 'varchar'::regtype) AS raw,
               CASE WHEN a.atttypid IN ('text'::regtype, 'varchar'::regtype) THEN ' COLLATE "C"' ELSE '' END AS coll
          FROM pg_attribute a
         WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
    ), cols AS (
        -- The value's JSON text (null for NULL), and the change's opening '{{"field": "name"'.
        SELECT t.attname::text AS k, quote_ident(t.attname) AS q, t.c, t.raw,
               quote_literal('{{"field": ' || to_json(t.attname::text)::text) AS l,
               format(CASE WHEN t.raw THEN 'coalesce(to_jsonb(o.%s)::text, ''null'')'
                           ELSE 'coalesce(o.%s::text, ''null'')' END, t.c) AS ov,
               format(CASE WHEN t.raw THEN 'coalesce(to_jsonb(n.%s)::text, ''null'')'
                           ELSE 'coalesce(n.%s::text, ''null'')' END, t.c) AS nv,
               format('o.%1$s%2$s IS DISTINCT FROM n.%1$s%2$s', t.c, t.coll) AS diff
          FROM (SELECT typed.*, 'c' || row_number() OVER () AS c FROM typed
                 WHERE NOT typed.attname::text = ANY(excluded)) AS t
    ), keys AS (
        -- A key of these types has the very text of its jsonb value (which the general form uses).
        SELECT string_agg(CASE WHEN t.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype,
                                                   'text'::regtype, 'varchar'::regtype, 'uuid'::regtype)
                               THEN format('r.%s::text', quote_ident(u.c))
                               ELSE format('to_jsonb(r.%s) #>> ''{{}}''', quote_ident(u.c)) END,
                          ', ' ORDER BY ord) AS parts
          FROM unnest(pk) WITH ORDINALITY AS u(c, ord)
          LEFT JOIN typed AS t ON t.attname::text = u.c
    )
    SELECT format(
        'INSERT INTO %1$s.captured (event) '
        'SELECT ($1 || to_json(c.k)::text || ''}}], "id": "'' || gen_random_uuid() || ''", "changes": ['' '
        '|| c.changes || '']}}'')::json '
        'FROM (SELECT coalesce(n.k, o.k) AS k, array_to_string(ARRAY[%3$s]::text[], '', '') AS changes '
        'FROM (SELECT %2$s AS k%4$s FROM graven_old_rows r OFFSET 0) AS o '
        'FULL JOIN (SELECT %2$s AS k%4$s FROM graven_new_rows r OFFSET 0) AS n ON o.k = n.k OFFSET 0) AS c '
        'WHERE c.changes <> ''''',
        quote_ident({schema_text}),
        CASE WHEN cardinality(pk) = 1 THEN (SELECT parts FROM keys)
             ELSE format('concat_ws('','', %s)', (SELECT parts FROM keys)) END,
        coalesce((SELECT string_agg(
            CASE WHEN c.k = ANY(redacted) THEN format(
                     'CASE WHEN o.k IS NULL OR n.k IS NULL OR %1$s THEN %2$s || '', "redacted": true}}'' END',
                     c.diff, c.l)
                 ELSE format(
                     'CASE WHEN o.k IS NULL THEN %2$s || '', "new": '' || %4$s || ''}}'' '
                     'WHEN n.k IS NULL THEN %2$s || '', "old": '' || %3$s || ''}}'' '
                     'WHEN %1$s THEN %2$s || '', "old": '' || %3$s || '', "new": '' || %4$s || ''}}'' END',
                     c.diff, c.l, c.ov, c.nv)
            END, ', ' ORDER BY c.k COLLATE "default") FROM cols AS c), 'NULL'),
        (SELECT string_agg(CASE WHEN c.raw THEN format(', r.%s AS %s', c.q, c.c)
                                ELSE format(', to_jsonb(r.%s) AS %s', c.q, c.c) END, '') FROM cols AS c))
$fn$;
-- One event; ``base`` carries actor, context and, for a statement's rows, one occurred_at.
CREATE OR REPLACE FUNCTION {schema}.capture_event(base jsonb, action text, label text, target_id text, changes jsonb)
RETURNS jsonb LANGUAGE sql VOLATILE AS $fn$
    SELECT base || jsonb_build_object(
        'id', gen_random_uuid()::text,
        'action', action,
        'targets', jsonb_build_array(jsonb_build_object('type', label, 'id', target_id)),
        'changes', changes)
$fn$;
CREATE OR REPLACE FUNCTION {schema}.capture_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    INSERT INTO {schema}.captured (event)
    VALUES ({schema}.capture_event({schema}.capture_base(), TG_TABLE_NAME || '.truncate',
            CASE WHEN TG_TABLE_SCHEMA = 'public' THEN TG_TABLE_NAME ELSE TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME END,
            '*', '[]'::jsonb));
    RETURN NULL;
END
$fn$;
-- Track and untrack record themselves through this one, as the owner.
CREATE OR REPLACE FUNCTION {schema}.capture_note(action text, label text, target_id text, changes jsonb)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
    INSERT INTO {schema}.captured (event)
    VALUES ({schema}.capture_event({schema}.capture_base(), action, label, target_id, changes))
$fn$;
REVOKE ALL ON FUNCTION {schema}.capture_note(text, text, text, jsonb) FROM PUBLIC;
"""
    ).format(schema=_ident(schema), schema_text=sql.Literal(schema)) + record_sql(schema)


@dataclass(frozen=True, slots=True)
class Tracked:
    """What a track call installed."""

    table: str
    primary_key: tuple[str, ...]
    excluded: tuple[str, ...]
    redacted: tuple[str, ...]


_OPERATIONS = ("insert", "update", "delete")


def _trigger_names(table: str) -> list[str]:
    base = "graven_capture_" + table.replace(".", "_").replace('"', "")
    return [f"{base[:50]}_{op}" for op in (*_OPERATIONS, "truncate")]


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
    names = _trigger_names(qualified)
    target = sql.SQL(qualified)
    args = [sql.Literal("{" + ",".join(json.dumps(c) for c in cols) + "}") for cols in (exclude, redact, pk)]
    for name in names:
        conn.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(_ident(name), target))
    # PostgreSQL allows transition tables on triggers for one event each: three statement triggers.
    transitions = {"insert": "NEW TABLE AS graven_new_rows", "delete": "OLD TABLE AS graven_old_rows",
                   "update": "OLD TABLE AS graven_old_rows NEW TABLE AS graven_new_rows"}  # fmt: skip
    for name, op in zip(names, _OPERATIONS, strict=False):
        conn.execute(
            sql.SQL(
                "CREATE TRIGGER {} AFTER " + op.upper() + " ON {} REFERENCING " + transitions[op] + " "
                "FOR EACH STATEMENT EXECUTE FUNCTION {}.capture_statement({}, {}, {})"
            ).format(_ident(name), target, _ident(schema), *args)
        )
    conn.execute(
        sql.SQL(
            "CREATE TRIGGER {} AFTER TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}.capture_truncate()"
        ).format(_ident(names[-1]), target, _ident(schema))
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
        sql.SQL("SELECT {}.capture_note(%s, 'table', %s, %s::jsonb)").format(_ident(schema)),
        (action, table, json.dumps(changes)),
    )


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
    actor_obj = actor_of(actor)
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


# --- events recorded in the application's own transaction ---------------------------------------

#: The most a staged event may weigh as jsonb in ``capture_record``: far above what validation lets
#: through (an entry encodes to at most 1 MiB), so only an abuse of the function meets it.
MAX_RECORD_BYTES = 4 * 1024 * 1024


def record_sql(schema: str) -> sql.Composed:
    """``<schema>.capture_record(events jsonb)``: events validated by Graven, written into the
    outbox in the caller's transaction (idempotent; installed with :func:`install_sql`).

    It runs as the log's owner (SECURITY DEFINER) with EXECUTE revoked from PUBLIC, so a role that
    :func:`grant_record` named may add event rows to ``captured`` and do nothing else there: no
    dynamic SQL, a fixed ``search_path``, one JSON object (or an array of them) each carrying a
    text ``id`` and ``action``. What it writes is validated again when the sequencer moves it into
    the log (a row that breaks a rule becomes a ``capture.invalid`` entry; an id already in the log
    appends nothing of the event, and an ``event.id_conflict`` entry when the content differs).
    """
    return sql.SQL(
        """
CREATE OR REPLACE FUNCTION {schema}.capture_record(events jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    written integer;
BEGIN
    IF jsonb_typeof(events) = 'object' THEN  -- one event (the common case): no array to unpack
        IF jsonb_typeof(events -> 'id') IS DISTINCT FROM 'string'
           OR jsonb_typeof(events -> 'action') IS DISTINCT FROM 'string'
           OR pg_column_size(events) > {limit} THEN
            RAISE EXCEPTION USING ERRCODE = '22023',
                MESSAGE = 'graven: capture_record: each event must be a JSON object with a text id and action, '
                          || 'of at most {limit} bytes';
        END IF;
        INSERT INTO {schema}.captured (event) VALUES (events - 'recorded_at');
        RETURN 1;
    END IF;
    IF events IS NULL OR jsonb_typeof(events) <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'graven: capture_record takes one event (a JSON object) or an array of events; got '
                      || coalesce(jsonb_typeof(events), 'NULL');
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(events) AS e
                WHERE jsonb_typeof(e) <> 'object'
                   OR jsonb_typeof(e -> 'id') IS DISTINCT FROM 'string'
                   OR jsonb_typeof(e -> 'action') IS DISTINCT FROM 'string'
                   OR pg_column_size(e) > {limit}) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'graven: capture_record: each event must be a JSON object with a text id and action, '
                      || 'of at most {limit} bytes';
    END IF;
    INSERT INTO {schema}.captured (event)
    SELECT e.value - 'recorded_at' FROM jsonb_array_elements(events) WITH ORDINALITY AS e ORDER BY e.ordinality;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END
$fn$;
REVOKE ALL ON FUNCTION {schema}.capture_record(jsonb) FROM PUBLIC;
"""
    ).format(schema=_ident(schema), limit=sql.SQL(str(MAX_RECORD_BYTES)))


def grant_record(conn: psycopg.Connection[Any], schema: str, role: str, *, revoke: bool = False) -> None:
    """Let ``role`` record events into the log in ``schema`` from its own transactions (see
    :func:`record`): USAGE on the schema and EXECUTE on ``capture_record`` only, no right on any
    table. ``revoke=True`` takes EXECUTE back. Installs the capture functions first (so a log made
    before they existed gets them); run as the log's owner, in the caller's transaction."""
    if not role or len(role) > 63:
        raise ConfigError(f"role name {role!r} must be 1 to 63 characters")
    if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None:
        raise ConfigError(f"no log in schema {schema}; create one with `graven init` before granting roles")
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
        raise ConfigError(f"no role {role!r} in this server: create the application's role first")
    conn.execute(install_sql(schema))
    function = sql.SQL("{}.capture_record(jsonb)").format(_ident(schema))
    if revoke:
        conn.execute(sql.SQL("REVOKE EXECUTE ON FUNCTION {} FROM {}").format(function, _ident(role)))
        return
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(_ident(schema), _ident(role)))
    conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(function, _ident(role)))


def log_schema(trail: Trail) -> str:
    """The schema of ``trail``'s PostgreSQL log; ConfigError for a log stored elsewhere."""
    from graven.store.postgres import PostgresStore

    store = trail.store
    if not isinstance(store, PostgresStore):
        raise ConfigError(
            "recording in the application's transaction needs a PostgreSQL log in the application's "
            f"database; this trail's log is a {type(store).__name__}"
        )
    return store.schema


_WHERE = (
    "SELECT current_database(), (SELECT oid FROM pg_database WHERE datname = current_database()), "
    "pg_postmaster_start_time()"
)


def same_database(trail: Trail, query: Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]) -> str:
    """The log's schema, once sure that the application's connection reaches the log's own database
    and may run ``capture_record`` there; ConfigError naming what is wrong otherwise.

    ``query(sql, params)`` runs SQL (``%s`` placeholders) on the application's connection. The two
    sides are the same database when its name, its oid and the server's start time agree. A log
    made before ``capture_record`` gets it from the trail's own role (the log's owner, usually).
    """
    from graven.store.pg_connection import connect
    from graven.store.postgres import PostgresStore

    schema = log_schema(trail)
    function = f"{sql.Identifier(schema).as_string()}.capture_record(jsonb)"
    assert isinstance(trail.store, PostgresStore)  # log_schema said so
    with connect(trail.store.target) as log_conn:
        log_side = tuple(log_conn.execute(_WHERE).fetchall()[0])
        if log_conn.execute("SELECT to_regprocedure(%s)", (function,)).fetchall()[0][0] is None:
            try:
                with log_conn.transaction():
                    log_conn.execute(install_sql(schema))
            except psycopg.Error as exc:
                log.warning("graven: could not install %s as the trail's role: %s", function, exc)
    app_side = tuple(query(_WHERE, ())[0])
    if app_side != log_side:
        raise ConfigError(
            f"same_database=True, but the application's connection reaches database {app_side[0]} and the log "
            f"lives in database {log_side[0]} (or on another server): track without same_database"
        )
    role, found = query("SELECT current_user, to_regprocedure(%s) IS NOT NULL", (function,))[0]
    if not found:
        raise missing(schema)
    if not query("SELECT has_function_privilege(%s, 'EXECUTE')", (function,))[0][0]:
        raise refused(schema, str(role))
    return schema


def staged(trail: Trail, event: Any = None, /, **fields: Any) -> dict[str, Any]:
    """``event`` exactly as :meth:`Trail.record` would record it (validated, completed from the
    current context, redacted, personal values sealed, its id given), ready for ``capture_record``.

    What a jsonb value cannot carry exactly (U+0000 in a string) is refused by :func:`write`.
    """
    doc = trail.prepare(event, **fields).doc
    doc.pop("recorded_at", None)  # set by the log when the event is integrated
    return doc


def record(conn: psycopg.Connection[Any], trail: Trail, event: Any = None, /, **fields: Any) -> str:
    """Record one event in ``conn``'s current transaction; returns its id.

    The event is made exactly as ``trail.record(event, **fields)`` makes it (same validation,
    context, redaction, sealing, so the same entry but for ``recorded_at`` and its index) and
    written through ``capture_record`` into the log's outbox: a rollback leaves nothing, the
    application's commit is the only commit, and the sequencer moves it into the Merkle log at the
    trail's next write, :meth:`Trail.integrate` or ``graven pg integrate --follow``. ``conn`` must
    be connected to the log's own database as a role granted by :func:`grant_record`
    (``graven pg grant-record ROLE``); in autocommit mode the event commits at once, on its own.
    Unlike ``trail.record()``, an explicit ``id`` the log already holds is not checked here (no
    IdempotencyConflict): at integration the same event again appends nothing, and another event
    under that id appends nothing of it but an ``event.id_conflict`` entry in its place.
    """
    doc = staged(trail, event, **fields)
    write(conn, log_schema(trail), [doc])
    return str(doc["id"])


def write(conn: psycopg.Connection[Any], schema: str, docs: Sequence[dict[str, Any]]) -> None:
    """Write staged events (from :func:`staged`) through ``capture_record`` in ``conn``'s transaction;
    :class:`ValidationError`, before anything is written, for one a jsonb value cannot carry exactly."""
    if not docs:
        return
    query = _record_query(schema)
    encoded = orjson.dumps(docs[0] if len(docs) == 1 else list(docs))
    for doc in docs:
        problem = jsonb_problem(doc, encoded=encoded if len(docs) == 1 else None)
        if problem is not None:
            raise problem
    payload = encoded.decode()
    try:
        conn.execute(query, (payload,))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise refused(schema, conn.info.user) from exc
    except (psycopg.errors.UndefinedFunction, psycopg.errors.InvalidSchemaName) as exc:
        raise missing(schema) from exc


@functools.lru_cache(maxsize=64)
def _record_query(schema: str) -> sql.Composed:
    return sql.SQL("SELECT {}.capture_record(%s::jsonb)").format(_ident(schema))


def refused(schema: str, role: str) -> ConfigError:
    """The error of a role that may not run ``capture_record``."""
    return ConfigError(
        f"role {role} may not record events into the log in schema {schema} from its transactions; "
        f"as the log's owner run `graven pg grant-record {role}` (the transaction is aborted)"
    )


def missing(schema: str) -> ConfigError:
    """The error of a database without ``capture_record`` in ``schema``."""
    return ConfigError(
        f"no function {schema}.capture_record in this database: connect to the log's own database, and "
        f"if the log predates it, run `graven pg grant-record ROLE` as its owner (the transaction is aborted)"
    )
