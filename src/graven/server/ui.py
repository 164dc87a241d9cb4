"""The web UI inside ``graven serve``: the signed-in person is the viewer, and roles decide what they see.

``mount_ui(app, trail)`` adds the UI's pages (``/``, ``/console``, ``/timeline``, ``/entry/N``,
``/tail``, ``/how``) and its assets (``/static``) to the service's app; the demo-only pages do not
exist here. Only a session cookie signs someone in to the UI (an API key does not): without one a
browser is sent to ``/login?next=<path>`` and a fetch (``Accept: application/json``) gets 401
JSON. ``writer`` may not use the UI; ``reader`` searches and reads entries with their proofs, the
tail and "how it works"; ``auditor`` and ``admin`` also verify the whole log and export.

Every refusal is recorded by the server's :func:`~graven.server.auth.deny`, as for the API. Every
read is recorded exactly once, by the UI, naming the person. A state-changing UI request MUST
carry the session's CSRF token (checked by ``current_principal``) and come from the UI's origin.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from fastapi import FastAPI, Request
from starlette.routing import Match, Mount
from starlette.types import Scope

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
                raise Denied(403, exc.message, viewer=viewer) from None
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
    """Serve the UI over ``trail`` from ``app``; returns what the app's shutdown must call (ends live pages)."""
    ui_app = create_web_app(trail, gate=SessionGate(), record_reads=True)
    ui_app.state.graven = app.state.graven  # current_principal reads the server's state from request.app
    app.router.routes.append(_UIMount("", app=ui_app, name="ui"))
    return ui_app.state.graven_ui.closing.set  # type: ignore[no-any-return]
