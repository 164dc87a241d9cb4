"""Graven for Django: add ``"graven.django"`` to ``INSTALLED_APPS`` and its middleware, name models to track.

    INSTALLED_APPS += ["graven.django"]
    MIDDLEWARE += ["graven.django.middleware.AuditMiddleware"]
    GRAVEN = {"LOG": "audit.db", "SIGNING_KEY": "audit.key", "MODELS": ["shop.Order"]}

:func:`trail` is the :class:`graven.Trail` the settings name (opened once per process);
:func:`track` registers a model (also as a decorator); :func:`drain` records what a crashed
process left in the outbox.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graven.trail import Trail

__all__ = ["drain", "track", "trail"]


def trail() -> Trail:
    """The trail named by ``settings.GRAVEN``."""
    from graven.django import conf

    return conf.trail()


def track(*args: Any, **kwargs: Any) -> Any:
    """See :func:`graven.django.tracking.track`."""
    from graven.django import tracking

    return tracking.track(*args, **kwargs)


def drain(using: str | None = None) -> int:
    """See :func:`graven.django.tracking.drain`."""
    from graven.django import tracking

    return tracking.drain(using)
