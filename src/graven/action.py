"""Every attempt recorded: a block or a function becomes exactly one entry, whatever happens.

``success`` when the block completes; ``denied`` when it raises :class:`Denied` (or one of the
configured exception types, such as a framework's PermissionDenied) or calls ``deny()``;
``failure`` when it raises anything else, keeping the error's type and message but never its
traceback. The exception always propagates. MUST record exactly one entry per block.

One attempt, one entry: a tracked ORM change (:mod:`graven.capture.sqlalchemy`) committed inside
the block whose action and target are the block's own is folded into the block's entry (its field
changes are added) instead of becoming an entry of its own. Until the block's entry is recorded,
the change's outbox row stays, so a crash in between still records the change (on its own).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from graven.context import note_denied
from graven.errors import GravenError

if TYPE_CHECKING:
    from graven.trail import Trail

F = TypeVar("F", bound=Callable[..., Any])
MAX_ERROR_TEXT = 1000


class Folder(Protocol):
    """What folded a change into an action (a tracker): told when the action's entry is recorded, or is not."""

    def folded_recorded(self, ids: list[str]) -> None: ...

    def folded_released(self, ids: list[str]) -> None: ...


class Denied(GravenError):
    """Raise inside an action to refuse it; the entry is recorded as ``denied`` with this reason."""


class Action:
    """One attempted action; use ``with trail.action(...) as a:`` (or ``async with``)."""

    def __init__(
        self,
        trail: Trail,
        action: str,
        *,
        target: Any = None,
        targets: Any = None,
        reason: str | None = None,
        **fields: Any,
    ) -> None:
        self.trail = trail
        self.name = action
        self.targets = list(targets or []) + ([target] if target is not None else [])
        self.reason = reason
        self.fields = fields
        self.changes: list[dict[str, Any]] = []
        self.metadata: dict[str, Any] = dict(fields.pop("metadata", None) or {})
        self.index: int | None = None
        self._denied: str | None = None
        self._token: Token[Action | None] | None = None
        self._open = False
        self._keys = {_target_key(t) for t in self.targets}
        self._folded: dict[str, tuple[Folder, dict[str, Any]]] = {}  # event id -> (who folded it, its event)
        self._exc: BaseException | None = None

    def change(self, field: str, old: Any, new: Any) -> None:
        """Add one field change (a secret field is redacted by the trail's policy)."""
        self.changes.append({"field": field, "old": old, "new": new})

    def diff(self, before: Any, after: Any) -> None:
        """Add the field changes between two versions of an object (dict, dataclass, model...)."""
        from graven.core.diff import diff

        self.changes.extend(diff(before, after))

    def deny(self, reason: str) -> None:
        """Mark the attempt as refused; the block may go on (to clean up) but is recorded as denied."""
        self._denied = reason

    def takes(self, event: Mapping[str, Any]) -> bool:
        """Whether a captured event is this open block's own attempt (same action, a target of the block)."""
        targets: list[Any] = list(event.get("targets") or ())
        return (
            self._open
            and event.get("action") == self.name
            and len(targets) == 1
            and _target_key(targets[0]) in self._keys
        )

    def fold(self, folder: Folder, event: Mapping[str, Any]) -> bool:
        """Take a committed captured event into this block's entry; False when the block has ended."""
        if not self._open:
            return False
        self._folded[str(event["id"])] = (folder, dict(event))
        return True

    def _event(self, exc: BaseException | None) -> dict[str, Any]:
        own = {c.get("field") if isinstance(c, Mapping) else getattr(c, "field", None) for c in self.changes}
        folded = [c for _, ev in self._folded.values() for c in ev.get("changes") or () if c.get("field") not in own]
        event: dict[str, Any] = {
            "action": self.name, "targets": self.targets, "changes": [*self.changes, *folded], **self.fields
        }  # fmt: skip
        transactions = [
            ev["context"]["transaction"] for _, ev in self._folded.values() if "transaction" in ev.get("context", {})
        ]
        if transactions:
            event["context"] = {"transaction": transactions[0], **(event.get("context") or {})}
        if self.metadata:
            event["metadata"] = self.metadata
        reason = self.reason
        if exc is not None and self.trail.is_denial(exc):
            event["outcome"], reason = "denied", reason or _error_text(exc, with_type=False)
        elif exc is not None:
            event["outcome"] = "failure"
            event["metadata"] = {**event.get("metadata", {}), "error": _error_text(exc)}
            reason = reason or _error_text(exc)
        elif self._denied is not None:
            event["outcome"], reason = "denied", self._denied
        else:
            event["outcome"] = "success"
        if reason:
            event["reason"] = reason
        return event

    def _start(self) -> None:
        self._open = True
        self._token = _current.set(self)

    def _end(self) -> dict[str, Any]:
        self._open = False
        if self._token is not None:
            try:
                _current.reset(self._token)
            except ValueError:  # ended in another context than it began in (a framework's thread hop)
                _current.set(None)
            self._token = None
        return self._event(self._exc)

    def _settle(self, recorded: bool) -> None:
        """Tell the trackers whose changes were folded in whether this entry holds them now."""
        by_folder: dict[int, tuple[Folder, list[str]]] = {}
        for event_id, (folder, _) in self._folded.items():
            by_folder.setdefault(id(folder), (folder, []))[1].append(event_id)
        for folder, ids in by_folder.values():
            (folder.folded_recorded if recorded else folder.folded_released)(ids)

    def __enter__(self) -> Action:
        self._start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._exc = exc
        event = self._end()
        try:
            self.index = self.trail.record(event)
        except BaseException:
            self._settle(recorded=False)
            raise
        self._settle(recorded=True)
        if event["outcome"] == "denied":
            note_denied()  # the request's own refusal is not recorded a second time

    async def __aenter__(self) -> Action:
        self._start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exc = exc
        event = self._end()
        try:
            self.index = await self.trail.arecord(event)
        except BaseException:
            self._settle(recorded=False)
            raise
        self._settle(recorded=True)
        if event["outcome"] == "denied":
            note_denied()


_current: ContextVar[Action | None] = ContextVar("graven_action", default=None)


def current_action() -> Action | None:
    """The innermost ``trail.action()`` block open here, if any."""
    return _current.get()


def _target_key(target: Any) -> tuple[str, str]:
    """A target given as ``(type, id[, name])``, ``"type:id"``, a mapping or a Target, as ``(type, id)`` text."""
    if isinstance(target, tuple | list) and len(target) in (2, 3):  # (type, id) or (type, id, name)
        kind, ident = target[0], target[1]
        return str(kind), str(ident)
    if isinstance(target, Mapping):
        return str(target.get("type")), str(target.get("id"))
    if isinstance(target, str):
        kind, _, ident = target.partition(":")
        return kind, ident
    return str(getattr(target, "type", None)), str(getattr(target, "id", None))


def _error_text(exc: BaseException, *, with_type: bool = True) -> str:
    message = str(exc).strip()
    text = f"{type(exc).__name__}: {message}" if with_type and message else (message or type(exc).__name__)
    return text[:MAX_ERROR_TEXT]


def audited(trail: Trail, action: str, *, target: Callable[..., Any] | None = None, **fields: Any) -> Callable[[F], F]:
    """Decorate a function (sync or async) so that every call is one recorded attempt.

    ``target`` may be a callable taking the function's arguments and returning the target.
    """

    def decorate(function: F) -> F:
        def make(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Action:
            return Action(trail, action, target=target(*args, **kwargs) if target else None, **fields)

        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                async with make(args, kwargs):
                    return await function(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            with make(args, kwargs):
                return function(*args, **kwargs)

        return run  # type: ignore[return-value]

    return decorate
