"""graven.flask on a Flask application with Flask-Login: context per request, every refusal recorded once."""

from __future__ import annotations

import asyncio
from typing import Any

import flask
import pytest
from flask.testing import FlaskClient
from flask_login import LoginManager, UserMixin, fresh_login_required, login_required

import graven
from graven.flask import Graven
from graven.trail import Trail


class User(UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def make_app(trail: Trail, *, login_view: str | None = None, **options: Any) -> flask.Flask:
    app = flask.Flask(__name__)
    app.secret_key = "test-only"
    logins = LoginManager(app)
    logins.login_view = login_view  # type: ignore[assignment]

    @logins.request_loader
    def from_header(request: flask.Request) -> User | None:
        name = request.headers.get("X-User")
        return User(name) if name else None

    Graven(app, trail, trusted_proxies=["10.0.0.0/8"], **options)

    @app.get("/sign-in")
    def sign_in() -> str:
        return "sign in here"

    @app.get("/customers/<customer_id>")
    @login_required
    def customer(customer_id: str) -> dict[str, str]:
        trail.record(action="customer.view", targets=[("customer", customer_id)])
        return {"id": customer_id}

    @app.get("/admin")
    def admin() -> str:
        flask.abort(403)

    @app.get("/api/token")
    def token() -> str:
        flask.abort(401)

    @app.post("/files/<file_id>/delete")
    def delete(file_id: str) -> str:
        with trail.action("file.delete", target=("file", file_id)):
            raise graven.Denied("files.delete required")

    @app.get("/reports/<report_id>")
    def report(report_id: str) -> str:
        raise graven.Denied(f"report {report_id} belongs to another team")

    @app.get("/async/<customer_id>")
    async def async_view(customer_id: str) -> str:
        await asyncio.sleep(0)
        return str(await trail.arecord(action="customer.view", targets=[("customer", customer_id)]))

    @app.get("/settings")
    @fresh_login_required
    def settings() -> str:
        return "settings"

    return app


def client(app: flask.Flask, peer: str = "10.0.0.5") -> FlaskClient:
    c = app.test_client()
    c.environ_base["REMOTE_ADDR"] = peer
    return c


def denials(trail: Trail) -> list[tuple[str, str, str, int]]:
    return [
        (e.actor.get("id", e.actor["type"]), e.targets[0]["id"], e.get("reason"), e.get("context")["status"])
        for e in trail.query(outcome="denied", limit=50).entries
    ]


class TestContext:
    def test_entries_carry_user_route_and_request(self, trail: Trail) -> None:
        """The signed-in user, client IP, user agent, request id, URL rule and endpoint reach every entry."""
        response = client(make_app(trail)).get(
            "/customers/c-1",
            headers={"X-User": "u-17", "User-Agent": "Firefox/133", "X-Forwarded-For": "203.0.113.7"},
        )
        assert 200 == response.status_code
        entry = trail.get(0)
        assert {"type": "user", "id": "u-17", "ip": "203.0.113.7", "user_agent": "Firefox/133"} == entry.actor
        assert {
            "request_id": response.headers["X-Request-ID"],
            "route": "/customers/<customer_id>",
            "endpoint": "customer",
            "method": "GET",
        } == entry.get("context")
        assert "web" == entry.get("source")

    def test_async_view(self, trail: Trail) -> None:
        """An async view (run by Flask in its own event loop) records with the request's context."""
        response = client(make_app(trail)).get("/async/c-4", headers={"X-User": "u-4", "X-Request-ID": "req-a"})
        entry = trail.get(int(response.text))
        assert ("u-4", "req-a", "/async/<customer_id>") == (
            entry.actor["id"],
            entry.get("context")["request_id"],
            entry.get("context")["route"],
        )

    def test_actor_callable(self, trail: Trail) -> None:
        """A given actor() replaces Flask-Login's current_user."""
        app = make_app(trail, actor=lambda: f"service:{flask.request.headers['X-Service']}")
        client(app).get("/customers/c-1", headers={"X-User": "u-1", "X-Service": "sync"})
        assert {"type": "service", "id": "sync"} == {k: trail.get(0).actor[k] for k in ("type", "id")}

    def test_no_leak_between_requests(self, trail: Trail) -> None:
        """A visitor after a signed-in user is recorded as anonymous."""
        c = client(make_app(trail))
        c.get("/customers/c-1", headers={"X-User": "u-1"})
        c.get("/admin")
        assert [("anonymous", "GET /admin", "HTTP 403 Forbidden", 403)] == denials(trail)

    def test_without_flask_login_the_actor_callable_alone(self, trail: Trail) -> None:
        """An application without a login manager gets its actor from actor(), and anonymous refusals."""
        app = flask.Flask(__name__)
        Graven(app, trail, actor=lambda: flask.request.headers.get("X-User"))

        @app.get("/things/<thing>")
        def thing(thing: str) -> str:
            if thing == "secret":
                flask.abort(403)
            trail.record(action="thing.view", targets=[("thing", thing)])
            return "ok"

        c = app.test_client()
        c.get("/things/t-1", headers={"X-User": "u-8"})
        c.get("/things/secret")
        assert ("u-8", "thing.view") == (trail.get(0).actor["id"], trail.get(0).action)
        assert [("anonymous", "GET /things/<thing>", "HTTP 403 Forbidden", 403)] == denials(trail)


class TestDenials:
    def test_abort_401_and_403(self, trail: Trail) -> None:
        """abort(401) and abort(403) are each one denied http.request naming the URL rule."""
        c = client(make_app(trail))
        assert 403 == c.get("/admin", headers={"X-User": "u-9"}).status_code
        assert 401 == c.get("/api/token").status_code
        assert [
            ("u-9", "GET /admin", "HTTP 403 Forbidden", 403),
            ("anonymous", "GET /api/token", "HTTP 401 Unauthorized", 401),
        ] == denials(trail)
        assert 2 == trail.size

    def test_login_required_without_login_view(self, trail: Trail) -> None:
        """Flask-Login's unauthorized handler (here a 401) is recorded once, with its reason."""
        assert 401 == client(make_app(trail)).get("/customers/c-1").status_code
        assert [("anonymous", "GET /customers/<customer_id>", "login required", 401)] == denials(trail)
        assert 1 == trail.size

    def test_login_required_redirecting_to_sign_in(self, trail: Trail) -> None:
        """A redirect to the sign-in page is a refusal too, recorded once."""
        response = client(make_app(trail, login_view="sign_in")).get("/customers/c-1")
        assert 302 == response.status_code
        assert [("anonymous", "GET /customers/<customer_id>", "login required", 401)] == denials(trail)

    def test_fresh_login_required(self, trail: Trail) -> None:
        """A session that must sign in again (fresh_login_required) is recorded as refused."""
        c = client(make_app(trail))
        assert 401 == c.get("/settings", headers={"X-User": "u-3"}).status_code
        assert [("u-3", "GET /settings", "fresh login required", 401)] == denials(trail)

    def test_action_denial_is_the_only_entry(self, trail: Trail) -> None:
        """A Denied raised in trail.action() is recorded by the action, and the 403 adds nothing."""
        response = client(make_app(trail)).post("/files/f-1/delete", headers={"X-User": "u-2"})
        assert 403 == response.status_code
        assert 1 == trail.size
        entry = trail.get(0)
        assert ("file.delete", "denied", "files.delete required", "u-2") == (
            entry.action,
            entry.outcome,
            entry.get("reason"),
            entry.actor["id"],
        )
        assert "/files/<file_id>/delete" == entry.get("context")["route"]

    def test_bare_denied_becomes_one_403(self, trail: Trail) -> None:
        """graven.Denied escaping a view is a 403 recorded with its message as the reason."""
        response = client(make_app(trail)).get("/reports/r-7", headers={"X-User": "u-2"})
        assert 403 == response.status_code
        assert [("u-2", "GET /reports/<report_id>", "report r-7 belongs to another team", 403)] == denials(trail)
        assert 1 == trail.size


def test_init_app_needs_a_trail() -> None:
    """The factory style without a trail is refused with a message saying what to pass."""
    with pytest.raises(TypeError, match="needs the trail"):
        Graven(trail=None).init_app(flask.Flask(__name__))
