r"""The PostgreSQL store's schema, as versioned migrations applied once each, in order.

Every object lives in the log's own schema (default ``graven``). ``schema_migrations`` records the
versions applied; each migration runs in one transaction together with its row there, and
initialisers serialise on an advisory lock, so concurrent ``graven init`` runs neither collide nor
apply anything twice. Migrations run with ``search_path`` set to the log's schema, so their SQL
names tables unqualified. Never edit a released migration: append a new one.

Text columns use the "C" collation: byte order makes the ``action`` prefix range and the timestamp
order exact whatever the database's locale, and makes ``ILIKE`` fold ASCII letters only (as SQLite's
``LIKE`` does). The body is ``text`` holding the canonical JSON bytes exactly (they are the Merkle
leaf); ``jsonb`` would re-serialise it, so jsonb appears only in ``entries_view`` and in checks.
"""

from __future__ import annotations

from dataclasses import dataclass

#: SQLSTATE raised by the append-only triggers (class Z is free for implementations; G for Graven).
IMMUTABLE_SQLSTATE = "ZG001"

#: Tables holding log data: UPDATE, DELETE and TRUNCATE are refused on each, even for the owner
#: (tiles: DELETE only of a partial tile's rows once its full tile is stored; entries and
#: entry_targets: DELETE only below an archived boundary, see graven.archive).
LOG_TABLES = ("entries", "entry_targets", "tiles", "checkpoints", "settings", "archives")

#: The aggregate-stream index (migration 3): derived from the entries, append-only like them.
STREAM_TABLE = "stream_versions"

#: Everything a reader may SELECT (the log tables, the migration record and the DBA view).
READABLE = (*LOG_TABLES, STREAM_TABLE, "schema_migrations", "entries_view")

#: What a writer may INSERT into (settings are written once, by whoever runs ``graven init``).
WRITABLE = ("entries", "entry_targets", "tiles", "checkpoints", STREAM_TABLE)

#: What a writer may DELETE from (the triggers allow only superseded partial tiles).
COMPACTED = "tiles"

#: The capture outbox, which a writer empties (SELECT and DELETE) as it moves events into the log.
OUTBOX = "captured"

BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    description text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    sql: str


def _append_only_triggers(tables: tuple[str, ...]) -> str:
    parts = []
    for table in tables:
        parts.append(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION refuse_change();\n"
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();"
        )
    return "\n".join(parts)


_V1 = r"""
CREATE TABLE settings (
    key   text COLLATE "C" PRIMARY KEY,
    value text NOT NULL
);

-- body is the entry's leaf: its RFC 8785 JSON, byte for byte. The other columns are copies kept
-- for indexes; `graven verify` checks them against body.
CREATE TABLE entries (
    idx         bigint PRIMARY KEY CHECK (idx >= 0),
    body        text COLLATE "C" NOT NULL,
    event_id    text COLLATE "C" NOT NULL,
    occurred_at timestamptz NOT NULL,
    actor_id    text COLLATE "C",
    action      text COLLATE "C" NOT NULL,
    outcome     text COLLATE "C" NOT NULL,
    source      text COLLATE "C",
    tenant      text COLLATE "C"
);
CREATE UNIQUE INDEX entries_event_id ON entries (event_id);
-- "everything actor A did between t1 and t2"
CREATE INDEX entries_actor_time ON entries (actor_id, occurred_at);
CREATE INDEX entries_action ON entries (action);
CREATE INDEX entries_occurred_at ON entries (occurred_at);
CREATE INDEX entries_not_success ON entries (outcome) WHERE outcome <> 'success';
-- a tenant's log, page by page (costs nothing while no entry names a tenant)
CREATE INDEX entries_tenant ON entries (tenant, idx) WHERE tenant IS NOT NULL;

-- "the history of row K of table T": the primary key is the index.
CREATE TABLE entry_targets (
    type text COLLATE "C" NOT NULL,
    id   text COLLATE "C" NOT NULL,
    idx  bigint NOT NULL,
    PRIMARY KEY (type, id, idx)
);
-- the targets of entry N (checks, the view's readers) and target_type filters in index order
CREATE INDEX entry_targets_entry ON entry_targets (idx, type);

-- Row i holds the hashes of the perfect subtrees completed by leaf i, level 0 (the leaf hash) first.
CREATE TABLE tree (
    idx    bigint PRIMARY KEY CHECK (idx >= 0),
    hashes bytea NOT NULL
);

CREATE TABLE checkpoints (
    size bigint PRIMARY KEY CHECK (size >= 0),
    note text NOT NULL
);

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'ZG001',
        MESSAGE = format('graven: %s is append-only; %s is refused', TG_TABLE_NAME, TG_OP),
        HINT = 'A Graven log is never changed in place: record a new event that corrects it.';
END
$fn$;

-- The body as jsonb for people and checks. jsonb cannot hold U+0000, which canonical JSON writes
-- as \u0000: show it as U+FFFD (escaped backslashes are set aside first so "\\u0000" survives).
CREATE FUNCTION body_jsonb(body text) RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT CASE WHEN strpos(body, '\u0000') = 0 THEN body::jsonb
                ELSE replace(replace(replace(body, '\\', E'\x01'), '\u0000', '\ufffd'), E'\x01', '\\')::jsonb
           END
$fn$;

CREATE VIEW entries_view AS
SELECT e.idx AS "index",
       e.occurred_at,
       (j.doc ->> 'recorded_at')::timestamptz AS recorded_at,
       j.doc -> 'actor' ->> 'type' AS actor_type,
       e.actor_id,
       e.action,
       j.doc -> 'targets' -> 0 ->> 'type' AS target_type,
       j.doc -> 'targets' -> 0 ->> 'id' AS target_id,
       e.outcome,
       e.source,
       j.doc ->> 'reason' AS reason,
       j.doc -> 'changes' AS changes,
       j.doc AS body
  FROM entries e
 CROSS JOIN LATERAL (SELECT body_jsonb(e.body) AS doc OFFSET 0) j;
COMMENT ON VIEW entries_view IS 'Graven entries for reading; the body column of entries holds the signed bytes.';
""" + _append_only_triggers(("entries", "entry_targets", "tree", "checkpoints", "settings"))

# The outbox of trigger capture (graven.capture.pg writes it, in the transaction of each change; the
# sequencer moves its rows into the log and deletes them in one transaction). Not log data: rows
# leave it by design, so it has no append-only triggers. Same definition as capture's install_sql,
# which may have created it first.
_V2 = """
CREATE TABLE IF NOT EXISTS captured (
    seq        bigserial PRIMARY KEY,
    event      jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""

# The aggregate-stream index: (type, id, version) -> idx, one row per entry that declares a stream
# position in metadata.sourcing (graven.core.streams), written with the entry; `graven verify`
# checks it against the entries. The primary key forbids two entries at one version of a stream.
_V3 = """
CREATE TABLE stream_versions (
    type    text COLLATE "C" NOT NULL,
    id      text COLLATE "C" NOT NULL,
    version bigint NOT NULL CHECK (version >= 1),
    idx     bigint NOT NULL UNIQUE,
    PRIMARY KEY (type, id, version)
);
CREATE TRIGGER stream_versions_append_only BEFORE UPDATE OR DELETE ON stream_versions
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER stream_versions_no_truncate BEFORE TRUNCATE ON stream_versions
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
"""

# The tree as C2SP tlog-tiles: tile (level, idx) holds the hashes of tree level 8 * level, nodes
# 256 * idx on. A full tile is one row of width 256; until then each commit that adds hashes to the
# tile adds a row holding those (from the previous row's width up to its own). The commit that
# completes a tile writes the full tile and deletes the partial rows: the only DELETE allowed.
# The rows of the former tree table (one per leaf) are converted, and its grants carried over.
_V4 = r"""
CREATE TABLE tiles (
    level  integer NOT NULL CHECK (level >= 0),
    idx    bigint NOT NULL CHECK (idx >= 0),
    width  integer NOT NULL CHECK (width BETWEEN 1 AND 256),
    hashes bytea NOT NULL CHECK (length(hashes) % 32 = 0 AND (width < 256 OR length(hashes) = 8192)),
    PRIMARY KEY (level, idx, width)
);

CREATE FUNCTION tiles_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.width < 256 AND EXISTS (
        SELECT 1 FROM tiles t WHERE t.level = OLD.level AND t.idx = OLD.idx AND t.width = 256
    ) THEN
        RETURN OLD;  -- a partial tile's row, superseded by its full tile
    END IF;
    RAISE EXCEPTION USING
        ERRCODE = 'ZG001',
        MESSAGE = format('graven: %s is append-only; %s is refused', TG_TABLE_NAME, TG_OP),
        HINT = 'A Graven log is never changed in place: record a new event that corrects it.';
END
$fn$;
CREATE TRIGGER tiles_append_only BEFORE UPDATE OR DELETE ON tiles
    FOR EACH ROW EXECUTE FUNCTION tiles_refuse_change();
CREATE TRIGGER tiles_no_truncate BEFORE TRUNCATE ON tiles
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

INSERT INTO tiles (level, idx, width, hashes)
SELECT l, (t.idx >> (8 * l)) >> 8, count(*),
       string_agg(substring(t.hashes FROM 256 * l + 1 FOR 32), ''::bytea ORDER BY t.idx)
  FROM tree t, generate_series(0, 7) AS l
 WHERE length(t.hashes) > 256 * l
 GROUP BY l, (t.idx >> (8 * l)) >> 8;

DO $do$
DECLARE g record;
BEGIN
    FOR g IN SELECT DISTINCT grantee, privilege_type FROM information_schema.role_table_grants
              WHERE table_schema = current_schema() AND table_name = 'tree'
                AND privilege_type IN ('SELECT', 'INSERT') AND grantee <> current_user LOOP
        IF g.privilege_type = 'INSERT' THEN
            EXECUTE format('GRANT INSERT, DELETE ON tiles TO %I', g.grantee);
        ELSE
            EXECUTE format('GRANT SELECT ON tiles TO %I', g.grantee);
        END IF;
    END LOOP;
END
$do$;

DROP TABLE tree;
"""

# Archives: every entry below `below` is in the written archive `name`. Its body and target rows may
# then be removed (pruned); nothing else may be, and the tiles stay, so proofs stay valid.
_V5 = r"""
CREATE TABLE archives (
    below  bigint PRIMARY KEY CHECK (below > 0),
    name   text NOT NULL,
    digest text NOT NULL
);
CREATE TRIGGER archives_append_only BEFORE UPDATE OR DELETE ON archives
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER archives_no_truncate BEFORE TRUNCATE ON archives
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

CREATE FUNCTION refuse_unarchived_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.idx < (SELECT coalesce(max(below), 0) FROM archives) THEN
        RETURN OLD;  -- pruning an entry a written archive holds
    END IF;
    RAISE EXCEPTION USING
        ERRCODE = 'ZG001',
        MESSAGE = format('graven: %s is append-only; %s is refused', TG_TABLE_NAME, TG_OP),
        HINT = 'A Graven log is never changed in place: record a new event that corrects it.';
END
$fn$;
DROP TRIGGER entries_append_only ON entries;
CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION refuse_unarchived_change();
DROP TRIGGER entry_targets_append_only ON entry_targets;
CREATE TRIGGER entry_targets_append_only BEFORE UPDATE OR DELETE ON entry_targets
    FOR EACH ROW EXECUTE FUNCTION refuse_unarchived_change();

DO $do$
DECLARE g record;
BEGIN
    FOR g IN SELECT DISTINCT grantee FROM information_schema.role_table_grants
              WHERE table_schema = current_schema() AND table_name = 'entries'
                AND privilege_type = 'SELECT' AND grantee <> current_user LOOP
        EXECUTE format('GRANT SELECT ON archives TO %I', g.grantee);
    END LOOP;
END
$do$;
"""

# The outbox's events as json (text) instead of jsonb: the sequencer parses them as text anyway, so
# jsonb cost a conversion on the way in (a big UPDATE builds each event as text) and on the way out.
# Rows already waiting are converted; capture's inserts work with either type.
_V6 = """
ALTER TABLE captured ALTER COLUMN event TYPE json USING event::json;
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "log tables, query indexes, append-only triggers, entries_view", _V1),
    Migration(2, "captured: the outbox of trigger capture", _V2),
    Migration(3, "stream_versions: the index of aggregate streams", _V3),
    Migration(4, "the Merkle tree as C2SP tiles (256 hashes a row) instead of a row per leaf", _V4),
    Migration(5, "archives: entries below an archived boundary may be pruned", _V5),
    Migration(6, "captured: events as json text, not jsonb", _V6),
)

LATEST = MIGRATIONS[-1].version
