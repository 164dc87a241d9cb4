"""Flask: ``graven.flask.Graven(app, trail)`` gives every request the trail's context and records every refusal.

It wraps ``app.wsgi_app`` in :class:`graven.capture.wsgi.AuditMiddleware` (client IP behind
``trusted_proxies``, user agent, request id returned as ``X-Request-ID``, one contextvars context
per request) and, inside Flask, adds the actor (``actor()``, by default Flask-Login's
``current_user`` when the application has a login manager), the matched URL rule as ``route``
and the ``endpoint``. Recorded as one ``denied`` ``http.request`` naming the route: a 401 or
403 response (``abort(401)``, ``abort(403)``), Flask-Login's unauthorized and needs-refresh
handlers (even when they redirect to the sign-in page), and a :class:`graven.Denied` escaping a
view, which becomes a 403. MUST NOT record an attempt twice: a denial already recorded during the
request (by an ``action()`` block, or by one of these) is not recorded again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import flask
from werkzeug.exceptions import Forbidden

from graven import context
from graven.capture.action import Denied
from graven.capture.request import DENIED_STATUSES, current_attempt
from graven.capture.wsgi import AuditMiddleware, record_denial

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

    from graven.trail import Trail

__all__ = ["Graven", "actor_of_user"]


def actor_of_user(user: Any) -> dict[str, Any]:
    """A Flask-Login user as an actor: ``{"type": "user", "id": user.get_id()}``, or anonymous."""
    if user is None or not getattr(user, "is_authenticated", False):
        return {"type": "anonymous"}
    return {"type": "user", "id": str(user.get_id())[:200]}


class Graven:
    """``Graven(app, trail, actor=..., trusted_proxies=[...])``, or ``Graven(trail=trail).init_app(app)``."""

    def __init__(
        self,
        app: flask.Flask | None = None,
        trail: Trail | None = None,
        *,
        actor: Callable[[], Any] | None = None,
        trusted_proxies: Iterable[str] = (),
        request_id_header: str = "X-Request-ID",
        source: str = "web",
    ) -> None:
        self.trail = trail
        self.actor = actor
        self.trusted_proxies = list(trusted_proxies)
        self.request_id_header = request_id_header
        self.source = source
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        if self.trail is None:
            raise TypeError("graven.flask.Graven needs the trail: Graven(app, trail) or Graven(trail=trail)")
        app.wsgi_app = AuditMiddleware(  # type: ignore[method-assign]
            app.wsgi_app,
            self.trail,
            trusted_proxies=self.trusted_proxies,
            request_id_header=self.request_id_header,
            source=self.source,
        )
        # First of the before-request hooks, so that the others' entries name the actor too.
        app.before_request_funcs.setdefault(None, []).insert(0, self._enter)
        app.after_request(self._after)
        app.register_error_handler(Denied, self._denied)
        try:
            from flask_login import signals
        except ImportError:
            pass
        else:
            signals.user_unauthorized.connect(self._unauthorized, app, weak=False)
            signals.user_needs_refresh.connect(self._needs_refresh, app, weak=False)
        app.extensions["graven"] = self

    def _enter(self) -> None:
        request = flask.request
        rule = request.url_rule
        # The middleware runs each request in a contextvars context of its own, thrown away after
        # it: what is pushed here needs no undoing (and Flask may pop the request elsewhere).
        context.push(actor=self._actor(), route=rule.rule if rule else None, endpoint=request.endpoint)

    def _actor(self) -> Any:
        if self.actor is not None:
            return self.actor()
        if getattr(flask.current_app, "login_manager", None) is not None:
            from flask_login import current_user

            return actor_of_user(current_user)
        return None

    def _after(self, response: Response) -> Response:
        status = response.status_code
        if status in DENIED_STATUSES and _not_yet_recorded():
            self._record(f"HTTP {DENIED_STATUSES[status]}", status)
        return response

    def _denied(self, error: Denied) -> Response:
        if _not_yet_recorded():
            self._record(str(error) or "Denied", 403)
        return Forbidden().get_response()

    def _unauthorized(self, sender: flask.Flask, **extra: Any) -> None:
        if _not_yet_recorded():
            self._record("login required", 401)

    def _needs_refresh(self, sender: flask.Flask, **extra: Any) -> None:
        if _not_yet_recorded():
            self._record("fresh login required", 401)

    def _record(self, reason: str, status: int) -> None:
        assert self.trail is not None  # init_app checked it
        rule = flask.request.url_rule
        route = rule.rule if rule else flask.request.path
        record_denial(self.trail, reason, status, flask.request.method, route)


def _not_yet_recorded() -> bool:
    found = current_attempt()
    return found is None or not found.denied_recorded
