"""Who, from where and why, set once per request, job or script and carried by every entry inside.

Built on :mod:`contextvars`: each thread starts empty, each asyncio task starts with a copy of its
creator's context, and nested scopes add to (and override) the enclosing one, so one request's
actor never leaks into another's. MUST NOT override what an event states itself: the event's own
fields win over the context's.

A new thread starts empty: work handed to a thread pool takes its submitter's context along through
:func:`carry` or :class:`ContextThreadPoolExecutor` (``asyncio.to_thread`` copies it by itself;
``loop.run_in_executor`` does not). The ids of an active OpenTelemetry span are added by
:func:`apply` too (see :mod:`graven.otel`).
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, ParamSpec, TypeVar

from graven.otel import span_ids

P = ParamSpec("P")
R = TypeVar("R")

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
    token = push(**fields)
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def push(**fields: Any) -> contextvars.Token[Mapping[str, Any]]:
    """Add ``fields`` to the current context until ``reset(token)``, for hooks that cannot hold a block.

    Prefer :func:`scope`. MUST be undone in the same :class:`contextvars.Context`, or be made in a
    context that is thrown away afterwards (as the WSGI middleware runs each request in its own).
    """
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
    return _current.set(MappingProxyType(merged))


def reset(token: contextvars.Token[Mapping[str, Any]]) -> None:
    """Undo a :func:`push`."""
    _current.reset(token)


def current() -> Mapping[str, Any]:
    """The context in force here (read-only)."""
    return _current.get()


def apply(event: Mapping[str, Any], ctx: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``event`` completed from the context: actor, where from, source, reason, tenant, context ids."""
    ctx = current() if ctx is None else ctx
    out = dict(event)
    span = span_ids()
    if not ctx:
        if span is not None and isinstance(out.get("context") or {}, Mapping):
            out["context"] = {**span, **(out.get("context") or {})}
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
    if span is not None:
        extra = {**span, **extra}
    if extra and isinstance(out.get("context") or {}, Mapping):  # else validation names the bad context
        out["context"] = {**extra, **(out.get("context") or {})}
    return out


def carry(function: Callable[P, R]) -> Callable[P, R]:
    """``function`` bound to the context in force now, to run in another thread.

    ``pool.submit(carry(work), item)``: entries ``work`` records carry this request's actor, ip,
    request id... Each call runs in its own copy of that context, so calls may run at once in
    several threads and what one of them sets does not reach the others or the caller.
    """
    captured = contextvars.copy_context()

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(function, *args, **kwargs)

    return run


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A :class:`~concurrent.futures.ThreadPoolExecutor` whose tasks run in their submitter's context.

    ``submit`` and ``map`` take the context in force where they are called (the actor and request
    of ``trail.context``, an OpenTelemetry span) to the worker thread, as :func:`carry` does.
    """

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)  # type: ignore[arg-type]
