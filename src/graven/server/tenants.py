"""Several logs behind one service: each log's own app under ``/logs/<name>/``.

``graven serve --logs tenant-a,tenant-b`` serves every named log (see :mod:`graven.store.logs`) as
a complete service of its own under ``/logs/<name>/`` (its API at ``/logs/<name>/api/v1``). Each
log keeps its API keys, users and sessions in its own store, so a key exists in exactly one log:
presented under another log's prefix it is an unknown key (401, recorded in that log), and no
route of one log reads another. A path outside every served log is a 404 that names no log. The
web UI is not served here (its pages link from the root): serve one log per process for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Request, Response
from starlette.exceptions import HTTPException

from graven.server.limits import error_body
from graven.store.logs import check_log, logs_from_text

LOGS_ENV = "GRAVEN_SERVE_LOGS"
"""Comma-separated log names ``graven serve --logs`` hands its worker processes."""


def tenant_app(apps: Mapping[str, FastAPI]) -> FastAPI:
    """One app serving each of ``apps`` (log name -> that log's service) under ``/logs/<name>``;
    the lifespan runs every log's own (its watcher, and closing its trail at shutdown)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for app in apps.values():
                await stack.enter_async_context(app.router.lifespan_context(app))
            yield

    root = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
    for name, app in apps.items():
        root.mount(f"/logs/{check_log(name)}", app)

    async def not_served(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        message = "no log is served here: each log's API is under /logs/<name>/api/v1"
        return Response(error_body("not_found", message), status_code=status, media_type="application/json")

    root.add_exception_handler(HTTPException, not_served)
    return root


__all__ = ["LOGS_ENV", "logs_from_text", "tenant_app"]  # logs_from_text: re-exported for the app factory
