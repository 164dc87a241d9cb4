"""Who, from where and why, set once per request, job or script and carried by every entry inside.

Built on :mod:`contextvars`: each thread starts empty, each asyncio task starts with a copy of its
creator's context, and nested scopes add to (and override) the enclosing one, so one request's
actor never leaks into another's. MUST NOT override what an event states itself: the event's own
fields win over the context's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

ACTOR_KEYS = ("ip", "user_agent", "session")  # kept on the actor
EVENT_KEYS = ("source", "reason", "tenant")  # top-level fields of the entry
# everything else (request_id, trace_id, route, form, ...) goes into the entry's context

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_current: ContextVar[Mapping[str, Any]] = ContextVar("graven_context", default=_EMPTY)


def actor_of(value: Any) -> dict[str, Any] | None:
    """An actor given as ``"u-1"``, ``"service:billing"`` or a mapping, as a dict."""
    if value is None:
        return None
    if isinstance(value, str):
        kind, sep, ident = value.partition(":")
        if sep and kind in ("user", "service", "system", "anonymous"):
            return {"type": kind, "id": ident}
        return {"type": "user", "id": value}
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"actor must be an id, TYPE:ID or a mapping; got {type(value).__name__}")


@contextmanager
def scope(**fields: Any) -> Iterator[Mapping[str, Any]]:
    """Add ``fields`` to the current context for the duration of the block (None values are ignored)."""
    merged = dict(_current.get())
    for key, value in fields.items():
        if value is None:
            continue
        if key == "actor":
            previous = merged.get("actor") or {}
            given = actor_of(value) or {}
            # A new actor replaces the old one (keeping only where it comes from, if not restated).
            same = previous.get("id") == given.get("id") and previous.get("type") == given.get("type")
            merged["actor"] = {**previous, **given} if same else given
        else:
            merged[key] = value
    token = _current.set(MappingProxyType(merged))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def current() -> Mapping[str, Any]:
    """The context in force here (read-only)."""
    return _current.get()


def apply(event: Mapping[str, Any], ctx: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``event`` completed from the context: actor, where from, source, reason, tenant, context ids."""
    ctx = current() if ctx is None else ctx
    out = dict(event)
    if not ctx:
        return out
    actor = actor_of(out.get("actor")) if out.get("actor") is not None else actor_of(ctx.get("actor"))
    if actor is not None:
        for key in ACTOR_KEYS:
            if key in ctx and key not in actor:
                actor[key] = ctx[key]
        out["actor"] = actor
    for key in EVENT_KEYS:
        if key in ctx and out.get(key) is None:
            out[key] = ctx[key]
    extra = {k: v for k, v in ctx.items() if k not in ("actor", *ACTOR_KEYS, *EVENT_KEYS)}
    if extra:
        out["context"] = {**extra, **(out.get("context") or {})}
    return out
