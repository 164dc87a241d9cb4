"""Every attempt recorded: a block or a function becomes exactly one entry, whatever happens.

``success`` when the block completes; ``denied`` when it raises :class:`Denied` (or one of the
configured exception types, such as a framework's PermissionDenied) or calls ``deny()``;
``failure`` when it raises anything else, keeping the error's type and message but never its
traceback. The exception always propagates. MUST record exactly one entry per block.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from graven.capture.request import note_denied
from graven.errors import GravenError

if TYPE_CHECKING:
    from graven.trail import Trail

F = TypeVar("F", bound=Callable[..., Any])
MAX_ERROR_TEXT = 1000


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

    def _event(self, exc: BaseException | None) -> dict[str, Any]:
        event: dict[str, Any] = {"action": self.name, "targets": self.targets, "changes": self.changes, **self.fields}
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

    def __enter__(self) -> Action:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        event = self._event(exc)
        self.index = self.trail.record(event)
        if event["outcome"] == "denied":
            note_denied()  # the request's own refusal is not recorded a second time

    async def __aenter__(self) -> Action:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        event = self._event(exc)
        self.index = await self.trail.arecord(event)
        if event["outcome"] == "denied":
            note_denied()


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
