"""SQLAlchemy capture: ORM inserts, updates and deletes of chosen models become entries.

    tracker = track(trail, engine, Customer, Document, exclude=("updated_at",))

Each flushed change of a tracked model is one entry: action ``<noun>.create``, ``<noun>.update``
or ``<noun>.delete`` (the noun is the class name in snake_case unless ``names`` says otherwise,
after ``action_prefix.`` if given), target ``(noun, primary key)``, and the column changes: every
loaded column on create, only the changed columns with old and new on update, every column's old
value on delete; a many-to-many collection (``secondary=``) as a change of its name, the related
rows' keys before and after (add, remove, clear). Who, from where and why come from
``trail.context(...)`` as it is at flush time;
with no actor in the context, ``default_actor`` is recorded. The trail's redaction policy applies
(a ``password_hash`` column is recorded as changed, never its value); ``redact`` names more such
columns, ``exclude`` columns to ignore. ORM bulk ``session.execute(update(Model)...)`` and
``delete(Model)`` (with criteria, or a list of rows by primary key) are one entry per affected row:
the rows are read with the same criteria before the statement runs and, for an update, read again
by primary key after it, in the same transaction.

Transactional outbox: each event is validated, completed from the context, redacted and given its
id at flush time, then written to the table ``outbox`` in the application's own database, in the
transaction of the change. After the outermost commit the events go into the trail
(``record_many``, idempotent because the id is fixed; from a worker thread with
``background=True``, so the commit does not wait for the trail) and their outbox rows are
deleted in the application's next write transaction (saving a commit), by :meth:`Tracker.drain`
or at :meth:`Tracker.close`. MUST: a rolled-back transaction or savepoint records none of its changes; a
committed one records all of them; an outbox row is deleted only after its event is durably in the
trail, so a crash or a failing trail loses nothing and records nothing twice. Rows left behind are
moved by :func:`track` itself, at the next commit after a failure, at a commit at most every
``sweep_interval`` seconds (rows of a crashed process), and by :meth:`Tracker.drain`.

Limits: changes made without the ORM (``text()`` SQL, Core statements on a connection, other
programs) are not seen; use PostgreSQL trigger capture (:mod:`graven.capture.pg`) for those. ORM
bulk INSERT statements (``session.execute(insert(Model), rows)``) are not seen either: add objects
to the session instead. A bulk update that changes a primary key records that row's old values
only. Server-computed columns appear once loaded (``eager_defaults``). Collection members are
known as loaded. ``AsyncSession``: :func:`track_async`, the same guarantees, the trail written from a
worker thread the event loop awaits. A change committed inside a ``trail.action()`` block of the
same action and target is folded into that block's entry (:mod:`graven.action`).

Same database (``same_database=True``): when the trail's log lives in the PostgreSQL database the
models are written to, the events skip the application's outbox and the commit after it: each is
written into the log's own outbox (``captured``) in the session's transaction, through the log's
SECURITY DEFINER function ``capture_record`` (``graven pg grant-record ROLE`` lets the application's
role run it; it gets no right on any table of the log). The application's commit is then the only
commit, and a rollback (or a rolled-back savepoint) leaves nothing. The events enter the Merkle log
at the trail's next write, :meth:`Tracker.drain` or ``trail.integrate()``, from ``graven pg
integrate --follow``, or, with ``background=True``, from a worker thread that integrates after
commits (one ``integrate()`` for every commit made while it was busy). Two kinds of event still go
by the application's outbox: one that folds into an open ``trail.action()`` block (it must not
enter the log on its own) and one holding U+0000, which jsonb cannot store. ``track`` checks that
the engine reaches the log's own database (same server start, database name and oid) and that its
role may run the function, and refuses otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    delete,
    event,
    inspect,
    select,
    text,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_scoped_session, async_sessionmaker
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, scoped_session, sessionmaker
from sqlalchemy.orm import SessionTransaction as Tx
from sqlalchemy.util import await_only, greenlet_spawn
from sqlalchemy.util.concurrency import in_greenlet

from graven import context
from graven.action import Action, current_action
from graven.capture import _rows, outbox
from graven.core.diff import diff
from graven.core.model import ACTION_RE
from graven.errors import ConfigError

if TYPE_CHECKING:
    from graven.trail import Trail

__all__ = ["Tracker", "track", "track_async"]

log = logging.getLogger(__name__)

DEFAULT_OUTBOX = "graven_outbox"
BATCH = 1000  # outbox rows per drain step; primary keys per IN list


class Tracker:
    """What :func:`track` installed; ``drain()`` moves pending events now, ``close()`` removes it."""

    def __init__(
        self,
        trail: Trail,
        engine: Engine,
        targets: list[Any],
        models: dict[Mapper[Any], _rows.Model],
        *,
        outbox: str,
        default_actor: Any,
        source: str | None,
        sweep_interval: float,
        background: bool,
        log_schema: str | None = None,
    ) -> None:
        self.trail = trail
        self.engine = engine
        self.outbox = Table(
            outbox, MetaData(),
            Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
            Column("event_id", String(200), nullable=False, unique=True),
            Column("event", Text(), nullable=False),
            Column("created_at", Float(), nullable=False),
        )  # fmt: skip
        # Built once: SQLAlchemy then reuses their compiled form (a statement per commit otherwise).
        seq, event_id = self.outbox.c.seq, self.outbox.c.event_id
        self._insert = self.outbox.insert()
        self._delete_ids = self._delete_where(event_id.in_(bindparam("ids", expanding=True)))
        self._delete_seqs = self._delete_where(seq.in_(bindparam("seqs", expanding=True)))
        self._select_batch = select(seq, event_id, self.outbox.c.event).order_by(seq).limit(BATCH)
        self._targets = targets
        self._models = models
        self._resolved: dict[Mapper[Any], _rows.Model | None] = {}
        self._default_actor = context.actor_of(default_actor)
        self._source = source
        self._sweep_interval = sweep_interval
        self._key = f"graven.sqlalchemy.{id(self):x}"
        self._lock = threading.Lock()
        self._sweeping = threading.Lock()
        self._done: dict[str, None] = {}  # ids in the trail whose outbox rows are still to delete
        self._held: set[str] = set()  # ids folded into an action not yet recorded: not drained meanwhile
        self._backlog = True
        self._last_sweep = float("-inf")
        self._listeners: list[tuple[Any, str, Callable[..., Any]]] = []
        self._worker = _Worker(self) if background else None
        self._async = engine.dialect.is_async
        # same_database=True: events go into the log's own outbox in the session's transaction.
        self.log_schema = log_schema
        self._record_events = None
        if log_schema is not None:
            from psycopg.sql import Identifier

            function = f"{Identifier(log_schema).as_string()}.capture_record"
            self._record_events = text(f"SELECT {function}(CAST(:events AS jsonb))")

    # --- installing -------------------------------------------------------------------------

    def _install(self) -> None:
        self.outbox.metadata.create_all(self.engine, checkfirst=True)
        hooks: list[tuple[str, Callable[..., Any]]] = [
            ("before_flush", self._before_flush),
            ("after_flush", self._after_flush),
            ("do_orm_execute", self._on_execute),
            ("after_commit", self._after_commit),
            ("after_soft_rollback", self._after_soft_rollback),
            ("after_transaction_end", self._after_transaction_end),
        ]
        for target in self._targets:
            for name, fn in hooks:
                event.listen(target, name, fn)
                self._listeners.append((target, name, fn))
        for mapper, model in self._models.items():
            for sub in mapper.self_and_descendants:
                own = [k for k in (self._model(sub) or model).keys if sub is mapper or k not in model.keys]
                for key in own:
                    # active_history: an unloaded old value is loaded before it is replaced, so an
                    # update can say what the value was (propagate: inherited columns of subclasses).
                    attr = getattr(sub.class_, key)
                    event.listen(attr, "set", _keep, active_history=True, propagate=True)
                    self._listeners.append((attr, "set", _keep))

    def close(self) -> None:
        """Stop tracking (events of transactions still open are lost), record what was committed, tidy the outbox."""
        for target, name, fn in self._listeners:
            if event.contains(target, name, fn):
                event.remove(target, name, fn)
        self._listeners.clear()
        if self._worker is not None:
            self._worker.stop()
        elif self.log_schema is not None:
            self._integrate_log()
        with self._lock:
            done, self._done = list(self._done), {}
        for i in range(0, len(done), BATCH):
            with self.engine.begin() as conn:
                conn.execute(self._delete_ids, {"ids": done[i : i + BATCH]})

    async def aclose(self) -> None:
        """:meth:`close` from async code (an async engine's connections need it)."""
        await greenlet_spawn(self.close)

    async def adrain(self) -> int:
        """:meth:`drain` from async code."""
        moved: int = await greenlet_spawn(self.drain)
        return moved

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # --- the models ---------------------------------------------------------------------------

    def _model(self, mapper: Mapper[Any]) -> _rows.Model | None:
        """How objects of ``mapper`` are recorded (a subclass of a tracked class is tracked too)."""
        try:
            return self._resolved[mapper]
        except KeyError:
            pass
        found = None
        for m in mapper.iterate_to_root():
            base = self._models.get(m)
            if base is not None:
                found = base if m is mapper else _describe(mapper, base.noun, base.action, base.excluded, base.redacted)
                break
        self._resolved[mapper] = found
        return found

    def _here(self, session: Session, mapper: Mapper[Any]) -> bool:
        """Whether ``session`` writes ``mapper``'s rows to this tracker's database."""
        try:
            bind = session.get_bind(mapper=mapper)
        except Exception:  # an unbound session writes nowhere this tracker knows
            return False
        return (bind.engine if isinstance(bind, Connection) else bind) is self.engine

    # --- flushes ------------------------------------------------------------------------------

    def _before_flush(self, session: Session, flush_context: Any, instances: Any) -> None:
        """Load what a deleted object still lacks: after the flush its row is gone."""
        for obj in session.deleted:
            state = inspect(obj)
            model = self._model(state.mapper)
            if model is None or not (state.unloaded & set(model.keys)):
                continue
            try:
                for key in state.unloaded & set(model.keys):
                    getattr(obj, key)
            except Exception:  # the row is already gone: the entry shows what was loaded
                log.debug("graven: could not load %s before deleting it", state.mapper.class_.__name__)

    def _after_flush(self, session: Session, flush_context: Any) -> None:
        docs = []
        mapper: Mapper[Any] | None = None
        for verb, objects in (("create", session.new), ("update", session.dirty), ("delete", session.deleted)):
            for obj in objects:
                state = inspect(obj)
                model = self._model(state.mapper)
                if model is None or not self._here(session, state.mapper):
                    continue
                if verb == "update":
                    changes = _rows.updated(state, model) + _links(state, model, verb)
                    if not changes:
                        continue
                elif verb == "create":
                    changes = _rows.created(_rows.loaded(state, model), model) + _links(state, model, verb)
                else:
                    changes = _rows.deleted(_rows.loaded(state, model), model) + _links(state, model, verb)
                if model.links:
                    changes.sort(key=lambda c: str(c["field"]))
                docs.append(self._event(session, model, verb, _rows.primary_key(state, model, verb), changes))
                mapper = state.mapper
        if mapper is not None:
            self._stage(session, session.connection(bind_arguments={"mapper": mapper}), docs, piggyback=True)

    def _on_execute(self, state: ORMExecuteState) -> Any:
        """ORM bulk UPDATE / DELETE: one event per affected row, read in the same transaction."""
        if not (state.is_update or state.is_delete):
            return None
        mapper = state.bind_mapper
        model = self._model(mapper) if mapper is not None else None
        if mapper is None or model is None or not self._here(state.session, mapper):
            return None
        session = state.session
        conn = session.connection(bind_arguments={"mapper": mapper})
        columns = [mapper.column_attrs[k].columns[0].label(k) for k in dict.fromkeys((*model.pk, *model.keys))]
        # FOR UPDATE (PostgreSQL; SQLite has one writer anyway): the rows read cannot change before
        # the statement runs, so the old values are exactly what it replaced.
        query = select(*columns).select_from(mapper.persist_selectable).with_for_update()
        if state.is_executemany:
            rows = state.parameters if isinstance(state.parameters, list) else []
            keys = [tuple(row.get(k) for k in model.pk) for row in rows]
            before = self._by_pk(conn, query, mapper, model, keys)
        else:
            where = getattr(state.statement, "whereclause", None)
            params = state.parameters if isinstance(state.parameters, Mapping) else None
            found = conn.execute(query if where is None else query.where(where), params).mappings().all()
            before = {tuple(r[k] for k in model.pk): dict(r) for r in found}
        result = state.invoke_statement()
        docs = []
        if state.is_delete:
            for key, old in before.items():
                changes = _rows.deleted(old, model)
                docs.append(self._event(session, model, "delete", _rows.key_text(key), changes))
        else:
            after = self._by_pk(conn, query, mapper, model, list(before))
            for key, old in before.items():
                new = after.get(key)
                changes = _rows.deleted(old, model) if new is None else _rows.changed(old, new, model)
                if changes:
                    docs.append(self._event(session, model, "update", _rows.key_text(key), changes))
        if docs:
            self._stage(session, conn, docs, piggyback=False)
        return result

    def _by_pk(
        self, conn: Connection, query: Any, mapper: Mapper[Any], model: _rows.Model, keys: Sequence[tuple[Any, ...]]
    ) -> dict[tuple[Any, ...], dict[str, Any]]:
        pk_columns = [mapper.column_attrs[k].columns[0] for k in model.pk]
        out: dict[tuple[Any, ...], dict[str, Any]] = {}
        for i in range(0, len(keys), BATCH):
            chunk = keys[i : i + BATCH]
            where = pk_columns[0].in_([k[0] for k in chunk]) if len(pk_columns) == 1 else tuple_(*pk_columns).in_(chunk)
            for row in conn.execute(query.where(where)).mappings():
                out[tuple(row[k] for k in model.pk)] = dict(row)
        return out

    def _event(self, session: Session, model: _rows.Model, verb: str, pk: str, changes: list[dict[str, Any]]) -> Any:
        """The event as it will be recorded: validated, completed from the context now, redacted."""
        ev: dict[str, Any] = {
            "action": f"{model.action}.{verb}",
            "targets": [{"type": model.noun, "id": pk}],
            "changes": changes,
            "context": {"transaction": self._transaction_id(session)},
        }
        return outbox.staged_event(self.trail, ev, default_actor=self._default_actor, source=self._source)

    def _transaction_id(self, session: Session) -> str:
        """One id per outermost transaction: the entries of one commit share it."""
        root = session.get_transaction()
        held = session.info.get(self._key + ".tx")
        if held is None or held[0] is not root:
            held = session.info[self._key + ".tx"] = (root, uuid.uuid4().hex[:16])
        return str(held[1])

    def _stage(self, session: Session, conn: Connection, docs: list[Any], *, piggyback: bool) -> None:
        """Write events to the outbox in the session's transaction and remember them for the commit
        (same database: into the log's own outbox, but for those that fold into an open action)."""
        block = current_action()
        chain = _savepoints(session)
        if self._record_events is not None:
            direct: list[Any] = []
            kept: list[Any] = []
            for d in docs:
                folds = block is not None and block.takes(d)
                (kept if folds or outbox.jsonb_problem(d) is not None else direct).append(d)
            if direct:
                conn.execute(self._record_events, {"events": orjson.dumps(direct).decode()})
                session.info[self._key + ".direct"] = True
            docs = kept
        if docs:
            now = time.time()
            conn.execute(
                self._insert,
                [{"event_id": d["id"], "event": orjson.dumps(d).decode(), "created_at": now} for d in docs],
            )
            staged = session.info.setdefault(self._key, [])
            staged.extend((chain, d) for d in docs)
            if block is not None:  # one attempt, one entry: the block's own change is folded into its entry
                owned = {d["id"]: block for d in docs if block.takes(d)}
                if owned:
                    session.info.setdefault(self._key + ".fold", {}).update(owned)
        if piggyback and not chain:
            with self._lock:
                claimed = list(self._done)[:BATCH]
                for i in claimed:
                    del self._done[i]
            if claimed:
                session.info.setdefault(self._key + ".claimed", []).extend(claimed)
                conn.execute(self._delete_ids, {"ids": claimed})

    def _delete_where(self, where: Any) -> Any:
        """DELETE of outbox rows, skipping rows another transaction is deleting (PostgreSQL)."""
        seq = self.outbox.c.seq
        return delete(self.outbox).where(seq.in_(select(seq).where(where).with_for_update(skip_locked=True)))

    # --- transaction ends ---------------------------------------------------------------------

    def _after_commit(self, session: Session) -> None:
        if session.in_nested_transaction():
            return  # a savepoint released: its events now belong to the enclosing transaction
        staged = session.info.pop(self._key, None)
        session.info.pop(self._key + ".claimed", None)  # their rows are gone for good
        owners = session.info.pop(self._key + ".fold", None) or {}
        direct = session.info.pop(self._key + ".direct", False)
        docs = [doc for _, doc in staged or () if not self._folds(owners.get(doc["id"]), doc)]
        if self._worker is not None:
            if docs:
                self._worker.submit(docs)
            if direct:
                self._worker.integrate()
            return
        if self._async:  # inside an AsyncSession's commit: the event loop awaits a worker thread
            await_only(asyncio.to_thread(self._sweep_and_record, docs))
        else:
            self._sweep_and_record(docs)

    def _sweep_and_record(self, docs: list[Any]) -> None:
        self._sweep_if_due()  # older rows first, so that the log keeps the order of the commits
        if docs:
            self._record_committed(docs)

    def _folds(self, block: Action | None, doc: Any) -> bool:
        """Whether a committed event went into an open action's entry; its outbox row is held meanwhile."""
        if block is None:
            return False
        with self._lock:
            self._held.add(doc["id"])
        if block.fold(self, doc):
            return True
        with self._lock:
            self._held.discard(doc["id"])
        return False

    def folded_recorded(self, ids: list[str]) -> None:
        """The action holding these events is in the trail: their outbox rows go with the next write."""
        with self._lock:
            self._held.difference_update(ids)
            self._done.update(dict.fromkeys(ids))

    def folded_released(self, ids: list[str]) -> None:
        """The action holding these events could not be recorded: the events are recorded on their own."""
        with self._lock:
            self._held.difference_update(ids)
        self._backlog = True

    def _sweep_if_due(self) -> None:
        if self._backlog or time.monotonic() - self._last_sweep >= self._sweep_interval:
            try:
                self.drain(blocking=False, wait=False)
            except Exception as exc:  # the commit stands; the rows wait for the next drain
                log.warning("graven: could not drain the outbox %s: %s", self.outbox.name, exc)

    def _after_soft_rollback(self, session: Session, previous: Tx) -> None:
        if not previous.nested:
            return  # the outermost transaction: handled when it ends
        staged = session.info.get(self._key)
        if staged:
            staged[:] = [(chain, doc) for chain, doc in staged if previous not in chain]

    def _after_transaction_end(self, session: Session, transaction: Tx) -> None:
        if transaction.parent is not None:
            return
        # Whatever is still staged was never committed (rollback, close, failed commit).
        session.info.pop(self._key, None)
        session.info.pop(self._key + ".tx", None)
        session.info.pop(self._key + ".direct", None)
        claimed = session.info.pop(self._key + ".claimed", None)
        if claimed:
            with self._lock:
                self._done.update(dict.fromkeys(claimed))

    def _record_committed(self, docs: list[Any]) -> None:
        try:
            outbox.record(self.trail, docs)
        except Exception as exc:  # the commit stands and the rows stay: the next commit retries
            self._backlog = True
            log.warning(
                "graven: %d committed changes wait in the outbox %s, to be recorded at the next commit: %s",
                len(docs), self.outbox.name, exc,
            )  # fmt: skip
            return
        with self._lock:
            self._done.update(dict.fromkeys(d["id"] for d in docs))

    # --- draining -----------------------------------------------------------------------------

    def drain(self, *, blocking: bool = True, wait: bool = True) -> int:
        """Record every event waiting in the outbox (idempotently) and delete its row; returns how many rows
        (same database: and then integrate the log's own outbox, adding how many events that moved).

        When it returns, every change committed before the call is in the trail. Safe to run from
        many threads and processes at once: an event already in the trail is not appended again.
        With ``blocking=False`` it returns 0 at once when this tracker is draining in another thread.
        """
        if wait and self._worker is not None:
            self._worker.wait()
        moved = self._drain_outbox(blocking=blocking)
        if self.log_schema is not None and wait:
            moved += self.trail.integrate()
        return moved

    def _integrate_log(self) -> None:
        """Move the events committed into the log's own outbox into the log (same database)."""
        try:
            self.trail.integrate()
        except Exception as exc:  # the events stay in the log's outbox for the next write or integrate
            log.warning("graven: could not integrate the events waiting in the log's outbox: %s", exc)

    def _drain_outbox(self, *, blocking: bool) -> int:
        if not self._sweeping.acquire(blocking=blocking):
            return 0
        try:
            self._backlog = False
            self._last_sweep = time.monotonic()
            moved = 0
            while True:
                with self.engine.connect() as conn:
                    rows = conn.execute(self._select_batch).all()
                with self._lock:
                    rows = [r for r in rows if str(r.event_id) not in self._held]
                if not rows:
                    return moved
                try:
                    self._record_rows([(str(r.event_id), str(r.event)) for r in rows])
                except BaseException:
                    self._backlog = True
                    raise
                with self.engine.begin() as conn:
                    conn.execute(self._delete_seqs, {"seqs": [r.seq for r in rows]})
                with self._lock:
                    for r in rows:
                        self._done.pop(str(r.event_id), None)
                moved += len(rows)
                if len(rows) < BATCH:
                    return moved
        finally:
            self._sweeping.release()

    def _record_rows(self, rows: list[tuple[str, str]]) -> None:
        outbox.record_rows(self.trail, rows)


class _Worker:
    """Records committed events from one thread (``background=True``), many commits per trail write."""

    def __init__(self, tracker: Tracker) -> None:
        self._tracker = tracker
        self._cond = threading.Condition()
        self._queue: list[Any] = []
        self._integrate = False  # a commit wrote into the log's own outbox since the last integrate()
        self._busy = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="graven-sqlalchemy-recorder", daemon=True)
        self._thread.start()

    def submit(self, docs: list[Any]) -> None:
        with self._cond:
            self._queue.extend(docs)
            self._cond.notify_all()

    def integrate(self) -> None:
        """Integrate the log's own outbox soon (one integrate() for every call made meanwhile)."""
        with self._cond:
            self._integrate = True
            self._cond.notify_all()

    def wait(self) -> None:
        """Until everything submitted so far has been recorded (or has failed and waits in the outbox)."""
        with self._cond:
            while self._queue or self._integrate or self._busy:
                self._cond.wait()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._integrate and not self._stopping:
                    self._cond.wait()
                if not self._queue and not self._integrate:
                    return
                batch, self._queue, self._busy = self._queue, [], True
                integrate, self._integrate = self._integrate, False
            try:
                if batch:
                    self._tracker._sweep_if_due()
                    self._tracker._record_committed(batch)
                if integrate:
                    self._tracker._integrate_log()
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


def _links(state: Any, model: _rows.Model, verb: str) -> list[dict[str, Any]]:
    """Many-to-many changes (add, remove, clear) as ``{field, old, new}`` lists of the related rows' keys.

    A collection's members are known as loaded: on update, those unchanged plus those removed before
    and plus those added after; on create, those added; on delete, those loaded.
    """
    out: list[dict[str, Any]] = []
    for key in model.links:
        if verb == "delete":
            members = state.dict.get(key)
            if members:
                out += diff({key: _keys(members)}, None)
            continue
        history = state.attrs[key].history
        if not history.has_changes():
            continue
        kept = list(history.unchanged or ())
        before, after = _keys(kept + list(history.deleted or ())), _keys(kept + list(history.added or ()))
        out += diff(None, {key: after}) if verb == "create" else diff({key: before}, {key: after})
    return out


def _keys(objects: Iterable[Any]) -> list[str]:
    """Related objects as their primary keys' text, sorted (a collection's order is not the database's)."""
    keys = []
    for obj in objects:
        related = inspect(obj)
        keys.append(_rows.key_text(related.mapper.primary_key_from_instance(obj)))
    return sorted(keys)


def _keep(target: Any, value: Any, old: Any, initiator: Any) -> Any:
    """A "set" listener whose only purpose is ``active_history``."""
    return value


def _savepoints(session: Session) -> tuple[Tx, ...]:
    """The savepoints open in ``session``, innermost first."""
    out: list[Tx] = []
    tx = session.get_nested_transaction()
    while tx is not None:
        if tx.nested:
            out.append(tx)
        tx = tx.parent
    return tuple(out)


# --- tracking ----------------------------------------------------------------------------------


def _describe(
    mapper: Mapper[Any], noun: str, action: str, excluded: Iterable[str], redacted: Iterable[str]
) -> _rows.Model:
    pk = tuple(mapper.get_property_by_column(c).key for c in mapper.primary_key)
    keys = tuple(a.key for a in mapper.column_attrs if a.key not in set(excluded))
    links = tuple(r.key for r in mapper.relationships if r.secondary is not None and r.key not in set(excluded))
    return _rows.Model(noun, action, keys, frozenset(redacted), pk, frozenset(excluded), links)


def _engine_of(bind: Any, mappers: list[Mapper[Any]]) -> tuple[Engine, list[Any]]:
    """The engine whose rows are tracked, and the targets to listen on."""
    if isinstance(bind, AsyncEngine):
        return bind.sync_engine, [Session]
    if isinstance(bind, async_scoped_session):
        bind = bind.session_factory
    if isinstance(bind, async_sessionmaker):
        # The AsyncSessions it makes drive Sessions of a class of their own, listened to alone.
        base = bind.kw.get("sync_session_class") or Session
        own = type(f"Tracked{base.__name__}", (base,), {})
        bind.kw["sync_session_class"] = own
        engine = _bound_engine(bind().sync_session, mappers)  # no connection is opened
        return engine, [own]
    if isinstance(bind, AsyncSession):
        return _bound_engine(bind.sync_session, mappers), [bind.sync_session]
    if isinstance(bind, Engine):
        return bind, [Session]
    if isinstance(bind, scoped_session):
        bind = bind.session_factory
    if isinstance(bind, sessionmaker):
        with bind() as probe:
            engine = _bound_engine(probe, mappers)
        return engine, [bind]
    if isinstance(bind, Session):
        return _bound_engine(bind, mappers), [bind]
    raise ConfigError(
        "track() needs an Engine, a Session, a sessionmaker or a scoped_session (or their async kinds); "
        f"got {type(bind).__name__}"
    )


def _bound_engine(session: Session, mappers: list[Mapper[Any]]) -> Engine:
    engines = set()
    for mapper in mappers:
        try:
            bind = session.get_bind(mapper=mapper)
        except Exception as exc:
            raise ConfigError(f"the session is bound to no database for {mapper.class_.__name__}: {exc}") from None
        engines.add(bind.engine if isinstance(bind, Connection) else bind)
    if len(engines) != 1:
        raise ConfigError("the tracked models live in different databases: call track() once per engine")
    return engines.pop()


def _same_database(trail: Trail, engine: Engine) -> str:
    """The log's schema, once sure that ``engine`` writes to the log's own database and may record there."""
    from graven.capture import pg

    pg.log_schema(trail)
    if engine.dialect.name != "postgresql":
        raise ConfigError(
            f"same_database=True needs the models in the log's PostgreSQL database; the engine is {engine.dialect.name}"
        )
    with engine.connect() as conn:
        return pg.same_database(trail, lambda query, params: [tuple(r) for r in conn.exec_driver_sql(query, params)])


def track(
    trail: Trail,
    bind: Engine | Session | sessionmaker[Any] | scoped_session[Any],
    *models: type,
    exclude: Iterable[str] = (),
    redact: Iterable[str] = (),
    names: Mapping[type, str] | None = None,
    action_prefix: str | None = None,
    default_actor: str | Mapping[str, Any] = "system:application",
    source: str | None = None,
    outbox: str = DEFAULT_OUTBOX,
    sweep_interval: float = 30.0,
    background: bool = False,
    same_database: bool = False,
) -> Tracker:
    """Record every ORM insert, update and delete of ``models`` made through ``bind``.

    ``bind``: an ``Engine`` (every session writing to it), a ``sessionmaker`` / ``scoped_session``
    (sessions it makes) or one ``Session``. ``exclude``: column attributes never recorded;
    ``redact``: columns recorded as changed without values (besides the trail's policy); each must
    belong to one of the models. ``names``: the noun per class (default: class name in
    snake_case); ``action_prefix``: put before every action (``"crm"`` -> ``crm.customer.update``).
    ``default_actor``: who is recorded when the context names nobody. ``source``: the entries'
    source when the context has none. ``outbox``: the outbox table, created in ``bind``'s
    database if missing. Events waiting there from an earlier run are recorded before this returns.
    ``background``: record from a worker thread, so a commit returns once the application's own
    transaction (outbox rows included) is durable, without waiting for the trail's write; the
    entries follow within milliseconds (:meth:`Tracker.drain` waits for them). The guarantees
    are the same: the outbox row is durable with the change it describes.
    ``same_database``: the log is in the models' own PostgreSQL database: write the events into
    the log's outbox in the application's transaction, so its commit is the only commit (see the
    module's documentation); ``background=True`` then integrates them into the log after commits.
    """
    if not models:
        raise ConfigError("track() needs at least one mapped class to record")
    mappers: list[Mapper[Any]] = []
    for cls in models:
        mapper: Any = inspect(cls, raiseerr=False)
        if not isinstance(mapper, Mapper):
            raise ConfigError(f"{getattr(cls, '__name__', cls)!r} is not a mapped class (a SQLAlchemy ORM model)")
        mappers.append(mapper)
    exclude, redact = tuple(exclude), tuple(redact)
    columns = {a.key for m in mappers for a in m.column_attrs}
    links = {r.key for m in mappers for r in m.relationships if r.secondary is not None}
    for option, given, known in (("exclude", exclude, columns | links), ("redact", redact, columns)):
        unknown = [c for c in given if c not in known]
        if unknown:
            raise ConfigError(
                f"{option}: no tracked model has a column {unknown[0]!r} (columns: {', '.join(sorted(known))})"
            )
    if set(exclude) & set(redact):
        raise ConfigError(f"column {sorted(set(exclude) & set(redact))[0]!r} cannot be both excluded and redacted")
    if not isinstance(sweep_interval, int | float) or sweep_interval <= 0:
        raise ConfigError(f"sweep_interval must be a positive number of seconds; got {sweep_interval!r}")
    names = dict(names or {})
    stray = [getattr(c, "__name__", repr(c)) for c in names if c not in models]
    if stray:
        raise ConfigError(f"names: {stray[0]} is not one of the tracked models")
    described: dict[Mapper[Any], _rows.Model] = {}
    for cls, mapper in zip(models, mappers, strict=True):
        noun = names.get(cls, _rows.noun(cls))
        if not isinstance(noun, str) or not noun or len(noun) > 150:
            raise ConfigError(f"names[{cls.__name__}] must be a word of 1 to 150 characters; got {noun!r}")
        action = f"{action_prefix}.{noun}" if action_prefix else noun
        if not ACTION_RE.fullmatch(f"{action}.create"):
            raise ConfigError(f"{action!r} cannot start an action: use letters, digits, _ and - between dots")
        described[mapper] = _describe(mapper, noun, action, exclude, redact)
    if isinstance(bind, AsyncEngine | AsyncSession | async_sessionmaker | async_scoped_session):
        if background:
            raise ConfigError("background=True is for sync sessions: an AsyncSession's commit records off the loop")
        if not in_greenlet():
            raise ConfigError(f"an async {type(bind).__name__} is tracked with `await track_async(...)`")
    engine, targets = _engine_of(bind, mappers)
    log_schema = _same_database(trail, engine) if same_database else None
    tracker = Tracker(
        trail, engine, targets, described, outbox=outbox, default_actor=default_actor, source=source,
        sweep_interval=sweep_interval, background=background, log_schema=log_schema,
    )  # fmt: skip
    try:
        tracker._install()
        tracker.drain()
    except BaseException:
        tracker.close()
        raise
    return tracker


async def track_async(
    trail: Trail,
    bind: AsyncEngine | AsyncSession | async_sessionmaker[Any] | async_scoped_session[Any],
    *models: type,
    **options: Any,
) -> Tracker:
    """:func:`track` for ``AsyncSession``: ``bind`` is an ``AsyncEngine``, an ``async_sessionmaker``
    (or ``async_scoped_session``) or one ``AsyncSession``; the options are :func:`track`'s
    (``background`` excepted). A commit records its events from a worker thread that the event
    loop awaits: the loop stays free and, once ``await session.commit()`` returns, they are in the
    trail. Use :meth:`Tracker.adrain` and :meth:`Tracker.aclose` from async code.
    """
    tracker: Tracker = await greenlet_spawn(track, trail, bind, *models, **options)
    return tracker
