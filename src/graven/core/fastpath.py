"""The fast path of :func:`graven.core.model.prepare`, for events of the common shape.

Most events are plain dicts of text, small integers, booleans and nulls. :func:`prepare_fast`
accepts exactly those, reusing the model's own helpers for anything it does not inline, and returns
None (so that the full checks run from the start) on anything unusual or wrong.

MUST: build the very document, in the same key order, that the full checks build for the same
event (so the leaf bytes are the same). MUST NOT raise, nor call anything with side effects
(the id generator is called by the caller, once, after it succeeds); every rejection and its
message are left to the full checks. ``tests/core/test_fast_path.py`` holds it to both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from graven.core.model import (
    _ACTOR_FIELD_SET,
    _ACTOR_TYPE_SET,
    _CHANGE_FIELD_SET,
    _TARGET_FIELD_SET,
    INPUT_FIELDS,
    MAX_CHANGES,
    MAX_SAFE_INTEGER,
    MAX_STRING,
    MAX_TARGETS,
    OUTCOMES,
    SCHEMA_VERSION,
    _action,
    _changes,
    _Flags,
    _format_now,
    _good,
    _ip,
    _name,
    _source,
    _string,
    _walk,
    identifier,
    parse_time,
)

_OUTCOME_SET: Final = frozenset(OUTCOMES)
_FREE_LIMIT: Final = MAX_STRING // 4  # longer text goes through the UTF-8 byte count
_KNOWN_LIMIT: Final = 4096
_known_actions: set[str] = set()  # action and source texts already checked: they recur
_known_sources: set[str] = set()


def _plain(value: Any) -> bool:
    """A free-form value the walk would return unchanged: ASCII text, a safe int, bool, null."""
    kind = type(value)
    if kind is str:
        return len(value) <= _FREE_LIMIT and value.isascii()
    if kind is int:
        return -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER  # type: ignore[no-any-return]
    return value is None or kind is bool


def prepare_fast(event: dict[str, Any], now: datetime) -> tuple[dict[str, Any], _Flags] | None:
    """The full path's document for a common, valid event (``id`` None when one must be made)."""
    try:
        return _fast(event, now)
    except Exception:
        return None


def _fast(event: dict[str, Any], now: datetime) -> tuple[dict[str, Any], _Flags] | None:
    if not event.keys() <= INPUT_FIELDS:
        return None
    get = event.get
    if "v" in event:
        version = event["v"]
        if type(version) is not int or version != SCHEMA_VERSION:
            return None
    recorded_at = _format_now(now)
    ident = get("id")
    if ident is not None and not _good(ident):
        ident = identifier(ident, "id")
    occurred = get("occurred_at")
    doc: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "id": ident,
        "occurred_at": recorded_at if occurred is None else parse_time(occurred, "occurred_at"),
        "recorded_at": recorded_at,
    }
    actor = get("actor")
    if type(actor) is not dict or not actor.keys() <= _ACTOR_FIELD_SET:
        return None
    kind = actor.get("type", "user")
    if type(kind) is not str or kind not in _ACTOR_TYPE_SET:
        return None
    who: dict[str, str] = {"type": kind}
    item = actor.get("id")
    if item is not None:
        who["id"] = item if _good(item) else identifier(item, "actor.id")
    item = actor.get("name")
    if item is not None:
        who["name"] = item if _good(item) else _name(item, "actor.name")
    item = actor.get("ip")
    if item is not None:
        who["ip"] = _ip(item)
    item = actor.get("user_agent")
    if item is not None:
        who["user_agent"] = item if _good(item, 1024) else _name(item, "actor.user_agent", 1024)
    item = actor.get("session")
    if item is not None:
        who["session"] = item if _good(item) else identifier(item, "actor.session")
    if "id" not in who and kind in ("user", "service"):
        return None
    doc["actor"] = who
    action = get("action")
    if type(action) is not str:
        return None
    if action not in _known_actions:
        _action(action)
        if len(_known_actions) >= _KNOWN_LIMIT:
            _known_actions.clear()
        _known_actions.add(action)
    doc["action"] = action
    doc["targets"] = _fast_targets(event["targets"]) if "targets" in event else []
    outcome = get("outcome", "success")
    if type(outcome) is not str or outcome not in _OUTCOME_SET:
        return None
    doc["outcome"] = outcome
    flags = _Flags()
    changes = get("changes", ())
    doc["changes"] = _fast_changes(changes, flags) if changes else _changes(changes, flags)
    reason = get("reason")
    if reason is not None:
        doc["reason"] = _string(reason, "reason")
    source = get("source")
    if source is not None:
        if type(source) is not str:
            return None
        if source not in _known_sources:
            _source(source)
            if len(_known_sources) >= _KNOWN_LIMIT:
                _known_sources.clear()
            _known_sources.add(source)
        doc["source"] = source
    tenant = get("tenant")
    if tenant is not None:
        doc["tenant"] = tenant if _good(tenant) else identifier(tenant, "tenant")
    for key in ("context", "metadata"):
        value = get(key)
        if value is not None:
            if type(value) is not dict:
                return None
            doc[key] = _fast_object(value, flags)
    return doc, flags


def _fast_targets(value: Any) -> list[dict[str, str]]:
    if type(value) is not list:
        raise TypeError("not a list")  # tuples, single targets, errors: the full path
    if len(value) > MAX_TARGETS:
        raise ValueError("too many")
    out: list[dict[str, str]] = []
    for item in value:
        if type(item) is not dict or not item.keys() <= _TARGET_FIELD_SET:
            raise TypeError("not a plain target")
        kind, ident, name = item.get("type"), item.get("id"), item.get("name")
        if type(ident) is int:
            ident = str(ident)
        if not (_good(kind) and _good(ident)):
            raise ValueError("an unusual type or id")
        if out and any(t["type"] == kind and t["id"] == ident for t in out):
            raise ValueError("a repeated target")
        if name is None:
            out.append({"type": kind, "id": ident})
        else:
            out.append({"type": kind, "id": ident, "name": name if _good(name) else _name(name, "name")})
    return out


def _fast_changes(value: Any, flags: _Flags) -> list[dict[str, Any]]:
    if type(value) is not list or len(value) > MAX_CHANGES:
        raise TypeError("not a plain list")
    out = []
    for item in value:
        if type(item) is not dict or not item.keys() <= _CHANGE_FIELD_SET:
            raise TypeError("not a plain change")
        name = item.get("field")
        if not _good(name, 1000):
            name = identifier(name, "field", 1000)
        if "redacted" in item or "fingerprint" in item:
            redacted = item.get("redacted", False)
            if redacted is True and "old" not in item and "new" not in item:
                change: dict[str, Any] = {"field": name, "redacted": True}
                fingerprint = item.get("fingerprint")
                if fingerprint is not None:
                    change["fingerprint"] = fingerprint if _good(fingerprint) else identifier(fingerprint, "-")
                out.append(change)
                continue
            if redacted is not False or "fingerprint" in item:
                raise ValueError("an unusual redacted change")
        change = {"field": name}
        if "old" in item:
            old = item["old"]
            change["old"] = old if _plain(old) else _walk(old, 3, flags)
        elif "new" not in item:
            raise ValueError("a change with no value")
        if "new" in item:
            new = item["new"]
            change["new"] = new if _plain(new) else _walk(new, 3, flags)
        out.append(change)
    return out


def _fast_object(value: dict[Any, Any], flags: _Flags) -> dict[str, Any]:
    """context or metadata: a copy when every key is ASCII text and every value plain."""
    for key, item in value.items():
        if type(key) is not str or not key.isascii() or not _plain(item):
            return _walk(value, 1, flags)  # type: ignore[no-any-return]
    return dict(value)
