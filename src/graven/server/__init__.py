"""Graven's HTTP audit service: ``graven serve``, or ``create_app(trail, config)`` in-process.

The names are loaded on first use, so the CLI's ``keys`` and ``users`` commands start without
importing FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graven.server.app import create_app
    from graven.server.config import ServerConfig

__all__ = ["ServerConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from graven.server.app import create_app

        return create_app
    if name == "ServerConfig":
        from graven.server.config import ServerConfig

        return ServerConfig
    raise AttributeError(f"module 'graven.server' has no attribute {name!r}")
