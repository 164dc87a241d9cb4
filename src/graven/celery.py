"""Celery: a task runs with the context of the code that queued it, or as its own service actor.

``graven.celery.install(app)`` (in the module defining the Celery app, so that the web process
and the worker both run it) connects two things. When a task is queued, the actor, request id and
tenant of the trail's context travel in the message's ``graven`` header. When a worker runs the
task, they become its context, with ``source="job"``, the task's name and id: entries the task
records name the person who asked for the work. A task that nobody in particular queued (beat, a
script, another process without a context) is its own actor, ``{"type": "service", "id": TASK_NAME}``.

The header is believed as it is sent (shape and size checked, else the service actor): whoever can
publish to the broker can name an actor, so the broker MUST be reachable only by trusted
publishers. A task run in the caller's process (``apply()``, eager mode) keeps the caller's context.
"""

from __future__ import annotations

import contextvars
import weakref
from collections.abc import Mapping
from typing import Any

from celery import Celery, Task, signals

from graven import context

__all__ = ["HEADER", "carried", "install"]

HEADER = "graven"
_ACTOR_TYPES = ("user", "service", "system", "anonymous")
_LIMIT = 200  # characters of an id, name, request id or tenant carried in a header

_apps: weakref.WeakKeyDictionary[Celery, str] = weakref.WeakKeyDictionary()  # app -> source of its tasks
_tokens: dict[str, contextvars.Token[Mapping[str, Any]]] = {}


def install(app: Celery, *, source: str = "job") -> None:
    """Carry the trail's context from where tasks of ``app`` are queued to where they run."""
    _apps[app] = source
    # dispatch_uid: installing twice (or for several apps) connects each handler once.
    signals.before_task_publish.connect(_publish, weak=False, dispatch_uid="graven.celery.publish")
    signals.task_prerun.connect(_prerun, weak=False, dispatch_uid="graven.celery.prerun")
    signals.task_postrun.connect(_postrun, weak=False, dispatch_uid="graven.celery.postrun")


def carried() -> dict[str, Any]:
    """What the context in force here would send with a task: actor (type, id, name), request id, tenant."""
    ctx = context.current()
    out: dict[str, Any] = {}
    actor = ctx.get("actor")
    if isinstance(actor, Mapping):
        out["actor"] = {k: actor[k] for k in ("type", "id", "name") if isinstance(actor.get(k), str)}
    for key in ("request_id", "tenant"):
        if isinstance(ctx.get(key), str):
            out[key] = ctx[key]
    return out


def _publish(sender: Any = None, headers: dict[str, Any] | None = None, **extra: Any) -> None:
    if headers is None:
        return
    found = carried()
    if found:  # else a header given to apply_async(headers=...) is sent as it is
        headers[HEADER] = found


def _prerun(sender: Any = None, task_id: str | None = None, task: Task[Any, Any] | None = None, **extra: Any) -> None:
    if task is None or task_id is None or task.app not in _apps:
        return
    request = task.request
    fields: dict[str, Any] = {"task": task.name, "task_id": task_id}
    if not request.is_eager:  # eagerly run in the caller's own context, which already says who asked
        fields["source"] = _apps[task.app]
        fields.update(_received(request.get(HEADER)))
    if "actor" not in fields and not context.current().get("actor"):
        fields["actor"] = {"type": "service", "id": str(task.name)[:_LIMIT]}
    _tokens[task_id] = context.push(**fields)


def _postrun(sender: Any = None, task_id: str | None = None, **extra: Any) -> None:
    token = _tokens.pop(task_id, None) if task_id is not None else None
    if token is not None:
        context.reset(token)


def _received(value: Any) -> dict[str, Any]:
    """The ``graven`` header as sent, reduced to well-formed fields (anything else is dropped)."""
    if not isinstance(value, Mapping):
        return {}
    out: dict[str, Any] = {}
    actor = value.get("actor")
    if isinstance(actor, Mapping) and actor.get("type") in _ACTOR_TYPES:
        kept = {k: actor[k] for k in ("type", "id", "name") if isinstance(actor.get(k), str) and actor[k]}
        if all(len(v) <= _LIMIT for v in kept.values()) and (kept.get("id") or kept["type"] == "anonymous"):
            out["actor"] = kept
    for key in ("request_id", "tenant"):
        text = value.get(key)
        if isinstance(text, str) and 0 < len(text) <= _LIMIT and text.isprintable():
            out[key] = text
    return out
