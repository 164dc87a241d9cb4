"""Upcasting: registered functions raise an old event shape to the current one, on read only.

``upcasters.register("EmailChanged", 1, fn)`` says ``fn`` turns the data of an ``EmailChanged`` of
shape 1 into shape 2; reading applies each step from the stored shape up to the newest registered.
The stored leaf MUST NOT change (the function gets a copy); an upcaster that raises or returns
something other than an object is reported as :class:`UpcastError`, naming the event type, the
shape and the entry.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from graven.errors import GravenError, ValidationError

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UpcastError(GravenError):
    """An upcaster failed on a stored event (the event is not read; nothing stored changes)."""


class Upcasters:
    """Upcasting steps per event type: shape n -> n + 1."""

    def __init__(self) -> None:
        self._steps: dict[str, dict[int, Upcaster]] = {}

    def register(self, event_type: str, from_shape: int, fn: Upcaster) -> None:
        """``fn`` raises the data of ``event_type`` from ``from_shape`` to ``from_shape + 1``."""
        if not isinstance(from_shape, int) or isinstance(from_shape, bool) or from_shape < 1:
            raise ValidationError("from_shape", "must be an integer from 1", from_shape)
        steps = self._steps.setdefault(event_type, {})
        if from_shape in steps:
            raise ValidationError("from_shape", f"already has an upcaster for {event_type}", from_shape)
        steps[from_shape] = fn

    def __call__(self, event_type: str, from_shape: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator form of :meth:`register`."""

        def wrap(fn: Upcaster) -> Upcaster:
            self.register(event_type, from_shape, fn)
            return fn

        return wrap

    def current(self, event_type: str) -> int:
        """The newest shape of ``event_type`` the registered steps reach (1 without any)."""
        steps = self._steps.get(event_type, {})
        return max(steps) + 1 if steps else 1

    def upcast(self, event_type: str, shape: int, data: dict[str, Any], *, where: str) -> tuple[int, dict[str, Any]]:
        """``(shape, data)`` raised through every registered step from ``shape`` on."""
        steps = self._steps.get(event_type)
        if not steps or shape not in steps:
            return shape, data
        data = copy.deepcopy(data)
        while shape in steps:
            try:
                out = steps[shape](data)
            except Exception as exc:
                raise UpcastError(
                    f"upcaster of {event_type} shape {shape} failed on {where}: {type(exc).__name__}: {exc}"
                ) from exc
            if not isinstance(out, dict):
                raise UpcastError(
                    f"upcaster of {event_type} shape {shape} returned {type(out).__name__}, not a dict, on {where}"
                )
            data, shape = out, shape + 1
        return shape, data


__all__ = ["UpcastError", "Upcaster", "Upcasters"]
