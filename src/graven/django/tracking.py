"""Django model tracking: creates, updates, deletes and many-to-many changes become entries.

Register a model with the decorator (``@graven.django.track(exclude=["updated_at"])``), with
:func:`track` (``track(Order, redact=["iban"])``) or in ``GRAVEN["MODELS"]``. Each change is
one entry: ``<noun>.create`` (every recorded field, new), ``<noun>.update`` (only the fields that
changed, old and new, the old ones read from the database in the same transaction),
``<noun>.delete`` (every recorded field, old) and ``<noun>.<m2m field>.add|remove|clear`` (the
field's related primary keys before and after). The noun is the class name in snake_case unless
``name`` says otherwise; the target is ``(noun, pk)``. ``include`` / ``exclude`` choose fields (by
name or column attribute); ``redact`` and the trail's policy turn a field's change into
``{field, redacted: true}``. ``QuerySet.update()`` (and so ``bulk_update()``) and
``bulk_create()`` of a tracked model are one entry per affected row, on every database: the rows
are read before and after the statement, in its transaction.

Crash-safe delivery (the same outbox pieces as :mod:`graven.capture.sqlalchemy`): each event is
validated, completed from the context, redacted and given its id when the change is made, and
written to the ``graven_outbox`` table in the same transaction (a tracked model's ``save()`` runs
in one). MUST: a rollback (of the transaction or of a savepoint) records nothing; after the commit
the events go into the trail and only then are their outbox rows deleted, so a crash or a failing
trail loses nothing, and rows left behind are recorded exactly once by :func:`drain` (at the first
commit of a process, at a commit every ``SWEEP_INTERVAL`` seconds, and by ``manage.py graven_drain``).

Same database (``GRAVEN["SAME_DATABASE"] = ["default"]``): when the log lives in that PostgreSQL
database, each event is written into the log's own outbox (``captured``) in the transaction of the
change, through the log's SECURITY DEFINER function ``capture_record`` (``graven pg grant-record
ROLE`` for the application's role), instead of ``graven_outbox`` and the commit after it: the
application's commit is the only commit. The events enter the log at the trail's next write,
:func:`drain` (``manage.py graven_drain``) or ``graven pg integrate --follow``. The first such write
checks that the alias reaches the log's database and may run the function (ConfigError otherwise);
an event holding U+0000, which jsonb cannot store, still takes ``graven_outbox``.

Not captured: raw SQL (``cursor.execute``, ``QuerySet.raw``), writes by other programs,
``bulk_create(..., ignore_conflicts=True)`` rows whose primary key the database does not return,
and subclasses (multi-table inheritance) of a tracked model that are not registered themselves.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar, overload

import orjson
from django.db import DEFAULT_DB_ALIAS, connections, router, transaction
from django.db.models import DecimalField, Field, ManyToManyField, Model, QuerySet
from django.db.models.fields.files import FieldFile
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save

from graven import context
from graven.capture import _rows, outbox
from graven.core.model import ACTION_RE
from graven.errors import ConfigError

__all__ = ["drain", "track", "tracked", "untrack"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=type[Model])
BATCH = 500
SWEEP_INTERVAL = 30.0


@dataclass(frozen=True)
class Tracked:
    """How one model is recorded."""

    model: type[Model]
    rows: _rows.Model  # noun, action, recorded attnames, redacted attnames, primary key attname
    m2m: tuple[ManyToManyField[Any, Any], ...]
    m2m_redacted: frozenset[str]
    fields: dict[str, Field[Any, Any]]  # by column attribute


@dataclass(frozen=True)
class _Request:
    exclude: tuple[str, ...]
    include: tuple[str, ...] | None
    redact: tuple[str, ...]
    name: str | None


_requested: dict[type[Model], _Request] = {}
_registry: dict[type[Model], Tracked] = {}
# The verb of an update, decided from its changes (the user model's password: password.change).
update_verbs: dict[type[Model], Callable[[list[dict[str, Any]]], str | None]] = {}
_through: dict[type[Model], list[tuple[Tracked, ManyToManyField[Any, Any]]]] = {}
_lock = threading.RLock()


# --- registering --------------------------------------------------------------------------------


@overload
def track(model: M, /, **options: Any) -> M: ...
@overload
def track(model: None = None, /, **options: Any) -> Callable[[M], M]: ...
def track(  # type: ignore[misc]
    model: M | None = None,
    /,
    *,
    exclude: Iterable[str] = (),
    include: Iterable[str] | None = None,
    redact: Iterable[str] = (),
    name: str | None = None,
) -> M | Callable[[M], M]:
    """Record every change of ``model``: ``track(Order)``, ``@track`` or ``@track(exclude=[...])``.

    ``include``: only these fields (by name or column attribute); ``exclude``: never these;
    ``redact``: recorded as changed, never with a value. ``name``: the noun of the actions and
    targets (default: the class name in snake_case). Checked against the model's fields when the
    app registry is ready (a wrong name raises :class:`ConfigError` naming it).
    """

    def register(cls: M) -> M:
        request = _Request(tuple(exclude), None if include is None else tuple(include), tuple(redact), name)
        with _lock:
            _requested[cls] = request
            if _ready.is_set():
                _install(cls, request)
        return cls

    return register if model is None else register(model)


def untrack(model: type[Model]) -> None:
    """Stop recording ``model``'s changes (tests; changes already staged are still delivered)."""
    with _lock:
        _requested.pop(model, None)
        found = _registry.pop(model, None)
        if found is None:
            return
        for signal, fn in _MODEL_SIGNALS:
            signal.disconnect(fn, sender=model, dispatch_uid=_uid(fn, model))
        for field in found.m2m:
            through: Any = field.remote_field.through
            kept = [(t, f) for t, f in _through.get(through, []) if t is not found]
            if kept:
                _through[through] = kept
            else:
                _through.pop(through, None)
                m2m_changed.disconnect(_on_m2m, sender=through, dispatch_uid=_uid(_on_m2m, through))


def tracked(model: type[Model]) -> Tracked | None:
    """How ``model`` (or the concrete model of a proxy) is recorded, or None when it is not tracked."""
    found = _registry.get(model)
    concrete = model._meta.concrete_model
    if found is None and model._meta.proxy and concrete is not None:
        found = _registry.get(concrete)
    return found


_ready = threading.Event()


def install_all(settings_models: Sequence[Any]) -> None:
    """At app ready: resolve the decorated models and those named in ``GRAVEN["MODELS"]``."""
    from django.apps import apps

    with _lock:
        for options in settings_models:
            try:
                cls = apps.get_model(options.label)
            except (LookupError, ValueError):
                continue  # the system check names it
            _requested[cls] = _Request(options.exclude, options.include, options.redact, options.name)
        _ready.set()
        _problems.clear()
        for cls, request in list(_requested.items()):
            try:
                _install(cls, request)
            except ConfigError as exc:
                _problems.append((cls, str(exc)))
        _patch_querysets()
    if _problems:
        raise ConfigError(_problems[0][1])


_problems: list[tuple[type[Model], str]] = []


def problems() -> list[tuple[type[Model], str]]:
    """Decorated models whose options name fields they lack (the system check reports them)."""
    return list(_problems)


def describe(
    cls: type[Model], exclude: Sequence[str], include: Sequence[str] | None, redact: Sequence[str], name: str | None
) -> Tracked:
    """How ``cls`` would be recorded with these options; :class:`ConfigError` names a wrong one."""
    return _describe(cls, _Request(tuple(exclude), None if include is None else tuple(include), tuple(redact), name))


def _describe(cls: type[Model], request: _Request) -> Tracked:
    label = cls._meta.label
    concrete: list[Field[Any, Any]] = list(cls._meta.concrete_fields)
    m2m_fields = [f for f in cls._meta.local_many_to_many if isinstance(f, ManyToManyField)]
    known = {f.name for f in concrete} | {f.attname for f in concrete} | {f.name for f in m2m_fields}
    for option, names in (("exclude", request.exclude), ("include", request.include or ()), ("redact", request.redact)):
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(
                f"track({label}): {option} names no field {unknown[0]!r} (fields: {', '.join(sorted(known))})"
            )

    def chosen(f: Field[Any, Any]) -> bool:
        names = {f.name, f.attname}
        if request.include is not None and not names & set(request.include):
            return False
        return not names & set(request.exclude)

    pk = cls._meta.pk
    assert pk is not None
    keys = tuple(f.attname for f in concrete if chosen(f) and f is not pk)
    redacted = frozenset(f.attname for f in concrete if {f.name, f.attname} & set(request.redact))
    noun = request.name or _rows.noun(cls)
    if not ACTION_RE.fullmatch(f"{noun}.create") or len(noun) > 150:
        raise ConfigError(f"track({label}): name {noun!r} cannot start an action: use letters, digits, _ and -")
    excluded = frozenset(f.attname for f in concrete if not chosen(f))
    rows = _rows.Model(noun, noun, keys, redacted, (pk.attname,), excluded)
    m2m = tuple(f for f in m2m_fields if chosen(f))
    redacted_m2m = frozenset(f.name for f in m2m if f.name in request.redact)
    return Tracked(cls, rows, m2m, redacted_m2m, {f.attname: f for f in concrete})


def _install(cls: type[Model], request: _Request) -> None:
    if cls._meta.abstract:
        raise ConfigError(f"track({cls.__name__}): an abstract model has no rows; track its concrete subclasses")
    described = _describe(cls, request)
    _registry[cls] = described
    for signal, fn in _MODEL_SIGNALS:
        signal.connect(fn, sender=cls, weak=False, dispatch_uid=_uid(fn, cls))
    for field in described.m2m:
        through = field.remote_field.through
        assert isinstance(through, type)
        entries = [(t, f) for t, f in _through.get(through, []) if t.model is not cls]
        _through[through] = [*entries, (described, field)]
        m2m_changed.connect(_on_m2m, sender=through, weak=False, dispatch_uid=_uid(_on_m2m, through))
    atomic_saves(cls)


def _uid(fn: Callable[..., Any], sender: type) -> str:
    return f"graven.django.{fn.__name__}.{sender.__module__}.{sender.__qualname__}"


def atomic_saves(cls: type[Model]) -> None:
    """Run the model's ``save_base`` in a transaction, so the outbox row commits with the row itself."""
    original = cls.save_base
    if getattr(original, "_graven_atomic", False):
        return

    def save_base(self: Model, *args: Any, **kwargs: Any) -> Any:
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        with transaction.atomic(using=using, savepoint=False):
            return original(self, *args, **kwargs)

    save_base._graven_atomic = True  # type: ignore[attr-defined]
    cls.save_base = save_base  # type: ignore[method-assign]


# --- values -------------------------------------------------------------------------------------


def _json_value(value: Any, field: Field[Any, Any] | None = None) -> Any:
    """A field's value as :func:`graven.core.diff.diff` takes it: in the field's own type (a decimal
    at its decimal places, so ``"42.00"`` set in memory equals ``42`` read back), files by name, bytes as hex."""
    if field is not None and value is not None and not isinstance(value, FieldFile):
        with contextlib.suppress(Exception):  # a value the field cannot parse is recorded as given
            value = field.to_python(value)
        if isinstance(field, DecimalField) and isinstance(value, Decimal) and value.is_finite():
            places = field.decimal_places
            if places is not None:
                value = value.quantize(Decimal(1).scaleb(-places))
    if isinstance(value, FieldFile):
        return value.name or None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return value


def _row(t: Tracked, obj: Model) -> dict[str, Any]:
    """The loaded fields of ``obj`` (a deferred field is not loaded here: that would cost a query each)."""
    deferred = obj.get_deferred_fields()
    return {
        k: _json_value(getattr(obj, k, None), t.fields.get(k))
        for k in (*t.rows.pk, *t.rows.keys)
        if k not in deferred and t.fields[k].attname not in deferred
    }


def _stored(t: Tracked, using: str, pks: Sequence[Any], *, lock: bool = False) -> dict[Any, dict[str, Any]]:
    """The recorded columns of the rows with these primary keys, as stored now."""
    manager = t.model._base_manager.using(using)
    pk = t.rows.pk[0]
    out: dict[Any, dict[str, Any]] = {}
    for i in range(0, len(pks), BATCH):
        query = manager.filter(pk__in=list(pks[i : i + BATCH]))
        if lock and connections[using].features.has_select_for_update:
            query = query.select_for_update()
        for row in query.values(*t.rows.pk, *t.rows.keys):
            out[row[pk]] = {k: _json_value(v, t.fields.get(k)) for k, v in row.items()}
    return out


# --- signals ------------------------------------------------------------------------------------

_OLD = "_graven_old"


def _on_pre_save(sender: type[Model], instance: Model, raw: bool = False, using: str | None = None,
                 update_fields: Any = None, **kwargs: Any) -> None:  # fmt: skip
    t = tracked(sender)
    if t is None or raw:
        return
    instance.__dict__.pop(_OLD, None)
    if instance._state.adding or instance.pk is None:
        return
    using = using or DEFAULT_DB_ALIAS
    found = _stored(t, using, [instance.pk], lock=True).get(instance.pk)
    if found is not None:
        instance.__dict__[_OLD] = found


def _on_post_save(sender: type[Model], instance: Model, created: bool = False, raw: bool = False,
                  using: str | None = None, update_fields: Any = None, **kwargs: Any) -> None:  # fmt: skip
    t = tracked(sender)
    if t is None or raw:
        return
    using = using or DEFAULT_DB_ALIAS
    old = instance.__dict__.pop(_OLD, None)
    new = _row(t, instance)
    if created or old is None:
        _stage(using, [_event(t, "create", instance.pk, _rows.created(new, t.rows))])
        return
    if update_fields is not None:
        saved = {f.attname for f in (t.model._meta.get_field(n) for n in update_fields) if hasattr(f, "attname")}
        new = {k: v for k, v in new.items() if k in saved}
    new = {**old, **new}  # fields not saved (deferred, or left out of update_fields) keep their values
    changes = _rows.changed(old, new, t.rows)
    if changes:
        hook = update_verbs.get(t.model)
        _stage(using, [_event(t, (hook and hook(changes)) or "update", instance.pk, changes)])


def _on_pre_delete(sender: type[Model], instance: Model, using: str | None = None, **kwargs: Any) -> None:
    t = tracked(sender)
    if t is not None:
        row = _row(t, instance)
        if len(row) < len(t.rows.pk) + len(t.rows.keys):  # deferred fields: read them as stored
            row = {**_stored(t, using or DEFAULT_DB_ALIAS, [instance.pk]).get(instance.pk, {}), **row}
        instance.__dict__[_OLD] = row


def _on_post_delete(sender: type[Model], instance: Model, using: str | None = None, **kwargs: Any) -> None:
    t = tracked(sender)
    if t is None:
        return
    old = instance.__dict__.pop(_OLD, None) or _row(t, instance)
    _stage(using or DEFAULT_DB_ALIAS, [_event(t, "delete", old.get(t.rows.pk[0]), _rows.deleted(old, t.rows))])


_M2M_BEFORE = "_graven_m2m_before"


def _on_m2m(sender: type[Model], instance: Model, action: str, reverse: bool, model: type[Model],
            pk_set: set[Any] | None, using: str | None = None, **kwargs: Any) -> None:  # fmt: skip
    using = using or DEFAULT_DB_ALIAS
    for t, field in _through.get(sender, []):
        forward = not reverse and isinstance(instance, t.model)
        if not forward and not (reverse and issubclass(model, t.model)):
            continue
        key = f"{_M2M_BEFORE}.{sender._meta.label}.{field.name}.{action.split('_', 1)[1]}"
        source, target = field.m2m_field_name(), field.m2m_reverse_field_name()
        links = field.remote_field.through._base_manager.using(using)  # type: ignore[union-attr]
        if action.startswith("pre_"):
            if forward:
                owners = [instance.pk]
            elif action == "pre_clear":
                owners = list(links.filter(**{target: instance.pk}).values_list(f"{source}_id", flat=True))
            else:
                owners = list(pk_set or ())
            before: dict[Any, set[Any]] = {o: set() for o in owners}
            for owner, other in links.filter(**{f"{source}__in": owners}).values_list(f"{source}_id", f"{target}_id"):
                before[owner].add(other)
            instance.__dict__[key] = before
            continue
        before = instance.__dict__.pop(key, None)
        if before is None:
            continue
        verb = action.split("_", 1)[1]
        events = []
        for owner, had in before.items():
            if verb == "clear":
                now: set[Any] = set() if forward else had - {instance.pk}
                moved = had - now
            else:
                moved = set(pk_set or ()) if forward else {instance.pk}
                now = had | moved if verb == "add" else had - moved
            if now == had:
                continue
            if field.name in t.m2m_redacted:
                changes: list[dict[str, Any]] = [{"field": field.name, "redacted": True}]
            else:
                changes = [{"field": field.name, "old": _sorted_keys(had), "new": _sorted_keys(now)}]
            related = field.related_model
            other_noun = _noun_of(related) if isinstance(related, type) else "object"
            targets = [{"type": other_noun, "id": str(p)} for p in _sorted_keys(moved)][:50]
            events.append(_event(t, f"{field.name}.{verb}", owner, changes, extra_targets=targets))
        if events:
            _stage(using, events)


def _noun_of(model: type[Model]) -> str:
    found = tracked(model)
    return found.rows.noun if found is not None else _rows.noun(model)


def _sorted_keys(values: Iterable[Any]) -> list[Any]:
    shown = [v if isinstance(v, int | str) else str(v) for v in values]
    return sorted(shown, key=lambda v: (isinstance(v, str), v))


_MODEL_SIGNALS: tuple[tuple[Any, Callable[..., None]], ...] = (
    (pre_save, _on_pre_save),
    (post_save, _on_post_save),
    (pre_delete, _on_pre_delete),
    (post_delete, _on_post_delete),
)


# --- bulk statements ------------------------------------------------------------------------------

_patched = False


def _patch_querysets() -> None:
    """Capture ``QuerySet.update()`` (which ``bulk_update`` uses) and ``bulk_create`` of tracked models."""
    global _patched
    if _patched:
        return
    _patched = True
    original_update = QuerySet.update
    original_bulk_create = QuerySet.bulk_create

    def update(self: QuerySet[Any], **kwargs: Any) -> int:
        t = tracked(self.model)
        if t is None:
            return original_update(self, **kwargs)
        using = self.db
        with transaction.atomic(using=using, savepoint=False):
            pks = list(self.values_list("pk", flat=True))
            before = _stored(t, using, pks, lock=True)
            count = original_update(self, **kwargs)
            after = _stored(t, using, list(before))
            events = []
            for pk, old in before.items():
                new = after.get(pk)
                changes = _rows.deleted(old, t.rows) if new is None else _rows.changed(old, new, t.rows)
                if changes:
                    events.append(_event(t, "update", pk, changes))
            _stage(using, events)
        return count

    def bulk_create(self: QuerySet[Any], objs: Iterable[Model], *args: Any, **kwargs: Any) -> list[Model]:
        t = tracked(self.model)
        if t is None:
            return original_bulk_create(self, objs, *args, **kwargs)
        using = self.db
        with transaction.atomic(using=using, savepoint=False):
            made = original_bulk_create(self, objs, *args, **kwargs)
            events = [_event(t, "create", o.pk, _rows.created(_row(t, o), t.rows)) for o in made if o.pk is not None]
            _stage(using, events)
        return made

    QuerySet.update = update  # type: ignore[method-assign]
    QuerySet.bulk_create = bulk_create  # type: ignore[method-assign,assignment]


# --- the outbox -----------------------------------------------------------------------------------


def stage_plain(using: str, event: dict[str, Any]) -> None:
    """Stage an event that is not a tracked model's change (password changes) in the current transaction."""
    _stage(using, [_staged(event)])


def _staged(event: dict[str, Any]) -> dict[str, Any]:
    from graven.django import conf

    return outbox.staged_event(
        conf.trail(), event, default_actor=context.actor_of(conf.settings().default_actor),
        source=None if context.current().get("source") else "app",
    )  # fmt: skip


def _event(t: Tracked, verb: str, pk: Any, changes: list[dict[str, Any]],
           extra_targets: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:  # fmt: skip
    event = {
        "action": f"{t.rows.action}.{verb}",
        "targets": [{"type": t.rows.noun, "id": str(pk)}, *extra_targets],
        "changes": changes,
    }
    return _staged(event)


def _stage(using: str, docs: list[dict[str, Any]]) -> None:
    """Write events to the outbox in the current transaction; deliver them after it commits
    (``SAME_DATABASE``: into the log's own outbox, for the sequencer to integrate)."""
    if not docs:
        return
    from graven.django.models import OutboxEvent

    call = _record_call(using)
    if call is not None:
        direct: list[dict[str, Any]] = []
        kept: list[dict[str, Any]] = []
        for d in docs:  # an event holding U+0000 (which jsonb cannot hold) keeps graven_outbox
            (direct if outbox.jsonb_problem(d) is None else kept).append(d)
        if direct:
            with connections[using].cursor() as cursor:
                cursor.execute(call, [orjson.dumps(direct).decode()])
        docs = kept
        if not docs:
            return

    now = time.time()
    rows = [OutboxEvent(event_id=d["id"], event=orjson.dumps(d).decode(), created_at=now) for d in docs]
    OutboxEvent.objects.using(using).bulk_create(rows)
    if using not in _last_sweep:
        _backlog.add(using)  # rows a previous process left behind go first
    transaction.on_commit(lambda: deliver(using, docs), using=using)


_backlog: set[str] = set()
_last_sweep: dict[str, float] = {}
_same: dict[str, tuple[Any, str | None]] = {}  # alias -> (the trail it was checked with, the SQL or None)


def _record_call(using: str) -> str | None:
    """The SQL writing events through ``capture_record`` for ``using``, or None when it is not SAME_DATABASE."""
    from graven.django import conf

    if using not in conf.settings().same_database:
        return None
    trail = conf.trail()
    known = _same.get(using)
    if known is not None and known[0] is trail:
        return known[1]
    from graven.capture import pg

    connection = connections[using]
    if connection.vendor != "postgresql":
        raise ConfigError(
            f"GRAVEN['SAME_DATABASE'] names {using!r}, a {connection.vendor} database: "
            "it must be the log's own PostgreSQL database"
        )

    def query(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return [tuple(row) for row in cursor.fetchall()]

    schema = pg.same_database(trail, query)
    from psycopg.sql import Identifier

    call = f"SELECT {Identifier(schema).as_string()}.capture_record(%s::jsonb)"
    _same[using] = (trail, call)
    return call


def deliver(using: str, docs: list[dict[str, Any]]) -> None:
    """Record committed events, then delete their outbox rows (a failure leaves them for :func:`drain`)."""
    from graven.django import conf
    from graven.django.models import OutboxEvent

    if using in _backlog or time.monotonic() - _last_sweep.get(using, float("-inf")) >= SWEEP_INTERVAL:
        try:
            drain(using, exclude={d["id"] for d in docs}, integrate=False)
        except Exception as exc:  # the commit stands; the rows wait for the next drain
            log.warning("graven: could not drain the outbox of database %r: %s", using, exc)
    try:
        outbox.record(conf.trail(), docs)
    except Exception as exc:
        _backlog.add(using)
        log.warning("graven: %d committed changes wait in the outbox of %r: %s", len(docs), using, exc)
        return
    ids = [d["id"] for d in docs]
    for i in range(0, len(ids), BATCH):
        OutboxEvent.objects.using(using).filter(event_id__in=ids[i : i + BATCH]).delete()


def drain(using: str | None = None, *, exclude: set[str] | None = None, integrate: bool = True) -> int:
    """Record every event waiting in the outbox of ``using`` (every database when None); returns how many
    (with ``SAME_DATABASE`` and ``integrate``: and integrate the log's own outbox, adding how many moved).

    Safe to run from many processes at once: an event already in the trail is not appended again.
    """
    from graven.django import conf
    from graven.django.models import OutboxEvent

    aliases = [using] if using is not None else [a for a in connections if _has_outbox(a)]
    moved = 0
    for alias in aliases:
        _backlog.discard(alias)
        _last_sweep[alias] = time.monotonic()
        last = -1
        while True:
            query = OutboxEvent.objects.using(alias).filter(seq__gt=last).order_by("seq")
            rows = list(query.values_list("seq", "event_id", "event")[:BATCH])
            if not rows:
                break
            last = rows[-1][0]
            chosen = [r for r in rows if not exclude or r[1] not in exclude]
            try:
                outbox.record_rows(conf.trail(), [(str(r[1]), str(r[2])) for r in chosen])
            except BaseException:
                _backlog.add(alias)
                raise
            OutboxEvent.objects.using(alias).filter(seq__in=[r[0] for r in chosen]).delete()
            moved += len(chosen)
    if integrate and conf.settings().same_database:
        moved += conf.trail().integrate()
    return moved


def _has_outbox(alias: str) -> bool:
    from graven.django.models import OutboxEvent

    if not router.allow_migrate_model(alias, OutboxEvent):
        return False
    with connections[alias].cursor() as cursor:
        return OutboxEvent._meta.db_table in connections[alias].introspection.table_names(cursor)
