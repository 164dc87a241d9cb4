"""The web UI inside ``graven serve``: the signed-in person is the viewer, and roles decide what they see.

``mount_ui(app, trail)`` adds the UI's pages (``/``, ``/console``, ``/timeline``, ``/entry/N``,
``/tail``, ``/how``) and its assets (``/static``) to the service's app; the demo-only pages do not
exist here. Only a session cookie signs someone in to the UI (an API key does not): without one a
browser is sent to ``/login?next=<path>`` and a fetch (``Accept: application/json``) gets 401
JSON. ``writer`` may not use the UI; ``reader`` searches and reads entries with their proofs, the
tail and "how it works"; ``auditor`` and ``admin`` also verify the whole log and export.

A browser (asking for ``text/html``, not JSON) gets the service's errors outside ``/api/`` as pages
in the UI's style: an unknown path (404), a refusal (403), a throttled sign-in form (429, the form
again with the reason); API clients keep getting JSON. Every refusal is recorded by the server's
:func:`~graven.server.auth.deny`, as for the API. Every
read is recorded exactly once, by the UI, naming the person. A state-changing UI request MUST
carry the session's CSRF token (checked by ``current_principal``) and come from the UI's origin.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request, Response
from starlette.exceptions import HTTPException
from starlette.routing import Match, Mount
from starlette.types import Scope

from graven.server import signin
from graven.server.auth import ApiError, Principal, current_principal, deny, deny_anonymous, state
from graven.trail import Trail
from graven.web.app import Denied, Need, SignInRequired, Viewer, create_web_app

SIGN_IN = "/login"
SIGN_OUT = "/auth/logout"
NEEDS: dict[Need, tuple[str, str]] = {
    "read": ("reader", "use the web UI"),
    "audit": ("auditor", "verify the whole log or export"),
}


def sign_in_url(request: Request) -> str:
    """The sign-in page, coming back to this page afterwards (a GET's path and query only)."""
    if request.method not in ("GET", "HEAD"):
        return SIGN_IN
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{SIGN_IN}?next={quote(here, safe='/')}"


class SessionGate:
    """Admits the person of the session cookie to what a UI route needs (see the module's rules)."""

    async def admit(self, request: Request, need: Need) -> Viewer:
        try:
            principal = await current_principal(request)  # 401 bad key, 429 throttled, 403 no CSRF token
            if principal is None or principal.kind != "user":
                message = "sign in to use the web UI"
                if principal is not None:
                    message = "an API key does not sign in to the web UI; sign in with a user name and password"
                if principal is None:
                    await deny_anonymous(request, 401, "unauthorized", message)  # recorded, never throttled
                await deny(request, principal, 401, "unauthorized", message)
        except ApiError as exc:
            if exc.status == 401:
                raise SignInRequired(exc.message, sign_in=sign_in_url(request)) from None
            raise Denied(exc.status, exc.message, headers=exc.headers) from None
        viewer = self.viewer(request, principal)
        role, what = NEEDS[need]
        if not principal.may(role):
            try:
                await deny(request, principal, 403, "forbidden",
                           f"the {principal.role} role may not {what} (it needs {role})",
                           action="audit.access")  # fmt: skip
            except ApiError as exc:
                raise Denied(403, exc.message, viewer=viewer, start_refused=need == "read") from None
        return viewer

    @staticmethod
    def viewer(request: Request, principal: Principal) -> Viewer:
        assert principal.session_token is not None
        token = state(request).accounts.csrf_token(principal.session_token)
        return Viewer(principal.name, principal.name, "user", role=principal.role, may_audit=principal.may("auditor"),
                      csrf_token=token, sign_out=SIGN_OUT, ip=principal.ip)  # fmt: skip


class _UIMount(Mount):
    """The UI at the site's root, matching only the UI's own paths (so the API's 404s stay JSON)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and any(route.matches(scope)[0] is not Match.NONE for route in self.routes):
            return super().matches(scope)
        return Match.NONE, {}


def mount_ui(app: FastAPI, trail: Trail) -> Callable[[], None]:
    """Serve the UI over ``trail`` from ``app``; returns what the app's shutdown must call (ends live pages).

    Call it after the app's own error handlers are installed: it answers their errors to browsers."""
    ui_app = create_web_app(trail, gate=SessionGate(), record_reads=True)
    ui_app.state.graven = app.state.graven  # current_principal reads the server's state from request.app
    app.router.routes.append(_UIMount("", app=ui_app, name="ui"))
    app.add_api_route(SIGN_IN, signin.login_page, methods=["HEAD"], include_in_schema=False)
    for kind in (ApiError, HTTPException):
        handler = app.exception_handlers.get(kind)
        if handler is not None:
            app.add_exception_handler(kind, _pages_for_browsers(handler, ui_app.state.graven_ui))
    return ui_app.state.graven_ui.closing.set  # type: ignore[no-any-return]


def is_browser(request: Request) -> bool:
    """A browser's page request (not the API, not a fetch asking for JSON)."""
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept and not request.url.path.startswith("/api/")


Handler = Callable[[Request, Any], "Response | Awaitable[Response]"]


def _pages_for_browsers(handler: Handler, ui: Any) -> Handler:
    """The app's JSON error handler, answering a browser with a page in the UI's style instead (the
    handler still runs first, so whatever it records is recorded)."""

    async def handle(request: Request, exc: Any) -> Response:
        answer = handler(request, exc)
        if inspect.isawaitable(answer):
            answer = await answer
        if not is_browser(request) or answer.status_code < 400:
            return answer
        body = json.loads(bytes(answer.body)) if answer.body else {}
        message = str(body.get("message") or body.get("error") or "the request failed")
        headers = {k: v for k, v in answer.headers.items() if k.lower() == "retry-after"}
        if request.url.path == "/auth/login" and request.method == "POST":  # the sign-in form, with the reason
            page = signin._sign_in_page(request, status=answer.status_code, error=message)
            page.headers.update(headers)
            return page
        shown = {"error": message, "field": body.get("field"), "rule": body.get("rule"), "given": body.get("given")}
        if answer.status_code == 401:
            shown["sign_in"] = sign_in_url(request)
        return ui.page(request, answer.status_code, shown, headers)  # type: ignore[no-any-return]

    return handle
