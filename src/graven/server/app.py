"""``create_app(trail, config)``: Graven's HTTP audit service as a FastAPI application.

Routes: the log (``api``), keys and users (``admin_api``), signing in (``signin``). Errors are
JSON ``{"error", "message", ...}`` with the field, rule or limit for bad input: 401, 403, 404, 409,
413, 422, 429, 503. The app's lifespan runs the log watcher (live tails, checkpoint hooks); the
trail stays the caller's to close.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException

from graven import __version__
from graven.capture.asgi import ClientAddresses
from graven.errors import ConfigError, GravenError, IntegrityError, NotFoundError, StoreError, ValidationError
from graven.security_headers import secure
from graven.server import admin_api, api, docs, forwarders_api, health, metrics, schemas, signin
from graven.server.accounts import AccountConflict, open_accounts
from graven.server.accounts.service import Accounts
from graven.server.auth import ApiError, current_principal, deny, deny_anonymous
from graven.server.config import ServerConfig, ServerState
from graven.server.jobs import Jobs
from graven.server.limits import (
    ASGIApp,
    BodyLimit,
    FailureLimiter,
    Message,
    Receive,
    Scope,
    Send,
    error_body,
)
from graven.server.logs import RequestLog
from graven.server.metrics import Metrics
from graven.server.ui import mount_ui
from graven.server.watch import LogWatcher, one_line
from graven.trail import Trail

log = logging.getLogger("graven.server")

COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": schemas.Error, "description": "no credentials, or a key that is unknown, revoked or wrong"},
    403: {"model": schemas.Error, "description": "the caller's role may not use this route, or a missing CSRF token"},
    404: {"model": schemas.Error, "description": "no such entry, job, key or user"},
    409: {"model": schemas.Error, "description": "a name is taken, or the log is damaged"},
    413: {"model": schemas.Error, "description": "the request body is larger than the limit"},
    422: {"model": schemas.Error, "description": "bad input: the field, the rule and what was given"},
    429: {"model": schemas.Error, "description": "too many failed authentications; see Retry-After"},
    503: {"model": schemas.Error, "description": "the log's storage is unavailable or misconfigured"},
}


def _error(status: int, error: str, message: str, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    return Response(error_body(error, message, **extra), status_code=status, media_type="application/json",
                    headers=headers)  # fmt: skip


def create_app(trail: Trail, config: ServerConfig, *, owns_trail: bool = False, ui: bool = True) -> FastAPI:
    """The service for one open trail. ``config.on_checkpoint`` hooks get each new checkpoint's note.

    The trail stays the caller's to close, unless ``owns_trail`` (then the app's shutdown closes it).
    Without ``ui`` only the API is served (a log under ``/logs/NAME/``: the pages link from the root).
    """
    accounts = Accounts(trail, open_accounts(trail.store), config.secret, session_ttl=config.session_ttl)
    watcher = LogWatcher(trail, config.tail_poll, config.on_checkpoint)
    figures = Metrics(trail)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await watcher.start()
        try:
            yield
        finally:
            end_live_pages()
            figures.close()
            if await watcher.stop() and owns_trail:
                for close in (accounts.store.close, trail.close):
                    try:
                        close()
                    except GravenError as exc:  # e.g. the database is gone: one line, and exit cleanly
                        log.error("graven: could not close the log cleanly: %s", one_line(exc))

    app = FastAPI(title="Graven", version=__version__, lifespan=lifespan, openapi_url="/api/v1/openapi.json",
                  docs_url=None, redoc_url=None,  # no page that runs scripts from another host: see docs.py
                  description="A tamper-evident audit trail: record events, query them, prove and verify them.",
                  )  # fmt: skip
    app.state.graven = ServerState(
        trail=trail, config=config, accounts=accounts,
        limiter=FailureLimiter(config.auth_failure_limit, config.auth_failure_window), watcher=watcher,
        jobs=Jobs(trail, accounts.store, on_result=figures.verified),
        addresses=ClientAddresses(config.trusted_proxies), metrics=figures,
    )  # fmt: skip
    for router in (api.router, admin_api.router, signin.router):
        app.include_router(router, responses=COMMON_ERRORS)
    app.include_router(health.router)  # /healthz and /readyz: no credentials, no content
    app.include_router(metrics.router)  # /metrics: the metrics role (or admin)
    app.include_router(forwarders_api.router, responses=COMMON_ERRORS)
    _handle_errors(app)
    docs.install(app)
    end_live_pages = mount_ui(app, trail) if ui else (lambda: None)  # the web UI at /, behind sign-in
    app.add_middleware(BodyLimit, limit=config.max_body)
    app.add_middleware(StorageOutage)
    secure(app)  # CSP, nosniff, no framing: on every response, whichever route (or none) answers
    app.add_middleware(RequestLog)  # outermost: one log line per request, with its request id
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


class StorageOutage:
    """ASGI middleware: a project error that the error handlers cannot answer, because the answer had
    started (a tail or an export cut off when the database goes away), ends that answer with one
    log line instead of a traceback; one raised before the answer started gets 503 JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = ended = False

        async def tracking_send(message: Message) -> None:
            nonlocal started, ended
            started = started or message["type"] == "http.response.start"
            ended = ended or (message["type"] == "http.response.body" and not message.get("more_body", False))
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            cause = exc if isinstance(exc, GravenError) else exc.__cause__  # Starlette wraps it once started
            if not isinstance(cause, GravenError):
                raise
            log.error("graven: %s %s failed: %s", scope.get("method"), scope.get("path"), one_line(cause))
            if not started:
                body = error_body("store_unavailable", str(cause))
                await send({"type": "http.response.start", "status": 503,
                            "headers": [(b"content-type", b"application/json")]})  # fmt: skip
                await send({"type": "http.response.body", "body": body})
            elif not ended:  # end the cut-off stream properly (a client sees the stream end, not a broken one)
                await send({"type": "http.response.body", "body": b"", "more_body": False})


# The project's errors that answer with their message alone (the most specific class wins).
PLAIN_ERRORS: dict[type[Exception], tuple[int, str]] = {
    NotFoundError: (404, "not_found"),
    AccountConflict: (409, "conflict"),
    IntegrityError: (409, "log_damaged"),
    ConfigError: (503, "misconfigured"),
    StoreError: (503, "store_unavailable"),
    GravenError: (503, "error"),
}


def _plain_handler(status: int, error: str) -> Any:
    async def handle(request: Request, exc: Exception) -> Response:
        if status == 503:  # the storage is down or misconfigured: the operator hears of it, in one line
            log.error("graven: %s %s answered 503: %s", request.method, request.url.path, one_line(exc))
        return _error(status, error, str(exc))

    return handle


def _handle_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return _error(exc.status, exc.error, exc.message, exc.headers, **exc.extra)

    @app.exception_handler(ValidationError)
    async def invalid(request: Request, exc: ValidationError) -> Response:
        return _error(422, "invalid", str(exc), field=exc.field, rule=exc.rule, given=exc.given or None)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = [str(p) for p in first.get("loc", ())]
        field = ".".join(where[1:] if where and where[0] in ("query", "path", "body", "header") else where) or "body"
        given = first.get("input")
        shown = None if given is None or isinstance(given, dict | list) else repr(given)[:80]
        rule = str(first.get("msg", "is invalid"))
        return _error(422, "invalid", f"{field}: {rule}" + (f"; got {shown}" if shown else ""), field=field,
                      rule=rule, given=shown)  # fmt: skip

    for kind, (status, error) in PLAIN_ERRORS.items():
        app.add_exception_handler(kind, _plain_handler(status, error))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 405:
            try:
                await _refuse_method(request)
            except ApiError as refused:
                return _error(refused.status, refused.error, refused.message, refused.headers, **refused.extra)
        names = {404: "not_found", 405: "method_not_allowed"}
        return _error(exc.status_code, names.get(exc.status_code, "http_error"), str(exc.detail),
                      dict(exc.headers) if exc.headers else None)  # fmt: skip


async def _refuse_method(request: Request) -> None:
    """A method no route allows (``DELETE /api/v1/entries/7``, say) is an attempt to change the log:
    recorded as denied, naming the caller (anonymous attempts as ``deny_anonymous`` records them,
    never counted against the address). Always raises the ApiError that answers it."""
    principal = await current_principal(request)
    message = f"{request.method} is not allowed on {request.url.path}: no interface changes or deletes an entry"
    if principal is None:
        await deny_anonymous(request, 405, "method_not_allowed", message, action="audit.access")
    await deny(request, principal, 405, "method_not_allowed", message, action="audit.access")


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, plus the schemas of bodies the routes parse themselves (events, sign-in)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components.update(schemas.event_schemas())
    login = schemas.LoginIn.model_json_schema(ref_template="#/components/schemas/{model}")
    components["LoginIn"] = login
    document["components"]["securitySchemes"] = {
        "apiKey": {"type": "http", "scheme": "bearer", "description": "an API key from `graven keys create`"},
        "session": {"type": "apiKey", "in": "cookie", "name": "graven_session"},
    }
    document["security"] = [{"apiKey": []}, {"session": []}]
    batch = document["paths"]["/api/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    batch["oneOf"][1]["maxItems"] = app.state.graven.config.max_batch
    app.openapi_schema = document
    return document


SETTINGS_ENV = "GRAVEN_SERVE_SETTINGS"


def app_from_environment() -> FastAPI:
    """The app ``graven serve`` runs in each worker process (uvicorn's factory).

    The log comes from ``GRAVEN_DB``, ``GRAVEN_SIGNING_KEY`` and ``GRAVEN_FINGERPRINT_KEY``; the
    server's settings and the path of its secret from ``GRAVEN_SERVE_SETTINGS`` (JSON). A worker of
    a supervisor (``GRAVEN_SUPERVISOR_PID``) exits when that supervisor dies.
    """
    import os
    from datetime import timedelta
    from pathlib import Path

    import orjson

    from graven.opening import open_trail
    from graven.server.credentials import load_secret
    from graven.server.logs import configure as configure_logs
    from graven.server.supervision import follow_supervisor, supervisor_from_environment
    from graven.server.tenants import LOGS_ENV, logs_from_text, tenant_app

    supervisor = supervisor_from_environment()
    if supervisor is not None:
        follow_supervisor(supervisor)  # a worker MUST NOT outlive its supervisor (and keep the port)
    settings = orjson.loads(os.environ[SETTINGS_ENV])
    configure_logs(settings.pop("log_format", "text"), requests=settings.pop("access_log", False))
    secret = load_secret(Path(settings.pop("secret_path")))
    settings["session_ttl"] = timedelta(seconds=settings.pop("session_seconds"))
    settings["trusted_proxies"] = tuple(settings["trusted_proxies"])
    logs = os.environ.get(LOGS_ENV)
    if logs:  # graven serve --logs: each log its own app, under /logs/<name>
        apps = {name: create_app(open_trail(create=False, log=name), ServerConfig(secret=secret, **settings),
                                 owns_trail=True, ui=False) for name in logs_from_text(logs)}  # fmt: skip
        return tenant_app(apps)
    trail = open_trail(create=False)
    return create_app(trail, ServerConfig(secret=secret, **settings), owns_trail=True)
